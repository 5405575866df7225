"""The collector handler as a fleet worker, over real HTTP: the fleet document in moto's S3, clusters in two
accounts (one through its role) and two regions on the EKS stand-in, PutMetricData to moto. Given the
names the dispatcher sends, it looks each one up in the fleet, collects it under its id, and publishes
what the stand-in's truth says its pods served; a broken cluster and a name the fleet does not have are
errors of their own that change nothing of the others' numbers."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cni_demo.truth import TruthTracker
from harness import collector_settings, fleet_caches_cleared, metric_sums, put_document, set_env
from lambda_app import LambdaContext, load_app

pytestmark = pytest.mark.integration

FLEET_BUCKET = "cni-metrics-test-fleet"
FLEET_KEY = "fleets/it.json"
B = "222233334444"
ROLE_B = f"arn:aws:iam::{B}:role/cni-metrics-reader"
TAG = {"cni-metrics": "enabled"}
SCENARIO: dict[str, Any] = {
    "name": "fleet-worker-it",
    "seed": 21,
    "churn": {"restart": 0.2, "leave": 0.0, "join": 0.0},  # the faulty node stays
    "accounts": {B: {"roles": [ROLE_B], "identities": {ROLE_B: ["cni-metrics"]}}},
    "clusters": [
        {"name": "a-east", "nodes": 4, "tags": TAG},
        {"name": "a-broken", "nodes": 3, "tags": TAG, "unreachable": True},
        {"name": "b-west", "nodes": 5, "tags": TAG, "account": B, "region": "eu-west-1",
         "faults": {"error_500": [2]}},
    ],
}
DOCUMENT: dict[str, Any] = {
    "version": 1,
    "name": "it",
    "clusters": [{"name": "a-east", "region": "us-east-1", "alias": "a-prod"}],
    "discovery": [
        {"regions": ["us-east-1"], "tag": "cni-metrics=enabled"},
        {"role_arn": ROLE_B, "regions": ["us-east-1", "eu-west-1"], "tag": "cni-metrics=enabled"},
    ],
}
GAUGE_CHECKED = ("assignIPAddresses", "totalIPAddresses", "maxIPAddresses", "eniAllocated")


@pytest.fixture
def fleet_env(aws: str, fake_eks_factory: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> Any:
    """The stand-in, the fleet document in moto's S3, the collector's environment in fleet mode."""
    eks = fake_eks_factory(SCENARIO)
    set_env(monkeypatch, eks.env())
    put_document(FLEET_BUCKET, FLEET_KEY, DOCUMENT)
    document = f"s3://{FLEET_BUCKET}/{FLEET_KEY}"
    set_env(monkeypatch, collector_settings(
        FLEET_DOCUMENT=document, CONNECT_TIMEOUT_SECONDS="2", READ_TIMEOUT_SECONDS="5"
    ))
    with fleet_caches_cleared():
        yield eks


def _event(names: list[str]) -> dict[str, Any]:
    return {"clusters": names, "dispatched_at": datetime.now(UTC).isoformat(), "period_seconds": 60}


def test_a_worker_collects_fleet_ids_and_refuses_others_leaving_their_numbers(fleet_env: Any) -> None:
    # given the handler in fleet mode and the truth of the stand-in's two healthy clusters
    handler = load_app("collector")
    truth = TruthTracker(fleet_env, ["a-east", "b-west"])
    started = datetime.now(UTC) - timedelta(minutes=1)
    names = ["a-prod", "b-west", "a-broken", "a-east", "nope"]
    # when two dispatched events name the alias, a cluster of account B discovered through its role, an
    # unreachable cluster, the alias's physical name and a name the fleet does not have, a second apart
    first = handler.lambda_handler(_event(names), LambdaContext())
    gauges = {name: truth.observe(name) for name in ("a-east", "b-west")}
    truth.start_counting()
    time.sleep(1.1)
    fleet_env.advance("a-east")
    fleet_env.advance("b-west")
    second = handler.lambda_handler(_event(names), LambdaContext())
    for name in ("a-east", "b-west"):
        truth.observe(name)
    # then each name is its own outcome: the two healthy ones collected, the others errors with their reason
    for result in (first, second):
        outcomes = {c["cluster"]: c for c in result["clusters"]}
        assert [c["cluster"] for c in result["clusters"]] == names
        assert (outcomes["a-prod"]["status"], outcomes["b-west"]["status"]) == ("ok", "ok")
        assert outcomes["b-west"]["failures"] == 1  # its error_500 node, nothing more
        assert outcomes["a-broken"]["status"] == "error"
        for refused in ("a-east", "nope"):
            assert outcomes[refused]["status"] == "error"
            assert "not a cluster of the fleet" in outcomes[refused]["error"]
    # and the first cycle's gauges under each id are what the pods served (no datum under a-east or nope)
    first_at = {c["cluster"]: datetime.fromisoformat(c["collected_at"]) for c in first["clusters"]
                if c["collected_at"]}
    for cluster_id, name in (("a-prod", "a-east"), ("b-west", "b-west")):
        at = first_at[cluster_id].replace(microsecond=0)
        read = metric_sums(cluster_id, list(GAUGE_CHECKED), at, at + timedelta(seconds=1))
        assert read == pytest.approx({metric: gauges[name][metric] for metric in GAUGE_CHECKED}), cluster_id
    end = datetime.now(UTC) + timedelta(minutes=5)
    assert metric_sums("a-east", ["nodesTotal"], started, end) == {"nodesTotal": 0}
    assert metric_sums("nope", ["nodesTotal"], started, end) == {"nodesTotal": 0}
    # and the second cycle's counter increases are the pods' true increments
    for cluster_id, name in (("a-prod", "a-east"), ("b-west", "b-west")):
        expected = truth.increases(name)
        assert sum(expected.values()) > 0
        assert metric_sums(cluster_id, sorted(expected), started, end) == pytest.approx(expected), cluster_id
    # and the unreachable cluster published its health under its own id: every node unknown, none scraped
    broken = metric_sums("a-broken", ["nodesTotal", "nodesScraped", "collectionFailed"], started, end)
    assert broken == {"nodesTotal": 0, "nodesScraped": 0, "collectionFailed": 2}  # it failed both cycles
    # and the healthy clusters said in both cycles that they were collected
    for cluster_id in ("a-prod", "b-west"):
        assert metric_sums(cluster_id, ["collectionFailed"], started, end) == {"collectionFailed": 0}
