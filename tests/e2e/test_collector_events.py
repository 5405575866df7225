"""Every sample event through the built collector (`make build-local`) under awslambdaric, checked
against the fake EKS truth (demo scenario) and the metrics read back from moto's CloudWatch.

Each event runs twice, each time in a fresh runtime process (a cold start): the first run publishes
gauges and records baselines in S3, the second publishes counter increases from those baselines.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cni_metrics.core.catalogue import COUNTERS, GAUGES
from local_lambda.built import BuildError, load_function
from local_lambda.runner import InvokeResult, invoke_built, read_env_file
from local_lambda.stand_ins import StandIns, started

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
BUILD_DIR = REPO / ".aws-sam" / "local" / "build"
ENV_FILE = REPO / "events" / "env.json"
# The collector's sample events (events/dashboard-*.json are the dashboard function's; env*.json variables).
EVENTS = sorted(path for path in (REPO / "events").glob("*.json")
                if not path.name.startswith(("env", "dashboard-")))
FUNCTION = "CollectorFunction"
STATE_PREFIX = read_env_file(ENV_FILE, FUNCTION).get("STATE_PREFIX", "cni-metrics/state/")
GAUGE_METRICS = {family.name: family.metric for family in GAUGES if family.metric}
COUNTER_METRICS = {family.name: family.metric for family in COUNTERS if family.metric}


@pytest.fixture(scope="module")
def built() -> None:
    """The local build must exist (make e2e / make test run `make build-local` first)."""
    try:
        load_function(BUILD_DIR, FUNCTION)
    except BuildError as error:
        pytest.fail(f"{error} (run `make build-local`)")


@pytest.fixture
def stand_ins(built: None) -> Iterator[StandIns]:
    """Fresh moto and demo fake EKS with the clusters' subnets in moto, the env file's state bucket."""
    with started("demo", read_env_file(ENV_FILE, FUNCTION)["STATE_BUCKET"]) as running:
        yield running


@pytest.fixture
def stand_ins_without_subnets(built: None) -> Iterator[StandIns]:
    """The same without subnets (they take seconds to provision; capacity numbers stay incomplete)."""
    with started("demo", read_env_file(ENV_FILE, FUNCTION)["STATE_BUCKET"], network=False) as running:
        yield running


def _invoke(stand_ins: StandIns, event: Path) -> InvokeResult:
    return invoke_built(BUILD_DIR, FUNCTION, event.read_bytes(), ENV_FILE, stand_ins.variables,
                        log_stream=None)


def _published(stand_ins: StandIns, cluster: str, names: list[str], since: datetime) -> dict[str, float]:
    """Sum of the datums of each metric with a timestamp from ``since`` on, read back from moto."""
    namespace = read_env_file(ENV_FILE, FUNCTION).get("METRICS_NAMESPACE", "Kubernetes")
    cloudwatch = stand_ins.client("cloudwatch")
    sums = {}
    for name in names:
        points = cloudwatch.get_metric_statistics(
            Namespace=namespace, MetricName=name, Dimensions=[{"Name": "CLUSTER_ID", "Value": cluster}],
            StartTime=since, EndTime=datetime.now(UTC) + timedelta(minutes=5), Period=86400,
            Statistics=["Sum"],
        )["Datapoints"]
        sums[name] = sum(point["Sum"] for point in points)
    return sums


def _state_keys(stand_ins: StandIns) -> list[str]:
    bucket = read_env_file(ENV_FILE, FUNCTION)["STATE_BUCKET"]
    listing = stand_ins.client("s3").list_objects_v2(Bucket=bucket, Prefix=STATE_PREFIX)
    return [item["Key"] for item in listing.get("Contents", [])]


def _smallest_subnet_headroom(stand_ins: StandIns, cluster: str) -> float:
    """moto's smallest AvailableIpAddressCount among the subnets the cluster's pods draw from."""
    network = stand_ins.network.clusters[cluster]
    ids = sorted((network.pod_subnets or network.cluster_subnets).values())
    subnets = stand_ins.client("ec2").describe_subnets(SubnetIds=ids)["Subnets"]
    return float(min(subnet["AvailableIpAddressCount"] for subnet in subnets))


def _truth_gauges(truth: dict[str, Any]) -> dict[str, float]:
    return {GAUGE_METRICS[f]: v for f, v in truth["sums"]["gauges"].items() if f in GAUGE_METRICS}


def _truth_increments(truth: dict[str, Any]) -> dict[str, float]:
    totals: dict[str, float] = defaultdict(float)
    for pod in truth["pods"]:
        for family, value in pod["increments"].items():
            if family in COUNTER_METRICS:
                totals[COUNTER_METRICS[family]] += value
    return totals


def _served(truth: dict[str, Any]) -> int:
    return sum(1 for pod in truth["pods"] if pod["scrapes"] > 0 and pod["served"] is not None)


def _outcomes(result: InvokeResult) -> dict[str, dict[str, Any]]:
    assert result.ok, result.error
    assert result.payload["ok"] is True, result.payload
    return {outcome["cluster"]: outcome for outcome in result.payload["clusters"]}


@pytest.mark.parametrize("event", EVENTS, ids=[path.stem for path in EVENTS])
def test_event_through_the_built_collector_matches_the_truth(stand_ins: StandIns, event: Path) -> None:
    # Given the demo stand-in and a state bucket with no state yet
    eks = stand_ins.eks
    clusters = eks.clusters

    # When the event runs a first time (cold start, no baselines)
    first = _outcomes(_invoke(stand_ins, event))
    truth_1 = {cluster: eks.truth(cluster) for cluster in clusters}

    # Then every cluster is reported, scraped nodes equal the pods the stand-in served, and the
    # gauges read back from CloudWatch equal the truth's sums (subnet headroom: moto's)
    assert sorted(first) == clusters
    for cluster in clusters:
        outcome = first[cluster]
        assert outcome["status"] == "ok", outcome
        assert outcome["state"] in ("created", "updated"), outcome  # outbox: claim, then settle
        assert outcome["nodes"] == _served(truth_1[cluster]) > 0
        since = datetime.fromisoformat(outcome["collected_at"]) - timedelta(seconds=1)
        expected = _truth_gauges(truth_1[cluster])
        expected["minSubnetAvailableIPAddresses"] = _smallest_subnet_headroom(stand_ins, cluster)
        assert _published(stand_ins, cluster, sorted(expected), since) == pytest.approx(expected), cluster
    assert sum(outcome["failures"] for outcome in first.values()) > 0  # the demo's faulty nodes
    assert sorted(_state_keys(stand_ins)) == [f"{STATE_PREFIX}{cluster}.json" for cluster in clusters]

    # When it runs again in a fresh process (baselines come from S3)
    second = _outcomes(_invoke(stand_ins, event))
    truth_2 = {cluster: eks.truth(cluster) for cluster in clusters}

    # Then the counter increases read back equal the truth's increments between the two runs,
    # and the gauges of the second run equal the truth again
    for cluster in clusters:
        outcome = second[cluster]
        assert (outcome["status"], outcome["state"]) == ("ok", "updated"), outcome
        before, after = _truth_increments(truth_1[cluster]), _truth_increments(truth_2[cluster])
        increases = {name: after[name] - before.get(name, 0.0) for name in after}
        assert sum(increases.values()) > 0
        since_first = datetime.fromisoformat(first[cluster]["collected_at"]) - timedelta(seconds=1)
        assert _published(stand_ins, cluster, sorted(increases), since_first) == pytest.approx(increases)
        since = datetime.fromisoformat(outcome["collected_at"]) - timedelta(seconds=0.5)
        expected = _truth_gauges(truth_2[cluster])
        assert _published(stand_ins, cluster, sorted(expected), since) == pytest.approx(expected), cluster


def _emf_documents(logs: str) -> list[dict[str, Any]]:
    documents = []
    for line in logs.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            documents.append(json.loads(line))
    return documents


def test_emf_mode_prints_gauges_equal_to_the_truth(stand_ins_without_subnets: StandIns) -> None:
    # Given the scheduled event and the collector in EMF mode
    stand_ins, event = stand_ins_without_subnets, REPO / "events" / "scheduled.json"

    # When it runs once
    result = invoke_built(BUILD_DIR, FUNCTION, event.read_bytes(), ENV_FILE,
                          {**stand_ins.variables, "PUBLISH_MODE": "emf"}, log_stream=None)
    outcomes = _outcomes(result)

    # Then its log holds EMF documents keyed by CLUSTER_ID (capacity ones add zone or subnet), and per
    # cluster the cluster-level gauge values equal the truth's sums
    values: dict[str, dict[str, float]] = defaultdict(dict)
    for document in _emf_documents(result.logs):
        (directive,) = document["_aws"]["CloudWatchMetrics"]
        (dimensions,) = directive["Dimensions"]
        assert dimensions[0] == "CLUSTER_ID"
        if dimensions != ["CLUSTER_ID"]:
            continue
        for metric in directive["Metrics"]:
            value = document[metric["Name"]]  # the EMF specification allows a value or an array of them
            values[document["CLUSTER_ID"]][metric["Name"]] = sum(value) if isinstance(value, list) else value
    assert sorted(values) == sorted(outcomes)
    for cluster in outcomes:
        expected = _truth_gauges(stand_ins.eks.truth(cluster))
        assert {name: values[cluster][name] for name in expected} == pytest.approx(expected), cluster
