"""Per-node metrics + the previous ``ClusterState`` -> the cluster's ``Aggregate``.

Counters are turned into increases PER aws-node POD (keyed by ``NodeInput.key``) and only then summed,
unlike the upstream helper which differences one cluster-wide total. For one pod and one family:

- pod in the previous state, restart_count not grown, current >= previous: ``current - previous``
  (a family absent before counts from 0: labelled families appear only after their first increment);
- current < previous, or restart_count grew: a reset, ``current``;
- pod not in the previous state: ``current`` if it started after the previous collection, else 0.

Pods that exist but failed this time (``failed``, with their start times) keep what the previous state
knew of them, so their increase is published when they are next scraped. A failed pod the previous state
does not know follows the same rule as a new pod: if it started after the previous collection it gets a
zero baseline (everything it counts is new), else none (its value when next scraped is a baseline).

Latency (``_sum``/``_count`` of the API latency summary) uses the same rules per pod. Gauges are summed
over nodes; odd gauges are kept as served except where a derived number needs a floor: warm IPs are
``max(0, total - assigned)`` per node, utilisation uses ``max(0, assigned)``. A result that is not a
number within ±2^360 (CloudWatch's range; a sum over nodes can overflow it) is never published: it is
left out with a reason in ``Aggregate.dropped``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime

from cni_metrics.core import catalogue
from cni_metrics.core.catalogue import (
    ASSIGNED_IPS,
    ENI_ALLOCATED,
    ENI_MAX,
    IP_MAX,
    TOTAL_IPS,
    datum,
    in_range,
)
from cni_metrics.core.model import Aggregate, ClusterState, MetricValue, NodeInput, PodState


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _increase(current: float, previous: float, reset: bool) -> float:
    return max(0.0, current if reset or current < previous else current - previous)


def _sum_present(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def _gauge_metrics(nodes: Sequence[NodeInput], threshold_pct: float) -> list[MetricValue]:
    out: list[MetricValue] = []
    for family in catalogue.GAUGES:
        if family.metric is not None:
            total = _sum_present([n.metrics.gauges.get(family.name) for n in nodes])
            if total is not None:
                out.append(datum(family.metric, total))
    warm: list[float | None] = []
    assigned_sum = ip_max_sum = eni_sum = eni_max_sum = 0.0
    near = 0
    for node in nodes:
        gauges = node.metrics.gauges
        assigned, total, ip_max = gauges.get(ASSIGNED_IPS), gauges.get(TOTAL_IPS), gauges.get(IP_MAX)
        if assigned is not None and total is not None:
            warm.append(max(0.0, total - assigned))
        if assigned is not None and ip_max is not None and ip_max > 0:
            assigned_sum += max(0.0, assigned)
            ip_max_sum += ip_max
            if max(0.0, assigned) / ip_max * 100.0 >= threshold_pct:
                near += 1
        allocated, eni_max = gauges.get(ENI_ALLOCATED), gauges.get(ENI_MAX)
        if allocated is not None and eni_max is not None and eni_max > 0:
            eni_sum += max(0.0, allocated)
            eni_max_sum += eni_max
    warm_total = _sum_present(warm)
    if warm_total is not None:
        out.append(datum("warmIPAddresses", warm_total))
    if ip_max_sum > 0:
        out.append(datum("ipUtilization", assigned_sum / ip_max_sum * 100.0))
        out.append(datum("nodesNearIPExhaustion", float(near)))
    if eni_max_sum > 0:
        out.append(datum("eniUtilization", eni_sum / eni_max_sum * 100.0))
    return out


def aggregate(
    nodes: Sequence[NodeInput],
    previous: ClusterState | None,
    *,
    now: datetime,
    failed: Mapping[str, datetime | None] | None = None,
    exhaustion_threshold_pct: float = 90.0,
) -> Aggregate:
    """Aggregate one collection of a cluster (see the module docstring for the counter rules).

    ``previous`` None is a first run: gauges only, the new state records the baselines. ``failed``: the
    pods that exist but failed this time, by key, with their start times (None when unknown); a key
    among ``nodes`` too was scraped. When two inputs share a key, the first one wins.
    """
    unique: dict[str, NodeInput] = {}
    for node in nodes:
        unique.setdefault(node.key, node)
    inputs = list(unique.values())

    metrics = _gauge_metrics(inputs, exhaustion_threshold_pct)
    pods = {node.key: baseline_of(node) for node in inputs}
    if previous is not None:
        metrics += _counter_metrics(inputs, previous)
        pods |= _failed_baselines(failed or {}, previous, pods.keys())
    p99s = [n.metrics.latency_p99 for n in inputs if n.metrics.latency_p99 is not None]
    if p99s:
        metrics.append(datum("awsAPILatency", max(p99s)))

    totals: dict[str, float] = {}
    for node in inputs:
        for name, value in node.metrics.counters.items():
            totals[name] = totals.get(name, 0.0) + value
    counter_totals = {
        f.metric: totals[f.name] for f in catalogue.COUNTERS if f.metric is not None and f.name in totals
    }
    dropped = [
        f"{m.name}: {m.value!r} is not a number within ±2^360" for m in metrics if not in_range(m.value)
    ]
    return Aggregate(
        metrics=[m for m in metrics if in_range(m.value)],
        counter_totals={k: v for k, v in counter_totals.items() if in_range(v)},
        state=ClusterState(collected_at=now, pods=pods),
        nodes=len(inputs),
        dropped=tuple(dropped),
    )


def baseline_of(node: NodeInput) -> PodState:
    """The baseline a scraped pod leaves in the state."""
    m = node.metrics
    return PodState(
        node.key, node.started_at, node.restart_count, dict(m.counters), m.latency_sum, m.latency_count
    )


def _started_since(started_at: datetime | None, since: datetime) -> bool:
    """Whether a pod the previous state does not know started after the previous collection (``since``)."""
    return started_at is not None and _utc(started_at) > _utc(since)


def _counter_metrics(inputs: Sequence[NodeInput], previous: ClusterState) -> list[MetricValue]:
    """The counter increases of every pod against ``previous``, summed per family; the latency average."""
    increases: dict[str, float] = {}
    latency_sum = latency_count = 0.0
    for node in inputs:
        counters, delta_sum, delta_count = _pod_increases(
            node, previous.pods.get(node.key), previous.collected_at
        )
        for name, value in counters.items():
            increases[name] = increases.get(name, 0.0) + value
        latency_sum += delta_sum
        latency_count += delta_count
    out = [
        datum(f.metric, increases[f.name])
        for f in catalogue.COUNTERS
        if f.metric is not None and f.name in increases
    ]
    if latency_count > 0:
        out.append(datum("awsAPILatencyAvg", latency_sum / latency_count))
    return out


def _pod_increases(
    node: NodeInput, before: PodState | None, since: datetime
) -> tuple[dict[str, float], float, float]:
    """One pod's counter increases and latency (sum, count) increases against its baseline ``before``."""
    m = node.metrics
    if before is None:
        if not _started_since(node.started_at, since):
            return dict.fromkeys(m.counters, 0.0), 0.0, 0.0  # a baseline only
        before = PodState(node.key, None, None, {})  # new since the previous collection: counts from zero
    restarted = (
        node.restart_count is not None
        and before.restart_count is not None
        and node.restart_count > before.restart_count
    )
    counters = {
        name: _increase(value, before.counters.get(name, 0.0), restarted)
        for name, value in m.counters.items()
    }
    if m.latency_sum is None or m.latency_count is None:
        return counters, 0.0, 0.0
    prev_sum, prev_count = before.latency_sum or 0.0, before.latency_count or 0.0
    reset = restarted or m.latency_count < prev_count or m.latency_sum < prev_sum
    return counters, _increase(m.latency_sum, prev_sum, reset), _increase(m.latency_count, prev_count, reset)


def _failed_baselines(
    failed: Mapping[str, datetime | None], previous: ClusterState, scraped: Collection[str]
) -> dict[str, PodState]:
    """Baselines of the pods that failed this time: the previous one, or zero for a pod new since."""
    out: dict[str, PodState] = {}
    for key, started_at in failed.items():
        if key in scraped:
            continue
        if key in previous.pods:
            out[key] = previous.pods[key]
        elif _started_since(started_at, previous.collected_at):
            out[key] = PodState(key, started_at, None, {})
    return out
