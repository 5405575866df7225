"""``fake-eks --scenario NAME|FILE [--port N] --connection-file PATH``."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path

from fake_eks.scenario import ScenarioError, load_scenario, shipped_scenarios
from fake_eks.server import FakeEks


async def _serve(args: argparse.Namespace) -> None:
    scenario = load_scenario(args.scenario, seed=args.seed)
    server = FakeEks(scenario, port=args.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    conn = await server.start()
    conn["pid"] = os.getpid()
    if args.connection_file:
        target = Path(args.connection_file)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(json.dumps(conn, indent=2))
        tmp.replace(target)  # atomic: readers never see a partial file
    logging.getLogger("fake_eks").info(
        "fake-eks %s ready: %s (%d clusters)", scenario.name, conn["eks_endpoint_url"], len(conn["clusters"])
    )
    try:
        await stop.wait()
    finally:
        await server.stop()
        if args.connection_file:
            Path(args.connection_file).unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``fake-eks`` console script."""
    parser = argparse.ArgumentParser(prog="fake-eks", description=__doc__)
    parser.add_argument("--scenario", required=True, help=f"one of {shipped_scenarios()} or a JSON file")
    parser.add_argument("--port", type=int, default=0, help="EKS/STS/truth port (0: any free port)")
    parser.add_argument("--connection-file", help="where to write the connection JSON when ready")
    parser.add_argument("--seed", type=int, default=None, help="override the scenario's seed")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    logging.getLogger("aiohttp").setLevel(logging.CRITICAL)
    try:
        asyncio.run(_serve(args))
    except ScenarioError as exc:
        parser.error(str(exc))
