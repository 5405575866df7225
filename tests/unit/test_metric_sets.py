"""Metric sets: what compat, standard and full contain, how METRICS_INCLUDE / METRICS_EXCLUDE are checked
in both functions' settings, and what the job keeps of a collection (issue 15, cost control)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cni_metrics.capacity.core import Subnet, capacity
from cni_metrics.collector.settings import ConfigError, load_settings
from cni_metrics.core import catalogue
from cni_metrics.core.metric_sets import (
    ALWAYS,
    COMPAT,
    DEFAULT_SET,
    FULL,
    PER_ZONE_AND_SUBNET,
    STANDARD,
    selected,
)
from cni_metrics.core.model import NodeInput, NodeMetrics
from cni_metrics.dashboard.settings import load_dashboard_settings
from test_outbox_bounded import preload, released_batch
from test_service import World

# What the upstream cni-metrics-helper publishes (REFERENCE.md §2: its gauges, awsAPILatency, counters).
UPSTREAM = {
    "assignIPAddresses", "totalIPAddresses", "totalIPv4Prefixes", "totalAssignedIPv4sPerCidr",
    "eniAllocated", "eniMaxAvailable", "maxIPAddresses", "ipamdActionInProgress", "awsAPILatency",
    "awsAPIErr", "awsUtilErr", "ipamdErr", "forceRemoveENI", "forceRemoveIPs", "reconcileCount",
    "addReqCount", "delReqCount", "podENIErr", "ec2ApiReqCount", "ec2ApiErrCount",
}
T0 = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
COLLECTOR_ENV = {"CLUSTER_NAMES": "alpha", "STATE_BUCKET": "state-bucket"}
DASHBOARD_ENV = {"CLUSTER_NAMES": "alpha", "AWS_REGION": "us-east-1"}


def zoned_capacity_names() -> tuple[set[str], set[str]]:
    """The capacity core's metric names with ``CLUSTER_ID`` alone, and with a zone or subnet dimension,
    for nodes in two zones (one with prefix delegation) and a subnet in each."""
    def node(name: str, zone: str, prefixes: float) -> NodeInput:
        gauges = {"awscni_assigned_ip_addresses": 20.0, "awscni_total_ip_addresses": 32.0,
                  "awscni_ip_max": 432.0, "awscni_total_ipv4_prefixes": prefixes}
        return NodeInput(name, f"aws-node-{name}", NodeMetrics(gauges, {}), node_name=name, zone=zone)

    result = capacity(
        [node("a", "az-a", 2.0), node("b", "az-b", 0.0)],
        [Subnet("subnet-a", "az-a", 47), Subnet("subnet-b", "az-b", 300)],
        {"subnet-a", "subnet-b"}, [], now=T0, threshold_pct=90,
    )
    plain = {m.name for m in result.metrics if not m.dimensions}
    dimensioned = {m.name for m in result.metrics if m.dimensions}
    return plain, dimensioned


def test_compat_is_exactly_the_upstream_helpers_names() -> None:
    # given the upstream helper's published names (REFERENCE.md §2)
    # then compat is exactly those, and every one of them is in the catalogue under that name
    assert COMPAT == UPSTREAM
    assert {metric.name for metric in catalogue.METRICS} >= UPSTREAM


def test_standard_is_every_per_cluster_metric_and_full_everything() -> None:
    # given what the capacity core publishes per cluster and per zone or subnet
    plain, dimensioned = zoned_capacity_names()
    # then the per-zone and per-subnet names are exactly the ones with a dimension besides CLUSTER_ID
    assert dimensioned == PER_ZONE_AND_SUBNET
    # and standard is compat plus every catalogue metric of another source, less those
    by_source: dict[str, set[str]] = {}
    for metric in catalogue.METRICS:
        by_source.setdefault(metric.source, set()).add(metric.name)
    per_cluster_capacity = by_source["capacity"] - dimensioned
    expected = UPSTREAM | by_source["derived"] | by_source["health"] | {"noAvailableIPAddrs"}
    assert expected | per_cluster_capacity == STANDARD
    assert plain <= STANDARD
    # and full is the whole catalogue
    assert {metric.name for metric in catalogue.METRICS} == FULL
    assert COMPAT < STANDARD < FULL


def test_selection_adds_includes_removes_excludes_and_always_keeps_the_dropped_count() -> None:
    # when compat is widened by the health metrics the alarms need, and standard narrowed
    widened = selected("compat", include=["nodesFailed", "nodesScraped"])
    narrowed = selected("standard", exclude=["bytesScraped", "totalAssignedIPv4sPerCidr"])
    # then
    assert widened == UPSTREAM | {"nodesFailed", "nodesScraped", "outboxDatumsDropped"}
    assert narrowed == STANDARD - {"bytesScraped", "totalAssignedIPv4sPerCidr"}
    assert {"outboxDatumsDropped"} == ALWAYS
    assert selected("compat") == UPSTREAM | ALWAYS


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"METRICS_INCLUDE": "nodesFaild"}, "METRICS_INCLUDE: unknown metric name(s): nodesFaild "
                                            "(did you mean nodesFailed?)"),
        ({"METRICS_EXCLUDE": "awsAPILatency, bogus"}, "METRICS_EXCLUDE: unknown metric name(s): bogus"),
        ({"METRICS_EXCLUDE": "outboxDatumsDropped"},
         "METRICS_EXCLUDE: outboxDatumsDropped cannot be excluded"),
        ({"METRICS_INCLUDE": "nodesFailed", "METRICS_EXCLUDE": "nodesFailed"},
         "METRICS_INCLUDE and METRICS_EXCLUDE both name nodesFailed"),
        ({"METRIC_SET": "all"}, "METRIC_SET: Input should be 'compat', 'standard' or 'full'"),
    ],
)
def test_both_functions_refuse_the_same_bad_selection_naming_the_variable(
    env: dict[str, str], message: str
) -> None:
    # when the collector and the dashboard function read the same bad variable
    with pytest.raises(ConfigError) as collector:
        load_settings({**COLLECTOR_ENV, **env})
    with pytest.raises(ConfigError) as dashboard:
        load_dashboard_settings({**DASHBOARD_ENV, **env})
    # then both refuse it with the variable named
    assert message in str(collector.value)
    assert message in str(dashboard.value)


def test_both_functions_default_to_standard_and_read_the_same_selection() -> None:
    # given no selection, then a compat one with two includes (spaces and a repeat are tolerated)
    env = {"METRIC_SET": "compat", "METRICS_INCLUDE": " nodesFailed, nodesScraped ,nodesFailed"}
    # then both functions default to standard and agree on a given selection
    assert DEFAULT_SET == "standard"
    assert load_settings(COLLECTOR_ENV).published_metrics == STANDARD
    assert load_dashboard_settings(DASHBOARD_ENV).published_metrics == STANDARD
    collector = load_settings({**COLLECTOR_ENV, **env})
    dashboard = load_dashboard_settings({**DASHBOARD_ENV, **env})
    assert collector.metrics_include == ("nodesFailed", "nodesScraped")
    assert collector.published_metrics == dashboard.published_metrics == UPSTREAM | {
        "nodesFailed", "nodesScraped", "outboxDatumsDropped"}


def test_the_custom_resource_properties_choose_the_metrics_too() -> None:
    # when the stack's custom resource says compat with nodesFailed
    properties = {"MetricSet": "compat", "MetricsInclude": "nodesFailed"}
    settings = load_dashboard_settings(DASHBOARD_ENV, properties)
    # then the dashboard follows the properties over the environment
    assert settings.published_metrics == UPSTREAM | {"nodesFailed", "outboxDatumsDropped"}


def published_names(metric_set: str) -> tuple[set[str], float]:
    """Names a second run published with ``metric_set`` after an outbox batch too old to publish was
    found (a baseline run first, so counters increase), and the dropped count it sent."""
    world = World("alpha")
    world.settings = load_settings({**COLLECTOR_ENV, "METRIC_SET": metric_set})
    world.run()
    preload(world, [released_batch(world.clock() - timedelta(days=15), 20, "old")])
    world.publisher.published.clear()
    world.clock.advance(60)
    assert world.outcome(world.run(), "alpha").dropped == 20
    [dropped] = world.publisher.values("alpha", "outboxDatumsDropped")
    return {metric.name for _, _, metric in world.publisher.published}, dropped


def test_each_set_publishes_its_part_of_what_full_publishes_and_always_the_dropped_count() -> None:
    # given what the simulated cluster gives with every metric published (the same seed each time)
    everything, _ = published_names("full")
    # when the same runs publish compat and standard
    compat, compat_dropped = published_names("compat")
    standard, standard_dropped = published_names("standard")
    # then each publishes its set's part of it, upstream names only for compat, and both the dropped count
    assert compat == (everything & UPSTREAM) | {"outboxDatumsDropped"}
    assert standard == everything & STANDARD
    assert compat_dropped == standard_dropped == 20.0
    assert {"nodesScraped", "nodesFailed"} <= standard - compat
