"""Settings from environment + event: defaults as documented, every mistake named after its variable."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cni_metrics.collector.settings import ClusterSpec, ConfigError, load_settings
from local_lambda.runner import read_env_file

ROOT = Path(__file__).resolve().parents[2]
BASE = {"CLUSTER_NAMES": "alpha", "STATE_BUCKET": "state-bucket"}
SCHEDULED = json.loads((ROOT / "events" / "scheduled.json").read_text())


def test_defaults_match_the_architecture_table() -> None:
    # given only the required variables
    settings = load_settings(BASE)
    # then every default is the documented one
    assert settings.publish_mode == "emf"
    assert settings.namespace == "Kubernetes"
    assert (settings.scrape_concurrency, settings.cluster_concurrency) == (64, 4)
    assert (settings.connect_timeout_seconds, settings.read_timeout_seconds) == (3.0, 10.0)
    assert settings.publish_margin_seconds == 15.0
    assert settings.max_payload_bytes == 8388608
    assert settings.exhaustion_threshold_pct == 90.0
    assert settings.state_prefix == "cni-metrics/state/"
    assert settings.log_level == "INFO"
    assert settings.clusters == [ClusterSpec(name="alpha")]


def test_names_json_and_event_combine() -> None:
    # given names, per-cluster settings, and a direct invoke choosing two of them
    env = {
        **BASE,
        "CLUSTER_NAMES": "alpha, beta",
        "CLUSTERS_JSON": json.dumps([{"name": "beta", "region": "eu-west-1"}, {"name": "gamma"}]),
    }
    # when loaded without and with the event
    plain = load_settings(env)
    invoked = load_settings(env, {"clusters": ["gamma", {"name": "beta"}, "gamma"]})
    # then the environment lists every cluster once, and the event chooses among them in its order,
    # each with its configured settings
    assert [c.name for c in plain.clusters] == ["alpha", "beta", "gamma"]
    assert plain.clusters[1].region == "eu-west-1"
    assert invoked.clusters == [ClusterSpec(name="gamma"), ClusterSpec(name="beta", region="eu-west-1")]
    assert not invoked.discovery_enabled


def test_scheduled_event_keeps_the_configuration_and_discovery() -> None:
    # given discovery by tag and the sample scheduled event
    env = {"STATE_BUCKET": "state-bucket", "CLUSTER_DISCOVERY_TAG": "cni-metrics=enabled"}
    settings = load_settings(env, SCHEDULED)
    # then discovery stays on with its tag and there is no explicit cluster
    assert settings.discovery_tag == ("cni-metrics", "enabled")
    assert settings.discovery_enabled
    assert settings.clusters == []
    found = [ClusterSpec(name="alpha", region="us-east-1"), ClusterSpec(name="beta", region="us-east-1")]
    assert settings.chosen(found) == found


def test_with_discovery_an_event_chooses_among_the_discovered_clusters() -> None:
    # given discovery by tag beside one named cluster
    env = {"STATE_BUCKET": "state-bucket", "CLUSTER_NAMES": "named", "CLUSTER_DISCOVERY_TAG": "team=net"}
    discovered = [ClusterSpec(name=name, region="us-east-1") for name in ("net-a", "net-b", "net-c")]
    # when a direct invoke names a discovered cluster, the named one and one nobody knows
    mixed = load_settings(env, {"clusters": ["net-b", "named", "stranger"]})
    # then the named one is collected as configured, and discovery runs but keeps only what the event named
    assert mixed.clusters == [ClusterSpec(name="named")]
    assert mixed.discovery_enabled
    assert mixed.chosen(discovered) == [ClusterSpec(name="net-b", region="us-east-1")]
    # when it names the configured cluster only, then this run needs no discovery
    assert not load_settings(env, {"clusters": ["named"]}).discovery_enabled


def test_sample_direct_invoke_event_is_valid() -> None:
    # given the sample event and the sample environment it goes with
    event = json.loads((ROOT / "events" / "direct-invoke.json").read_text())
    env = read_env_file(ROOT / "events" / "env.json", "CollectorFunction")
    # then it chooses those clusters, by name only
    assert [c.name for c in load_settings(env, event).clusters] == event["clusters"]
    assert all(isinstance(item, str) for item in event["clusters"])


@pytest.mark.parametrize(
    ("item", "field"),
    [
        ({"name": "alpha", "endpoint": "http://127.0.0.1:8080"}, "endpoint"),
        ({"name": "alpha", "endpoint": "https://127.0.0.1:8443", "ca_data": "LS0tLS1CRUdJTg=="}, "endpoint"),
        ({"name": "alpha", "ca_data": "LS0tLS1CRUdJTg=="}, "ca_data"),
        ({"name": "alpha", "role_arn": "arn:aws:iam::210987654321:role/r"}, "role_arn"),
        ({"name": "alpha", "region": "eu-west-1"}, "region"),
        ({"name": "alpha", "endpoint": None}, "endpoint"),
    ],
)
def test_an_event_never_says_how_to_reach_a_cluster(item: dict[str, Any], field: str) -> None:
    # given a configured cluster / when a direct invoke adds an endpoint, CA, role or region to it
    with pytest.raises(ConfigError) as raised:
        load_settings(BASE, {"clusters": ["alpha", item]})
    # then the event is refused, naming the field
    assert str(raised.value).startswith(f"invalid event: clusters.1.{field}: not allowed in an event")


def test_an_event_without_discovery_chooses_configured_clusters_only() -> None:
    # given CLUSTER_NAMES and CLUSTERS_JSON, no discovery
    env = {**BASE, "CLUSTERS_JSON": json.dumps([{"name": "beta", "region": "eu-west-1"}])}
    # when a direct invoke names a cluster neither lists
    with pytest.raises(ConfigError) as raised:
        load_settings(env, {"clusters": ["beta", "gamma", "alpha"]})
    # then it is refused, naming its place in the event
    assert str(raised.value) == (
        "invalid event: clusters.1: 'gamma' is not a configured cluster "
        "(a direct invoke chooses among CLUSTER_NAMES and CLUSTERS_JSON)"
    )


def test_configured_endpoints_are_https_only() -> None:
    # given CLUSTERS_JSON with a plain-http endpoint, and one with https
    plain = [{"name": "private", "endpoint": "http://10.0.0.1", "ca_data": "LS0tLS1CRUdJTg=="}]
    tls = [{"name": "private", "endpoint": "https://10.0.0.1", "ca_data": "LS0tLS1CRUdJTg=="}]
    # then the first is refused naming the entry's field, and the second accepted
    with pytest.raises(ConfigError, match=r"CLUSTERS_JSON\.0\.endpoint: must be an https:// URL"):
        load_settings({**BASE, "CLUSTERS_JSON": json.dumps(plain)})
    assert load_settings({**BASE, "CLUSTERS_JSON": json.dumps(tls)}).clusters[1].endpoint == "https://10.0.0.1"


def test_publish_margin_must_leave_time_in_the_invocation() -> None:
    # given the default margin of 15 s
    settings = load_settings(BASE)
    # when the invocation has 15 s or less at its start, then it is refused naming the variable
    for remaining in (15.0, 10.0):
        with pytest.raises(ConfigError, match=r"^invalid configuration: PUBLISH_MARGIN_SECONDS: 15 s is not"):
            settings.check_time(remaining)
    # and with more, it goes on
    settings.check_time(15.5)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CLUSTER_NAMES": "alpha"}, "STATE_BUCKET: Field required"),
        ({"STATE_BUCKET": "state-bucket"}, "no cluster to monitor"),
        ({**BASE, "PUBLISH_MODE": "statsd"}, "PUBLISH_MODE: Input should be 'emf' or 'putmetricdata'"),
        ({**BASE, "SCRAPE_CONCURRENCY": "0"}, "SCRAPE_CONCURRENCY: Input should be greater than or equal"),
        ({**BASE, "CLUSTER_CONCURRENCY": "many"}, "CLUSTER_CONCURRENCY: Input should be a valid integer"),
        ({**BASE, "READ_TIMEOUT_SECONDS": "-1"}, "READ_TIMEOUT_SECONDS: Input should be greater than 0"),
        ({**BASE, "EXHAUSTION_THRESHOLD_PCT": "120"}, "EXHAUSTION_THRESHOLD_PCT: Input should be less than"),
        ({**BASE, "CLUSTER_NAMES": "ok,-bad"}, "CLUSTER_NAMES.1: String should match pattern"),
        ({**BASE, "CLUSTERS_JSON": "[{"}, "CLUSTERS_JSON: not valid JSON"),
        ({**BASE, "CLUSTERS_JSON": '[{"name": "a", "role": "x"}]'}, "CLUSTERS_JSON.0.role: Extra inputs"),
        ({**BASE, "CLUSTERS_JSON": '[{"name": "a"}, {"name": "a"}]'}, "names a cluster more than once: a"),
        ({**BASE, "CLUSTER_DISCOVERY_TAG": "novalue"}, "CLUSTER_DISCOVERY_TAG: expected key=value"),
        ({**BASE, "STATE_PREFIX": "/abs/"}, "STATE_PREFIX: Value error, must not start with '/'"),
        ({**BASE, "PUBLISH_RETRY_MODE": "legacy"}, "PUBLISH_RETRY_MODE: Input should be 'standard'"),
        ({**BASE, "POWERTOOLS_LOG_LEVEL": "chatty"}, "POWERTOOLS_LOG_LEVEL: Input should be"),
        ({**BASE, "METRICS_NAMESPACE": "AWS/EKS"}, "METRICS_NAMESPACE: must not start with 'AWS/'"),
        ({**BASE, "METRICS_NAMESPACE": ":x"}, "METRICS_NAMESPACE: must not start with ':'"),
        ({**BASE, "MAX_PAYLOAD_BYTES": str(10**12)}, "MAX_PAYLOAD_BYTES: at most 268435456 (256 MiB)"),
        ({**BASE, "MAX_PAYLOAD_BYTES": str(256 * 2**20 + 1)}, "MAX_PAYLOAD_BYTES: at most 268435456"),
        ({**BASE, "SCRAPE_CONCURRENCY": "256"}, "SCRAPE_CONCURRENCY x CLUSTER_CONCURRENCY: 256 x 4 need "
         "about 1216 file descriptors (4 x (256 + 16) + 128); Lambda allows 1024: lower either"),
        ({**BASE, "SCRAPE_CONCURRENCY": "1", "CLUSTER_CONCURRENCY": "64"}, "1 x 64 need about 1216"),
        ({**BASE, "SCRAPE_CONCURRENCY": "881", "CLUSTER_CONCURRENCY": "1"}, "881 x 1 need about 1025"),
    ],
)
def test_bad_configuration_is_a_clear_error(env: dict[str, str], message: str) -> None:
    # when the environment is wrong, then the error names the variable and the problem
    with pytest.raises(ConfigError) as raised:
        load_settings(env)
    assert str(raised.value).startswith("invalid configuration: ")
    assert message.replace("Value error, ", "") in str(raised.value)


def test_scrapes_and_clusters_at_once_that_fit_the_file_descriptors_are_accepted() -> None:
    # given the defaults (4 clusters x 64 scrapes) and the most scrapes one cluster at a time can have
    for env in ({}, {"SCRAPE_CONCURRENCY": "880", "CLUSTER_CONCURRENCY": "1"}):
        # then they load: 1 x (880 + 16) + 128 = 1024 descriptors at most
        load_settings({**BASE, **env})


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ([], "invalid event: expected a JSON object, got list"),
        ({"clusters": []}, "clusters: List should have at least 1 item"),
        ({"clusters": ["ok", "not ok"]}, "clusters.1.name: String should match pattern"),
        ({"cluster": ["alpha"]}, "cluster: Extra inputs are not permitted"),
        ({"clusters": [{"name": "alpha", "insecure": True}]}, "clusters.0.insecure: Extra inputs"),
        ({**SCHEDULED, "detail-type": "Object Created"}, "detail-type: Input should be 'Scheduled Event'"),
        ({"source": "aws.events", "detail-type": "Scheduled Event"}, "time: Field required"),
    ],
)
def test_bad_event_is_a_clear_error(event: Any, message: str) -> None:
    # when the event is neither a scheduled event nor a valid direct invoke, then the error says why
    with pytest.raises(ConfigError) as raised:
        load_settings(BASE, event)
    assert str(raised.value).startswith("invalid event: ")
    assert message in str(raised.value)


def test_settings_are_not_read_at_import_time() -> None:
    # given the handler module imported without any configuration, nothing failed: config is per call
    import importlib

    module = importlib.import_module("cni_metrics.collector.settings")
    assert not hasattr(module, "settings")
