"""The single list of awscni families and of the metrics this project publishes.

Semantics come from the family name, never from the payload's ``# TYPE`` line: five counters were
typed ``gauge`` before CNI v1.19 and must be treated as counters on every version.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from cni_metrics.core.model import MetricValue, Unit

Kind = Literal["gauge", "counter", "summary", "histogram", "info"]
Source = Literal["gauge", "counter", "derived", "health", "capacity"]

ASSIGNED_IPS = "awscni_assigned_ip_addresses"
TOTAL_IPS = "awscni_total_ip_addresses"
IP_MAX = "awscni_ip_max"
ENI_ALLOCATED = "awscni_eni_allocated"
ENI_MAX = "awscni_eni_max"
API_LATENCY = "awscni_aws_api_latency_ms"
API_LATENCY_SUM = API_LATENCY + "_sum"
API_LATENCY_COUNT = API_LATENCY + "_count"
BUILD_INFO = "awscni_build_info"

DIMENSION = "CLUSTER_ID"
"""The dimension every published datum carries (the upstream helper's)."""
CAPACITY_LOG_MESSAGE = "nodes nearest IP exhaustion"
"""The message of the collector's per-cluster capacity log record, which the dashboard queries."""
VALUE_LIMIT = 2.0**360
"""CloudWatch refuses a datum whose magnitude is beyond this (and NaN, ±Inf): no number the core keeps or
publishes is (payload values, stored state, sums)."""


def in_range(value: float) -> bool:
    """Whether ``value`` is a number within ±2^360 (CloudWatch's range); NaN and ±Inf are not."""
    return -VALUE_LIMIT <= value <= VALUE_LIMIT


@dataclass(frozen=True, slots=True)
class Family:
    """One awscni family: its kind, and the CloudWatch name it is published under (None: not published)."""

    name: str
    kind: Kind
    metric: str | None
    upstream: bool = True


FAMILIES: tuple[Family, ...] = (
    Family(ASSIGNED_IPS, "gauge", "assignIPAddresses"),
    Family(TOTAL_IPS, "gauge", "totalIPAddresses"),
    Family(IP_MAX, "gauge", "maxIPAddresses"),
    Family(ENI_ALLOCATED, "gauge", "eniAllocated"),
    Family(ENI_MAX, "gauge", "eniMaxAvailable"),
    Family("awscni_total_ipv4_prefixes", "gauge", "totalIPv4Prefixes"),
    Family("awscni_assigned_ip_per_cidr", "gauge", "totalAssignedIPv4sPerCidr"),
    Family("awscni_ipamd_action_inprogress", "gauge", "ipamdActionInProgress"),
    Family("awscni_assigned_ip_per_eni", "gauge", None, upstream=False),
    Family("awscni_add_ip_req_count", "counter", "addReqCount"),
    Family("awscni_del_ip_req_count", "counter", "delReqCount"),
    Family("awscni_aws_api_error_count", "counter", "awsAPIErr"),
    Family("awscni_aws_utils_error_count", "counter", "awsUtilErr"),
    Family("awscni_ipamd_error_count", "counter", "ipamdErr"),
    Family("awscni_reconcile_count", "counter", "reconcileCount"),
    Family("awscni_pod_eni_error_count", "counter", "podENIErr"),
    Family("awscni_force_removed_enis", "counter", "forceRemoveENI"),
    Family("awscni_force_removed_ips", "counter", "forceRemoveIPs"),
    Family("awscni_ec2api_req_count", "counter", "ec2ApiReqCount"),
    Family("awscni_ec2api_error_count", "counter", "ec2ApiErrCount"),
    Family("awscni_no_available_ip_addresses", "counter", "noAvailableIPAddrs", upstream=False),
    Family(API_LATENCY, "summary", "awsAPILatency"),
    Family("awscni_ipamd_startup_duration_seconds", "histogram", None, upstream=False),
    Family("awscni_ipamd_node_initialization_duration_seconds", "histogram", None, upstream=False),
    Family(BUILD_INFO, "info", None, upstream=False),
)

BY_NAME: Mapping[str, Family] = MappingProxyType({f.name: f for f in FAMILIES})
GAUGES: tuple[Family, ...] = tuple(f for f in FAMILIES if f.kind == "gauge")
COUNTERS: tuple[Family, ...] = tuple(f for f in FAMILIES if f.kind == "counter")


@dataclass(frozen=True, slots=True)
class Metric:
    """One published CloudWatch metric: name, unit, where it comes from and how it is computed."""

    name: str
    unit: Unit
    source: Source
    formula: str


def _family_metrics() -> tuple[Metric, ...]:
    gauges = tuple(
        Metric(f.metric, "Count", "gauge", f"Σ over nodes and labels of {f.name}")
        for f in GAUGES
        if f.metric is not None
    )
    counters = tuple(
        Metric(f.metric, "Count", "counter", f"Σ over aws-node pods of the increase of {f.name}")
        for f in COUNTERS
        if f.metric is not None
    )
    return gauges + counters


METRICS: tuple[Metric, ...] = (
    *_family_metrics(),
    Metric(
        "awsAPILatencyAvg",
        "Milliseconds",
        "derived",
        "Σ Δ latency_ms_sum / Σ Δ latency_ms_count over pods (omitted when Σ Δ count = 0)",
    ),
    Metric("awsAPILatency", "Milliseconds", "derived", 'max of quantile="0.99" samples (only when present)'),
    Metric("warmIPAddresses", "Count", "derived", "Σ over nodes of max(0, total - assigned)"),
    Metric("ipUtilization", "Percent", "derived", "Σ assigned / Σ ip_max * 100 (nodes with ip_max > 0)"),
    Metric(
        "eniUtilization", "Percent", "derived", "Σ eni_allocated / Σ eni_max * 100 (nodes with eni_max > 0)"
    ),
    Metric("nodesNearIPExhaustion", "Count", "derived", "nodes with assigned / ip_max * 100 >= threshold"),
    Metric("nodesTotal", "Count", "health", "aws-node pods found"),
    Metric("nodesScraped", "Count", "health", "aws-node pods scraped and parsed"),
    Metric("nodesFailed", "Count", "health", "aws-node pods that failed"),
    Metric("nodesSkipped", "Count", "health", "aws-node pods not scraped (not running, deadline)"),
    Metric("scrapeDurationMs", "Milliseconds", "health", "wall time of the cluster's scrape"),
    Metric("bytesScraped", "Bytes", "health", "payload bytes received"),
    Metric("collectionFailed", "Count", "health",
           "1 when the cluster could not be collected at all (sign-in, API server, RBAC, pods), else 0"),
    Metric("outboxDatumsDropped", "Count", "health",
           "unpublished datums dropped from the outbox (older than CloudWatch accepts, or over its cap)"),
    # capacity (cni_metrics.capacity): per zone (AvailabilityZone dimension), per subnet, per cluster
    Metric("zoneAssignIPAddresses", "Count", "capacity", "per zone: Σ assigned over its nodes"),
    Metric("zoneTotalIPAddresses", "Count", "capacity", "per zone: Σ held (warm + assigned)"),
    Metric("zoneMaxIPAddresses", "Count", "capacity", "per zone: Σ ip_max"),
    Metric("zoneIPUtilization", "Percent", "capacity", "per zone: Σ assigned / Σ ip_max * 100"),
    Metric("zoneNodesNearIPExhaustion", "Count", "capacity", "per zone: nodes at or above the threshold"),
    Metric("availableSubnetIPAddresses", "Count", "capacity", "per subnet: EC2 AvailableIpAddressCount"),
    Metric("availableSubnetPrefixesMax", "Count", "capacity", "per subnet: available // 16 (upper bound)"),
    Metric("minSubnetAvailableIPAddresses", "Count", "capacity", "smallest availableSubnetIPAddresses"),
    Metric("remainingIPAddresses", "Count", "capacity", "min(Σ max - assigned, Σ subnet available + Σ warm)"),
    Metric("hoursToIPExhaustion", "Count", "capacity", "remaining / least-squares slope of assigned (IPs/h)"),
)

METRICS_BY_NAME: Mapping[str, Metric] = MappingProxyType({m.name: m for m in METRICS})

# The fleet's health, published once a period by the fleet dispatcher (cni_metrics.fleet.health) under
# CLUSTER_ID fleet:<name>; not per cluster, so not in METRICS (metric sets, dashboards and alarms).
FLEET_METRICS: tuple[Metric, ...] = (
    Metric("fleetClusters", "Count", "health", "clusters in the fleet: valid entries + discovered clusters"),
    Metric("fleetInvocations", "Count", "health", "collector invocations the dispatcher made this period"),
    Metric("fleetClustersDispatched", "Count", "health", "clusters whose invocation Lambda accepted (202)"),
    Metric("fleetDispatchErrors", "Count", "health",
           "clusters whose invocation failed (refused, throttled after retries, no time left)"),
    Metric("fleetClustersStale", "Count", "health",
           "clusters whose state object was last written more than N periods ago"),
    Metric("fleetClustersNeverCollected", "Count", "health", "clusters of the fleet without a state object"),
    Metric("fleetEntriesRefused", "Count", "health",
           "fleet-document entries and rules skipped (invalid, or an id or cluster given twice)"),
    Metric("fleetDiscoveryErrors", "Count", "health",
           "discovery reads that failed (a role, a region's ListClusters, a cluster's DescribeCluster)"),
    Metric("fleetDispatchDurationMs", "Milliseconds", "health",
           "wall time of the dispatcher's run: read, resolve, list, invoke"),
    Metric("minutesSinceCollected", "Count", "health",
           "per stale cluster, under its own CLUSTER_ID: minutes since its state object was last written"),
)


def unit_of(name: str) -> Unit:
    """The CloudWatch unit of a published metric name (KeyError for an unknown name)."""
    return METRICS_BY_NAME[name].unit


def datum(name: str, value: float, dimensions: tuple[tuple[str, str], ...] = ()) -> MetricValue:
    """A datum of a published metric, in the catalogue's unit (KeyError for a name not in the catalogue)."""
    return MetricValue(name, value, unit_of(name), dimensions)
