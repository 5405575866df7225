"""The collector as a fleet worker: FLEET_DOCUMENT, events naming fleet ids, the published alias, late
events skipped, a name the fleet does not have refused, and one failing cluster leaving the others' numbers
alone. The job runs against the in-memory store, the recording publisher and the simulated clusters of
``test_service`` (whose pods know their true increments); the fleet is a parsed fleet document."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from cni_metrics.adapters.aws_clients import Deadline
from cni_metrics.collector import wiring
from cni_metrics.collector.job import Deps, RunSummary, run_collection
from cni_metrics.collector.settings import ClusterSpec, ConfigError, Settings, load_settings
from cni_metrics.fleet.document import Fleet, parse_fleet
from cni_metrics.fleet.location import FleetLocation
from cni_metrics.fleet.resolve import FleetLookupError, lookup
from test_service import World

LOCATION = "s3://fleet-bucket/fleets/prod.json"
ENV = {"FLEET_DOCUMENT": LOCATION, "STATE_BUCKET": "state-bucket"}
DOCUMENT: dict[str, Any] = {
    "version": 1,
    "name": "prod",
    "clusters": [
        {"name": "alpha", "region": "us-east-1", "alias": "alpha-prod"},
        {"name": "beta", "region": "eu-west-1", "role_arn": "arn:aws:iam::222233334444:role/reader"},
        {"name": "gamma", "region": "us-east-1"},
    ],
}


class EntriesFleet:
    """``FleetClusters`` over a parsed fleet document's entries (``fleet.resolve.lookup``: no AWS call);
    names in ``unreadable`` fail their lookup as an unreadable discovery rule does."""

    def __init__(self, fleet: Fleet, unreadable: frozenset[str] = frozenset()) -> None:
        self.fleet, self.unreadable = fleet, unreadable
        self.looked_up: list[str] = []

    def lookup(self, cluster_id: str) -> ClusterSpec | None:
        self.looked_up.append(cluster_id)
        if cluster_id in self.unreadable:
            raise FleetLookupError("discovery[0] us-east-1: DescribeCluster failed: AccessDenied")
        return lookup(self.fleet, cluster_id)

    def all(self) -> list[ClusterSpec]:
        return list(self.fleet.clusters)


def _dispatched(names: list[str], at: datetime, period: int = 60) -> dict[str, Any]:
    return {"clusters": names, "dispatched_at": at.isoformat(), "period_seconds": period}


def _run(world: World, settings: Settings, fleet: EntriesFleet) -> RunSummary:
    deps: Deps = replace(world.deps(), fleet=fleet)
    return run_collection(settings, deps=deps, remaining_seconds=55)


def _world() -> tuple[World, EntriesFleet]:
    return World("alpha", "beta", "gamma"), EntriesFleet(parse_fleet(json.dumps(DOCUMENT).encode()))


def _grow(world: World, by: float) -> None:
    """Every pod's counter grows by ``by`` (no restart, no churn: nothing the protocol may lose)."""
    for cluster in world.clusters.values():
        cluster.grow(by)


def test_fleet_document_alone_is_fleet_mode_and_names_are_not_checked_at_load() -> None:
    # given FLEET_DOCUMENT only, and an event naming an id the environment cannot know
    settings = load_settings(ENV, {"clusters": ["alpha-prod", "anything"]})
    # then the location is parsed, the names are kept for the run's fleet lookup, nothing else is configured
    assert settings.fleet_document == FleetLocation("fleet-bucket", "fleets/prod.json")
    assert settings.requested == ("alpha-prod", "anything")
    assert (settings.clusters, settings.discovery_enabled) == ([], False)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({**ENV, "CLUSTER_NAMES": "alpha"}, "FLEET_DOCUMENT: the fleet document lists the clusters"),
        ({**ENV, "CLUSTER_DISCOVERY_TAG": "a=b"}, "leave CLUSTER_NAMES, CLUSTERS_JSON and CLUSTER_DISCOVERY"),
        ({**ENV, "FLEET_DOCUMENT": "https://bucket/key"}, "FLEET_DOCUMENT: expected s3://bucket/key"),
        ({**ENV, "FLEET_DOCUMENT": "s3://bucket/"}, "expected s3://bucket/key"),
    ],
)
def test_fleet_document_misconfigured_is_a_clear_error(env: dict[str, str], message: str) -> None:
    # given a fleet document beside other cluster sources, or a location that is not an S3 object
    # when loaded, then the error names the variable
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_settings(env)


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"clusters": ["a"], "dispatched_at": "2026-12-04T12:00:00+00:00"}, "give both or neither"),
        ({"clusters": ["a"], "period_seconds": 60}, "give both or neither"),
        ({"dispatched_at": "2026-12-04T12:00:00+00:00", "period_seconds": 60}, "names its clusters"),
        ({"clusters": ["a"], "dispatched_at": "2026-12-04T12:00:00", "period_seconds": 60}, "timezone"),
        ({"clusters": ["a"], "dispatched_at": "2026-12-04T12:00:00Z", "period_seconds": 5}, "greater than"),
        ({"clusters": [{"name": "a", "endpoint": "https://x"}], "dispatched_at": "2026-12-04T12:00:00Z",
          "period_seconds": 60}, "not allowed in an event"),
    ],
)
def test_a_dispatched_event_is_validated(event: dict[str, Any], message: str) -> None:
    # given a dispatched event missing a part, with a naive time, a too short period, or an endpoint
    # when loaded, then it is refused (an event never says how to reach a cluster, in fleet mode neither)
    with pytest.raises(ConfigError, match=message):
        load_settings(ENV, event)


def test_a_late_event_skips_every_cluster_and_the_next_run_counts_the_interval() -> None:
    # given a fleet of three clusters collected once (baselines), their pods' counters then growing
    world, fleet = _world()
    ids = ["alpha-prod", "beta", "gamma"]
    first = _run(world, load_settings(ENV, _dispatched(ids, world.clock())), fleet)
    assert [c.status for c in first.clusters] == ["ok", "ok", "ok"]
    stored, published = dict(world.store.objects), len(world.publisher.published)
    looked_up = len(fleet.looked_up)
    _grow(world, 3)
    world.clock.advance(60)
    # when an event dispatched for a 60 s period starts 60 s after it was sent (its period has ended)
    late = _run(world, load_settings(ENV, _dispatched(ids, world.clock() - timedelta(seconds=60))), fleet)
    # then every cluster is skipped_late: nothing looked up, read, collected, written or published
    assert [(c.cluster, c.status) for c in late.clusters] == [(i, "skipped_late") for i in ids]
    assert all("the next run counts the interval" in (c.error or "") for c in late.clusters)
    assert len(fleet.looked_up) == looked_up
    assert world.store.objects == stored
    assert len(world.publisher.published) == published
    assert not late.alarming
    # and the next, timely run publishes the increases of both intervals: the pods' true increments
    _grow(world, 5)
    world.clock.advance(60)
    timely = _run(world, load_settings(ENV, _dispatched(ids, world.clock() - timedelta(seconds=59))), fleet)
    assert [c.status for c in timely.clusters] == ["ok", "ok", "ok"]
    for cluster_id, name in zip(ids, ["alpha", "beta", "gamma"], strict=True):
        assert world.publisher.total(cluster_id) == world.clusters[name].true_increase() == 4 * (3 + 5)


def test_a_name_not_in_the_fleet_is_that_clusters_error_and_an_alias_is_the_published_id() -> None:
    # given a fleet whose entry alpha has the alias alpha-prod
    world, fleet = _world()
    # when an event names the alias, a name the fleet does not have, and alpha's own name
    summary = _run(world, load_settings(ENV, {"clusters": ["alpha-prod", "zeta", "alpha"]}), fleet)
    # then the alias is collected (the physical cluster alpha) and the two others are refused, alone
    outcomes = {c.cluster: c for c in summary.clusters}
    assert [c.cluster for c in summary.clusters] == ["alpha-prod", "zeta", "alpha"]
    assert outcomes["alpha-prod"].status == "ok"
    for refused in ("zeta", "alpha"):
        assert outcomes[refused].status == "error"
        assert outcomes[refused].error == f"not a cluster of the fleet ({LOCATION}): refused"
    # and what was collected is stored and published under the alias only, as the simulated pods served it
    assert set(world.store.objects) == {"alpha-prod"}
    assert {cluster for cluster, _, _ in world.publisher.published} == {"alpha-prod"}
    assert world.publisher.values("alpha-prod", "nodesScraped") == [4.0]
    assert world.clusters["beta"].baseline is None  # never collected


def test_one_failing_cluster_leaves_the_others_numbers_alone() -> None:
    # given three fleet clusters with history; then beta's collection raising, gamma's lookup failing
    world, fleet = _world()
    ids = ["alpha-prod", "beta", "gamma"]
    _run(world, load_settings(ENV, {"clusters": ids}), fleet)

    def collect(spec: ClusterSpec, deadline: float) -> Any:
        if spec.name == "beta":
            raise OSError("connection reset by the cluster's API server")
        return world.collect(spec, deadline)

    for cluster in world.clusters.values():
        cluster.step()
    world.clock.advance(60)
    broken = EntriesFleet(fleet.fleet, unreadable=frozenset({"gamma"}))
    # when the next run collects all three
    deps = replace(world.deps(collect=collect), fleet=broken)
    summary = run_collection(load_settings(ENV, {"clusters": ids}), deps=deps, remaining_seconds=55)
    # then beta and gamma are errors of their own, with their reasons
    outcomes = {c.cluster: c for c in summary.clusters}
    assert outcomes["beta"].status == "error"
    assert "connection reset" in (outcomes["beta"].error or "")
    assert outcomes["gamma"].status == "error"
    assert (outcomes["gamma"].error or "").startswith("fleet lookup failed: discovery[0] us-east-1")
    # and alpha's increase is exactly its pods' true increments, as if the others did not exist
    assert outcomes["alpha-prod"].status == "ok"
    assert world.publisher.total("alpha-prod") == world.clusters["alpha"].true_increase() > 0
    assert not summary.alarming


def test_a_scheduled_run_in_fleet_mode_collects_every_cluster_of_the_fleet() -> None:
    # given the fleet and no cluster named (a scheduled event)
    world, fleet = _world()
    # when the job runs
    summary = _run(world, load_settings(ENV), fleet)
    # then each cluster of the fleet is collected once, under its id
    assert [(c.cluster, c.status) for c in summary.clusters] == [
        ("alpha-prod", "ok"), ("beta", "ok"), ("gamma", "ok")]
    assert fleet.looked_up == []


def test_a_warm_worker_reads_each_aws_model_once_across_collections() -> None:
    # given two collections' sessions as the wiring makes them (a session per collection: they run in
    # threads), bounded by the run's deadline
    deadline = Deadline(time.monotonic() + 30)
    first, second = (wiring._session(deadline, "us-east-1") for _ in range(2))
    # when each makes the EC2 client (the largest model a collection loads)
    loader = first._session.get_component("data_loader")
    first.client("ec2", aws_access_key_id="k", aws_secret_access_key="s")
    loaded = dict(loader._cache)
    second.client("ec2", aws_access_key_id="k", aws_secret_access_key="s")
    # then both sessions read models through one loader, and the second client parsed nothing new
    assert second._session.get_component("data_loader") is loader
    assert loader._cache == loaded
    assert first is not second
