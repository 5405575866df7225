"""Each metric set against the EKS stand-in's ``demo`` scenario and moto's CloudWatch (PutMetricData).

Each set runs the collector handler for the same cycles on a fresh ``demo`` stand-in (seeded: every run
sees the same pods, payloads, faults and churn) with its subnets in moto; the series (metric name and
dimensions) moto's CloudWatch received are then read back with ListMetrics. ``full`` shows what the
scenario can produce; every set must publish exactly its part of that, compat exactly the upstream
helper's names that the stand-in's aws-node pods served, standard only ``CLUSTER_ID`` series. One more
cycle in ``emf`` mode measures the EMF bytes (CloudWatch Logs ingestion) per cluster and run. The series
counts and EMF sizes per cluster are the README's cost table's; the test prints them.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from cni_metrics.adapters import eks_auth
from cni_metrics.core import catalogue
from cni_metrics.core.metric_sets import ALWAYS, COMPAT, SETS, STANDARD, MetricSet
from fake_eks.network import MotoNetwork
from harness import collector_settings, set_env
from lambda_app import LambdaContext, load_app

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
SCHEDULED = json.loads((ROOT / "events" / "scheduled.json").read_text())
# Cycles per set: counters and the latency average from the second, hoursToIPExhaustion from the fifth
# (five points of history and a rising trend).
CYCLES = 6
# What the upstream cni-metrics-helper publishes (REFERENCE.md §2: its gauges, awsAPILatency, counters).
UPSTREAM = {
    "assignIPAddresses", "totalIPAddresses", "totalIPv4Prefixes", "totalAssignedIPv4sPerCidr",
    "eniAllocated", "eniMaxAvailable", "maxIPAddresses", "ipamdActionInProgress", "awsAPILatency",
    "awsAPIErr", "awsUtilErr", "ipamdErr", "forceRemoveENI", "forceRemoveIPs", "reconcileCount",
    "addReqCount", "delReqCount", "podENIErr", "ec2ApiReqCount", "ec2ApiErrCount",
}
Series = tuple[str, tuple[tuple[str, str], ...]]
"""A metric name and its dimensions besides CLUSTER_ID (sorted): one billed custom metric."""


def load_handler() -> ModuleType:
    """The collector handler freshly imported, as a cold start (no cached clients, endpoints or tokens)."""
    eks_auth.clear_caches()
    return load_app("collector")


class SetRun:
    """What one set's run published (per cluster) and what the stand-in served meanwhile."""

    def __init__(self) -> None:
        self.series: dict[str, set[Series]] = {}
        self.served_families: dict[str, set[str]] = defaultdict(set)
        self.served_p99: dict[str, bool] = defaultdict(bool)
        self.statuses: list[str] = []
        self.emf_bytes: dict[str, int] = defaultdict(int)


def received_series(namespace: str) -> dict[str, set[Series]]:
    """Every series moto's CloudWatch holds in ``namespace``, by cluster (ListMetrics)."""
    out: dict[str, set[Series]] = defaultdict(set)
    for page in boto3.client("cloudwatch").get_paginator("list_metrics").paginate(Namespace=namespace):
        for metric in page["Metrics"]:
            dims = {d["Name"]: d["Value"] for d in metric.get("Dimensions", [])}
            cluster = dims.pop(catalogue.DIMENSION)
            out[cluster].add((metric["MetricName"], tuple(sorted(dims.items()))))
    return out


def emf_bytes(printed: str) -> dict[str, int]:
    """Bytes of the EMF documents (stdout lines, as Lambda sends them to CloudWatch Logs) by cluster."""
    out: dict[str, int] = defaultdict(int)
    for line in printed.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            out[json.loads(line)[catalogue.DIMENSION]] += len(line.encode()) + 1
    return out


@pytest.fixture
def run_set(
    aws: str,
    fake_eks_factory: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Callable[[MetricSet], SetRun]:
    """Run CYCLES scheduled invocations with METRIC_SET on a fresh demo stand-in, each set in its own
    namespace and state prefix of the one moto, then one in emf mode (its EMF bytes measured)."""

    def run(metric_set: MetricSet) -> SetRun:
        eks = fake_eks_factory("demo")
        clusters = eks.clusters
        set_env(monkeypatch, {
            **eks.env(),
            "AWS_ENDPOINT_URL_EC2": aws,
            **collector_settings(
                CLUSTER_NAMES=",".join(clusters),
                STATE_PREFIX=f"{metric_set}/",
                METRICS_NAMESPACE=f"CniMetricSets/{metric_set}",
                METRIC_SET=metric_set,
                CONNECT_TIMEOUT_SECONDS="3",
                READ_TIMEOUT_SECONDS="3",
            ),
        })
        network = MotoNetwork(eks, boto3.client("ec2"))
        for cluster in clusters:
            network.provision(cluster)
        handler = load_handler()
        result = SetRun()
        for cycle in range(CYCLES):
            outcome = handler.lambda_handler(SCHEDULED, LambdaContext())
            result.statuses += [c["status"] for c in outcome["clusters"]]
            for cluster in clusters:
                for pod in eks.truth(cluster)["pods"]:
                    served = pod["served"]
                    if served is not None and pod["fault"] is None:
                        result.served_families[cluster] |= set(served["gauges"]) | set(served["counters"])
                        result.served_p99[cluster] |= served["p99_max"] is not None
                if cycle < CYCLES - 1:
                    eks.advance(cluster)
                    network.sync(cluster)
        result.series = received_series(os.environ["METRICS_NAMESPACE"])
        monkeypatch.setenv("PUBLISH_MODE", "emf")
        capsys.readouterr()
        handler.lambda_handler(SCHEDULED, LambdaContext())
        result.emf_bytes = emf_bytes(capsys.readouterr().out)
        return result

    return run


def test_each_set_publishes_exactly_its_part_of_what_the_demo_scenario_produces(
    run_set: Callable[[MetricSet], SetRun], capsys: pytest.CaptureFixture[str]
) -> None:
    # given the demo scenario collected with every metric published, then with each set
    names: tuple[MetricSet, ...] = ("full", "standard", "compat")
    runs = {name: run_set(name) for name in names}
    full = runs["full"]
    clusters = sorted(full.series)
    assert clusters == ["demo-legacy", "demo-prod", "demo-staging"]
    for name, run in runs.items():
        assert set(run.statuses) == {"ok"}, name
        # when the series each set's run sent are compared with what full sent for the same scenario
        for cluster in clusters:
            expected = {s for s in full.series[cluster] if s[0] in SETS[name] | ALWAYS}
            # then each set sent exactly its part (the same scenario, seeded, produces the same series)
            assert run.series[cluster] == expected, (name, cluster)
    for cluster in clusters:
        # and compat sent exactly the upstream names of the families the stand-in's pods served, and
        # awsAPILatency only where they served quantiles (CNI < ~1.12); nothing else
        served = full.served_families[cluster]
        upstream = {f.metric for f in catalogue.FAMILIES if f.upstream and f.metric and f.name in served}
        upstream |= {"awsAPILatency"} if full.served_p99[cluster] else set()
        compat = {metric for metric, _ in runs["compat"].series[cluster]}
        assert compat == upstream
        assert compat <= UPSTREAM == COMPAT
        # and standard sent one series per metric, CLUSTER_ID alone; full added per-zone and per-subnet ones
        assert all(dims == () for _, dims in runs["standard"].series[cluster])
        zoned = full.series[cluster] - runs["standard"].series[cluster]
        assert {metric for metric, _ in zoned} <= SETS["full"] - STANDARD
        assert {key for _, dims in zoned for key, _ in dims} == {"AvailabilityZone", "SubnetId"}
    # and the emf run wrote EMF documents for every cluster, more bytes for larger sets
    assert all(sorted(run.emf_bytes) == clusters for run in runs.values())
    assert sum(runs["compat"].emf_bytes.values()) < sum(runs["standard"].emf_bytes.values()) < sum(
        runs["full"].emf_bytes.values())
    # the counts for the README's cost table
    with capsys.disabled():
        for name, run in runs.items():
            counts = {cluster: len(run.series[cluster]) for cluster in clusters}
            distinct = {cluster: len({m for m, _ in run.series[cluster]}) for cluster in clusters}
            emf = {cluster: run.emf_bytes[cluster] for cluster in clusters}
            print(f"\nMETRIC_SET={name}: series per cluster {counts}; names {distinct}; "
                  f"EMF bytes per cluster and run {emf}")
