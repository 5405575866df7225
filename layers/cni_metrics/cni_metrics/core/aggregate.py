"""Per-node metrics + the previous ``ClusterState`` -> the cluster's ``Aggregate``.

Counters are turned into increases PER aws-node POD (keyed by ``NodeInput.key``) and only then summed,
unlike the upstream helper which differences one cluster-wide total. For one pod and one family:

- pod in the previous state, restart_count not grown, current >= previous: ``current - previous``
  (a family absent before counts from 0: labelled families appear only after their first increment);
- current < previous, or restart_count grew: a reset, ``current``;
- pod not in the previous state: ``current`` if it started after the previous collection, else 0.

Latency (``_sum``/``_count`` of the API latency summary) uses the same rules per pod. Gauges are summed
over nodes; odd gauges are kept as served except where a derived number needs a floor: warm IPs are
``max(0, total - assigned)`` per node, utilisation uses ``max(0, assigned)``. A non-finite result is
never published.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from datetime import UTC, datetime

from cni_metrics.core import catalogue
from cni_metrics.core.catalogue import ASSIGNED_IPS, ENI_ALLOCATED, ENI_MAX, IP_MAX, TOTAL_IPS, datum
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
    carry_over: Collection[str] = (),
    exhaustion_threshold_pct: float = 90.0,
) -> Aggregate:
    """Aggregate one collection of a cluster (see the module docstring for the counter rules).

    ``previous`` None is a first run: gauges only, the new state records the baselines. ``carry_over``
    keys of the previous state that are not among ``nodes`` are copied unchanged into the new state.
    When two inputs share a key, the first one wins.
    """
    unique: dict[str, NodeInput] = {}
    for node in nodes:
        unique.setdefault(node.key, node)
    inputs = list(unique.values())

    metrics = _gauge_metrics(inputs, exhaustion_threshold_pct)
    increases: dict[str, float] = {}
    delta_sum = delta_count = 0.0
    totals: dict[str, float] = {}
    new_pods: dict[str, PodState] = {}
    since = _utc(previous.collected_at) if previous is not None else None

    for node in inputs:
        m = node.metrics
        for name, value in m.counters.items():
            totals[name] = totals.get(name, 0.0) + value
        new_pods[node.key] = PodState(
            node.key, node.started_at, node.restart_count, dict(m.counters), m.latency_sum, m.latency_count
        )
        if previous is None or since is None:
            continue
        before = previous.pods.get(node.key)
        if before is None:
            counts = node.started_at is not None and _utc(node.started_at) > since
            for name, value in m.counters.items():
                increases[name] = increases.get(name, 0.0) + (max(0.0, value) if counts else 0.0)
            if counts:
                delta_sum += max(0.0, m.latency_sum or 0.0)
                delta_count += max(0.0, m.latency_count or 0.0)
            continue
        restarted = (
            node.restart_count is not None
            and before.restart_count is not None
            and node.restart_count > before.restart_count
        )
        for name, value in m.counters.items():
            inc = _increase(value, before.counters.get(name, 0.0), restarted)
            increases[name] = increases.get(name, 0.0) + inc
        if m.latency_sum is not None and m.latency_count is not None:
            prev_sum, prev_count = before.latency_sum or 0.0, before.latency_count or 0.0
            reset = restarted or m.latency_count < prev_count or m.latency_sum < prev_sum
            delta_sum += _increase(m.latency_sum, prev_sum, reset)
            delta_count += _increase(m.latency_count, prev_count, reset)

    if previous is not None:
        for key in carry_over:
            if key not in new_pods and key in previous.pods:
                new_pods[key] = previous.pods[key]
        for family in catalogue.COUNTERS:
            if family.metric is not None and family.name in increases:
                metrics.append(datum(family.metric, increases[family.name]))
        if delta_count > 0:
            metrics.append(datum("awsAPILatencyAvg", delta_sum / delta_count))
    p99s = [n.metrics.latency_p99 for n in inputs if n.metrics.latency_p99 is not None]
    if p99s:
        metrics.append(datum("awsAPILatency", max(p99s)))

    counter_totals = {
        f.metric: totals[f.name] for f in catalogue.COUNTERS if f.metric is not None and f.name in totals
    }
    return Aggregate(
        metrics=[mv for mv in metrics if math.isfinite(mv.value)],
        counter_totals={k: v for k, v in counter_totals.items() if math.isfinite(v)},
        state=ClusterState(collected_at=now, pods=new_pods),
        nodes=len(inputs),
    )
