"""Every AWS call of a run ends by the run's deadline: S3, CloudWatch, EKS (discovery, DescribeCluster) and
STS (AssumeRole) pointed, one at a time, at a loopback server that accepts connections and never answers.

A run with ``remaining_seconds=R`` must return within R + 1 s (botocore's defaults would wait 60 s per
attempt, up to 5 attempts), reporting the failed step; a hung CloudWatch leaves the batch in the outbox.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from cni_metrics.adapters.eks_auth import clear_caches
from cni_metrics.collector.job import RunSummary, run_collection
from cni_metrics.collector.settings import load_settings
from cni_metrics.collector.wiring import build_deps
from fake_eks.testing import RunningFakeEks

pytestmark = pytest.mark.integration

STATE_BUCKET = "cni-metrics-test-state"
REMAINING = 6.0
SCENARIO = {"name": "bound", "seed": 3, "clusters": [{"name": "bound-a", "nodes": 3}]}


@pytest.fixture
def black_hole() -> Iterator[str]:
    """``http://127.0.0.1:port`` of a server that accepts every connection, reads, and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            held.append(conn)
            threading.Thread(target=lambda c=conn: _drain(c), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()
    for conn in held:
        conn.close()


def _drain(conn: socket.socket) -> None:
    try:
        while conn.recv(65536):
            pass
    except OSError:
        return


def _run(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> tuple[RunSummary, float]:
    """One run of the production wiring with ``REMAINING`` seconds left; (summary, seconds it took)."""
    clear_caches()
    base = {"STATE_BUCKET": STATE_BUCKET, "PUBLISH_MODE": "putmetricdata", "PUBLISH_MARGIN_SECONDS": "3",
            "CONNECT_TIMEOUT_SECONDS": "1", "READ_TIMEOUT_SECONDS": "2"}
    for key, value in {**base, **env}.items():
        monkeypatch.setenv(key, value)
    settings = load_settings(os.environ)
    deps = build_deps(settings)
    started = time.monotonic()
    summary = run_collection(settings, deps=deps, remaining_seconds=REMAINING)
    return summary, time.monotonic() - started


@pytest.mark.timeout(60)
def test_state_store_that_never_answers_costs_no_more_than_the_run(
    aws: str, black_hole: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given S3 accepting connections and never answering
    # when a run with 6 s left processes a cluster
    summary, elapsed = _run(monkeypatch, {"AWS_ENDPOINT_URL_S3": black_hole, "CLUSTER_NAMES": "hole-s3"})
    # then it returns within its deadline plus a second, the cluster failing on the state read
    assert elapsed <= REMAINING + 1.0
    (outcome,) = summary.clusters
    assert outcome.status == "error"
    assert "s3://" in (outcome.error or "")


@pytest.mark.timeout(60)
def test_cloudwatch_that_never_answers_leaves_the_batch_pending_by_the_deadline(
    aws: str, black_hole: str, eks: RunningFakeEks, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a cluster of the stand-in, S3 in moto, and CloudWatch accepting connections, never answering
    env = {**eks.env(), "AWS_ENDPOINT_URL_S3": aws, "AWS_ENDPOINT_URL_CLOUDWATCH": black_hole,
           "CLUSTER_NAMES": "bound-a"}
    # when a run with 6 s left collects and publishes it
    summary, elapsed = _run(monkeypatch, env)
    # then it returns within its deadline plus a second; nothing was published and the batch is still in
    # the stored outbox for a later run
    assert elapsed <= REMAINING + 1.0
    (outcome,) = summary.clusters
    assert (outcome.nodes, outcome.published) == (3, 0)
    assert outcome.pending > 0
    key = f"cni-metrics/state/{outcome.cluster}.json"
    body = boto3.client("s3", endpoint_url=aws).get_object(Bucket=STATE_BUCKET, Key=key)["Body"].read()
    stored = json.loads(body)
    assert sum(len(entry["metrics"]) for entry in stored["outbox"]) == outcome.pending


@pytest.mark.timeout(60)
def test_eks_that_never_answers_bounds_describe_cluster(
    aws: str, black_hole: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given the EKS API (DescribeCluster, to sign in) never answering
    env = {"AWS_ENDPOINT_URL_EKS": black_hole, "CLUSTER_NAMES": "hole-eks"}
    # when a run with 6 s left signs in to the configured cluster
    summary, elapsed = _run(monkeypatch, env)
    # then it returns within its deadline plus a second, the cluster failing on DescribeCluster
    assert elapsed <= REMAINING + 1.0
    (outcome,) = summary.clusters
    assert outcome.status == "error"
    assert "DescribeCluster" in (outcome.error or "")


@pytest.mark.timeout(60)
def test_eks_that_never_answers_bounds_tag_discovery(
    aws: str, black_hole: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given the EKS API (ListClusters, for discovery by tag) never answering
    env = {"AWS_ENDPOINT_URL_EKS": black_hole, "CLUSTER_NAMES": "", "CLUSTER_DISCOVERY_TAG": "cni-metrics=on"}
    # when a run with 6 s left discovers clusters
    summary, elapsed = _run(monkeypatch, env)
    # then it returns within its deadline plus a second, discovery reported as failed
    assert elapsed <= REMAINING + 1.0
    assert [(outcome.cluster, outcome.status) for outcome in summary.clusters] == [("(discovery)", "error")]


@pytest.mark.timeout(60)
def test_sts_that_never_answers_bounds_assume_role(
    aws: str, black_hole: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a cluster reached through a role, and STS never answering AssumeRole
    role = "arn:aws:iam::123456789012:role/cni-metrics-reader"
    env = {"AWS_ENDPOINT_URL_STS": black_hole, "AWS_ENDPOINT_URL_EKS": black_hole,
           "CLUSTERS_JSON": json.dumps([{"name": "hole-sts", "role_arn": role}])}
    # when a run with 6 s left signs in to it
    summary, elapsed = _run(monkeypatch, env)
    # then it returns within its deadline plus a second, the cluster failing on AssumeRole
    assert elapsed <= REMAINING + 1.0
    (outcome,) = summary.clusters
    assert outcome.status == "error"
    assert "AssumeRole" in (outcome.error or "")


@pytest.mark.timeout(120)
def test_throttled_cloudwatch_is_not_retried_past_the_deadline(
    aws: str, cloudwatch_proxy: Any, eks: RunningFakeEks, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given CloudWatch throttling every call, and up to 20 attempts per call (botocore backs off up to 20 s)
    cloudwatch_proxy.fail_next("throttle", 1000)
    env = {**eks.env(), "AWS_ENDPOINT_URL_S3": aws, "AWS_ENDPOINT_URL_CLOUDWATCH": cloudwatch_proxy.url,
           "CLUSTER_NAMES": "bound-a", "PUBLISH_MAX_ATTEMPTS": "20"}
    # when a run with 6 s left publishes
    summary, elapsed = _run(monkeypatch, env)
    # then botocore retried while a retry could still end in time, and the run returned by its deadline
    assert elapsed <= REMAINING + 1.0
    (outcome,) = summary.clusters
    assert outcome.published == 0
    assert outcome.pending > 0
    assert len(cloudwatch_proxy.calls) >= 2
