"""collect_cluster against the fake EKS over HTTPS: one cluster per fault kind, 20% of its nodes faulty,
on both transports (the same assertions).

Every number is checked against the stand-in's truth endpoint: the healthy nodes' payloads as served,
their sums, and which pods were served at all.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from cni_metrics.adapters.eks_auth import ClusterTarget
from cni_metrics.adapters.scrape import DEFAULT_SCRAPE, TRANSPORTS, Transport
from cni_metrics.collector.cluster import ClusterCollection, collect_cluster
from cni_metrics.core.aggregate import aggregate
from cni_metrics.core.catalogue import FAMILIES
from fake_eks.testing import RunningFakeEks

pytestmark = pytest.mark.integration

NODES = 15
FAULTY = [0, 5, 10]  # 20% of the nodes
# fault kind -> failure class of the faulty nodes (None: still scraped; "skipped": not scraped at all)
EXPECTED: dict[str, str | None] = {
    "latency": None,
    "not_ready": None,
    "pending": "skipped",
    "hang": "timeout",
    "slow_drip": "timeout",
    "port_blocked": "unreachable",
    "reset": "unreachable",
    "throttle_429": "throttled",
    "error_500": "other",
    "truncated": "bad_payload",
    "garbage": "bad_payload",
    "invalid_utf8": "bad_payload",
    "html_error": "bad_payload",
    "huge": "too_large",
}
PARAMS: dict[str, dict[str, Any]] = {
    "latency": {"ms": 300, "jitter_ms": 100},
    "slow_drip": {"chunk": 64, "interval_s": 0.5},
    "throttle_429": {"retry_after": 1},
    "huge": {"mb": 12},
}
CONNECT_TIMEOUT = READ_TIMEOUT = 2.0
RETRIED = {"throttle_429", "port_blocked", "reset"}  # 429, 503 and connection errors: one retry


def _cluster(kind: str) -> str:
    return "f-" + kind.replace("_", "-")


SCENARIO = {
    "name": "fault-matrix",
    "seed": 11,
    "clusters": [
        {
            "name": _cluster(kind),
            "nodes": NODES,
            "instance_types": {"m5.large": 1, "c5.4xlarge": 1},
            "cni_shapes": {"modern": 2, "old": 1},
            "faults": {kind: {"nodes": FAULTY, **PARAMS.get(kind, {})}},
        }
        for kind in EXPECTED
    ],
}


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> Transport:
    """Each test runs on both transports."""
    value: Transport = request.param
    return value


def _collect(eks: RunningFakeEks, cluster: str, transport: Transport) -> tuple[ClusterCollection, float]:
    started = time.monotonic()
    scrape = replace(
        DEFAULT_SCRAPE, connect_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT, transport=transport
    )
    result = collect_cluster(
        ClusterTarget(cluster, eks.connection["region"]), scrape=scrape, deadline=started + 20
    )
    return result, time.monotonic() - started


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_healthy_nodes_match_truth_while_20_percent_fail(
    eks: RunningFakeEks, kind: str, transport: Transport
) -> None:
    # given a cluster where 3 of 15 nodes suffer this fault
    cluster = _cluster(kind)
    attempts_before = {p["uid"]: p["attempts"] for p in eks.truth(cluster)["pods"]}
    # when it is collected
    result, elapsed = _collect(eks, cluster, transport)
    truth = eks.truth(cluster)
    pods = {p["uid"]: p for p in truth["pods"]}
    served = {uid for uid, p in pods.items() if p["served"] is not None}
    faulty = {uid for uid, p in pods.items() if p["fault"]}
    # then exactly the pods the stand-in served are scraped, with the values it served
    assert result.status == "ok", result.error
    assert {n.key for n in result.nodes} == served
    for node in result.nodes:
        truth_pod = pods[node.key]
        assert node.name == truth_pod["name"]
        assert node.node_name == truth_pod["node"]
        assert node.restart_count == truth_pod["restartCount"]
        assert isinstance(node.started_at, datetime)
        for family, value in truth_pod["served"]["gauges"].items():
            assert _close(node.metrics.gauges[family], value), (node.name, family)
        for family, value in truth_pod["served"]["counters"].items():
            assert _close(node.metrics.counters[family], value), (node.name, family)
    # and the cluster gauges are the truth's sums over served pods
    metrics = {m.name: m.value for m in aggregate(result.nodes, None, now=datetime.now(UTC)).metrics}
    for family in FAMILIES:
        if family.kind == "gauge" and family.metric and family.name in truth["sums"]["gauges"]:
            assert _close(metrics[family.metric], truth["sums"]["gauges"][family.name]), family.name
    # and the faulty nodes are counted under their class, nothing else failed
    health = result.health
    expected = EXPECTED[kind]
    assert health.nodes_total == len(pods) == NODES
    assert health.nodes_total == health.nodes_scraped + health.nodes_failed + health.nodes_skipped
    if expected is None:
        assert health.nodes_scraped == NODES
        assert result.failed_keys == set()
    elif expected == "skipped":
        assert health.nodes_skipped == len(FAULTY)
        assert health.nodes_failed == 0
    else:
        assert health.failed_by_reason == {expected: len(FAULTY)}
        assert result.failed_keys == faulty
        assert {e.reason for e in result.node_errors} == {expected}
        assert {e.pod for e in result.node_errors} == {pods[uid]["name"] for uid in faulty}
    assert health.bytes_scraped > 0
    assert health.scrape_duration_ms > 0
    # and each pod was tried once, retryable failures twice, Pending pods never
    for uid, pod in pods.items():
        tries = pod["attempts"] - attempts_before[uid]
        expected_tries = 1 if uid not in faulty else {"pending": 0}.get(kind, 2 if kind in RETRIED else 1)
        assert tries == expected_tries, (pod["name"], pod["fault"])
    if kind == "throttle_429":
        assert elapsed >= 1.0, "Retry-After honoured before the one retry"
    assert elapsed < CONNECT_TIMEOUT + READ_TIMEOUT + 3


def test_health_metrics_use_the_published_names(eks: RunningFakeEks, transport: Transport) -> None:
    # given a collection with failures
    result, _ = _collect(eks, _cluster("error_500"), transport)
    # when its health is turned into metrics
    metrics = {m.name: (m.value, m.unit) for m in result.health.to_metrics()}
    # then the names and units are the catalogue's
    assert metrics["nodesTotal"] == (NODES, "Count")
    assert metrics["nodesScraped"] == (NODES - len(FAULTY), "Count")
    assert metrics["nodesFailed"] == (len(FAULTY), "Count")
    assert metrics["nodesSkipped"] == (0, "Count")
    assert metrics["scrapeDurationMs"][1] == "Milliseconds"
    assert metrics["bytesScraped"][1] == "Bytes"
