"""Fleet health from the resolution, the state objects' last writes and the dispatch report."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from cni_metrics.core.catalogue import FLEET_METRICS, METRICS_BY_NAME
from cni_metrics.fleet.dispatch import DispatchReport, Group, Invocation
from cni_metrics.fleet.document import Problem, parse_fleet
from cni_metrics.fleet.health import (
    POD_MIN_BYTES,
    STALE_PUBLISHED,
    STATE_BASE_BYTES,
    StateObject,
    estimate_nodes,
    fleet_cluster_id,
    fleet_health,
    node_estimates,
)
from cni_metrics.fleet.resolve import Resolution

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
PERIOD = 60


def _resolution(ids: list[str], problems: tuple[Problem, ...] = ()) -> Resolution:
    doc = {"version": 1, "clusters": [{"name": cluster, "region": "us-east-1"} for cluster in ids]}
    fleet = parse_fleet(json.dumps(doc).encode())
    return Resolution(fleet, fleet.clusters, problems, 0)


def _state(minutes_ago: float, size: int = 3000) -> StateObject:
    return StateObject(size, NOW - timedelta(minutes=minutes_ago))


def test_health_counts_the_fleet_its_dispatch_and_its_stale_and_new_clusters() -> None:
    # given five clusters: two written this minute, one 3 periods ago to the second, one 10 minutes ago, one
    # never; two entry problems and a discovery one; and a dispatch where one of three invocations failed
    problems = (
        Problem("clusters[7]", "x", "endpoint", "https only"),
        Problem("clusters[8]", "y", "name", "duplicate"),
        Problem("discovery[0] eu-west-1", None, None, "AssumeRole failed", "discovery"),
    )
    resolution = _resolution(["a", "b", "c", "d", "e"], problems)
    states = {"a": _state(0.5), "b": _state(1), "c": _state(3), "d": _state(10),
              "other": _state(100)}
    report = DispatchReport((
        Invocation(Group(("a", "b"), 40), True, None, 0.02),
        Invocation(Group(("c",), 70), False, "TooManyRequestsException: Rate exceeded", 0.3),
        Invocation(Group(("d", "e"), None), True, None, 0.02),
    ), 0.4)
    # when the health is computed
    health = fleet_health(resolution, now=NOW, period_seconds=PERIOD, states=states, report=report,
                          duration_ms=812.0)
    # then each number is what the inputs say
    assert (health.clusters, health.entries_refused, health.discovery_errors) == (5, 2, 1)
    assert (health.invocations, health.dispatched, health.dispatch_errors) == (3, 4, 1)
    assert (health.stale, health.never_collected) == (("d",), ("e",))
    assert {m.name: (m.value, m.unit) for m in health.metrics()} == {
        "fleetClusters": (5, "Count"), "fleetInvocations": (3, "Count"),
        "fleetClustersDispatched": (4, "Count"), "fleetDispatchErrors": (1, "Count"),
        "fleetClustersStale": (1, "Count"), "fleetClustersNeverCollected": (1, "Count"),
        "fleetEntriesRefused": (2, "Count"), "fleetDiscoveryErrors": (1, "Count"),
        "fleetDispatchDurationMs": (812.0, "Milliseconds"),
    }


def test_each_stale_cluster_gets_its_minutes_since_collected_under_its_own_id() -> None:
    # given two stale clusters (10 and 45 minutes since their last state write) and a fresh one
    states = {"fresh": _state(1), "ten": _state(10), "old": _state(45.25)}
    # when the health is computed
    health = fleet_health(_resolution(["fresh", "ten", "old"]), now=NOW, period_seconds=PERIOD, states=states)
    # then the stalest come first, each with its own datum under its cluster id; the fresh one has none
    assert health.stale_minutes == (("old", 45.2), ("ten", 10.0))
    assert {cluster: [(m.name, m.value, m.unit) for m in metrics]
            for cluster, metrics in health.stale_metrics().items()} == {
        "old": [("minutesSinceCollected", 45.2, "Count")], "ten": [("minutesSinceCollected", 10.0, "Count")],
    }


def test_only_the_stalest_clusters_get_their_own_datum_but_all_are_counted() -> None:
    # given more stale clusters than are published one by one (ages 4, 5, ... minutes)
    ids = [f"c{n:03d}" for n in range(STALE_PUBLISHED + 7)]
    states = {cluster: _state(4 + n) for n, cluster in enumerate(ids)}
    # when the health is computed
    health = fleet_health(_resolution(ids), now=NOW, period_seconds=PERIOD, states=states)
    # then every one is counted, and the STALE_PUBLISHED oldest get their datum
    assert {m.name: m.value for m in health.metrics()}["fleetClustersStale"] == len(ids)
    assert [cluster for cluster, _ in health.stale_minutes] == ids[::-1][:STALE_PUBLISHED]


def test_what_is_not_known_is_not_published() -> None:
    # given no state listing (it failed) and no dispatch (nothing to invoke)
    health = fleet_health(_resolution(["a"]), now=NOW, period_seconds=PERIOD)
    # then only the fleet's own numbers are published, never a zero standing for "unknown"
    assert {m.name: m.value for m in health.metrics()} == {
        "fleetClusters": 1, "fleetEntriesRefused": 0, "fleetDiscoveryErrors": 0
    }
    assert health.stale_metrics() == {}


def test_fleet_metrics_are_new_names_with_catalogue_units_and_a_fleet_dimension() -> None:
    # given / then: names unique and unused by the per-cluster catalogue; the fleet's CLUSTER_ID can never
    # be a cluster's name (a colon)
    names = [metric.name for metric in FLEET_METRICS]
    assert len(set(names)) == len(names) == 10
    assert not set(names) & set(METRICS_BY_NAME)
    assert {metric.unit for metric in FLEET_METRICS} <= {"Count", "Milliseconds"}
    assert {metric.source for metric in FLEET_METRICS} == {"health"}
    assert fleet_cluster_id("prod") == "fleet:prod"


def test_node_estimates_from_state_sizes() -> None:
    # given sizes of an empty document, of one just over, and of 20 pods' worth of baselines
    states = {"empty": StateObject(STATE_BASE_BYTES, NOW), "one": StateObject(STATE_BASE_BYTES + 1, NOW),
              "twenty": StateObject(STATE_BASE_BYTES + 20 * POD_MIN_BYTES, NOW)}
    # when estimated (a cluster without a state: unknown)
    estimates = node_estimates(["empty", "one", "twenty", "new"], states)
    # then
    assert estimates == {"empty": 0, "one": 1, "twenty": 20, "new": None}
    assert estimate_nodes(0) == 0
