"""The dashboard function in fleet mode over real HTTP, through its handler: the fleet document and the
state objects in moto's S3, CloudWatch in moto behind the counting proxy, the custom-resource answers at the
loopback HTTPS endpoint (the fixtures of ``test_dashboard_integration``). The truth: which entries the
document holds and which state objects were written when."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import matplotlib.image
import pytest
from cni_metrics.cli import main as cli_main
from cni_metrics.dashboard import clusters as dashboard_clusters
from cni_metrics.dashboard import handler
from cni_metrics.dashboard.body import DashboardOptions
from cni_metrics.dashboard.clusters import FleetUnavailable
from cni_metrics.dashboard.fleet_page import build_fleet_page
from cni_metrics.dashboard.validate import check_body
from cni_metrics.fleet import document as fleet_document
from dashboard_preview.render import LOCAL_QUERY_NOTE, fetch_page_series, render_dashboard
from test_dashboard_integration import (
    REGION,
    CfnEndpoint,
    CountingProxy,
    aws,  # noqa: F401 - the fixture
    cfn_endpoint,  # noqa: F401 - the fixture
    cfn_event,
    clusters_on,
    dashboard_context,
    dashboards,
    moto_url,  # noqa: F401 - the fixture
    proxy,  # noqa: F401 - the fixture
)

pytestmark = pytest.mark.integration

FLEET_BUCKET, FLEET_KEY = "cni-fleet-config", "fleets/prod.json"
STATE_BUCKET, PREFIX = "cni-fleet-state", "cni-metrics/state/"
DOCUMENT = {"version": 1, "name": "prod", "clusters": [
    {"name": "a", "region": "us-east-1", "alias": "prod-a"},
    {"name": "b", "region": "eu-west-1"},
    {"name": "not valid!", "region": "us-east-1"},  # reported and skipped
], "discovery": [{"regions": ["us-east-1"], "tag": "cni-metrics=enabled"}]}
SCHEDULED = {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}


FLEET_PROPS = {"DashboardName": "cni-stack", "Namespace": "Kubernetes", "Clusters": "",
               "ClusterDiscoveryTag": "", "AlarmsEnabled": "false", "AlarmTopicArn": "",
               "IpUtilizationAlarmPct": "80"}


@pytest.fixture
def fleet(aws: Any, moto_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:  # noqa: F811
    """Fleet mode: the document and the state bucket in moto's S3, the dashboard function's environment as
    the template sets it. Returns an S3 client on moto."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_url)
    for key, value in {"FLEET_DOCUMENT": f"s3://{FLEET_BUCKET}/{FLEET_KEY}", "STATE_BUCKET": STATE_BUCKET,
                       "STATE_PREFIX": PREFIX, "ALARMS_ENABLED": "false"}.items():
        monkeypatch.setenv(key, value)
    s3 = boto3.client("s3", region_name=REGION, endpoint_url=moto_url)
    for bucket in (FLEET_BUCKET, STATE_BUCKET):
        s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=FLEET_BUCKET, Key=FLEET_KEY, Body=json.dumps(DOCUMENT).encode())
    fleet_document.clear_cache()
    yield s3
    fleet_document.clear_cache()


def write_states(s3: Any, *ids: str) -> dt.datetime:
    """State objects for ``ids`` as the collector leaves them; their LastModified (the listing's)."""
    for cluster in ids:
        s3.put_object(Bucket=STATE_BUCKET, Key=f"{PREFIX}{cluster}.json",
                      Body=b'{"format": "cni-metrics-state"}')
    last = s3.head_object(Bucket=STATE_BUCKET, Key=f"{PREFIX}{ids[-1]}.json")
    modified: dt.datetime = last["LastModified"]
    return modified


def a_day_later_than(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Write ``gone``'s state, then (a second later) the fresh ones, and set the function's clock to just
    over 24 hours after ``gone``'s write: it is older than the window, the others are inside it."""
    old = write_states(s3, "gone")
    time.sleep(1.1)  # LastModified has a one-second resolution
    write_states(s3, "prod-a", "discovered-1", "discovered-2", "Bad Name")
    # a shard's object (not a cluster's) and one outside the prefix
    s3.put_object(Bucket=STATE_BUCKET, Key=f"{PREFIX}discovered-1/shard-0.json", Body=b"{}")
    s3.put_object(Bucket=STATE_BUCKET, Key="elsewhere/outside.json", Body=b"{}")
    now = old + dt.timedelta(hours=24, milliseconds=500)
    monkeypatch.setattr(dashboard_clusters, "utcnow", lambda: now)


def test_the_schedule_puts_pages_for_the_fleets_clusters_and_the_fleet_page(
        aws: Any, fleet: Any, proxy: CountingProxy, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    # given the fleet's entries (prod-a, b) and state objects written now, plus one written over 24 h ago
    a_day_later_than(fleet, monkeypatch)
    # when the EventBridge schedule fires
    summary = handler.handle(SCHEDULED, dashboard_context())
    # then the clusters are the entries and the recently collected ones (discovered clusters included)
    expected = ["b", "discovered-1", "discovered-2", "prod-a"]
    assert summary is not None
    assert summary["clusters"] == expected
    bodies = dashboards(aws)
    assert sorted(bodies) == ["cni", "cni-fleet"]
    assert clusters_on({"cni": bodies["cni"]}) == expected
    assert summary["dashboards"]["put"] == ["cni", "cni-fleet"]
    # and the overview page is valid, names the fleet's health series and holds the rankings
    overview = bodies["cni-fleet"]
    assert check_body(overview) == []
    assert overview == build_fleet_page("prod", DashboardOptions(name="cni", region=REGION), ["cni"], 4).body
    text = overview["widgets"][0]["properties"]["markdown"]
    assert "# Fleet `prod`: overview" in text
    assert "fleet:prod" in text
    # when it fires again with nothing changed
    proxy.operations.clear()
    handler.handle(SCHEDULED, dashboard_context())
    # then nothing is written
    assert proxy.writes() == []


def test_a_direct_invoke_in_fleet_mode_keeps_the_fleet_page(aws: Any, fleet: Any) -> None:  # noqa: F811
    # when the function is invoked with clusters of its choosing
    summary = handler.handle({"clusters": ["x", "y"]}, dashboard_context())
    # then those clusters get pages, and the fleet page is put beside them
    assert summary is not None
    assert sorted(dashboards(aws)) == ["cni", "cni-fleet"]
    assert clusters_on({"cni": dashboards(aws)["cni"]}) == ["x", "y"]


def test_the_cli_in_fleet_mode_prints_and_keeps_the_fleet_page(
        aws: Any, fleet: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    # given the fleet's state objects (the entries' and two discovered clusters', all written now)
    write_states(fleet, "prod-a", "discovered-1")
    # when an engineer prints the pages, then puts them for two clusters of their choosing
    assert cli_main(["dashboard", "--dry-run"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert cli_main(["dashboard", "--cluster", "x", "--cluster", "y"]) == 0
    # then the dry run shows the fleet's clusters and its overview page, as the schedule would put them
    assert sorted(printed) == ["cni", "cni-fleet"]
    assert clusters_on({"cni": printed["cni"]}) == ["b", "discovered-1", "prod-a"]
    # and the put keeps the overview page beside the chosen clusters' page (never deletes it)
    bodies = dashboards(aws)
    assert sorted(bodies) == ["cni", "cni-fleet"]
    assert clusters_on({"cni": bodies["cni"]}) == ["x", "y"]
    # and an unreadable fleet is a clear error, exit 2
    fleet.delete_object(Bucket=FLEET_BUCKET, Key=FLEET_KEY)
    fleet_document.clear_cache()
    assert cli_main(["dashboard", "--dry-run"]) == 2
    assert "fleet mode: cannot read" in capsys.readouterr().err


def test_the_custom_resource_makes_the_fleet_page_and_its_delete_removes_it(
        aws: Any, fleet: Any, cfn_endpoint: CfnEndpoint) -> None:  # noqa: F811
    # given the entries' state objects
    write_states(fleet, "prod-a", "b")
    # when CloudFormation creates the dashboard resource
    handler.handle(cfn_event("Create", cfn_endpoint, FLEET_PROPS), dashboard_context())
    # then it hears SUCCESS naming both pages, and both exist
    answer = cfn_endpoint.next()["body"]
    assert answer["Status"] == "SUCCESS", answer
    assert answer["Data"] == {"DashboardNames": "cni-stack,cni-stack-fleet", "Clusters": "b,prod-a"}
    assert sorted(dashboards(aws)) == ["cni-stack", "cni-stack-fleet"]
    # when the stack is deleted
    handler.handle(cfn_event("Delete", cfn_endpoint, FLEET_PROPS, "cni-stack"), dashboard_context())
    # then the fleet page went with the others
    assert cfn_endpoint.next()["body"]["Status"] == "SUCCESS"
    assert dashboards(aws) == {}


def test_leaving_fleet_mode_removes_the_fleet_page_and_keeps_a_foreign_one(
        aws: Any, fleet: Any, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    # given the set's pages in fleet mode, and a dashboard named like a fleet page without the set's marker
    handler.handle(SCHEDULED, dashboard_context())
    aws.put_dashboard(DashboardName="other-fleet", DashboardBody='{"widgets": []}')
    assert sorted(dashboards(aws)) == ["cni", "cni-fleet", "other-fleet"]
    # when fleet mode is switched off (the template leaves the variables out) and the schedule fires
    for key in ("FLEET_DOCUMENT", "STATE_BUCKET", "STATE_PREFIX"):
        monkeypatch.delenv(key)
    monkeypatch.setenv("CLUSTER_NAMES", "solo")
    summary = handler.handle(SCHEDULED, dashboard_context())
    # then the set's overview page is deleted and only its per-cluster page is left
    assert summary is not None
    assert summary["dashboards"]["deleted"] == ["cni-fleet"]
    assert sorted(dashboards(aws)) == ["cni", "other-fleet"]


@pytest.mark.parametrize(("breakage", "message"), [
    ("document", f"fleet mode: cannot read s3://{FLEET_BUCKET}/{FLEET_KEY}: NoSuchKey"),
    ("listing", f"fleet mode: cannot list s3://{STATE_BUCKET}/{PREFIX}: NoSuchBucket"),
])
def test_an_unreadable_fleet_fails_the_run_clearly_and_changes_nothing(
        aws: Any, fleet: Any, proxy: CountingProxy, cfn_endpoint: CfnEndpoint,  # noqa: F811
        breakage: str, message: str) -> None:
    # given the set's pages, put while the fleet could be read
    handler.handle(SCHEDULED, dashboard_context())
    before = dashboards(aws)
    assert sorted(before) == ["cni", "cni-fleet"]
    # when the document disappears (or the state bucket does)
    if breakage == "document":
        fleet.delete_object(Bucket=FLEET_BUCKET, Key=FLEET_KEY)
    else:
        fleet.delete_bucket(Bucket=STATE_BUCKET)
    fleet_document.clear_cache()
    proxy.operations.clear()
    # then the scheduled run fails with a message naming the object and the cause
    with pytest.raises(FleetUnavailable) as error:
        handler.handle(SCHEDULED, dashboard_context())
    assert str(error.value).startswith(message)
    assert str(error.value).endswith("(no dashboard or alarm was changed)")
    # and a custom-resource update is answered FAILED with that reason
    handler.handle(cfn_event("Update", cfn_endpoint, {**FLEET_PROPS, "DashboardName": "cni"}, "cni"),
                   dashboard_context())
    answer = cfn_endpoint.next()["body"]
    assert (answer["Status"], answer["PhysicalResourceId"]) == ("FAILED", "cni")
    assert message in answer["Reason"]
    # and no dashboard was written or deleted
    assert proxy.writes() == []
    assert dashboards(aws) == before


def test_the_preview_draws_the_fleet_page_with_its_queries_evaluated(
        aws: Any, tmp_path: Path) -> None:  # noqa: F811
    # given utilisation of 12 clusters and two stale clusters' minutes over the last 30 minutes, and the
    # fleet's health
    start = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0) - dt.timedelta(minutes=40)
    peaks = {f"c{i:02d}": 40.0 + 5 * i for i in range(12)}  # c11 highest (95), c00 lowest (40)

    def put(metric: str, cluster: str, values: list[float]) -> None:
        aws.put_metric_data(Namespace="Kubernetes", MetricData=[
            {"MetricName": metric, "Dimensions": [{"Name": "CLUSTER_ID", "Value": cluster}],
             "Timestamp": start + dt.timedelta(minutes=i), "Value": v} for i, v in enumerate(values)])

    for cluster, peak in peaks.items():
        put("ipUtilization", cluster, [peak - 10, peak, peak - 5])
    put("minutesSinceCollected", "late-1", [5.0, 6.0])
    put("minutesSinceCollected", "late-2", [30.0, 31.0])
    put("fleetClusters", "fleet:prod", [14.0, 14.0])
    # a zone's series of the same name (two dimensions) stays out of the CLUSTER_ID-only schema
    aws.put_metric_data(Namespace="Kubernetes", MetricData=[
        {"MetricName": "ipUtilization", "Timestamp": start, "Value": 100.0,
         "Dimensions": [{"Name": "CLUSTER_ID", "Value": "zoned"},
                        {"Name": "AvailabilityZone", "Value": "z"}]}])
    end = start + dt.timedelta(minutes=45)
    page = build_fleet_page("prod", DashboardOptions(region=REGION), ["cni-metrics"], 14)
    # when the renderer reads the page's series
    series = fetch_page_series(page, aws, start, end)
    # then the utilisation ranking is the top 10 by maximum, labelled with each cluster and its maximum
    titles = [w["properties"].get("title", "") for w in page.body["widgets"]]
    utilisation = series[titles.index("Highest IP utilisation (%): top 10")]
    assert [s.label for s in utilisation] == [f"c{i:02d} (max {40 + 5 * i:g})" for i in range(11, 1, -1)]
    assert list(utilisation[0].values) == [85.0, 95.0, 90.0]
    stale = series[titles.index("Stale clusters: minutes since collected: top 10")]
    assert [s.label for s in stale] == ["late-2 (max 31)", "late-1 (max 6)"]
    assert [s.label for s in series[1] if s.values] == ["clusters"]
    # when the preview draws it with the per-cluster page
    pngs = render_dashboard(tmp_path / "fleet.png", ["c00"], cloudwatch=aws,
                            options=DashboardOptions(region=REGION), start=start, end=end, fleet="prod")
    # then there is a second picture, the fleet page's, a real one
    assert [p.name for p in pngs] == ["fleet.png", "fleet-2.png"]
    pixels = matplotlib.image.imread(pngs[1])[:, :, :3]
    assert pixels.shape[0] > 400
    assert float(pixels.std()) > 0.05
    assert LOCAL_QUERY_NOTE.strip()
