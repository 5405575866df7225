"""A state write whose response is lost: S3 committed it, the client never heard (issue 14, item 2).

A proxy in front of moto's S3 forwards one chosen PutObject to moto and then closes the client's
connection without answering. botocore retries the write and meets its own commit as a changed ETag
(412). The collector must recognise its own write and go on: every cycle's gauges and every counter
increase reach CloudWatch (moto, through the measuring proxy) exactly, and nothing stays in the outbox.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import boto3
import pytest
from cni_demo.truth import COUNTERS, TruthTracker
from cni_metrics.adapters import eks_auth
from cni_metrics.collector.job import ClusterOutcome, run_collection
from cni_metrics.collector.settings import load_settings
from cni_metrics.collector.wiring import build_deps
from conftest import STATE_BUCKET
from harness import ProxyHandler, collector_settings, proxying, set_env

pytestmark = pytest.mark.integration

CLUSTER = "lost-alpha"
SCENARIO: dict[str, Any] = {
    "name": "claim-lost-response",
    "seed": 5,
    "churn": {"restart": 0.1, "leave": 0.05, "join": 0.05},
    "clusters": [{"name": CLUSTER, "nodes": 6}],
}
Rule = Callable[[dict[str, Any]], bool]
"""Which state document (the PUT's JSON body) is the write whose response gets lost."""


def is_claim(document: dict[str, Any]) -> bool:
    """The claim: the write that first puts the run's own batch in the outbox."""
    return any(entry["owner"] == document["writer"] for entry in document["outbox"])


def is_lease(document: dict[str, Any]) -> bool:
    """The collection lease taken before scraping."""
    lease = document.get("lease") or {}
    return bool(lease.get("owner") == document["writer"])


def accepted(proxy: Any) -> dict[int, dict[str, list[float]]]:
    """Cluster-level datums CloudWatch accepted, by timestamp second -> name -> values."""
    out: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for call in proxy.delivered:
        for datum in call.datums:
            if len(datum["Dimensions"]) == 1:  # not a per-zone or per-subnet series
                out[math.floor(float(datum["Timestamp"]))][datum["MetricName"]].append(datum["Value"])
    return out


def wait_for_the_next_second(outcome: ClusterOutcome) -> None:
    """Cycles are told apart by the whole second of their timestamps."""
    collected = datetime.fromisoformat(str(outcome.collected_at)).timestamp()
    time.sleep(max(0.0, math.floor(collected) + 1.02 - time.time()))


@dataclass
class LosingS3Proxy:
    """Forwards everything to moto; the armed rule's next matching PUT is forwarded, then the client's
    connection is closed unanswered. ``settle_after_claim``: lose instead the writer's next PUT after
    its claim (the settle)."""

    upstream: str
    url: str = ""
    rule: Rule | None = None
    settle_after_claim: bool = False
    claimed_by: str | None = None
    lost: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # moto's answers to state PUTs, in order
    lock: threading.Lock = field(default_factory=threading.Lock)

    def arm(self, rule: Rule, *, settle_after_claim: bool = False) -> None:
        with self.lock:
            self.rule, self.settle_after_claim, self.claimed_by = rule, settle_after_claim, None

    def loses(self, document: dict[str, Any]) -> bool:
        """Whether this PUT's answer is lost (at most once per arming)."""
        with self.lock:
            if self.rule is None:
                return False
            if self.settle_after_claim and self.claimed_by is None:
                if self.rule(document):
                    self.claimed_by = document["writer"]
                return False
            if self.claimed_by is not None and document["writer"] != self.claimed_by:
                return False
            if self.claimed_by is None and not self.rule(document):
                return False
            self.rule = None
            self.lost.append(document)
            return True


def _handler(proxy: LosingS3Proxy) -> type[ProxyHandler]:
    class Handler(ProxyHandler):
        upstream = proxy.upstream

        def _forward(self) -> None:
            body = self.read_body()
            status, headers, data = self.fetch(body, timeout=30)
            state_put = self.command == "PUT" and self.path.split("?")[0].endswith(".json")
            if state_put:
                with proxy.lock:
                    proxy.statuses.append(status)
            if state_put and status == 200 and proxy.loses(json.loads(body)):
                # S3 committed the write; the client hears nothing and its connection is closed
                self.close_connection = True
                return
            self.answer(status, headers, data)

        do_GET = _forward
        do_PUT = _forward
        do_POST = _forward
        do_HEAD = _forward
        do_DELETE = _forward

    return Handler


@pytest.fixture
def s3_proxy(aws: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[LosingS3Proxy]:
    """The losing proxy in front of moto's S3, set as AWS_ENDPOINT_URL_S3."""
    proxy = LosingS3Proxy(aws)
    with proxying(monkeypatch, "AWS_ENDPOINT_URL_S3", _handler(proxy)) as proxy.url:
        yield proxy


@pytest.fixture
def stand_in(aws: str, fake_eks_factory: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> Any:
    """The scenario's stand-in; the collector's environment points at it and at moto."""
    eks = fake_eks_factory(SCENARIO)
    set_env(monkeypatch, {
        **eks.env(),
        **collector_settings(CLUSTER_NAMES=CLUSTER, CONNECT_TIMEOUT_SECONDS="3", READ_TIMEOUT_SECONDS="5"),
    })
    eks_auth.clear_caches()
    return eks


@pytest.mark.parametrize(
    ("lost", "rule", "settle_after_claim"),
    [("claim", is_claim, False), ("settle", is_claim, True), ("lease", is_lease, False)],
)
def test_a_state_write_whose_response_is_lost_is_recognised_and_nothing_is_lost(
    stand_in: Any, s3_proxy: LosingS3Proxy, cloudwatch_proxy: Any, lost: str, rule: Rule,
    settle_after_claim: bool,
) -> None:
    # given the stand-in, the collector's production wiring (S3 through the proxy) and the truth
    settings = load_settings(os.environ)
    deps = build_deps(settings)
    truth = TruthTracker(stand_in, [CLUSTER])
    expected_gauges: dict[int, dict[str, float]] = {}
    outcomes: list[ClusterOutcome] = []
    for cycle in range(5):
        if cycle == 2:
            # when the response to one state write of this cycle's run is lost after S3 committed it
            s3_proxy.arm(rule, settle_after_claim=settle_after_claim)
        (outcome,) = run_collection(settings, deps=deps, remaining_seconds=55).clusters
        outcomes.append(outcome)
        collected = datetime.fromisoformat(str(outcome.collected_at)).timestamp()
        expected_gauges[math.floor(collected)] = truth.observe(CLUSTER)
        if cycle == 0:
            truth.start_counting()
        stand_in.advance(CLUSTER)
        wait_for_the_next_second(outcome)

    # then the write was lost once and botocore's retry met it as a changed ETag
    assert len(s3_proxy.lost) == 1, lost
    assert 412 in s3_proxy.statuses
    # and every cycle's gauges reached CloudWatch once, equal to what the pods served
    delivered = accepted(cloudwatch_proxy)
    assert set(delivered) == set(expected_gauges)
    for at, gauges in expected_gauges.items():
        published: dict[str, Any] = {name: delivered[at].get(name) for name in gauges}
        assert published == {name: [pytest.approx(value)] for name, value in gauges.items()}, at
    # and the counter increases CloudWatch accepted equal the pods' true increments
    expected = truth.increases(CLUSTER)
    assert sum(expected.values()) > 0
    sums = {name: sum(sum(cycle.get(name, [])) for cycle in delivered.values()) for name in COUNTERS.values()}
    assert sums == pytest.approx(expected)
    # and the stored document holds no batch: nothing waits, nothing was dropped
    stored = boto3.client("s3").get_object(Bucket=STATE_BUCKET, Key=f"cni-metrics/state/{CLUSTER}.json")
    assert json.loads(stored["Body"].read())["outbox"] == []
    # and the run recognised its own write: it published and settled like any other
    assert [(o.status, o.pending) for o in outcomes] == [("ok", 0)] * 5
    assert [o.state for o in outcomes] == ["created"] + ["updated"] * 4
