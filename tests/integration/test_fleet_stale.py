"""Stale clusters in CloudWatch: the dispatcher's ``minutesSinceCollected`` datum under each stale cluster's
own ``CLUSTER_ID``, over real HTTP (moto's S3 and CloudWatch, the recording loopback Invoke API). The truth:
the state objects' LastModified as moto's listing gives them, and the clock the dispatcher is given."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from cni_metrics.fleet import document as fleet_document
from cni_metrics.fleet.job import build_dispatch_deps, run_dispatch
from cni_metrics.fleet.settings import load_dispatcher_settings
from conftest import STATE_BUCKET
from test_fleet_invoke import (
    FUNCTION,
    InvokeApi,
    invoke_api,  # noqa: F401 - the fixture
)

pytestmark = pytest.mark.integration

PREFIX = "cni-metrics/state/"
FLEET_BUCKET, FLEET_KEY = "cni-metrics-test-fleet", "fleet.json"
LATE_BY = timedelta(minutes=10)


def _minutes_since_collected(cluster: str) -> list[float]:
    """Every ``minutesSinceCollected`` value under ``CLUSTER_ID=cluster`` in the last day (moto)."""
    now = datetime.now(UTC)
    points = boto3.client("cloudwatch").get_metric_statistics(
        Namespace="Kubernetes", MetricName="minutesSinceCollected",
        Dimensions=[{"Name": "CLUSTER_ID", "Value": cluster}],
        StartTime=now - timedelta(days=1), EndTime=now + timedelta(hours=1), Period=86400 * 2,
        Statistics=["Maximum", "SampleCount"],
    )["Datapoints"]
    return [point["Maximum"] for point in points for _ in range(int(point["SampleCount"]))]


def test_stale_clusters_get_minutes_since_collected_under_their_own_id(
    aws: str, invoke_api: InvokeApi  # noqa: F811
) -> None:
    # given a fleet of three clusters, two with state objects written now, one never collected
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=FLEET_BUCKET)
    document = {"version": 1, "name": "stale-it",
                "clusters": [{"name": name, "region": "us-east-1"} for name in ("s-1", "s-2", "s-new")]}
    s3.put_object(Bucket=FLEET_BUCKET, Key=FLEET_KEY, Body=json.dumps(document).encode())
    for cluster in ("s-1", "s-2"):
        s3.put_object(Bucket=STATE_BUCKET, Key=f"{PREFIX}{cluster}.json", Body=b"{}")
    listed = {item["Key"]: item["LastModified"]
              for item in s3.list_objects_v2(Bucket=STATE_BUCKET, Prefix=PREFIX)["Contents"]}
    fleet_document.clear_cache()
    settings = load_dispatcher_settings({
        "FLEET_DOCUMENT": f"s3://{FLEET_BUCKET}/{FLEET_KEY}", "COLLECTOR_FUNCTION": FUNCTION,
        "STATE_BUCKET": STATE_BUCKET, "STATE_PREFIX": PREFIX, "PUBLISH_MODE": "putmetricdata",
    })
    # when the dispatcher runs ten minutes later by its clock (every write is then over 3 periods old)
    now = max(listed.values()) + LATE_BY
    deps = replace(build_dispatch_deps(settings), clock=lambda: now)
    summary = run_dispatch(settings, deps=deps, remaining_seconds=30)
    # then both collected clusters are stale, and each has its minutes since its own last write
    assert sorted(summary.health.stale or ()) == ["s-1", "s-2"]
    for cluster in ("s-1", "s-2"):
        expected = (now - listed[f"{PREFIX}{cluster}.json"]).total_seconds() / 60
        assert _minutes_since_collected(cluster) == [pytest.approx(expected, abs=0.05)]
    # and the never-collected cluster and the fleet's own id have no such datum (it is counted instead)
    assert _minutes_since_collected("s-new") == []
    assert _minutes_since_collected("fleet:stale-it") == []
    assert summary.health.never_collected == ("s-new",)
    # and every cluster was still dispatched
    named: list[Any] = sorted(c for request in invoke_api.requests for c in request["event"]["clusters"])
    assert named == ["s-1", "s-2", "s-new"]
