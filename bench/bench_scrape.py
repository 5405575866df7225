"""Scrape at scale, both transports side by side: one cluster's collection as a process against a
``fake-eks`` child process.

Scenario ``scale-5k`` (5,000 aws-node pods, 20 ms +- 5 ms added latency per scrape) plus a 1,000-pod
cluster with the same settings. For each transport (``builtin``, ``requests``): the default concurrency on
5,000 nodes, and the sequential way the upstream helper scrapes (concurrency 1) on 1,000 nodes; the four
runs alternate transports. Each run is ``python -m bench.bench_scrape CLUSTER CONCURRENCY TRANSPORT``: what
``cni-metrics collect --dry-run --format json`` does for one cluster (sign in, list, scrape, the first-run
aggregate and capacity of ``cli.collect.report``), with the transport chosen (the command scrapes with the
default one). Reported per run: wall time of the whole process (interpreter start-up included), the
collection's own duration, CPU seconds of the process (``os.wait4`` rusage of that child) and its peak RSS
(its own ``VmHWM``: rusage's ``ru_maxrss`` carries the forking parent's high-water mark across fork and
exec, so after other benchmarks in one ``make bench`` process it showed theirs),
nodes/second, the stand-in's CPU seconds and the 1-minute load average after the run (the machine is
shared: compare CPU seconds when the load differs); then, per transport, the speed-up in nodes/second and
the CPU per node.
Targets, per transport: 5,000 nodes in <= 10 s wall and <= 300 MB peak RSS; >= 20x faster than sequential.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from cni_metrics.adapters.eks_auth import ClusterTarget
from cni_metrics.adapters.scrape import TRANSPORTS, ScrapeSettings, Transport
from cni_metrics.cli.collect import report
from cni_metrics.collector.cluster import collect_cluster
from local_lambda.invoke_api import worker_cpu_seconds

if TYPE_CHECKING:
    from fake_eks.testing import RunningFakeEks

DEFAULT_CONCURRENCY = 64
BIG, BIG_NODES = "scale-5k", 5000
SMALL, SMALL_NODES = "scale-1k", 1000
WALL_TARGET_S, RSS_TARGET_MB, SPEEDUP_TARGET = 10.0, 300.0, 20.0
ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Run:
    """One collection process."""

    transport: Transport
    concurrency: int
    nodes: int
    scraped: int
    failed: dict[str, int]
    wall_s: float
    collect_s: float
    cpu_s: float
    peak_rss_mb: float
    server_cpu_s: float
    load: float

    @property
    def label(self) -> str:
        """The run's row name."""
        how = "default" if self.concurrency == DEFAULT_CONCURRENCY else "sequential"
        return f"{self.transport}, concurrency {self.concurrency} ({how})"

    @property
    def nodes_per_s(self) -> float:
        """Throughput over the whole process."""
        return self.scraped / self.wall_s if self.wall_s else 0.0

    @property
    def cpu_per_node_ms(self) -> float:
        """The process's CPU time per node scraped."""
        return self.cpu_s / max(self.scraped, 1) * 1000


def _scenario() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((resources.files("fake_eks") / "scenarios" / f"{BIG}.json").read_text())
    big = doc["clusters"][0]
    if big["name"] != BIG or big["nodes"] != BIG_NODES:
        raise RuntimeError(f"unexpected shipped scenario {BIG}: {big['name']} with {big['nodes']} nodes")
    doc["clusters"].append({**big, "name": SMALL, "nodes": SMALL_NODES})
    return doc


def _collect(eks: RunningFakeEks, cluster: str, concurrency: int, transport: Transport) -> Run:
    # services the stand-in does not serve (EC2 for subnet headroom) go to a closed loopback port
    env = {**os.environ, "AWS_ENDPOINT_URL": "http://127.0.0.1:9", **eks.env()}
    command = [sys.executable, "-m", "bench.bench_scrape", cluster, str(concurrency), transport]
    server = [int(eks.connection["pid"])] if "pid" in eks.connection else []
    server_before = worker_cpu_seconds(server)
    with tempfile.TemporaryFile("w+") as out:
        started = time.perf_counter()
        child = subprocess.Popen(command, env=env, stdout=out, cwd=ROOT)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read()
    if child.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {child.returncode}: {text[-2000:]}")
    document = json.loads(text)
    health = document["clusters"][0]["health"]
    return Run(
        transport=transport, concurrency=concurrency, nodes=health["nodesTotal"],
        scraped=health["nodesScraped"], failed=health["nodesFailedByReason"], wall_s=wall,
        collect_s=health["scrapeDurationMs"] / 1000, cpu_s=usage.ru_utime + usage.ru_stime,
        peak_rss_mb=document["peak_rss_mb"], load=os.getloadavg()[0],
        server_cpu_s=worker_cpu_seconds(server) - server_before,
    )


def _table(runs: list[Run]) -> str:
    lines = [
        f"{'run':<38} {'nodes':>6} {'scraped':>8} {'wall s':>7} {'collect s':>9} {'CPU s':>6} "
        f"{'peak RSS MB':>11} {'nodes/s':>8} {'stand-in CPU s':>14} {'load after':>10}"
    ]
    lines.extend(
        f"{r.label:<38} {r.nodes:>6} {r.scraped:>8} {r.wall_s:>7.2f} {r.collect_s:>9.2f} {r.cpu_s:>6.2f} "
        f"{r.peak_rss_mb:>11.1f} {r.nodes_per_s:>8.1f} {r.server_cpu_s:>14.2f} {r.load:>10.1f}"
        for r in runs
    )
    return "\n".join(lines)


def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def main() -> None:
    """Run the four collections and print the figures and the targets per transport."""
    # the stand-in only here: the collection processes import this module and must not load it
    from fake_eks.testing import start_fake_eks

    started = time.perf_counter()
    with start_fake_eks(_scenario(), subprocess_mode=True) as eks:
        print(f"fake-eks ready in {time.perf_counter() - started:.1f} s; load average "
              f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (the stand-in shares them)", flush=True)
        fast = {t: _collect(eks, BIG, DEFAULT_CONCURRENCY, t) for t in TRANSPORTS}
        sequential = {t: _collect(eks, SMALL, 1, t) for t in TRANSPORTS}
    runs = [*fast.values(), *sequential.values()]
    print(_table(runs))
    for run in runs:
        if run.failed or run.scraped != run.nodes:
            print(f"warning: {run.label}: {run.scraped}/{run.nodes} scraped, failures {run.failed}")
    for transport in TRANSPORTS:
        big, one = fast[transport], sequential[transport]
        speedup = big.nodes_per_s / one.nodes_per_s if one.nodes_per_s else float("inf")
        print(f"{transport}: speed-up (nodes/s, default vs sequential) {speedup:.1f}x; CPU per node "
              f"{big.cpu_per_node_ms:.2f} ms (default), {one.cpu_per_node_ms:.2f} ms (sequential); targets: "
              f"{BIG_NODES} nodes <= {WALL_TARGET_S:.0f} s wall: {_verdict(big.wall_s <= WALL_TARGET_S)}; "
              f"<= {RSS_TARGET_MB:.0f} MB peak RSS: {_verdict(big.peak_rss_mb <= RSS_TARGET_MB)}; "
              f">= {SPEEDUP_TARGET:.0f}x sequential: {_verdict(speedup >= SPEEDUP_TARGET)}")
    base, other = fast["builtin"], fast["requests"]
    print(f"requests / builtin at concurrency {DEFAULT_CONCURRENCY}: wall {other.wall_s / base.wall_s:.2f}x, "
          f"CPU {other.cpu_s / base.cpu_s:.2f}x, peak RSS {other.peak_rss_mb / base.peak_rss_mb:.2f}x")


def collect_one(argv: Sequence[str]) -> None:
    """``CLUSTER CONCURRENCY TRANSPORT``: collect the cluster and print ``cni-metrics collect --dry-run
    --format json``'s document for it (region and endpoints from the environment)."""
    cluster, concurrency, transport = argv
    chosen = next(t for t in TRANSPORTS if t == transport)
    session = boto3.Session()
    scrape = ScrapeSettings(concurrency=int(concurrency), transport=chosen)
    collection = collect_cluster(
        ClusterTarget(cluster, session.region_name or ""), session=session, scrape=scrape,
        deadline=time.monotonic() + 600,
    )
    print(json.dumps({"clusters": [report(collection)], "peak_rss_mb": _own_peak_rss_mb()}))


def _own_peak_rss_mb() -> float:
    """This process's peak resident set since its exec (``VmHWM`` of /proc/self/status)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


if __name__ == "__main__":
    collect_one(sys.argv[1:])
