"""Publishers: EMF documents checked against the EMF specification, PutMetricData batching and failures."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import pytest
from botocore.exceptions import ClientError
from cni_metrics.adapters.publishers import (
    MAX_BYTES_PER_CALL,
    EmfPublisher,
    MetricBatch,
    PutMetricDataPublisher,
)
from cni_metrics.core.model import MetricValue

AT = datetime(2026, 11, 28, 6, 30, 15, 250000, tzinfo=UTC)
AT_MS = 1795847415250
EMF_UNITS = {"Count", "Percent", "Milliseconds", "Bytes"}


def check_emf(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, str], float, str, int]]:
    """Validate one EMF document's structure; (namespace, name, dimensions, value, unit, timestamp) each."""
    meta = doc["_aws"]
    assert isinstance(meta["Timestamp"], int)
    out = []
    for directive in meta["CloudWatchMetrics"]:
        assert isinstance(directive["Namespace"], str)
        assert 1 <= len(directive["Metrics"]) <= 100
        for dimension_set in directive["Dimensions"]:
            assert len(dimension_set) <= 30
            for name in dimension_set:
                assert isinstance(doc[name], str), f"dimension {name} must be a top-level string"
        for metric in directive["Metrics"]:
            assert set(metric) <= {"Name", "Unit", "StorageResolution"}
            assert metric["Unit"] in EMF_UNITS
            value = doc[metric["Name"]]
            values = value if isinstance(value, list) else [value]
            for item in values:
                assert isinstance(item, int | float)
                assert math.isfinite(item)
                dims = {name: doc[name] for dims in directive["Dimensions"] for name in dims}
                unit, at = metric["Unit"], meta["Timestamp"]
                out.append((directive["Namespace"], metric["Name"], dims, item, unit, at))
    return out


def emf_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith('{"_aws"')]


def test_emf_one_document_per_cluster_with_only_the_cluster_dimension(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a service name in the environment (Powertools would add a "service" dimension)
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "cni-metrics")
    batch = MetricBatch(
        "b1",
        AT,
        (
            MetricValue("assignIPAddresses", 42.0),
            MetricValue("ipUtilization", 37.5, "Percent"),
            MetricValue("scrapeDurationMs", 812.5, "Milliseconds"),
            MetricValue("bytesScraped", 9000.0, "Bytes"),
        ),
    )
    # when a cluster's batch is published as EMF
    result = EmfPublisher("Kubernetes").publish("prod", [batch])
    # then stdout holds one valid EMF document: namespace, CLUSTER_ID only, units, collection timestamp
    docs = emf_lines(capsys.readouterr().out)
    assert len(docs) == 1
    datums = check_emf(docs[0])
    assert docs[0]["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["CLUSTER_ID"]]
    assert sorted(datums) == sorted(
        [
            ("Kubernetes", "assignIPAddresses", {"CLUSTER_ID": "prod"}, 42.0, "Count", AT_MS),
            ("Kubernetes", "ipUtilization", {"CLUSTER_ID": "prod"}, 37.5, "Percent", AT_MS),
            ("Kubernetes", "scrapeDurationMs", {"CLUSTER_ID": "prod"}, 812.5, "Milliseconds", AT_MS),
            ("Kubernetes", "bytesScraped", {"CLUSTER_ID": "prod"}, 9000.0, "Bytes", AT_MS),
        ]
    )
    assert (result.published, result.complete) == (4, True)


def test_emf_drops_non_finite_values_and_splits_beyond_100_metrics(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # given 150 distinct metrics and two non-finite values
    metrics = tuple(MetricValue(f"m{i}", float(i)) for i in range(150))
    batch = MetricBatch("b1", AT, (*metrics, MetricValue("nan", math.nan), MetricValue("inf", math.inf)))
    # when published
    result = EmfPublisher("NS").publish("c", [batch])
    # then the documents are valid, hold every finite metric once, and the non-finite ones are dropped
    datums = [d for doc in emf_lines(capsys.readouterr().out) for d in check_emf(doc)]
    assert sorted(d[1] for d in datums) == sorted(f"m{i}" for i in range(150))
    assert (result.published, result.dropped) == (150, 2)


class RecordingClient:
    """Stands in for a CloudWatch client: records calls, fails the calls whose index is in ``fail``."""

    def __init__(self, fail: set[int] | None = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self.fail = fail or set()

    def put_metric_data(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        if len(self.calls) - 1 in self.fail:
            error = {
                "Error": {"Code": "Throttling", "Message": "Rate exceeded"},
                "ResponseMetadata": {"HTTPStatusCode": 400},
            }
            raise ClientError(error, "PutMetricData")  # type: ignore[arg-type]
        return {}


def test_putmetricdata_splits_at_1000_datums_with_timestamp_and_unit_per_datum() -> None:
    # given two batches of 1,500 and 700 datums
    first = MetricBatch("a", AT, tuple(MetricValue(f"m{i}", float(i)) for i in range(1500)))
    later = AT.replace(minute=31)
    second = MetricBatch("b", later, tuple(MetricValue("p", 50.0, "Percent") for _ in range(700)))
    client = RecordingClient()
    # when published
    result = PutMetricDataPublisher(client, "Kubernetes").publish("prod", [first, second])
    # then every call holds at most 1,000 datums, each with its batch's timestamp, its unit and the dimension
    assert [len(call["MetricData"]) for call in client.calls] == [1000, 1000, 200]
    datums = [datum for call in client.calls for datum in call["MetricData"]]
    assert len(datums) == 2200
    assert {call["Namespace"] for call in client.calls} == {"Kubernetes"}
    assert all(d["Dimensions"] == [{"Name": "CLUSTER_ID", "Value": "prod"}] for d in datums)
    assert datums[0]["Timestamp"] == AT
    assert (datums[-1]["Timestamp"], datums[-1]["Unit"]) == (AT.replace(minute=31), "Percent")
    assert (result.published, result.complete) == (2200, True)


def test_putmetricdata_splits_by_size_before_the_byte_limit() -> None:
    # given 1,000 large datums and a byte limit well under their total size
    batch = MetricBatch("a", AT, tuple(MetricValue(f"metric-{i:04d}-" + "x" * 240, 1.0) for i in range(1000)))
    client = RecordingClient()
    # when published
    PutMetricDataPublisher(client, "Kubernetes", max_bytes=200_000).publish("c" * 100, [batch])
    # then it took several calls, each under the limit even in the verbose query encoding, none lost
    assert len(client.calls) >= 4
    assert sum(len(call["MetricData"]) for call in client.calls) == 1000
    for call in client.calls:
        assert len(urlencode(_query(call))) < 200_000
    assert MAX_BYTES_PER_CALL == 1_000_000


def _query(call: dict[str, Any]) -> dict[str, str]:
    """The call as the query protocol would encode it (the largest of CloudWatch's encodings)."""
    out = {"Action": "PutMetricData", "Version": "2010-08-01", "Namespace": call["Namespace"]}
    for n, datum in enumerate(call["MetricData"], 1):
        prefix = f"MetricData.member.{n}."
        out[prefix + "MetricName"] = datum["MetricName"]
        out[prefix + "Dimensions.member.1.Name"] = datum["Dimensions"][0]["Name"]
        out[prefix + "Dimensions.member.1.Value"] = datum["Dimensions"][0]["Value"]
        out[prefix + "Timestamp"] = datum["Timestamp"].isoformat()
        out[prefix + "Value"] = repr(datum["Value"])
        out[prefix + "Unit"] = datum["Unit"]
    return out


def test_putmetricdata_failed_call_returns_exactly_its_datums_unpublished() -> None:
    # given a 2,500-datum batch whose second call fails after botocore's retries
    batch = MetricBatch("a", AT, tuple(MetricValue(f"m{i}", float(i)) for i in range(2500)))
    client = RecordingClient(fail={1})
    # when published
    result = PutMetricDataPublisher(client, "Kubernetes").publish("prod", [batch])
    # then the other calls went through and the failed call's datums come back, with their batch and time
    assert result.published == 1500
    assert [b.id for b in result.unpublished] == ["a"]
    assert [m.name for m in result.unpublished[0].metrics] == [f"m{i}" for i in range(1000, 2000)]
    assert result.unpublished[0].collected_at == AT
    assert result.error is not None
    assert "Throttling (HTTP 400)" in result.error


def test_putmetricdata_never_sends_non_finite_values() -> None:
    # given NaN and infinities among the datums
    metrics = (MetricValue("ok", 1.0), MetricValue("nan", math.nan), MetricValue("inf", -math.inf))
    batch = MetricBatch("a", AT, metrics)
    client = RecordingClient()
    # when published, then only the finite datum is sent
    result = PutMetricDataPublisher(client, "NS").publish("c", [batch])
    assert [d["MetricName"] for d in client.calls[0]["MetricData"]] == ["ok"]
    assert (result.published, result.dropped) == (1, 2)


BEYOND = 2.0**361  # finite, but beyond CloudWatch's ±2^360


def test_emf_never_writes_a_value_cloudwatch_rejects(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    # given a value beyond ±2^360, one below -2^360, a magnitude under 2^-360 and a valid one
    metrics = (MetricValue("huge", BEYOND), MetricValue("negative", -BEYOND), MetricValue("tiny", 2.0**-400),
               MetricValue("ok", 2.0**360))
    # when published as EMF
    result = EmfPublisher("NS").publish("c", [MetricBatch("b1", AT, metrics)])
    # then only values within the range are written (the tiny one as 0), the others dropped and logged
    datums = {d[1]: d[3] for doc in emf_lines(capsys.readouterr().out) for d in check_emf(doc)}
    assert datums == {"tiny": 0.0, "ok": 2.0**360}
    assert (result.published, result.dropped) == (2, 2)
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert any("huge" in m and repr(BEYOND) in m for m in errors)
    assert any("negative" in m for m in errors)


def test_putmetricdata_never_sends_a_value_beyond_the_cloudwatch_range(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # given one value beyond 2^360 among valid ones, and a non-zero magnitude under 2^-360
    metrics = (MetricValue("ok", 1.0), MetricValue("huge", BEYOND), MetricValue("tiny", -(2.0**-361)))
    client = RecordingClient()
    # when published
    result = PutMetricDataPublisher(client, "NS").publish("c", [MetricBatch("a", AT, metrics)])
    # then the huge one is dropped with an error naming it and its value; the tiny one is sent as 0
    sent = [(d["MetricName"], d["Value"]) for d in client.calls[0]["MetricData"]]
    assert sent == [("ok", 1.0), ("tiny", 0.0)]
    assert (result.published, result.dropped, result.complete) == (2, 1, True)
    assert any("huge" in r.getMessage() and repr(BEYOND) in r.getMessage() for r in caplog.records)


class RefusingClient(RecordingClient):
    """Refuses, as CloudWatch refuses an invalid datum, every call holding a datum named ``poison``."""

    def put_metric_data(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        if any(datum["MetricName"] == "poison" for datum in kwargs["MetricData"]):
            error = {
                "Error": {"Code": "InvalidParameterValue", "Message": "The value 13.0 is invalid."},
                "ResponseMetadata": {"HTTPStatusCode": 400},
            }
            raise ClientError(error, "PutMetricData")  # type: ignore[arg-type]
        return {}


def test_putmetricdata_isolates_the_datums_a_call_is_refused_for_and_publishes_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # given 2,500 datums in two batches, three of which CloudWatch refuses (in two different calls)
    good = [MetricValue(f"m{i}", float(i)) for i in range(2500)]
    good[7] = good[900] = good[1999] = MetricValue("poison", 13.0)
    batches = [MetricBatch("a", AT, tuple(good[:1200])), MetricBatch("b", AT, tuple(good[1200:]))]
    client = RefusingClient()
    # when published
    result = PutMetricDataPublisher(client, "NS").publish("c", batches)
    # then every other datum was published exactly once (the calls without poison are those accepted),
    # the three dropped and logged, nothing re-queued
    accepted = [call["MetricData"] for call in client.calls if "poison" not in str(call)]
    assert sorted(d["MetricName"] for data in accepted for d in data) == sorted(
        m.name for m in good if m.name != "poison"
    )
    assert (result.published, result.dropped, result.unpublished) == (2497, 3, [])
    refused = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(refused) == 3
    assert all("poison" in m and "13.0" in m for m in refused)


def test_putmetricdata_isolation_is_bounded_and_keeps_what_it_could_not_isolate() -> None:
    # given a call where every datum is refused (so isolation cannot end quickly)
    batch = MetricBatch("a", AT, tuple(MetricValue("poison", float(i)) for i in range(1000)))
    client = RefusingClient()
    # when published
    result = PutMetricDataPublisher(client, "NS").publish("c", [batch])
    # then at most 64 extra calls were made, and every datum is either dropped or kept for later
    assert len(client.calls) <= 1 + 64
    kept = sum(len(b.metrics) for b in result.unpublished)
    assert result.published == 0
    assert result.dropped + kept == 1000
    assert "InvalidParameterValue" in (result.error or "")
