"""The dispatcher handler end to end over real HTTP: the fleet document in moto's S3, discovery through a
role on the EKS stand-in, the collector's Event invocations through the recording loopback Invoke API
(``test_fleet_invoke``), the fleet's health read back from moto's CloudWatch. The truth: the scenario
(which clusters carry the tag in which account and region) and what the Invoke API received."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from cni_metrics.fleet.job import DispatchFailed
from cni_metrics.settings_fields import ConfigError
from harness import STATE_BUCKET, fleet_caches_cleared, metric_sums, put_document, set_env
from lambda_app import LambdaContext, load_app
from test_fleet_invoke import (
    FUNCTION,
    InvokeApi,
    invoke_api,  # noqa: F401 - the fixture
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCHEDULED = json.loads((ROOT / "events" / "scheduled.json").read_text())
PREFIX = "cni-metrics/state/"
FLEET_BUCKET, FLEET_KEY = "cni-metrics-test-fleet", "fleet.json"
B = "222233334444"
ROLE_B = f"arn:aws:iam::{B}:role/cni-metrics-reader"
TAG = {"cni-metrics": "enabled"}
SCENARIO: dict[str, Any] = {
    "name": "fleet-dispatcher-it",
    "seed": 5,
    "accounts": {B: {"roles": [ROLE_B], "identities": {ROLE_B: ["cni-metrics"]}}},
    "clusters": [
        {"name": "own-1", "nodes": 2, "tags": TAG},
        {"name": "own-untagged", "nodes": 2},
        *({"name": f"b-{i}", "nodes": 2, "tags": TAG, "account": B,
           "region": "eu-west-1" if i % 2 else "us-east-1"} for i in range(8)),
    ],
}
DOCUMENT: dict[str, Any] = {
    "version": 1,
    "name": "it",
    "clusters": [{"name": "own-1", "region": "us-east-1", "alias": "own-prod"}, {"name": "no-region"}],
    "discovery": [{"role_arn": ROLE_B, "regions": ["us-east-1", "eu-west-1"], "tag": "cni-metrics=enabled"}],
}
FLEET_IDS = ["own-prod", *(f"b-{i}" for i in range(8))]


def _context() -> LambdaContext:
    """The dispatcher's context (1024 MB, 55 s left)."""
    return LambdaContext("dispatcher", memory_mb=1024)


@pytest.fixture
def dispatcher(
    aws: str, invoke_api: InvokeApi, eks: Any, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> Iterator[InvokeApi]:
    """moto with the state bucket and the fleet document, the stand-in's EKS/STS and keys, the recording
    Invoke API, and the dispatcher's environment."""
    set_env(monkeypatch, eks.env())
    put_document(FLEET_BUCKET, FLEET_KEY, DOCUMENT)
    set_env(monkeypatch, {
        "FLEET_DOCUMENT": f"s3://{FLEET_BUCKET}/{FLEET_KEY}", "COLLECTOR_FUNCTION": FUNCTION,
        "STATE_BUCKET": STATE_BUCKET, "STATE_PREFIX": PREFIX, "PUBLISH_MODE": "putmetricdata",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    })
    with fleet_caches_cleared():
        yield invoke_api


def _health(name: str) -> dict[str, float]:
    """Every fleet datum under CLUSTER_ID fleet:<name>, read back from moto (Sum over the last hour)."""
    dimensions: Any = [{"Name": "CLUSTER_ID", "Value": f"fleet:{name}"}]
    listed = boto3.client("cloudwatch").list_metrics(Namespace="Kubernetes", Dimensions=dimensions)
    names = {metric["MetricName"] for metric in listed["Metrics"]}
    now = datetime.now(UTC)
    start, end = now - timedelta(hours=1), now + timedelta(minutes=5)
    return metric_sums(f"fleet:{name}", names, start, end, period=3600)


def test_the_dispatcher_fans_the_fleet_out_and_publishes_its_health(dispatcher: InvokeApi) -> None:
    # given state objects of three clusters (one a few nodes, two large) as the collector leaves them
    s3 = boto3.client("s3")
    for cluster, size in (("b-0", 600), ("b-1", 9000), ("b-2", 9000)):
        s3.put_object(Bucket=STATE_BUCKET, Key=f"{PREFIX}{cluster}.json", Body=b"x" * size)
    # when the scheduled dispatcher runs
    started = time.monotonic()
    result = load_app("dispatcher").lambda_handler(SCHEDULED, _context())
    seconds = time.monotonic() - started
    # then every cluster of the fleet (the alias, account B's tagged clusters in both regions; not the
    # untagged one) was named in exactly one Event invocation of the collector, with the dispatch time
    named = sorted(c for request in dispatcher.requests for c in request["event"]["clusters"])
    assert named == sorted(FLEET_IDS)
    assert {(r["function"], r["type"]) for r in dispatcher.requests} == {(FUNCTION, "Event")}
    at = {r["event"]["dispatched_at"] for r in dispatcher.requests}
    assert at == {result["dispatchedAt"]}
    assert {r["event"]["period_seconds"] for r in dispatcher.requests} == {60}
    # and the large clusters each have an invocation of their own; the small and unknown ones share groups
    alone = [r["event"]["clusters"] for r in dispatcher.requests if len(r["event"]["clusters"]) == 1]
    assert ["b-1"] in alone
    assert ["b-2"] in alone
    assert result["mode"] == "fanout"
    # and the bad entry is reported by place and field, never fatal
    assert result["problems"] == ["clusters[1] (no-region): region: Field required"]
    # and the fleet's health is in CloudWatch under fleet:it, as the Invoke API and S3 saw it
    assert _health("it") == {
        "fleetClusters": 9.0, "fleetInvocations": float(len(dispatcher.requests)),
        "fleetClustersDispatched": 9.0, "fleetDispatchErrors": 0.0, "fleetClustersStale": 0.0,
        "fleetClustersNeverCollected": 6.0, "fleetEntriesRefused": 1.0, "fleetDiscoveryErrors": 0.0,
        "fleetDispatchDurationMs": pytest.approx(result["seconds"] * 1000, abs=1),
    }
    assert result["seconds"] <= seconds <= 55  # within the context's 55 s


def test_inline_mode_names_every_cluster_in_one_invocation(
    dispatcher: InvokeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given FLEET_MODE=inline
    monkeypatch.setenv("FLEET_MODE", "inline")
    # when the dispatcher runs
    result = load_app("dispatcher").lambda_handler({}, _context())
    # then one invocation names the whole fleet
    (request,) = dispatcher.requests
    assert sorted(request["event"]["clusters"]) == sorted(FLEET_IDS)
    assert (result["mode"], result["invocations"], result["dispatched"]) == ("inline", 1, 9)


def test_a_fleet_document_that_cannot_be_read_fails_the_run_and_invokes_nothing(
    dispatcher: InvokeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given FLEET_DOCUMENT naming an object that does not exist
    monkeypatch.setenv("FLEET_DOCUMENT", f"s3://{FLEET_BUCKET}/missing.json")
    # when the dispatcher runs, then it fails naming the object, and nothing was invoked
    with pytest.raises(DispatchFailed, match=f"cannot read s3://{FLEET_BUCKET}/missing.json: NoSuchKey"):
        load_app("dispatcher").lambda_handler(SCHEDULED, _context())
    assert dispatcher.requests == []


def test_when_no_invocation_is_accepted_the_run_fails_after_publishing_the_errors(
    dispatcher: InvokeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a collector function the Invoke API does not know
    monkeypatch.setenv("COLLECTOR_FUNCTION", "no-such-function")
    # when the dispatcher runs, then it fails with the API's error
    with pytest.raises(DispatchFailed, match="none of 9 clusters dispatched: ResourceNotFoundException"):
        load_app("dispatcher").lambda_handler(SCHEDULED, _context())
    # and the fleet's health says so first: every cluster a dispatch error
    health = _health("it")
    assert (health["fleetClustersDispatched"], health["fleetDispatchErrors"]) == (0.0, 9.0)


def test_an_event_naming_clusters_is_refused(dispatcher: InvokeApi) -> None:
    # given an event that names clusters (the dispatcher decides which; an event never does)
    # when the dispatcher is invoked with it, then it is refused and nothing was invoked
    with pytest.raises(ConfigError, match="the dispatcher takes its schedule's event"):
        load_app("dispatcher").lambda_handler({"clusters": ["b-1"]}, _context())
    assert dispatcher.requests == []
