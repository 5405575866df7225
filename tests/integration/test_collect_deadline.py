"""Deadlines and discovery against the fake EKS: hanging nodes, pagination, throttled lists, empty clusters,
and the ``cni-metrics collect`` command as a process.

Hanging nodes run on both transports. The others stay on the default one: listing pods (pagination, a
throttled list, no aws-node pod) goes through the kubernetes client whatever the transport (the throttled
list is throttled once per stand-in, so a second run would not see it), and ``cni-metrics collect
--dry-run`` scrapes with the default transport."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import boto3
import pytest
from cni_metrics.adapters.eks_auth import ClusterTarget, TokenProvider, resolve_endpoint
from cni_metrics.adapters.kube import api_client, list_aws_node_pods
from cni_metrics.adapters.scrape import DEFAULT_SCRAPE, TRANSPORTS, Transport
from cni_metrics.collector.cluster import collect_cluster
from fake_eks.testing import RunningFakeEks

pytestmark = pytest.mark.integration

HANGING = list(range(0, 40, 4))  # 10 of 40 nodes never answer
DRIPPING = [1, 21]  # 2 send 64 bytes every 0.5 s
SCENARIO = {
    "name": "deadline",
    "seed": 8,
    "clusters": [
        {"name": "stuck", "nodes": 40, "faults": {"hang": HANGING, "slow_drip": DRIPPING}},
        {"name": "paged", "nodes": 23, "faults": {"pending": [4, 9]}},
        {"name": "throttled-list", "nodes": 5, "list_throttle": {"first": 1, "retry_after": 1}},
        {"name": "auto-mode", "nodes": 0},
    ],
}


def _target(eks: RunningFakeEks, name: str) -> ClusterTarget:
    return ClusterTarget(name, eks.connection["region"])


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_hanging_nodes_end_at_the_deadline(eks: RunningFakeEks, transport: Transport) -> None:
    # given a cluster where a quarter of the nodes hang, and read timeouts longer than the run
    budget = 2.5
    started = time.monotonic()
    # when it is collected with a 2.5 s deadline
    scrape = replace(DEFAULT_SCRAPE, read_timeout=60, transport=transport)
    result = collect_cluster(_target(eks, "stuck"), scrape=scrape, deadline=started + budget)
    elapsed = time.monotonic() - started
    # then it returns within the deadline plus one second, with the others scraped
    assert elapsed <= budget + 1.0
    assert result.status == "ok"
    truth = eks.truth("stuck")
    pods = {p["uid"]: p for p in truth["pods"]}
    healthy = {uid for uid, p in pods.items() if not p["fault"]}
    assert {n.key for n in result.nodes} == healthy
    assert result.health.failed_by_reason == {"timeout": len(HANGING) + len(DRIPPING)}
    assert result.failed_keys == set(pods) - healthy


def test_pods_are_listed_across_pages(eks: RunningFakeEks) -> None:
    # given a cluster of 23 aws-node pods, two of them Pending
    target = _target(eks, "paged")
    session = boto3.Session()
    tokens = TokenProvider(target, session)
    endpoint = resolve_endpoint(target, session)
    # when they are listed 5 at a time
    pods = list_aws_node_pods(api_client(endpoint.url, endpoint.ca_pem, tokens), tokens, "paged", page_size=5)
    # then every pod of the truth is there once, Pending ones not scrapable
    truth = eks.truth("paged")
    assert sorted(p.uid for p in pods) == sorted(p["uid"] for p in truth["pods"])
    pending = {p["uid"] for p in truth["pods"] if p["phase"] != "Running"}
    assert {p.uid for p in pods if not p.scrapable} == pending
    assert len(pending) == 2


def test_throttled_list_waits_and_succeeds(eks: RunningFakeEks) -> None:
    started = time.monotonic()
    result = collect_cluster(_target(eks, "throttled-list"), deadline=started + 15)
    assert result.status == "ok", result.error
    assert result.health.nodes_scraped == 5
    assert time.monotonic() - started >= 1.0, "Retry-After honoured"


def test_cluster_without_aws_node_pods_is_a_status_not_an_error(eks: RunningFakeEks) -> None:
    result = collect_cluster(_target(eks, "auto-mode"), deadline=time.monotonic() + 15)
    assert result.status == "no_aws_node_pods"
    assert result.error is None
    assert result.health.nodes_total == 0


def _cli(eks: RunningFakeEks, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **eks.env()}
    return subprocess.run(
        [str(Path(sys.executable).with_name("cni-metrics")), "collect", *args], env=env, capture_output=True,
        text=True, timeout=60, check=False,
    )


def test_cli_dry_run_prints_aggregate_and_health_and_exits_on_time(eks: RunningFakeEks) -> None:
    # given two clusters, one with hanging nodes
    started = time.monotonic()
    # when the command runs with a 3 s budget
    done = _cli(eks, "--cluster", "stuck", "--cluster", "paged", "--dry-run", "--format", "json",
                "--timeout", "3")
    elapsed = time.monotonic() - started
    # then it exits on time (stuck scrapes do not hold the process) and prints both clusters
    assert done.returncode == 0, done.stderr
    assert elapsed < 3 + 6, "interpreter start-up plus the budget, no waiting for stuck threads"
    doc = {c["cluster"]: c for c in json.loads(done.stdout)["clusters"]}
    assert doc["stuck"]["health"]["nodesFailedByReason"] == {"timeout": len(HANGING) + len(DRIPPING)}
    assert doc["paged"]["health"]["nodesSkipped"] == 2
    truth = eks.truth("paged")
    assert doc["paged"]["metrics"]["assignIPAddresses"] == pytest.approx(
        truth["sums"]["gauges"]["awscni_assigned_ip_addresses"]
    )
    assert "k8s-aws-v1." not in done.stdout + done.stderr

