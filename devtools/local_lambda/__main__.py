"""Command line: ``python -m local_lambda invoke --function NAME --event FILE [--env-vars FILE]``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

from local_lambda.built import BuildError
from local_lambda.runner import invoke_built, read_env_file


def _pairs(items: Sequence[str]) -> dict[str, str]:
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BuildError(f"--env {item!r}: expected KEY=VALUE")
        pairs[key] = value
    return pairs


def main(argv: Sequence[str] | None = None) -> int:
    """Invoke once; print the result JSON; 0 on success, 1 on a function error, 2 on a usage error."""
    parser = argparse.ArgumentParser(prog="python -m local_lambda", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("invoke", help="run one event through the built function")
    run.add_argument("--function", required=True, help="logical id, e.g. CollectorFunction")
    run.add_argument("--event", required=True, type=Path, help="JSON event file")
    run.add_argument("--env-vars", type=Path, help="`sam local invoke --env-vars` JSON file")
    run.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                     help="set a variable after the env-vars file (repeatable)")
    run.add_argument("--stand-ins", metavar="SCENARIO",
                     help="start moto and the fake EKS (this scenario) on free ports and point the function "
                          "at them (the env-vars file's endpoints and credentials are replaced)")
    run.add_argument("--build-dir", type=Path, default=Path(".aws-sam/local/build"),
                     help="sam build output (default .aws-sam/local/build: `make build-local`)")
    run.add_argument("--quiet", action="store_true", help="do not echo the function's log lines")
    args = parser.parse_args(argv)
    try:
        overrides = _pairs(args.env)
        bucket = read_env_file(args.env_vars, args.function).get("STATE_BUCKET")
        with ExitStack() as stack:
            local: dict[str, str] = {}
            if args.stand_ins:
                from local_lambda.stand_ins import started  # moto and the fake EKS: only when asked

                local = stack.enter_context(started(args.stand_ins, bucket)).variables
            result = invoke_built(args.build_dir, args.function, args.event.read_bytes(), args.env_vars,
                                  {**local, **overrides}, log_stream=None if args.quiet else sys.stderr)
    except (BuildError, OSError, ValueError) as error:
        print(f"local_lambda: {error}", file=sys.stderr)
        return 2
    print(f"REPORT RequestId: {result.request_id} Duration: {result.duration_ms:.0f} ms", file=sys.stderr)
    print(json.dumps(result.payload if result.ok else result.error, indent=2, default=str))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
