"""``make demo-fleet`` = ``python -m cni_demo.fleet``: fleet-500 fanned out by the built dispatcher.

1. the EKS stand-in (``fleet-500``: 500 clusters, 3 accounts through roles, 2 regions, a few broken) and
   moto, each a process; the fleet document in moto's S3 (discovery per account, an aliased entry, a bad
   entry);
2. local_lambda's Invoke API serving the ``make build-local`` artifact: the dispatcher (one warm worker) and
   the collector (``--workers`` warm workers: its reserved concurrency);
3. two periods: the dispatcher invoked (it resolves, plans and invokes the collector asynchronously through
   the same API), every collector invocation run to its end, the stand-in advanced between them. The
   period is 2 minutes (``--period``, as ScheduleMinutes=2; the collector's maximum event age as long): on
   this 2-core machine, with the stand-ins on the same cores, a period of 500 clusters takes 45-60 s, and
   with a one-minute period an invocation starting after its period is skipped (``skipped_late``, as it
   should be) instead of compared;
4. compared with the stand-in's truth, per cluster: the second period's gauges, ``nodesScraped`` and
   counter increases read back from CloudWatch (moto), under the alias for the aliased entry; the broken
   clusters' statuses and published ``nodesTotal``; the fleet's health datums (``fleet:<name>``);
5. exit 1 on any mismatch.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from fake_eks.scenario import load_scenario
from local_lambda.invoke_api import InvokeApi, PoolConfig

from cni_demo.fleet_run import (
    ALIAS,
    COLLECTOR,
    DISPATCHER,
    Cycle,
    FleetStandIns,
    dispatch,
    fleet_stand_ins,
    next_second,
)
from cni_demo.truth import TruthTracker

BUILD = Path(".aws-sam/local/build")
TOLERANCE = 1e-6
BROKEN_READ = ("nodesTotal", "nodesScraped", "collectionFailed")
FLEET = "fake-eks"
HEALTH = ("fleetClusters", "fleetInvocations", "fleetClustersDispatched", "fleetDispatchErrors",
          "fleetClustersStale", "fleetClustersNeverCollected", "fleetEntriesRefused", "fleetDiscoveryErrors")


def expected_statuses(scenario: str) -> dict[str, str]:
    """The status each broken cluster of the scenario must get (the others: ``ok``)."""
    expected = {}
    for cluster in load_scenario(scenario).clusters:
        if cluster.unreachable:
            expected[cluster.name] = "error"
        elif cluster.auto_mode:
            expected[cluster.name] = "no_aws_node_pods"
        elif cluster.groups.get("cni-metrics") == ():
            expected[cluster.name] = "error"  # RBAC: the group may do nothing
    return expected


def read_metrics(cloudwatch: Any, cluster_id: str, names: Sequence[str], start: datetime, end: datetime,
                 stat: str = "Sum") -> dict[str, float]:
    """Each metric's ``stat`` under ``CLUSTER_ID=cluster_id`` over [start, end) (the newest 1 s period)."""
    queries = [{"Id": f"m{i}", "Label": name, "MetricStat": {"Metric": {
        "Namespace": "Kubernetes", "MetricName": name,
        "Dimensions": [{"Name": "CLUSTER_ID", "Value": cluster_id}]}, "Period": 1, "Stat": stat}}
        for i, name in enumerate(names)]
    found: dict[str, float] = {}
    for first in range(0, len(queries), 100):
        response = cloudwatch.get_metric_data(MetricDataQueries=queries[first:first + 100], StartTime=start,
                                              EndTime=end, ScanBy="TimestampDescending")
        found.update({r["Label"]: r["Values"][0] for r in response["MetricDataResults"] if r["Values"]})
    return found


def _agree(published: float | None, expected: float) -> bool:
    return published is not None and math.isclose(published, expected, rel_tol=TOLERANCE, abs_tol=TOLERANCE)


def compare(stand_ins: FleetStandIns, truth: TruthTracker, cycle: Cycle, gauges: dict[str, dict[str, float]],
            expected: dict[str, str]) -> list[str]:
    """Every disagreement between the outcomes or CloudWatch and the truth, one line each."""
    cloudwatch = stand_ins.client("cloudwatch")
    problems = []
    for cluster_id in sorted(cycle.outcomes):
        outcome, name = cycle.outcomes[cluster_id], stand_ins.name_of(cluster_id)
        want = expected.get(name, "ok")
        if outcome["status"] != want:
            problems.append(f"{cluster_id}: status {outcome['status']}, expected {want}: "
                            f"{outcome.get('error')}")
            continue
        if name in expected:
            continue
        at = datetime.fromisoformat(outcome["collected_at"]).replace(microsecond=0)
        increases = truth.increases(name)
        wanted = {**gauges[name], "nodesScraped": float(truth.served[name]), "collectionFailed": 0.0,
                  **increases}
        read = read_metrics(cloudwatch, cluster_id, sorted(wanted), at, at + timedelta(seconds=1))
        for metric, value in sorted(wanted.items()):
            published = read.get(metric, 0.0 if metric in increases else None)
            if not _agree(published, value):
                problems.append(f"{cluster_id}: {metric} CloudWatch {published} != truth {value}")
    return problems


def broken_rows(
    stand_ins: FleetStandIns, cycle: Cycle, expected: dict[str, str]
) -> tuple[list[str], list[str]]:
    """The broken clusters as the fleet shows them (status, published nodesTotal, nodesScraped and
    collectionFailed, error), and each disagreement: ``collectionFailed`` must be 1 exactly for an error."""
    cloudwatch = stand_ins.client("cloudwatch")
    rows, problems = [], []
    for name in sorted(expected):
        outcome = cycle.outcomes.get(name, {})
        at = datetime.fromisoformat(outcome["collected_at"]) if outcome.get("collected_at") else None
        read = {} if at is None else read_metrics(cloudwatch, name, list(BROKEN_READ),
                                                  at.replace(microsecond=0), at + timedelta(seconds=1))
        status = outcome.get("status", "missing")
        failed = 1.0 if expected[name] == "error" else 0.0
        if read.get("collectionFailed") != failed:
            problems.append(f"{name}: collectionFailed CloudWatch {read.get('collectionFailed')} != {failed}")
        rows.append(f"   {name:<10} {status:<17} " + ", ".join(f"{k} {read.get(k)}" for k in BROKEN_READ)
                    + f": {str(outcome.get('error'))[:70]}")
    return rows, problems


def fleet_health(stand_ins: FleetStandIns, cycle: Cycle) -> dict[str, float]:
    """The fleet's health datums of this period, read back (the dispatch's second)."""
    at = datetime.fromisoformat(cycle.dispatch["dispatchedAt"]).replace(microsecond=0)
    cloudwatch = stand_ins.client("cloudwatch")
    return read_metrics(cloudwatch, f"fleet:{FLEET}", HEALTH, at, at + timedelta(seconds=1))


def check_health(health: dict[str, dict[str, float]], clusters: int) -> list[str]:
    """The fleet's health against the set-up: every cluster dispatched, one bad entry, none collected before
    the first period, none stale after."""
    common = {"fleetClusters": clusters, "fleetClustersDispatched": clusters, "fleetDispatchErrors": 0,
              "fleetEntriesRefused": 1, "fleetDiscoveryErrors": 0, "fleetClustersStale": 0}
    want = {"period 1": {**common, "fleetClustersNeverCollected": clusters},
            "period 2": {**common, "fleetClustersNeverCollected": 0}}
    return [f"fleet health {label}: {name} {health[label].get(name)} != {value}"
            for label, values in want.items() for name, value in values.items()
            if health[label].get(name) != value]


def between_periods(
    stand_ins: FleetStandIns, truth: TruthTracker, clusters: Sequence[str], first: Cycle
) -> None:
    """After the first period: the truth's baselines taken and counting from there, the stand-in moved one
    step, and a wait until the second period's timestamps fall in a later second than the first's."""
    for name in clusters:
        truth.observe(name)
    truth.start_counting()
    for name in clusters:
        stand_ins.eks.advance(name)
    next_second(first)


def describe(label: str, cycle: Cycle) -> str:
    """One line: the period's timings and statuses."""
    times = sorted(cycle.invocation_seconds)
    statuses = Counter(outcome["status"] for outcome in cycle.outcomes.values())
    p50 = statistics.median(times) if times else float("nan")
    return (f"{label}: dispatcher {cycle.dispatch_seconds:.2f} s ({cycle.dispatch['invocations']} "
            f"invocations, {cycle.dispatch['mode']}), fleet collected and published in "
            f"{cycle.wall_seconds:.1f} s; invocations p50 {p50:.2f} s, max {max(times, default=0):.2f} s; "
            + ", ".join(f"{status} {count}" for status, count in sorted(statuses.items())))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the fleet demo; 0 when CloudWatch agrees with the stand-in's truth."""
    parser = argparse.ArgumentParser(prog="python -m cni_demo.fleet", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default="fleet-500", help="fake EKS scenario (default fleet-500)")
    parser.add_argument("--workers", type=int, default=8, help="warm collector workers (default 8)")
    parser.add_argument("--period", type=int, default=120, help="the dispatch period, seconds (default 120)")
    parser.add_argument("--build-dir", type=Path, default=BUILD, help="sam build output (make build-local)")
    args = parser.parse_args(argv)
    began = time.monotonic()
    expected = expected_statuses(args.scenario)
    with fleet_stand_ins(args.scenario, extra={"PERIOD_SECONDS": str(args.period)}) as stand_ins:
        pools = {DISPATCHER: PoolConfig(size=1),
                 COLLECTOR: PoolConfig(size=args.workers, max_event_age_seconds=args.period)}
        with InvokeApi(args.build_dir, pools, variables=stand_ins.variables) as api:
            clusters = sorted(stand_ins.eks.clusters)
            print(f"stand-ins ready, {len(clusters)} clusters; Invoke API {api.url}, {args.workers} warm "
                  f"collector workers; period {args.period} s ({time.monotonic() - began:.1f} s)", flush=True)
            truth = TruthTracker(stand_ins.eks, clusters)
            first = dispatch(api)
            print(describe("period 1", first), flush=True)
            between_periods(stand_ins, truth, clusters, first)
            second = dispatch(api)
            print(describe("period 2", second), flush=True)
            gauges = {name: truth.observe(name) for name in clusters}
            problems = compare(stand_ins, truth, second, gauges, expected)
            named = {stand_ins.name_of(cluster_id) for cluster_id in second.outcomes}
            if named != set(clusters) or ALIAS[1] not in second.outcomes:
                problems.append(f"outcomes for {len(named)} clusters, not {len(clusters)}, or none under the "
                                f"alias {ALIAS[1]}")
            health = {"period 1": fleet_health(stand_ins, first), "period 2": fleet_health(stand_ins, second)}
            problems += check_health(health, len(clusters))
            rows, wrong = broken_rows(stand_ins, second, expected)
            problems += wrong
            print("\nbroken clusters (as the scenario breaks them), period 2:")
            print("\n".join(rows))
            print(f"\nfleet health (CLUSTER_ID fleet:{FLEET}):")
            for label, values in health.items():
                print(f"   {label}: " + ", ".join(f"{k} {v:g}" for k, v in values.items()))
            print(f"   problems the dispatcher reported: {second.dispatch['problems']}")
            conditions = Counter(d["requestContext"]["condition"] for d in api.on_failure)
            print(f"   on-failure destination records: {len(api.on_failure)} {dict(conditions)} (an "
                  "invocation whose clusters all failed fails: a broken cluster alone in period 1)")
    verdict = "every number agrees" if not problems else (
        f"{len(problems)} MISMATCHES:\n  " + "\n  ".join(problems))
    print(f"\n{len(clusters) - len(expected)} healthy clusters compared (gauges, nodesScraped, counter "
          f"increases) and {len(expected)} broken ones; {time.monotonic() - began:.0f} s in all: {verdict}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
