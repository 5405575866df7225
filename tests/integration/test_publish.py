"""PutMetricData over HTTP to moto, through a proxy that measures each call (moto enforces no limit)
and fails chosen ones; and ``cni-metrics collect`` without --dry-run publishing through the service."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.config import Config
from cni_metrics.adapters import eks_auth
from cni_metrics.adapters.publishers import MetricBatch, PutMetricDataPublisher
from cni_metrics.cli import main as cli_main
from cni_metrics.core.model import MetricValue

pytestmark = pytest.mark.integration


def client(attempts: int = 2) -> Any:
    retries: Any = {"mode": "standard", "total_max_attempts": attempts}
    return boto3.client("cloudwatch", config=Config(retries=retries))


def read_sum(name: str, cluster: str, since: datetime) -> float:
    points = boto3.client("cloudwatch").get_metric_statistics(
        Namespace="Kubernetes", MetricName=name, Dimensions=[{"Name": "CLUSTER_ID", "Value": cluster}],
        StartTime=since, EndTime=since + timedelta(hours=1), Period=3600, Statistics=["Sum", "SampleCount"],
    )["Datapoints"]
    return float(sum(point["Sum"] for point in points))


def test_large_publish_stays_within_the_api_limits_and_reads_back_exactly(cloudwatch_proxy: Any) -> None:
    # given 2,600 datums of one cluster (many series, as a large fleet's outbox might hold)
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=2)
    metrics = tuple(MetricValue(f"series{i % 13}", float(i)) for i in range(2600))
    # when published
    result = PutMetricDataPublisher(client(), "Kubernetes").publish("big", [MetricBatch("b", at, metrics)])
    # then no call exceeded 1,000 datums or 1 MB, as measured on the wire
    calls = cloudwatch_proxy.calls
    assert [len(call.datums) for call in calls] == [1000, 1000, 600]
    assert all(call.size < 1_000_000 for call in calls)
    # and every datum carries the collection timestamp and its unit, and CloudWatch sums them exactly
    assert {datum["Timestamp"] for call in calls for datum in call.datums} == {at.timestamp()}
    assert {datum["Unit"] for call in calls for datum in call.datums} == {"Count"}
    assert result.published == 2600
    since = at - timedelta(minutes=1)
    assert read_sum("series0", "big", since) == sum(float(i) for i in range(0, 2600, 13))


@pytest.mark.parametrize("fault", ["throttle", "500"])
def test_call_failing_after_retries_returns_its_datums_and_the_rest_is_published(
    cloudwatch_proxy: Any, fault: str
) -> None:
    # given the second call failing on both of its attempts
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=2)
    metrics = tuple(MetricValue("m", 1.0) for _ in range(1500))
    publisher = PutMetricDataPublisher(client(attempts=2), "Kubernetes")
    # when published (the first call passes, then the fault hits both attempts of the second)
    cloudwatch_proxy.fail_next(None)
    cloudwatch_proxy.fail_next(fault, 2)
    result = publisher.publish("c", [MetricBatch("b", at, metrics)])
    # then botocore retried it, and its 500 datums come back unpublished while the other 1,000 arrived
    assert [call.failed_with for call in cloudwatch_proxy.calls] == [None, fault, fault]
    assert result.published == 1000
    assert sum(len(batch.metrics) for batch in result.unpublished) == 500
    assert read_sum("m", "c", at - timedelta(minutes=1)) == 1000.0


def test_collect_command_without_dry_run_publishes_through_the_service(
    aws: str, fake_eks: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # given the demo stand-in, moto and the collector's configuration in the environment (and no
    # endpoint cached by an earlier test in this process)
    eks_auth.clear_caches()
    for key, value in fake_eks.env().items():
        monkeypatch.setenv(key, value)
    for key, value in {"STATE_BUCKET": "cni-metrics-test-state", "PUBLISH_MODE": "putmetricdata",
                       "READ_TIMEOUT_SECONDS": "2", "PUBLISH_MARGIN_SECONDS": "5"}.items():
        monkeypatch.setenv(key, value)
    since = datetime.now(UTC) - timedelta(minutes=1)
    # when `cni-metrics collect` runs without --dry-run
    code = cli_main(["collect", "--cluster", "demo-legacy", "--timeout", "40"])
    # then it ran the collector service: a summary, a stored state, metrics in CloudWatch
    summary = json.loads(capsys.readouterr().out)
    (outcome,) = summary["clusters"]
    assert (code, outcome["status"], outcome["state"]) == (0, "ok", "created")
    key = "cni-metrics/state/demo-legacy.json"
    state = boto3.client("s3").get_object(Bucket="cni-metrics-test-state", Key=key)
    assert json.loads(state["Body"].read())["format"] == "cni-metrics-state"
    assert read_sum("nodesScraped", "demo-legacy", since) == outcome["nodes"]
