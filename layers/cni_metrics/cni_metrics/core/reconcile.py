"""Counter math for two overlapping runs of one cluster (pure): what the loser of a claim race may add.

Two invocations can collect the same cluster at once; the first to claim the state wins and publishes
its interval. ``after_lost_claim`` gives what the loser still adds without counting any interval twice:

- a pod the loser saw *after* the winner did (higher restart count, or no counter lower) adds its
  increase beyond the winner's baseline, which it replaces;
- when both runs started from the same stored state, a pod the loser saw *before* the winner (or that
  the winner, listing later, no longer lists) adds what the winner's single step missed:
  inc(previous -> mine) + inc(mine -> winner) - inc(previous -> winner), non-zero only when a reset or
  a departure came between the two scrapes.

Only counters come out: the winner published this interval's gauges.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from cni_metrics.core import catalogue
from cni_metrics.core.aggregate import aggregate, baseline_of
from cni_metrics.core.catalogue import datum
from cni_metrics.core.model import ClusterState, MetricValue, NodeInput, NodeMetrics, PodState

COUNTER_METRICS = frozenset(family.metric for family in catalogue.COUNTERS if family.metric is not None)


def after_lost_claim(
    nodes: Sequence[NodeInput],
    collected_at: datetime,
    previous: ClusterState | None,
    winner: ClusterState,
    *,
    same_base: bool,
    exhaustion_threshold_pct: float,
) -> tuple[ClusterState, list[MetricValue]] | None:
    """(merged state, counter datums) the loser adds to the ``winner``'s state, or None when nothing.

    ``nodes``/``collected_at``: the loser's collection; ``previous``: the state the loser started from;
    ``same_base``: whether the winner started from that same stored state.
    """
    newer: list[NodeInput] = []
    corrections: dict[str, float] = {}
    listed_later = collected_at > winner.collected_at
    for node in nodes:
        before = winner.pods.get(node.key)
        # a pod the winner does not know: new since its listing if this run listed later, else gone
        if (before is not None or not same_base or listed_later) and observed_after(node, before):
            newer.append(node)
        elif same_base and previous is not None:
            for name, value in missed(previous, node, before, collected_at).items():
                corrections[name] = corrections.get(name, 0.0) + value
    if not newer and not any(corrections.values()):
        return None
    result = aggregate(
        newer,
        winner,
        now=max(winner.collected_at, collected_at),
        failed=dict.fromkeys(winner.pods.keys() - {node.key for node in newer}),
        exhaustion_threshold_pct=exhaustion_threshold_pct,
    )
    counters = [metric for metric in result.metrics if metric.name in COUNTER_METRICS]
    counters += [datum(name, value) for name, value in corrections.items()]
    result.state.history = winner.history
    return result.state, sum_by_name(counters)


def missed(
    previous: ClusterState, mine: NodeInput, winner: PodState | None, seen_at: datetime
) -> dict[str, float]:
    """Counter increases of one pod that the winner's step previous -> winner missed (never negative)."""
    total = increases(previous, mine)
    if winner is not None:
        theirs = node_of(winner)
        mine_state = ClusterState(seen_at, {mine.key: baseline_of(mine)})
        for name, value in increases(mine_state, theirs).items():
            total[name] = total.get(name, 0.0) + value
        for name, value in increases(previous, theirs).items():
            total[name] -= value  # the same families as the step mine -> theirs, just added
    return {name: value for name, value in total.items() if value > 0}


def increases(previous: ClusterState, node: NodeInput) -> dict[str, float]:
    """The counter increases ``aggregate`` gives one pod against ``previous``."""
    pods = {node.key: previous.pods[node.key]} if node.key in previous.pods else {}
    result = aggregate([node], ClusterState(previous.collected_at, pods), now=previous.collected_at)
    return {m.name: m.value for m in result.metrics if m.name in COUNTER_METRICS}


def node_of(pod: PodState) -> NodeInput:
    """A baseline seen as a scrape (counters and latency only)."""
    metrics = NodeMetrics({}, dict(pod.counters), pod.latency_sum, pod.latency_count)
    return NodeInput(pod.key, pod.key, metrics, pod.started_at, pod.restart_count)


def sum_by_name(metrics: Iterable[MetricValue]) -> list[MetricValue]:
    """One datum per counter name (sums)."""
    totals: dict[str, float] = {}
    for metric in metrics:
        totals[metric.name] = totals.get(metric.name, 0.0) + metric.value
    return [datum(name, value) for name, value in totals.items()]


def observed_after(node: NodeInput, before: PodState | None) -> bool:
    """Whether ``node`` was observed after ``before`` (counters only grow between restarts)."""
    if before is None:
        return True
    restarts, restarts_before = node.restart_count, before.restart_count
    if restarts is not None and restarts_before is not None:
        if restarts > restarts_before:
            return True
        if restarts < restarts_before:
            return False
    counters = node.metrics.counters
    return all(counters.get(name, 0.0) >= value for name, value in before.counters.items())
