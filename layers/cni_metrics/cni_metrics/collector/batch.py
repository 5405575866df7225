"""One collection's batch: the datums to publish and the new baselines (counter state)."""

from __future__ import annotations

import logging

from cni_metrics.capacity.core import Capacity, capacity
from cni_metrics.collector.cluster import ClusterCollection
from cni_metrics.collector.settings import Settings
from cni_metrics.core.aggregate import aggregate
from cni_metrics.core.catalogue import CAPACITY_LOG_MESSAGE
from cni_metrics.core.model import ClusterState, MetricValue

logger = logging.getLogger(__name__)


def usable(collection: ClusterCollection) -> bool:
    """Whether the collection saw nodes (not an error, not every node failed)."""
    return collection.status != "error" and not (not collection.nodes and collection.failed_keys)


def metrics_and_state(
    settings: Settings, collection: ClusterCollection, previous: ClusterState | None
) -> tuple[list[MetricValue], ClusterState | None]:
    """This collection's datums and the new baselines.

    A failed collection (status ``error``, or every node failed) publishes its health numbers only and
    keeps the previous baselines: no gauge is summed over zero nodes. A usable one adds the capacity
    numbers (``cni_metrics.capacity``), keeps their history in the state and logs the nodes nearest
    exhaustion; a number left out as beyond CloudWatch's range is logged with its reason.
    """
    health = collection.health.to_metrics()
    if not usable(collection):
        return health, previous
    result = aggregate(
        collection.nodes,
        previous,
        now=collection.collected_at,
        failed={key: collection.failed_started_at.get(key) for key in collection.failed_keys},
        exhaustion_threshold_pct=settings.exhaustion_threshold_pct,
    )
    sources = collection.capacity
    cap = capacity(
        collection.nodes,
        sources.subnets if sources is not None else None,
        sources.pod_subnet_ids if sources is not None else (),
        previous.history if previous is not None else [],
        now=collection.collected_at,
        threshold_pct=settings.exhaustion_threshold_pct,
    )
    result.state.history = cap.history
    for reason in (*result.dropped, *cap.dropped):
        cluster = collection.cluster
        logger.warning("cluster %s: left out: %s", cluster, reason, extra={"cluster": cluster})
    _log_capacity(collection.cluster, cap, settings.exhaustion_threshold_pct)
    return [*result.metrics, *cap.metrics, *health], result.state


def _log_capacity(cluster: str, cap: Capacity, threshold_pct: float) -> None:
    """One structured record per cluster and run: the nodes nearest exhaustion (dashboard log widget)."""
    plain = {m.name: m.value for m in cap.metrics if not m.dimensions}
    nearest = "; ".join(
        f"{n.node} {n.instance_type or '?'} {n.zone or '?'} {n.assigned:g}/{n.held:g}/{n.maximum:g}"
        for n in cap.top
    )
    logger.info(CAPACITY_LOG_MESSAGE, extra={
        "cluster": cluster,
        "capacity": {
            "nodesNearIPExhaustion": cap.near,
            "thresholdPct": threshold_pct,
            "remainingIPAddresses": cap.remaining,
            "hoursToIPExhaustion": cap.hours,
            "minSubnetAvailableIPAddresses": plain.get("minSubnetAvailableIPAddresses"),
            "topNodes": [n.as_record() for n in cap.top],
        },
        "nearest": nearest,
    })
