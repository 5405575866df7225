"""Capacity numbers of one cluster from its scraped nodes, its pod subnets and its recent history (pure).

- Per zone (dimensions ``CLUSTER_ID`` + ``AvailabilityZone``, from each node's zone label): IPs assigned,
  held and maximum, utilisation and nodes near exhaustion, as ``zone*`` names (``zoneIPUtilization``, ...)
  so that a query on ``CLUSTER_ID`` alone never mixes them with the cluster's. Nodes without a zone are
  left out.
- Per pod subnet (``CLUSTER_ID`` + ``SubnetId`` + ``AvailabilityZone``): ``availableSubnetIPAddresses``
  (EC2's AvailableIpAddressCount) and, when some node uses prefix delegation, ``availableSubnetPrefixesMax``
  = available // 16, an upper bound: EC2 only reports a count, not whether a contiguous /28 is left.
  Per cluster: ``minSubnetAvailableIPAddresses``, the smallest headroom.
- ``remainingIPAddresses``: what pods can still get: min(Σ (max - assigned), Σ subnet available + Σ warm).
- ``hoursToIPExhaustion``: remaining / the least-squares slope of assigned IPs over the history; omitted when
  the trend is flat or falling or the history too short, 0 when nothing remains.
- The K nodes nearest their maximum, for one structured log record per cluster and run.

Overflow is contained: a number that is not within ±2^360 (CloudWatch's range; NaN and ±Inf are not),
say a sum over nodes serving absurd gauges, is left out with a reason in ``Capacity.dropped``, and such
a sum never enters the history (which the state stores). Everything else is still published.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cni_metrics.core.catalogue import ASSIGNED_IPS, IP_MAX, TOTAL_IPS, datum, in_range
from cni_metrics.core.model import HistoryPoint, MetricValue, NodeInput

ZONE = "AvailabilityZone"
SUBNET = "SubnetId"
PREFIXES = "awscni_total_ipv4_prefixes"
HISTORY_MAX_POINTS = 30
HISTORY_MAX_AGE = timedelta(hours=2)
MIN_TREND_POINTS = 5
TOP_K = 10
_FLAT = 1e-9  # IPs per hour below which the trend is flat


@dataclass(frozen=True, slots=True)
class NodeCapacity:
    """One scraped node's pool: IPs assigned to pods, held (warm + assigned) and the instance maximum."""

    node: str
    instance_type: str | None
    zone: str | None
    assigned: float
    held: float
    maximum: float
    prefix_delegation: bool = False

    @property
    def utilization_pct(self) -> float:
        """assigned / maximum * 100 (0 without a maximum)."""
        return max(0.0, self.assigned) / self.maximum * 100.0 if self.maximum > 0 else 0.0

    @property
    def free(self) -> float:
        """IPs the node can still assign."""
        return max(0.0, self.maximum - max(0.0, self.assigned))

    def as_record(self) -> dict[str, object]:
        """JSON-ready (the log record's entry)."""
        return {
            "node": self.node, "instanceType": self.instance_type, "zone": self.zone,
            "assigned": self.assigned, "held": self.held, "max": self.maximum,
            "utilizationPct": round(self.utilization_pct, 1),
        }


@dataclass(frozen=True, slots=True)
class Subnet:
    """A subnet pods draw from and its free addresses (DescribeSubnets)."""

    subnet_id: str
    zone: str
    available: int
    cidr: str = ""


@dataclass(frozen=True, slots=True)
class Capacity:
    """The capacity numbers of one collection."""

    metrics: list[MetricValue]
    top: list[NodeCapacity]
    near: int
    remaining: float | None
    hours: float | None
    history: list[HistoryPoint]
    dropped: tuple[str, ...] = ()


def node_capacities(nodes: Iterable[NodeInput]) -> list[NodeCapacity]:
    """The nodes that report assigned IPs and a positive maximum."""
    out = []
    for node in nodes:
        gauges = node.metrics.gauges
        assigned, maximum = gauges.get(ASSIGNED_IPS), gauges.get(IP_MAX)
        if assigned is None or maximum is None or maximum <= 0:
            continue
        out.append(NodeCapacity(
            node=node.node_name or node.name, instance_type=node.instance_type, zone=node.zone,
            assigned=assigned, held=gauges.get(TOTAL_IPS, assigned), maximum=maximum,
            prefix_delegation=gauges.get(PREFIXES, 0.0) > 0,
        ))
    return out


def zone_metrics(nodes: Sequence[NodeCapacity], threshold_pct: float) -> list[MetricValue]:
    """Per zone: assigned, held, maximum, utilisation, nodes near exhaustion."""
    zones = sorted({n.zone for n in nodes if n.zone})
    out: list[MetricValue] = []
    for zone in zones:
        members = [n for n in nodes if n.zone == zone]
        dims = ((ZONE, zone),)
        assigned = sum(max(0.0, n.assigned) for n in members)
        maximum = sum(n.maximum for n in members)
        near = sum(1 for n in members if n.utilization_pct >= threshold_pct)
        out += [
            datum("zoneAssignIPAddresses", sum(n.assigned for n in members), dims),
            datum("zoneTotalIPAddresses", sum(n.held for n in members), dims),
            datum("zoneMaxIPAddresses", maximum, dims),
            datum("zoneIPUtilization", assigned / maximum * 100.0, dims),
            datum("zoneNodesNearIPExhaustion", float(near), dims),
        ]
    return out


def subnet_metrics(subnets: Sequence[Subnet], prefix_delegation: bool) -> list[MetricValue]:
    """Per subnet its free addresses (and /28 upper bound with prefix delegation); the smallest."""
    out: list[MetricValue] = []
    for subnet in sorted(subnets, key=lambda s: s.subnet_id):
        dims = ((SUBNET, subnet.subnet_id), (ZONE, subnet.zone))
        out.append(datum("availableSubnetIPAddresses", float(subnet.available), dims))
        if prefix_delegation:
            prefixes = float(subnet.available // 16)
            out.append(datum("availableSubnetPrefixesMax", prefixes, dims))
    if subnets:
        out.append(datum("minSubnetAvailableIPAddresses", float(min(s.available for s in subnets))))
    return out


def top_nodes(nodes: Sequence[NodeCapacity], k: int = TOP_K) -> list[NodeCapacity]:
    """The ``k`` nodes nearest their maximum: highest utilisation first, then fewest free IPs, then name."""
    return sorted(nodes, key=lambda n: (-n.utilization_pct, n.free, n.node))[:k]


def remaining_ips(nodes: Sequence[NodeCapacity], subnets: Sequence[Subnet] | None) -> float | None:
    """IPs pods can still get: node room, bounded by subnet room when the subnets are known."""
    if not nodes:
        return None
    node_room = sum(n.free for n in nodes)
    if not subnets:
        return node_room
    warm = sum(max(0.0, n.held - max(0.0, n.assigned)) for n in nodes)
    return min(node_room, sum(s.available for s in subnets) + warm)


def updated_history(history: Sequence[HistoryPoint], point: HistoryPoint) -> list[HistoryPoint]:
    """``history`` + ``point``: at most HISTORY_MAX_POINTS, none older than HISTORY_MAX_AGE before it."""
    kept = [p for p in history if point.at - HISTORY_MAX_AGE <= p.at < point.at]
    return [*kept, point][-HISTORY_MAX_POINTS:]


def slope_per_hour(history: Sequence[HistoryPoint]) -> float | None:
    """Least-squares slope of assigned IPs over time (IPs per hour); None with too few points or no spread."""
    if len(history) < MIN_TREND_POINTS:
        return None
    origin = history[0].at
    xs = [(p.at - origin).total_seconds() / 3600.0 for p in history]
    ys = [p.assigned for p in history]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    if spread <= 0:
        return None
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread


def hours_to_exhaustion(history: Sequence[HistoryPoint], remaining: float | None) -> float | None:
    """remaining / slope; 0 when nothing remains; None when the trend is flat, falling or unknown."""
    if remaining is None:
        return None
    if remaining <= 0:
        return 0.0
    slope = slope_per_hour(history)
    if slope is None or slope <= _FLAT:
        return None
    return remaining / slope


def capacity(
    nodes: Sequence[NodeInput],
    subnets: Sequence[Subnet] | None,
    pod_subnet_ids: Collection[str],
    history: Sequence[HistoryPoint],
    *,
    now: datetime,
    threshold_pct: float,
    k: int = TOP_K,
) -> Capacity:
    """Every capacity number of one collection.

    ``subnets``: every subnet read (None when they could not be read), each published; ``pod_subnet_ids``:
    those pods draw from, which bound what remains.
    """
    caps = node_capacities(nodes)
    metrics = zone_metrics(caps, threshold_pct)
    metrics += subnet_metrics(subnets or [], any(n.prefix_delegation for n in caps))
    dropped: list[str] = []
    new_history = list(history)
    if caps:
        assigned = sum(max(0.0, n.assigned) for n in caps)
        if in_range(assigned):
            new_history = updated_history(history, HistoryPoint(now, assigned))
        else:
            dropped.append(f"history: assigned IPs summed to {assigned!r}, beyond ±2^360")
    pod_subnets = None if subnets is None else [s for s in subnets if s.subnet_id in pod_subnet_ids]
    remaining = _kept("remainingIPAddresses", remaining_ips(caps, pod_subnets), dropped)
    hours = _kept("hoursToIPExhaustion", hours_to_exhaustion(new_history, remaining), dropped)
    if remaining is not None:
        metrics.append(datum("remainingIPAddresses", remaining))
    if hours is not None:
        metrics.append(datum("hoursToIPExhaustion", hours))
    near = sum(1 for n in caps if n.utilization_pct >= threshold_pct)
    published = [m for m in metrics if _kept(_labelled(m), m.value, dropped) is not None]
    return Capacity(published, top_nodes(caps, k), near, remaining, hours, new_history, tuple(dropped))


def _labelled(metric: MetricValue) -> str:
    return " ".join([metric.name, *(f"{key}={value}" for key, value in metric.dimensions)])


def _kept(name: str, value: float | None, dropped: list[str]) -> float | None:
    """``value`` when it is None or within ±2^360; else None, and the reason in ``dropped``."""
    if value is None or in_range(value):
        return value
    dropped.append(f"{name}: {value!r} is not a number within ±2^360")
    return None
