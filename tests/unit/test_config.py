"""Settings from environment + event: defaults as documented, every mistake named after its variable."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cni_metrics.collector.settings import ClusterSpec, ConfigError, load_settings

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
    # given names, per-cluster settings, and a direct invoke naming one of them and a new one
    env = {
        **BASE,
        "CLUSTER_NAMES": "alpha, beta",
        "CLUSTERS_JSON": json.dumps([{"name": "beta", "region": "eu-west-1"}, {"name": "gamma"}]),
    }
    # when loaded without and with the event
    plain = load_settings(env)
    invoked = load_settings(env, {"clusters": ["beta", {"name": "delta", "region": "us-west-2"}]})
    # then the environment lists every cluster once, and the event replaces the list (keeping beta's settings)
    assert [c.name for c in plain.clusters] == ["alpha", "beta", "gamma"]
    assert plain.clusters[1].region == "eu-west-1"
    assert invoked.clusters == [
        ClusterSpec(name="beta", region="eu-west-1"),
        ClusterSpec(name="delta", region="us-west-2"),
    ]


def test_scheduled_event_keeps_the_configuration_and_discovery() -> None:
    # given discovery by tag and the sample scheduled event
    env = {"STATE_BUCKET": "state-bucket", "CLUSTER_DISCOVERY_TAG": "cni-metrics=enabled"}
    settings = load_settings(env, SCHEDULED)
    # then discovery stays on with its tag and there is no explicit cluster
    assert settings.discovery_tag == ("cni-metrics", "enabled")
    assert settings.discovery_enabled
    assert settings.clusters == []
    # and a direct invoke naming clusters turns discovery off for that run
    assert not load_settings(env, {"clusters": ["alpha"]}).discovery_enabled


def test_sample_direct_invoke_event_is_valid() -> None:
    event = json.loads((ROOT / "events" / "direct-invoke.json").read_text())
    assert [c.name for c in load_settings(BASE, event).clusters] == event["clusters"]


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
    ],
)
def test_bad_configuration_is_a_clear_error(env: dict[str, str], message: str) -> None:
    # when the environment is wrong, then the error names the variable and the problem
    with pytest.raises(ConfigError) as raised:
        load_settings(env)
    assert str(raised.value).startswith("invalid configuration: ")
    assert message.replace("Value error, ", "") in str(raised.value)


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ([], "invalid event: expected a JSON object, got list"),
        ({"clusters": []}, "clusters: List should have at least 1 item"),
        ({"clusters": ["ok", "not ok"]}, "clusters.1.name: String should match pattern"),
        ({"cluster": ["alpha"]}, "cluster: Extra inputs are not permitted"),
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
