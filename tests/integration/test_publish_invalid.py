"""PutMetricData against moto behind a proxy that validates calls as CloudWatch does (moto validates nothing):
a call holding a value beyond ±2^360 or a timestamp over two weeks old is refused whole (400
InvalidParameterValue); the publisher must send the rest and drop only those datums, never re-queue them."""

from __future__ import annotations

import gzip
import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.config import Config
from cni_metrics.adapters.publishers import MetricBatch, PutMetricDataPublisher
from cni_metrics.core.model import MetricValue
from harness import ProxyHandler, proxying

pytestmark = pytest.mark.integration

LIMIT = 2.0**360
TWO_WEEKS = timedelta(days=14)


@dataclass
class ValidatingProxy:
    """Forwards CloudWatch calls to moto, refusing as CloudWatch does each PutMetricData it would refuse."""

    upstream: str
    url: str = ""
    refused: list[str] = field(default_factory=list)  # CloudWatch's message per refused call
    accepted_calls: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def problem(self, datums: list[dict[str, Any]]) -> str | None:
        """CloudWatch's message for the first datum it refuses, None when it accepts the call."""
        oldest = datetime.now(UTC) - TWO_WEEKS
        for index, datum in enumerate(datums, start=1):
            if not abs(float(datum["Value"])) <= LIMIT:
                return f"The value {datum['Value']} for parameter MetricData.member.{index}.Value is invalid."
            if datetime.fromtimestamp(float(datum["Timestamp"]), UTC) < oldest:
                return (f"The parameter MetricData.member.{index}.Timestamp must specify a time no more than "
                        "two weeks in the past.")
        return None


def _handler(proxy: ValidatingProxy) -> type[ProxyHandler]:
    class Handler(ProxyHandler):
        upstream = proxy.upstream

        def _forward(self) -> None:
            body = self.read_body()
            if self.headers.get("X-Amz-Target", "").endswith(".PutMetricData"):
                plain = gzip.decompress(body) if self.headers.get("Content-Encoding") == "gzip" else body
                message = proxy.problem(json.loads(plain).get("MetricData", []))
                with proxy.lock:
                    if message is None:
                        proxy.accepted_calls += 1
                    else:
                        proxy.refused.append(message)
                if message is not None:  # CloudWatch's answer (JSON protocol, query-compatible error code)
                    error = {"__type": "InvalidParameterValueException", "message": message}
                    answer = [("Content-Type", "application/x-amz-json-1.0"),
                              ("x-amzn-query-error", "InvalidParameterValue;Sender")]
                    self.answer(400, answer, json.dumps(error).encode())
                    return
            self.answer(*self.fetch(body))

        do_POST = _forward

    return Handler


@pytest.fixture
def validating(aws: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[ValidatingProxy]:
    """The validating proxy in front of moto, as AWS_ENDPOINT_URL_CLOUDWATCH."""
    proxy = ValidatingProxy(aws)
    with proxying(monkeypatch, "AWS_ENDPOINT_URL_CLOUDWATCH", _handler(proxy)) as proxy.url:
        yield proxy


def _sums(moto: str, cluster: str, since: datetime) -> dict[str, tuple[float, float]]:
    """(Sum, SampleCount) per metric name of ``cluster``, read back from moto directly."""
    cloudwatch = boto3.client("cloudwatch", endpoint_url=moto)
    out = {}
    for metric in cloudwatch.list_metrics(Namespace="Kubernetes")["Metrics"]:
        if {"Name": "CLUSTER_ID", "Value": cluster} not in metric.get("Dimensions", []):
            continue
        points = cloudwatch.get_metric_statistics(
            Namespace="Kubernetes", MetricName=metric["MetricName"], Dimensions=metric["Dimensions"],
            StartTime=since, EndTime=since + timedelta(hours=1), Period=3600,
            Statistics=["Sum", "SampleCount"],
        )["Datapoints"]
        out[metric["MetricName"]] = (sum(p["Sum"] for p in points), sum(p["SampleCount"] for p in points))
    return out


def _publisher() -> PutMetricDataPublisher:
    retries: Any = {"mode": "standard", "total_max_attempts": 2}
    return PutMetricDataPublisher(boto3.client("cloudwatch", config=Config(retries=retries)), "Kubernetes")


def test_one_value_beyond_the_range_among_60_good_ones_costs_only_itself(
    validating: ValidatingProxy, caplog: pytest.LogCaptureFixture
) -> None:
    # given 60 good datums and one whose value CloudWatch refuses (2^361), all in one batch
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=2)
    metrics = (*(MetricValue("good", 1.0) for _ in range(60)), MetricValue("poison", 2.0**361))
    # when published through CloudWatch's validation
    with caplog.at_level(logging.ERROR):
        result = _publisher().publish("p1", [MetricBatch("run/p1", at, metrics)])
    # then the 60 good ones arrived (read back from moto), the bad one is logged and not pending
    assert _sums(validating.upstream, "p1", at - timedelta(minutes=1)) == {"good": (60.0, 60.0)}
    assert (result.published, result.dropped, result.unpublished) == (60, 1, [])
    assert any("poison" in r.getMessage() and repr(2.0**361) in r.getMessage() for r in caplog.records)


def test_a_call_refused_for_one_stale_datum_is_bisected_and_the_rest_published(
    validating: ValidatingProxy, caplog: pytest.LogCaptureFixture
) -> None:
    # given 60 fresh datums and one of a batch collected 15 days ago (CloudWatch refuses its timestamp;
    # the publisher cannot know that), sent in one call
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=2)
    fresh = MetricBatch("run/fresh", now, tuple(MetricValue(f"m{i % 6}", float(i)) for i in range(60)))
    stale = MetricBatch("run/stale", now - timedelta(days=15), (MetricValue("m0", 99.0),))
    # when published through CloudWatch's validation
    with caplog.at_level(logging.ERROR):
        result = _publisher().publish("p2", [stale, fresh])
    # then CloudWatch refused the whole call first, the publisher isolated the stale datum and dropped it
    # with an error naming it, and every fresh datum arrived exactly once
    assert validating.refused[0].startswith("The parameter MetricData.member.1.Timestamp")
    assert (result.published, result.dropped, result.unpublished) == (60, 1, [])
    expected = {f"m{k}": (float(sum(range(k, 60, 6))), 10.0) for k in range(6)}
    assert _sums(validating.upstream, "p2", now - timedelta(minutes=1)) == expected
    dropped = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(dropped) == 1
    assert "m0" in dropped[0]
    assert "99.0" in dropped[0]
