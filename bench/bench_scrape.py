"""Scrape at scale: ``cni-metrics collect --dry-run`` as a process against a ``fake-eks`` child process.

Scenario ``scale-5k`` (5,000 aws-node pods, 20 ms +- 5 ms added latency per scrape) plus a 1,000-pod
cluster with the same settings. Runs, side by side: the default concurrency on 5,000 nodes, and the
sequential way the upstream helper scrapes (concurrency 1) on 1,000 nodes. Reported per run: wall time of
the whole command (interpreter start-up included), the collection's own duration, CPU seconds and peak
RSS of the command (``os.wait4`` rusage of that child), nodes/second, the stand-in's CPU seconds and the
1-minute load average after the run (the machine is shared: compare CPU seconds when the load differs);
then the speed-up in nodes/second.
Targets: 5,000 nodes in <= 10 s wall and <= 300 MB peak RSS; >= 20x faster than sequential.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from fake_eks.testing import RunningFakeEks, start_fake_eks

DEFAULT_CONCURRENCY = 64
BIG, BIG_NODES = "scale-5k", 5000
SMALL, SMALL_NODES = "scale-1k", 1000
WALL_TARGET_S, RSS_TARGET_MB, SPEEDUP_TARGET = 10.0, 300.0, 20.0


@dataclass(frozen=True)
class Run:
    """One ``cni-metrics collect`` process."""

    label: str
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
    def nodes_per_s(self) -> float:
        """Throughput over the whole command."""
        return self.scraped / self.wall_s if self.wall_s else 0.0


def _scenario() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((resources.files("fake_eks") / "scenarios" / f"{BIG}.json").read_text())
    big = doc["clusters"][0]
    if big["name"] != BIG or big["nodes"] != BIG_NODES:
        raise RuntimeError(f"unexpected shipped scenario {BIG}: {big['name']} with {big['nodes']} nodes")
    doc["clusters"].append({**big, "name": SMALL, "nodes": SMALL_NODES})
    return doc


def _collect(eks: RunningFakeEks, cluster: str, concurrency: int, label: str) -> Run:
    # services the stand-in does not serve (EC2 for subnet headroom) go to a closed loopback port
    env = {**os.environ, "AWS_ENDPOINT_URL": "http://127.0.0.1:9", **eks.env()}
    command = [
        str(Path(sys.executable).with_name("cni-metrics")), "collect", "--cluster", cluster, "--dry-run",
        "--format", "json", "--concurrency", str(concurrency), "--timeout", "600",
    ]
    server_before = _cpu_seconds(eks.connection.get("pid"))
    with tempfile.TemporaryFile("w+") as out:
        started = time.perf_counter()
        child = subprocess.Popen(command, env=env, stdout=out)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read()
    if child.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {child.returncode}: {text[-2000:]}")
    doc = json.loads(text)["clusters"][0]
    health = doc["health"]
    return Run(
        label=label, nodes=health["nodesTotal"], scraped=health["nodesScraped"],
        failed=health["nodesFailedByReason"], wall_s=wall, collect_s=health["scrapeDurationMs"] / 1000,
        cpu_s=usage.ru_utime + usage.ru_stime, peak_rss_mb=usage.ru_maxrss / 1024,
        server_cpu_s=_cpu_seconds(eks.connection.get("pid")) - server_before,
        load=os.getloadavg()[0],
    )


def _cpu_seconds(pid: int | None) -> float:
    """CPU seconds a process has used so far (0 when unknown)."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _table(runs: list[Run]) -> str:
    lines = [
        f"{'run':<30} {'nodes':>6} {'scraped':>8} {'wall s':>7} {'collect s':>9} {'CPU s':>6} "
        f"{'peak RSS MB':>11} {'nodes/s':>8} {'stand-in CPU s':>14} {'load after':>10}"
    ]
    lines.extend(
        f"{r.label:<30} {r.nodes:>6} {r.scraped:>8} {r.wall_s:>7.2f} {r.collect_s:>9.2f} {r.cpu_s:>6.2f} "
        f"{r.peak_rss_mb:>11.1f} {r.nodes_per_s:>8.1f} {r.server_cpu_s:>14.2f} {r.load:>10.1f}"
        for r in runs
    )
    return "\n".join(lines)


def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def main() -> None:
    """Run both collections and print the figures and the targets."""
    started = time.perf_counter()
    with start_fake_eks(_scenario(), subprocess_mode=True) as eks:
        print(f"fake-eks ready in {time.perf_counter() - started:.1f} s; load average "
              f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (the stand-in shares them)", flush=True)
        fast = _collect(eks, BIG, DEFAULT_CONCURRENCY, f"concurrency {DEFAULT_CONCURRENCY} (default)")
        sequential = _collect(eks, SMALL, 1, "concurrency 1 (sequential)")
    print(_table([fast, sequential]))
    for run in (fast, sequential):
        if run.failed or run.scraped != run.nodes:
            print(f"warning: {run.label}: {run.scraped}/{run.nodes} scraped, failures {run.failed}")
    speedup = fast.nodes_per_s / sequential.nodes_per_s if sequential.nodes_per_s else float("inf")
    print(f"speed-up (nodes/s, default vs sequential): {speedup:.1f}x")
    print(f"CPU per node: {fast.cpu_s / max(fast.scraped, 1) * 1000:.2f} ms (default), "
          f"{sequential.cpu_s / max(sequential.scraped, 1) * 1000:.2f} ms (sequential)")
    wall_ok = fast.wall_s <= WALL_TARGET_S
    print(f"targets: {BIG_NODES} nodes <= {WALL_TARGET_S:.0f} s wall: {_verdict(wall_ok)}; "
          f"<= {RSS_TARGET_MB:.0f} MB peak RSS: {_verdict(fast.peak_rss_mb <= RSS_TARGET_MB)}; "
          f">= {SPEEDUP_TARGET:.0f}x sequential: {_verdict(speedup >= SPEEDUP_TARGET)}")


if __name__ == "__main__":
    main()
