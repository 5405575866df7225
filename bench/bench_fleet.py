"""Fleet mode, fan-out vs inline on the same fleet: fleet-500 (500 clusters, 10,029 nodes, 3 accounts through
roles, 2 regions) on the EKS stand-in and moto, each a process, and the ``make build-local`` artifact behind
local_lambda's Invoke API (``cni_demo.fleet_run``, as ``make demo-fleet`` runs it).

1. fan-out: the dispatcher invoked (RequestResponse through the Invoke API), the collector invoked by it
   asynchronously, ``WORKERS`` warm collector workers (its reserved concurrency); a first period (no state
   yet: one invocation per cluster) and a second, measured one (groups sized from the state objects). The
   period is long (600 s) so that nothing is skipped late while it is measured: the 60 s target is checked
   on the figures instead.
2. where the collector's CPU goes: 50 clusters collected again in this process by ``collect_cluster`` (warm,
   one at a time), the thread CPU of the scrape itself apart (``Scraper.scrape_all`` timed).
3. inline: the dispatcher in ``FLEET_MODE=inline`` (one invocation names all 500), a collector worker whose
   timeout is Lambda's 900 s, the collector's default CLUSTER_CONCURRENCY (4); twice, the second measured
   (as a warm worker runs it every period: names looked up, endpoints and roles' credentials cached).

Reported: the dispatcher's return time (target <= 5 s), the distribution of invocation times (target p99
<= 10 s) and queue waits, the whole fleet's wall time from the dispatch to the last invocation's end
(target <= 60 s), the CPU of each process group (collector workers, the stand-in, moto, the dispatcher,
this process with the Invoke API), the collector's CPU per cluster beyond scraping, the inline time and
the ratio; where a target is missed, the arithmetic of where the time goes and what it means on Lambda.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BUILD = Path(__file__).resolve().parents[1] / ".aws-sam" / "local" / "build"
WORKERS = 8
PERIOD = 600
SAMPLE = 50
DISPATCH_TARGET_S, P99_TARGET_S, FLEET_TARGET_S = 5.0, 10.0, 60.0


@dataclass(frozen=True)
class Cpu:
    """CPU seconds of each process group over a stretch of time."""

    workers: float
    stand_in: float
    moto: float
    dispatcher: float
    local: float

    @property
    def total(self) -> float:
        """Every process's CPU."""
        return self.workers + self.stand_in + self.moto + self.dispatcher + self.local


@dataclass(frozen=True)
class Measured:
    """One period (or the inline run): the cycle and its CPU."""

    label: str
    cycle: Any
    cpu: Cpu
    load: float


def _percentile(values: Sequence[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def _distribution(values: Sequence[float]) -> str:
    return (f"p50 {_percentile(values, 50):.2f} s, p90 {_percentile(values, 90):.2f} s, "
            f"p99 {_percentile(values, 99):.2f} s, max {max(values, default=0):.2f} s")


def _measure(label: str, api: Any, stand_ins: Any) -> Measured:
    from cni_demo.fleet_run import COLLECTOR, DISPATCHER, dispatch
    from local_lambda.invoke_api import worker_cpu_seconds as cpu_of

    def pids(function: str) -> list[int]:
        return [worker.pid for worker in api.pools[function].workers]

    workers, dispatcher = pids(COLLECTOR), pids(DISPATCHER)
    eks, moto = [stand_ins.eks_pid], [stand_ins.moto_pid]
    before = (cpu_of(workers), cpu_of(eks), cpu_of(moto), cpu_of(dispatcher), time.process_time())
    cycle = dispatch(api, timeout=1200)
    after = (cpu_of(workers), cpu_of(eks), cpu_of(moto), cpu_of(dispatcher), time.process_time())
    if pids(COLLECTOR) != workers:
        print(f"note: {label}: a collector worker was replaced (timed out or died); its CPU is not counted")
    cpu = Cpu(*(b - a for a, b in zip(before, after, strict=True)))
    return Measured(label, cycle, cpu, os.getloadavg()[0])


@contextmanager
def _scrape_timer() -> Iterator[list[float]]:
    """The thread CPU seconds of every ``Scraper.scrape_all`` call in this process, while the block runs."""
    from cni_metrics.adapters.scrape.scraper import Scraper

    spent: list[float] = []
    original = Scraper.scrape_all

    def timed(self: Scraper, *args: Any, **kwargs: Any) -> Any:
        started = time.thread_time()
        try:
            return original(self, *args, **kwargs)
        finally:
            spent.append(time.thread_time() - started)

    Scraper.scrape_all = timed  # type: ignore[method-assign]
    try:
        yield spent
    finally:
        Scraper.scrape_all = original  # type: ignore[method-assign]


def _collect_sample(stand_ins: Any, clusters: Sequence[str]) -> tuple[float, float, int]:
    """(CPU of collect_cluster, CPU of the scrape within it, nodes) over ``clusters``, collected here one at a
    time, warm (a first pass fills the caches: endpoints, roles' credentials, models)."""
    from cni_metrics.adapters.aws_clients import Deadline
    from cni_metrics.adapters.eks_auth import ClusterTarget
    from cni_metrics.collector import wiring
    from cni_metrics.collector.cluster import collect_cluster
    from fake_eks.fleet import role_of

    saved = {key: os.environ.get(key) for key in stand_ins.variables}
    os.environ.update(stand_ins.variables)
    quiet = logging.getLogger("cni_metrics")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # the capacity warnings (the subnets are not in moto), 100 times
    try:
        deadline = Deadline(time.monotonic() + 600)
        eks = stand_ins.eks

        def targets() -> list[ClusterTarget]:
            return [ClusterTarget(name, eks.region(name), role_of(eks.connection, eks.account(name)))
                    for name in clusters]

        def collect(target: ClusterTarget) -> Any:
            session = wiring._session(deadline, target.region)
            return collect_cluster(target, session=session, deadline=time.monotonic() + 30)

        for target in targets():
            collect(target)
        with _scrape_timer() as scrape:
            started = time.process_time()
            nodes = sum(len(collect(target).nodes) for target in targets())
            total = time.process_time() - started
        return total, sum(scrape), nodes
    finally:
        quiet.setLevel(level)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _report(runs: list[Measured]) -> None:
    print(f"{'run':<30} {'invocations':>11} {'dispatch s':>10} {'fleet s':>8} {'worker CPU':>10} "
          f"{'stand-in':>8} {'moto':>6} {'dispatcher':>10} {'local':>6} {'load':>5}")
    for run in runs:
        c, cpu = run.cycle, run.cpu
        print(f"{run.label:<30} {len(c.records):>11} {c.dispatch_seconds:>10.2f} {c.wall_seconds:>8.1f} "
              f"{cpu.workers:>10.1f} {cpu.stand_in:>8.1f} {cpu.moto:>6.1f} {cpu.dispatcher:>10.1f} "
              f"{cpu.local:>6.1f} {run.load:>5.1f}")
    for run in runs:
        c = run.cycle
        statuses = Counter(o["status"] for o in c.outcomes.values())
        waits = [r.waited for r in c.records if r.waited is not None]
        print(f"{run.label}: statuses {dict(sorted(statuses.items()))}; the dispatcher's own run "
              f"{c.dispatch['seconds']:.2f} s; invocation time {_distribution(c.invocation_seconds)}; "
              f"queue wait {_distribution(waits)}")


def main() -> None:
    """Fan-out (two periods), the CPU breakdown, then inline (twice); figures, targets and the arithmetic."""
    from cni_demo.fleet_run import COLLECTOR, DISPATCHER, fleet_stand_ins
    from fake_eks.scenario import load_scenario
    from local_lambda.invoke_api import InvokeApi, PoolConfig

    if not (BUILD / "template.yaml").is_file():
        raise RuntimeError(f"{BUILD} not found: run `make build-local`")
    nodes_total = sum(cluster.nodes for cluster in load_scenario("fleet-500").clusters)
    started = time.perf_counter()
    with fleet_stand_ins("fleet-500", extra={"PERIOD_SECONDS": str(PERIOD)}) as stand_ins:
        pools = {DISPATCHER: PoolConfig(size=1),
                 COLLECTOR: PoolConfig(size=WORKERS, max_event_age_seconds=PERIOD)}
        with InvokeApi(BUILD, pools, variables=stand_ins.variables) as api:
            print(f"stand-ins and {WORKERS} warm collector workers ready in "
                  f"{time.perf_counter() - started:.1f} s; load average {os.getloadavg()[0]:.1f} on "
                  f"{os.cpu_count()} CPUs", flush=True)
            first = _measure("fan-out, period 1 (no state)", api, stand_ins)
            second = _measure("fan-out, period 2 (measured)", api, stand_ins)
        sample = sorted(stand_ins.eks.clusters)[20:20 + SAMPLE]
        collect_cpu, scrape_cpu, sample_nodes = _collect_sample(stand_ins, sample)
        inline_variables = {**stand_ins.variables, "FLEET_MODE": "inline"}
        inline_pools = {DISPATCHER: PoolConfig(size=1),
                        COLLECTOR: PoolConfig(size=1, max_event_age_seconds=PERIOD, timeout_seconds=900)}
        with InvokeApi(BUILD, inline_pools, variables=inline_variables) as inline_api:
            cold = _measure("inline, first (cold caches)", inline_api, stand_ins)
            inline = _measure("inline, second (measured)", inline_api, stand_ins)
    _report([first, second, cold, inline])
    _breakdown(second, inline, (collect_cpu, scrape_cpu, sample_nodes), nodes_total)


def _breakdown(fan: Measured, inline: Measured, sample: tuple[float, float, int], nodes_total: int) -> None:
    """The collector's CPU per cluster, inline against fan-out, the targets, and where the time goes."""
    collect_cpu, scrape_cpu, sample_nodes = sample
    clusters, invocations = len(fan.cycle.outcomes), len(fan.cycle.records)
    per_cluster = fan.cpu.workers / clusters
    scrape_node = scrape_cpu / max(sample_nodes, 1)
    collect_cluster, scrape_cluster = collect_cpu / SAMPLE, scrape_cpu / SAMPLE
    print(f"collector CPU per cluster (fan-out, period 2): {per_cluster * 1000:.0f} ms = scrape "
          f"{scrape_cluster * 1000:.0f} ms ({scrape_node * 1000:.2f} ms a node; {SAMPLE} clusters, "
          f"{sample_nodes} nodes collected in this process) + sign-in, pod and node lists, capacity reads "
          f"{(collect_cluster - scrape_cluster) * 1000:.0f} ms + fleet lookup, state, publish, handler "
          f"{(per_cluster - collect_cluster) * 1000:.0f} ms; beyond scraping "
          f"{(per_cluster - scrape_cluster) * 1000:.0f} ms")
    ratio = inline.cycle.wall_seconds / fan.cycle.wall_seconds
    done = sum(o["status"] in ("ok", "no_aws_node_pods") for o in inline.cycle.outcomes.values())
    print(f"inline: {inline.cycle.wall_seconds:.1f} s for {done} of {len(inline.cycle.outcomes)} clusters "
          f"in one invocation ({inline.cpu.workers:.1f} s of its CPU: one process, about one core); fan-out "
          f"{fan.cycle.wall_seconds:.1f} s; inline / fan-out = {ratio:.2f}x; with the template's 55 s "
          f"timeout inline would stop after about {done * 40 / inline.cycle.wall_seconds:.0f} clusters "
          "(40 s of collection after PUBLISH_MARGIN_SECONDS)")
    times = fan.cycle.invocation_seconds
    checks = [("the dispatcher returns <= 5 s", fan.cycle.dispatch_seconds, DISPATCH_TARGET_S),
              ("an invocation takes <= 10 s at p99", _percentile(times, 99), P99_TARGET_S),
              ("the fleet is collected and published <= 60 s", fan.cycle.wall_seconds, FLEET_TARGET_S)]
    for name, value, target in checks:
        print(f"target {name}: {value:.2f} s: {'met' if value <= target else 'MISSED'}")
    cpu, cores = fan.cpu, os.cpu_count() or 1
    busy = cpu.total / fan.cycle.wall_seconds
    print(f"where the time goes (period 2): {cpu.total:.1f} s of CPU in {fan.cycle.wall_seconds:.1f} s "
          f"wall = {busy:.2f} of {cores} cores: collector workers {cpu.workers:.1f} s "
          f"({cpu.workers / cpu.total:.0%}), the EKS stand-in {cpu.stand_in:.1f} s "
          f"({cpu.stand_in / cpu.total:.0%}), moto {cpu.moto:.1f} s ({cpu.moto / cpu.total:.0%}), the "
          f"dispatcher {cpu.dispatcher:.1f} s, the Invoke API and this process {cpu.local:.1f} s; on "
          f"{cores} cores that is at least {cpu.total / cores:.1f} s, the collector's share alone "
          f"{cpu.workers / cores:.1f} s")
    p99 = _percentile(times, 99)
    print(f"on Lambda each invocation has a vCPU of its own and AWS serves the APIs: an invocation is its "
          f"CPU ({cpu.workers / invocations:.2f} s on average for {clusters / invocations:.1f} clusters) "
          f"plus its waits on the cluster and AWS; with a reserved concurrency of {invocations} or more "
          f"every one starts during the dispatch ({fan.cycle.dispatch['seconds']:.2f} s here), so the fleet "
          f"takes about the dispatch plus the slowest invocation (p99 here {p99:.2f} s, on {WORKERS} "
          f"workers sharing {cores} cores with the stand-ins); {nodes_total} nodes at "
          f"{scrape_node * 1000:.2f} ms are {nodes_total * scrape_node:.1f} s of scrape CPU for the fleet")
