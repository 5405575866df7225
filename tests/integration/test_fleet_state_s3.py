"""The fleet's S3 side against moto in server mode: the fleet document read with a size bound, cached and
re-read conditionally; the state objects listed (one ListObjectsV2 per 1,000); node estimates and fleet
health from states the collector itself wrote for the stand-in's clusters (the truth: their pods)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import boto3
import pytest
from cni_metrics.adapters.eks_auth import clear_caches
from cni_metrics.collector.job import run_collection
from cni_metrics.collector.settings import load_settings
from cni_metrics.collector.wiring import build_deps
from cni_metrics.fleet import document
from cni_metrics.fleet.document import FleetDocumentError, load_fleet
from cni_metrics.fleet.health import fleet_health, list_states, node_estimates
from cni_metrics.fleet.location import FleetLocation
from cni_metrics.fleet.resolve import Resolution
from fake_eks.testing import RunningFakeEks

pytestmark = pytest.mark.integration

STATE_BUCKET = "cni-metrics-test-state"
PREFIX = "cni-metrics/state/"
LOCATION = FleetLocation(STATE_BUCKET, "config/fleet.json")
SCENARIO: dict[str, Any] = {
    "name": "fleet-state",
    "seed": 9,
    "churn": {"restart": 0, "leave": 0, "join": 0},
    "clusters": [
        {"name": "tiny", "nodes": 1},
        {"name": "small", "nodes": 12, "cni_shapes": {"modern": 1, "old": 1}},
        {"name": "medium", "nodes": 34, "prefix_delegation": 0.5},
        {"name": "gone", "nodes": 5, "unreachable": True},
        {"name": "auto", "nodes": 4, "auto_mode": True},
    ],
}
COLLECTED = ["tiny", "small", "medium", "gone", "auto"]


class Calls:
    """Counts one S3 operation's requests on a client."""

    def __init__(self, client: Any, operation: str) -> None:
        self.count = 0
        client.meta.events.register(f"before-send.s3.{operation}", self._sent)

    def _sent(self, **_: Any) -> None:
        self.count += 1


@pytest.fixture
def s3(aws: str) -> Iterator[Any]:
    document.clear_cache()
    yield boto3.client("s3")
    document.clear_cache()


def _put_fleet(s3: Any, doc: dict[str, Any]) -> None:
    s3.put_object(Bucket=LOCATION.bucket, Key=LOCATION.key, Body=json.dumps(doc).encode())


def test_the_fleet_document_is_cached_then_re_read_only_when_it_changed(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a fleet document in S3 and a clock the cache follows
    now = [1000.0]
    monkeypatch.setattr(document, "_clock", lambda: now[0])
    gets = Calls(s3, "GetObject")
    _put_fleet(s3, {"version": 1, "clusters": [{"name": "a", "region": "us-east-1"}]})
    # when it is loaded twice within the TTL, once after it (unchanged), then after a change
    first = load_fleet(s3, LOCATION)
    cached = load_fleet(s3, LOCATION)
    now[0] += document.CACHE_TTL_SECONDS + 1
    unchanged = load_fleet(s3, LOCATION)
    gets_before_change = gets.count
    _put_fleet(s3, {"version": 1, "clusters": [{"name": "b", "region": "eu-west-1"}]})
    now[0] += document.CACHE_TTL_SECONDS + 1
    changed = load_fleet(s3, LOCATION)
    # then one GET within the TTL, a conditional GET answered 304 keeps the parsed fleet, a change is read
    assert cached is first
    assert unchanged is first
    assert gets_before_change == 2
    assert [c.id for c in first.clusters] == ["a"]
    assert [c.id for c in changed.clusters] == ["b"]
    assert changed.etag != first.etag


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (None, "NoSuchKey"),
        (b"x" * 2048, "more than 1024"),
        (b"{oops", "not JSON"),
    ],
)
def test_an_unusable_fleet_document_fails_the_read(s3: Any, body: bytes | None, reason: str) -> None:
    # given no document, one over the size bound, one not JSON
    if body is not None:
        s3.put_object(Bucket=LOCATION.bucket, Key=LOCATION.key, Body=body)
    # when / then: an error naming the document and why
    with pytest.raises(FleetDocumentError, match=rf"s3://{STATE_BUCKET}/config/fleet.json.*{reason}"):
        load_fleet(s3, LOCATION, max_bytes=1024)


def test_state_objects_are_listed_a_thousand_at_a_time(s3: Any) -> None:
    # given 1,001 state objects and other keys under and beside the prefix
    for i in range(1001):
        s3.put_object(Bucket=STATE_BUCKET, Key=f"{PREFIX}c{i:04d}.json", Body=b"x" * (i % 7))
    for key in (f"{PREFIX}nested/x.json", f"{PREFIX}notes.txt", "elsewhere/c0001.json"):
        s3.put_object(Bucket=STATE_BUCKET, Key=key, Body=b"{}")
    lists = Calls(s3, "ListObjectsV2")
    # when listed
    states = list_states(s3, STATE_BUCKET, PREFIX)
    # then every state object by id, with its size, in two calls
    assert lists.count == 2
    assert sorted(states) == [f"c{i:04d}" for i in range(1001)]
    assert states["c0005"].size == 5


@pytest.mark.timeout(180)
def test_estimates_and_health_from_states_the_collector_wrote(
    aws: str, eks: RunningFakeEks, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given the collector run three times (a minute apart for the stand-in) on clusters of 1, 12 and 34
    # nodes, an unreachable one and an Auto Mode one, states in moto's S3
    for key, value in {**eks.env(), "AWS_ENDPOINT_URL_S3": aws, "STATE_BUCKET": STATE_BUCKET,
                       "CLUSTER_NAMES": ",".join(COLLECTED)}.items():
        monkeypatch.setenv(key, value)
    clear_caches()
    settings = load_settings(os.environ)
    deps = build_deps(settings, session=boto3.Session())
    for _ in range(3):
        run_collection(settings, deps=deps, remaining_seconds=40)
        for cluster in ("tiny", "small", "medium"):
            eks.advance(cluster)
    written_by = time.time()
    # when the states are listed, and the fleet (the five, plus one never collected) is checked
    states = list_states(s3, STATE_BUCKET, settings.state_prefix)
    estimates = node_estimates([*COLLECTED, "new"], states)
    pods = {cluster: len(eks.truth(cluster)["pods"]) for cluster in ("tiny", "small", "medium")}
    doc = {"version": 1, "clusters": [{"name": c, "region": "us-east-1"} for c in [*COLLECTED, "new"]]}
    fleet = document.parse_fleet(json.dumps(doc).encode())
    resolution = Resolution(fleet, fleet.clusters, (), 0)
    newest = max(state.last_modified for state in states.values())
    fresh = fleet_health(resolution, now=newest + timedelta(seconds=5), period_seconds=60, states=states)
    later = fleet_health(resolution, now=newest + timedelta(minutes=10), period_seconds=60, states=states)
    # then each estimate is at least the cluster's aws-node pods and not twice as many (plus a few)
    for cluster, count in pods.items():
        assert count <= (estimates[cluster] or 0) <= 2 * count + 10, (cluster, count, estimates[cluster])
    assert estimates["new"] is None
    # and broken clusters still write their state every run: they are not stale, only the new one is missing
    assert {"gone", "auto"} <= set(states)
    assert (fresh.stale, fresh.never_collected) == ((), ("new",))
    assert later.stale == tuple(COLLECTED)
    assert newest.timestamp() <= written_by + 2
