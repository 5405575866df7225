"""Value types shared by the core, the adapters and the handlers.

These are the contracts between parts of the code base: the parser yields ``NodeMetrics``, the
scraper wraps them in ``NodeInput``, the aggregator turns a list of them plus the previous
``ClusterState`` into an ``Aggregate`` of ``MetricValue``s that the publishers send.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

Unit = Literal["Count", "Percent", "Milliseconds", "Bytes"]


@dataclass(frozen=True, slots=True)
class NodeMetrics:
    """One node's awscni families reduced to what aggregation needs (sums over labels).

    ``gauges`` and ``counters`` map a family name (``awscni_...``) to the sum of its samples over all
    label sets; a family absent from the payload is absent from the map. ``latency_sum``/``latency_count``
    are the sums of ``awscni_aws_api_latency_ms_sum``/``_count`` over all series (None when the family is
    absent). ``latency_p99`` is the max of the non-NaN ``quantile="0.99"`` samples, None when there is none.
    """

    gauges: dict[str, float]
    counters: dict[str, float]
    latency_sum: float | None = None
    latency_count: float | None = None
    latency_p99: float | None = None
    cni_version: str | None = None


@dataclass(frozen=True, slots=True)
class NodeInput:
    """A scraped node as the aggregator sees it.

    ``key`` identifies the node across collections: the aws-node pod UID (or a file name on the command
    line). ``started_at`` is the pod's start time and ``restart_count`` the aws-node container's restart
    count, when known; they decide whether a node seen for the first time, or with lower counters, counts
    its current values as an increase.
    """

    key: str
    name: str
    metrics: NodeMetrics
    started_at: datetime | None = None
    restart_count: int | None = None
    node_name: str | None = None
    zone: str | None = None
    instance_type: str | None = None


@dataclass(frozen=True, slots=True)
class MetricValue:
    """One number to publish for a cluster, under its CloudWatch name and unit.

    ``dimensions``: (name, value) pairs published besides ``CLUSTER_ID`` (e.g. ``AvailabilityZone``);
    empty for cluster-level numbers.
    """

    name: str
    value: float
    unit: Unit = "Count"
    dimensions: tuple[tuple[str, str], ...] = ()


@dataclass(slots=True)
class PodState:
    """What the previous collection saw of one aws-node pod (the counter baseline)."""

    key: str
    started_at: datetime | None
    restart_count: int | None
    counters: dict[str, float]
    latency_sum: float | None = None
    latency_count: float | None = None


@dataclass(slots=True)
class ClusterState:
    """Counter baselines of one cluster, persisted between invocations, and the recent assigned-IP history."""

    collected_at: datetime
    pods: dict[str, PodState] = field(default_factory=dict)
    history: list[HistoryPoint] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class HistoryPoint:
    """One past collection's cluster-wide assigned IPs (the time-to-exhaustion trend)."""

    at: datetime
    assigned: float


@dataclass(frozen=True, slots=True)
class Aggregate:
    """The cluster-level result of one collection.

    ``metrics``: what to publish (gauges, increases, derived numbers). ``counter_totals``: the sum over nodes
    and labels of each counter's cumulative value, under upstream names. ``state``: the new baseline, to be
    stored only once ``metrics`` were published. ``dropped``: why a number was left out (not within ±2^360,
    CloudWatch's range: a sum over nodes beyond it, say).
    """

    metrics: list[MetricValue]
    counter_totals: dict[str, float]
    state: ClusterState
    nodes: int
    dropped: tuple[str, ...] = ()
