"""Capacity numbers end to end: EKS stand-in + moto (S3, CloudWatch, EC2 subnets and ENIs) over HTTP.

Every number is checked against an independent truth: subnet headroom against moto's DescribeSubnets,
per-zone sums and the nodes nearest exhaustion against the stand-in's record of what each node served,
and the time-to-exhaustion estimate against the time the draining scenario actually runs out.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import os
import socket
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from cni_metrics.adapters import eks_auth
from cni_metrics.adapters.eks_auth import ClusterTarget
from cni_metrics.adapters.scrape import DEFAULT_SCRAPE
from cni_metrics.capacity.core import TOP_K
from cni_metrics.collector.cluster import ClusterCollection, collect_cluster
from cni_metrics.collector.job import Deps, run_collection
from cni_metrics.collector.settings import ClusterSpec, load_settings
from cni_metrics.collector.wiring import build_deps
from cni_metrics.core.catalogue import CAPACITY_LOG_MESSAGE
from fake_eks.network import MotoNetwork

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch.type_defs import DimensionTypeDef

pytestmark = pytest.mark.integration

STATE_BUCKET = "cni-metrics-test-state"
ZONES = ["us-east-1a", "us-east-1b", "us-east-1c"]
SCENARIO: dict[str, Any] = {
    "name": "capacity-it",
    "seed": 5,
    "churn": {"restart": 0, "leave": 0, "join": 0},
    "clusters": [
        {
            "name": "cap-custom",
            "nodes": 14,
            "instance_types": {"t3.medium": 1, "m5.large": 1, "m5.xlarge": 1},
            "zones": ZONES,
            "faults": {"error_500": [4]},
            "network": {"cidr": "10.1.0.0/16", "subnet_prefix": 22, "custom_networking": True},
        },
        {
            "name": "cap-plain",
            "nodes": 5,
            "prefix_delegation": 0.5,
            "zones": ZONES[:2],
            "network": {"cidr": "10.2.0.0/16", "subnet_prefix": 24},
        },
    ],
}
SERVED = ("awscni_assigned_ip_addresses", "awscni_total_ip_addresses", "awscni_ip_max")


@pytest.fixture
def env(aws: str, monkeypatch: pytest.MonkeyPatch) -> Callable[[Any, list[str]], Any]:
    """Point the collector at the stand-in and at moto (EC2 included) for the given clusters."""

    def point(eks: Any, clusters: list[str]) -> Any:
        eks_auth.clear_caches()
        for key, value in eks.env().items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("AWS_ENDPOINT_URL_EC2", aws)
        for key, value in {
            "CLUSTER_NAMES": ",".join(clusters), "STATE_BUCKET": STATE_BUCKET,
            "PUBLISH_MODE": "putmetricdata", "CONNECT_TIMEOUT_SECONDS": "2", "READ_TIMEOUT_SECONDS": "10",
            "METRIC_SET": "full",  # per-zone and per-subnet capacity datums
        }.items():
            monkeypatch.setenv(key, value)
        return load_settings(os.environ)

    return point


@pytest.fixture
def capacity_logs(caplog: pytest.LogCaptureFixture) -> Callable[[str], list[dict[str, Any]]]:
    """The collector's capacity log records of a cluster, oldest first."""
    caplog.set_level(logging.INFO, logger="cni_metrics.collector.batch")

    def records(cluster: str) -> list[dict[str, Any]]:
        return [
            {"capacity": r.__dict__["capacity"], "nearest": r.__dict__["nearest"]}
            for r in caplog.records
            if r.getMessage() == CAPACITY_LOG_MESSAGE and r.__dict__.get("cluster") == cluster
        ]

    return records


def latest(cluster: str, name: str, dimensions: dict[str, str], at: datetime) -> float | None:
    """The value published for ``at`` (moto's CloudWatch), None when there is none."""
    dims: list[DimensionTypeDef] = [{"Name": "CLUSTER_ID", "Value": cluster}]
    dims += [{"Name": k, "Value": v} for k, v in dimensions.items()]
    points = boto3.client("cloudwatch").get_metric_statistics(
        Namespace="Kubernetes", MetricName=name, Dimensions=dims, StartTime=at - timedelta(seconds=1),
        EndTime=at + timedelta(seconds=2), Period=1, Statistics=["Maximum"],
    )["Datapoints"]
    return max(p["Maximum"] for p in points) if points else None


def served_nodes(eks: Any, cluster: str) -> list[dict[str, Any]]:
    """Pods whose last serve happened, with their zone, instance type and served pool gauges."""
    return [p for p in eks.truth(cluster)["pods"] if p["served"] is not None and p["fault"] is None]


def test_headroom_zones_and_nearest_nodes_match_moto_and_the_stand_in(
    env: Callable[[Any, list[str]], Any],
    fake_eks_factory: Callable[..., Any],
    capacity_logs: Callable[[str], list[dict[str, Any]]],
) -> None:
    # given two clusters with their subnets in moto (one with custom networking: ENIConfig pod subnets)
    eks = fake_eks_factory(SCENARIO)
    clusters = ["cap-custom", "cap-plain"]
    settings = env(eks, clusters)
    ec2 = boto3.client("ec2")
    network = MotoNetwork(eks, ec2)
    attached = {c: network.provision(c) for c in clusters}
    # when the collector runs once
    summary = run_collection(settings, deps=build_deps(settings), remaining_seconds=55)
    # then
    assert [c.status for c in summary.clusters] == ["ok", "ok"]
    for outcome in summary.clusters:
        cluster, at = outcome.cluster, datetime.fromisoformat(str(outcome.collected_at))
        ids = attached[cluster]["subnetIds"] + sorted(attached[cluster]["eniconfigs"].values())
        moto = ec2.describe_subnets(SubnetIds=ids)["Subnets"]
        assert len(moto) == (6 if cluster == "cap-custom" else 2)
        # subnet headroom per (cluster, subnet, zone) equals what moto reports; the minimum too
        for subnet in moto:
            dims = {"SubnetId": subnet["SubnetId"], "AvailabilityZone": subnet["AvailabilityZone"]}
            published = latest(cluster, "availableSubnetIPAddresses", dims, at)
            assert published == subnet["AvailableIpAddressCount"]
        smallest = min(s["AvailableIpAddressCount"] for s in moto)
        assert latest(cluster, "minSubnetAvailableIPAddresses", {}, at) == smallest
        # per-zone sums equal the stand-in's served gauges summed by the zone of each node
        truth: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for pod in served_nodes(eks, cluster):
            for family in SERVED:
                truth[pod["zone"]][family] += pod["served"]["gauges"][family]
        assert sorted(truth) == sorted(SCENARIO["clusters"][clusters.index(cluster)]["zones"])
        for zone, sums in truth.items():
            dims = {"AvailabilityZone": zone}
            assert latest(cluster, "zoneAssignIPAddresses", dims, at) == sums["awscni_assigned_ip_addresses"]
            assert latest(cluster, "zoneTotalIPAddresses", dims, at) == sums["awscni_total_ip_addresses"]
            assert latest(cluster, "zoneMaxIPAddresses", dims, at) == sums["awscni_ip_max"]
    # and the one log record per cluster names the nodes nearest exhaustion, in order
    for cluster in clusters:
        [record] = capacity_logs(cluster)
        pods = served_nodes(eks, cluster)

        def key(pod: dict[str, Any]) -> tuple[float, float, str]:
            gauges = pod["served"]["gauges"]
            assigned, maximum = gauges["awscni_assigned_ip_addresses"], gauges["awscni_ip_max"]
            return (-assigned / maximum, maximum - assigned, pod["node"])

        expected = [p["node"] for p in sorted(pods, key=key)[:TOP_K]]
        top = record["capacity"]["topNodes"]
        assert [n["node"] for n in top] == expected
        by_node = {p["node"]: p for p in pods}
        for entry in top:
            pod = by_node[entry["node"]]
            assert entry["zone"] == pod["zone"]
            assert entry["instanceType"] == pod["instanceType"]
            assert entry["assigned"] == pod["served"]["gauges"]["awscni_assigned_ip_addresses"]
            assert entry["max"] == pod["served"]["gauges"]["awscni_ip_max"]
        assert record["nearest"].startswith(expected[0])
    assert len(capacity_logs("cap-custom")[0]["capacity"]["topNodes"]) == TOP_K  # 13 served nodes, K shown


def test_time_to_exhaustion_on_the_draining_scenario_is_within_20_percent(
    env: Callable[[Any, list[str]], Any], fake_eks_factory: Callable[..., Any]
) -> None:
    # given the draining scenario: 4 nodes gaining 2 IPs each per minute, pods drawing from one /25 subnet
    eks = fake_eks_factory("drain")
    settings = env(eks, ["drain"])
    ec2 = boto3.client("ec2")
    network = MotoNetwork(eks, ec2)
    attached = network.provision("drain")
    [pod_subnet] = attached["eniconfigs"].values()
    cidr = ec2.describe_subnets(SubnetIds=[pod_subnet])["Subnets"][0]["CidrBlock"]
    nodes = len(eks.truth("drain")["pods"])
    # pods can use the subnet's addresses minus AWS's 5 and one primary address per pod ENI
    capacity = ipaddress.ip_network(cidr).num_addresses - 5 - nodes
    # and a collector on a simulated one-minute schedule
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=40)
    deps = build_deps(settings)
    minute = 0

    def scheduled(spec: ClusterSpec, deadline: float) -> ClusterCollection:
        collection = deps.collect(spec, deadline)
        return dataclasses.replace(collection, collected_at=start + timedelta(minutes=minute))

    simulated = Deps(deps.store, deps.publisher, scheduled)
    estimates: dict[int, float | None] = {}
    exhausted_at = None
    # when it runs every minute until the pods' assigned IPs reach what the subnet can give
    while exhausted_at is None:
        assert minute < 40
        if minute:
            eks.advance("drain")
            network.sync("drain")
        summary = run_collection(settings, deps=simulated, remaining_seconds=55)
        assert summary.clusters[0].status == "ok"
        at = start + timedelta(minutes=minute)
        estimates[minute] = latest("drain", "hoursToIPExhaustion", {}, at)
        assigned = sum(p["pool"]["assigned"] for p in eks.truth("drain")["pods"])
        if assigned >= capacity:
            exhausted_at = minute
        minute += 1
    # then there is no estimate before five points of history, and from then on each lands within 20%
    # (up to 3 minutes before the end: from there the stand-in's nodes hold more warm IPs than the subnet has)
    assert all(estimates[m] is None for m in range(4))
    checked = list(range(4, exhausted_at - 2))
    assert len(checked) >= 5
    for m in checked:
        estimate, actual = estimates[m], (exhausted_at - m) / 60.0
        assert estimate is not None
        assert abs(estimate - actual) <= 0.2 * actual, (m, estimate * 60, actual * 60)


def test_missing_capacity_permissions_cost_only_their_numbers(
    env: Callable[[Any, list[str]], Any],
    fake_eks_factory: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="cni_metrics.collector.cluster")
    # given a cluster whose RBAC allows the scrape but not listing nodes or ENIConfigs
    rules = [
        {"verbs": ["list"], "resources": ["pods"], "namespaces": ["kube-system"]},
        {"verbs": ["get"], "resources": ["pods/proxy"], "namespaces": ["kube-system"]},
    ]
    scenario = {"name": "narrow", "clusters": [{"name": "narrow", "nodes": 3}],
                "groups": {"cni-metrics": rules}}
    eks = fake_eks_factory(scenario)
    settings = env(eks, ["narrow"])
    MotoNetwork(eks, boto3.client("ec2")).provision("narrow")
    # when the collector runs
    summary = run_collection(settings, deps=build_deps(settings), remaining_seconds=55)
    # then the cluster is ok with its gauges and subnet headroom, but without zone numbers
    [outcome] = summary.clusters
    at = datetime.fromisoformat(str(outcome.collected_at))
    assert (outcome.status, outcome.nodes) == ("ok", 3)
    assert latest("narrow", "assignIPAddresses", {}, at) is not None
    assert latest("narrow", "minSubnetAvailableIPAddresses", {}, at) is not None
    listed = boto3.client("cloudwatch").list_metrics(Namespace="Kubernetes")["Metrics"]
    assert not any(metric["MetricName"].startswith("zone") for metric in listed)
    # and each missing part is named in a warning
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("capacity numbers incomplete: listing nodes: HTTP 403" in w for w in warnings)
    assert any("capacity numbers incomplete: listing ENIConfigs: HTTP 403" in w for w in warnings)


def test_a_hanging_ec2_api_delays_the_collection_by_one_read_timeout_at_most(
    env: Callable[[Any, list[str]], Any],
    fake_eks_factory: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given an EC2 endpoint that accepts connections and never answers
    eks = fake_eks_factory({"name": "slow-ec2", "clusters": [{"name": "slow", "nodes": 3}]})
    env(eks, ["slow"])
    with socket.socket() as hole:
        hole.bind(("127.0.0.1", 0))
        hole.listen(16)
        monkeypatch.setenv("AWS_ENDPOINT_URL_EC2", f"http://127.0.0.1:{hole.getsockname()[1]}")
        # when one cluster is collected with a 1 s read timeout and a 20 s deadline
        started = time.monotonic()
        target = ClusterTarget("slow", "us-east-1")
        scrape = replace(DEFAULT_SCRAPE, read_timeout=1.0)
        collection = collect_cluster(target, scrape=scrape, deadline=started + 20)
        elapsed = time.monotonic() - started
    # then every node is scraped, with its zone, and the collection waited about one read timeout more
    assert (collection.status, len(collection.nodes)) == ("ok", 3)
    assert all(node.zone for node in collection.nodes)
    assert elapsed < 5
    assert collection.capacity is not None
    assert collection.capacity.subnets is None
    assert collection.capacity.errors == ["not all read in time (slow API)"]
