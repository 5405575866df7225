"""Fleet mode in the dashboard function's settings (FLEET_DOCUMENT, STATE_BUCKET, STATE_PREFIX) and the
choice of the fleet's clusters from the document and the state objects' last writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cni_metrics.collector.settings import Settings
from cni_metrics.dashboard.clusters import RECENT_STATE, fleet_clusters, select_clusters
from cni_metrics.dashboard.settings import FleetSource, load_dashboard_settings
from cni_metrics.fleet.document import parse_fleet
from cni_metrics.fleet.health import StateObject
from cni_metrics.fleet.location import FleetLocation
from cni_metrics.fleet.settings import DispatcherSettings
from cni_metrics.settings_fields import ConfigError

ENV = {"AWS_REGION": "eu-west-1", "DASHBOARD_NAME": "cni"}
FLEET = {"FLEET_DOCUMENT": "s3://my-config/cni-metrics/fleet.json", "STATE_BUCKET": "cni-state"}


def test_without_fleet_document_there_is_no_fleet_mode() -> None:
    # given the environment of a deployment without fleet mode (the template leaves the variables out)
    settings = load_dashboard_settings({**ENV, "CLUSTER_NAMES": "a", "STATE_BUCKET": "ignored-bucket"})
    # then the dashboard runs as before
    assert settings.fleet is None
    assert settings.cluster_names == ("a",)


def test_fleet_document_is_read_with_the_state_objects_place() -> None:
    # given fleet mode as the template sets it (surrounding blanks and an unterminated prefix included)
    settings = load_dashboard_settings({**ENV, **FLEET, "FLEET_DOCUMENT": " s3://my-config/k/fleet.json ",
                                        "STATE_PREFIX": "state"})
    # then the document's object, the bucket and the prefix (ending in /) are known
    assert settings.fleet is not None
    assert settings.fleet.location == FleetLocation("my-config", "k/fleet.json")
    assert (settings.fleet.state_bucket, settings.fleet.state_prefix) == ("cni-state", "state/")
    default = load_dashboard_settings({**ENV, **FLEET}).fleet
    assert default is not None
    assert default.state_prefix == "cni-metrics/state/"


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"FLEET_DOCUMENT": "my-config/fleet.json"}, "FLEET_DOCUMENT: expected s3://bucket/key"),
        ({"FLEET_DOCUMENT": "s3://my-config/"}, "FLEET_DOCUMENT: expected s3://bucket/key"),
        ({"FLEET_DOCUMENT": "s3://UPPER/fleet.json"}, "FLEET_DOCUMENT: expected s3://bucket/key"),
        ({"STATE_BUCKET": ""}, "STATE_BUCKET: Field required"),
        ({"STATE_BUCKET": "Bad_Bucket"}, "STATE_BUCKET"),
        ({"STATE_PREFIX": "/absolute/"}, "STATE_PREFIX: must not start with '/'"),
        ({"CLUSTER_NAMES": "a"}, "FLEET_DOCUMENT: the fleet document lists the clusters"),
        ({"CLUSTER_DISCOVERY_TAG": "team=net"}, "FLEET_DOCUMENT: the fleet document lists the clusters"),
        ({"CLUSTERS_JSON": '[{"name": "a"}]'}, "FLEET_DOCUMENT: the fleet document lists the clusters"),
    ],
)
def test_bad_fleet_settings_are_refused_naming_the_variable(env: dict[str, str], problem: str) -> None:
    with pytest.raises(ConfigError, match="invalid dashboard settings") as error:
        load_dashboard_settings({**ENV, **FLEET, **env})
    assert problem in str(error.value)


def test_a_clusters_property_in_fleet_mode_is_refused_too() -> None:
    # given the custom resource's Clusters property naming a cluster while the environment is in fleet mode
    with pytest.raises(ConfigError, match="FLEET_DOCUMENT: the fleet document lists the clusters"):
        load_dashboard_settings({**ENV, **FLEET}, {"Clusters": "a"})
    # and the template's empty property is no cluster
    assert load_dashboard_settings({**ENV, **FLEET}, {"Clusters": ""}).fleet is not None


def test_the_fleet_variables_mean_what_they_mean_for_the_collector_and_the_dispatcher() -> None:
    # given the three models reading FLEET_DOCUMENT, STATE_BUCKET and STATE_PREFIX
    ours = {f.alias: f for f in FleetSource.model_fields.values()}
    for other in (Settings, DispatcherSettings):
        theirs = {f.alias: f for f in other.model_fields.values()}
        # then the state bucket is required and the prefix has one default wherever they are read
        assert ours["STATE_BUCKET"].is_required()
        assert theirs["STATE_BUCKET"].is_required()
        assert ours["STATE_PREFIX"].default == theirs["STATE_PREFIX"].default
        # and the same field types validate them (the same metadata: patterns, lengths, validators)
        for name in ("STATE_BUCKET", "STATE_PREFIX"):
            assert ours[name].metadata == theirs[name].metadata, name


DOCUMENT = b"""{"version": 1, "name": "prod",
 "clusters": [{"name": "a", "region": "us-east-1", "alias": "prod-a"}, {"name": "b", "region": "eu-west-1"},
              {"name": "bad name", "region": "us-east-1"}]}"""
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def state(age: timedelta) -> StateObject:
    return StateObject(size=1_000, last_modified=NOW - age)


def test_the_fleets_clusters_are_its_entries_and_what_was_written_in_the_last_24_hours() -> None:
    # given a fleet of two valid entries (one aliased) and state objects of various ages
    fleet = parse_fleet(DOCUMENT)
    states = {
        "prod-a": state(timedelta(days=3)),  # an entry, not collected for days: still shown
        "discovered-1": state(timedelta(minutes=1)),
        "discovered-2": state(RECENT_STATE),  # written exactly 24 h ago: still in
        "gone": state(RECENT_STATE + timedelta(seconds=1)),  # a second older: out
        "fleet:prod": state(timedelta(minutes=1)),  # not a cluster's name: out
    }
    # when the clusters are chosen
    clusters = fleet_clusters(fleet, states, now=NOW)
    # then they are the entries' ids and the recently written ones
    assert clusters == ["b", "discovered-1", "discovered-2", "prod-a"]
    # and a shorter window keeps fewer
    hour = fleet_clusters(fleet, states, now=NOW, recent=timedelta(hours=1))
    assert hour == ["b", "discovered-1", "prod-a"]


def test_fleet_mode_without_an_s3_client_is_a_programming_error() -> None:
    settings = load_dashboard_settings({**ENV, **FLEET})
    with pytest.raises(ValueError, match="needs an S3 client"):
        select_clusters(settings)
