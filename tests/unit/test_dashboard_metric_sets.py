"""The dashboard and the alarms follow the published metrics (METRIC_SET, METRICS_INCLUDE, METRICS_EXCLUDE):
nothing is drawn or alarmed on that the collector does not publish, nothing published is lost, and every
body still validates."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from cni_metrics.core.metric_sets import COMPAT, FULL, STANDARD, selected
from cni_metrics.dashboard.alarms import AlarmOptions, desired_alarms
from cni_metrics.dashboard.body import GRID_WIDTH, DashboardOptions, DashboardPage, build_dashboards
from cni_metrics.dashboard.settings import load_dashboard_settings
from cni_metrics.dashboard.validate import check_body

CLUSTERS = ["alpha", "beta", "gamma"]
SELECTIONS = {
    "compat": selected("compat"),
    "compat+health": selected("compat", include=["nodesFailed", "nodesScraped"]),
    "standard": selected("standard"),
    "standard-utilisation": selected("standard", exclude=["ipUtilization", "awsAPILatencyAvg"]),
    "full": selected("full"),
}


def page_for(metrics: frozenset[str]) -> DashboardPage:
    (page,) = build_dashboards(CLUSTERS, DashboardOptions(metrics=metrics, collector_log_group="/aws/x"))
    assert check_body(page.body) == []
    assert check_body(page.body_json()) == []
    return page


def drawn(page: DashboardPage) -> set[tuple[str, str, str]]:
    """Every (widget title, metric, cluster) a graph draws: plain lines and SEARCH expressions."""
    out = set()
    for widget in page.body["widgets"]:
        if widget["type"] != "metric":
            continue
        title = widget["properties"]["title"]
        for line in widget["properties"]["metrics"]:
            if isinstance(line[0], str):
                out.add((title, line[1], line[3]))
            elif "SEARCH(" in line[0]["expression"]:
                metric = line[0]["expression"].split('MetricName="')[1].split('"')[0]
                cluster = line[0]["expression"].split('CLUSTER_ID="')[1].split('"')[0]
                out.add((title, metric, cluster))
    return out


def rows(page: DashboardPage) -> dict[int, list[dict[str, Any]]]:
    by_y: dict[int, list[dict[str, Any]]] = {}
    for widget in page.body["widgets"]:
        by_y.setdefault(widget["y"], []).append(widget)
    return by_y


@pytest.mark.parametrize("name", SELECTIONS)
def test_each_selection_draws_exactly_the_published_part_of_the_full_dashboard(name: str) -> None:
    # given the full dashboard (every metric published) and a selection
    metrics = SELECTIONS[name]
    everything = drawn(page_for(FULL))
    # when the dashboard is built for the selection
    page = page_for(metrics)
    # then it draws exactly what the full one draws of the published metrics, SEARCH expressions included
    mine = drawn(page)
    assert {(metric, cluster) for _, metric, cluster in mine} == {
        (metric, cluster) for _, metric, cluster in everything if metric in metrics
    }
    assert {s.metric for s in page.searches} == {s.metric for s in page_for(FULL).searches} & metrics
    # and every row still fills the grid's width, side by side
    for widgets in rows(page).values():
        widgets.sort(key=lambda w: w["x"])
        assert widgets[0]["x"] == 0
        assert all(a["x"] + a["width"] == b["x"] for a, b in itertools.pairwise(widgets))
        assert sum(w["width"] for w in widgets) == GRID_WIDTH


def test_compat_keeps_the_helpers_graphs_and_drops_the_fleet_row_and_the_new_metrics() -> None:
    # when the dashboard is built for compat (the upstream helper's names only)
    page = page_for(SELECTIONS["compat"])
    shown = {metric for _, metric, _ in drawn(page)}
    # then only upstream names are drawn, all that the full dashboard draws of them
    assert shown <= COMPAT
    assert shown == {metric for _, metric, _ in drawn(page_for(FULL))} & COMPAT
    # and there is no fleet row (it needs ipUtilization); the latency graph shows the p99 line alone
    titles = [w["properties"].get("title", "") for w in page.body["widgets"]]
    assert not any(title.startswith("IP utilisation, every cluster") for title in titles)
    latency = {(m, c) for t, m, c in drawn(page) if t.startswith("AWS API latency")}
    assert latency == {("awsAPILatency", cluster) for cluster in CLUSTERS}
    # and the intro says graphs are left out, without pointing at metrics that are not there
    intro = page.body["widgets"][0]["properties"]["markdown"]
    assert f"publishes {len(SELECTIONS['compat'])} of the {len(FULL)} metrics" in intro
    assert "nodesFailed" not in intro
    assert "noAvailableIPAddrs" not in intro
    # and the nodes-nearest-exhaustion table (the collector's log, not a metric) is still there
    assert sum(1 for w in page.body["widgets"] if w["type"] == "log") == len(CLUSTERS)


def test_the_full_dashboard_says_nothing_is_left_out() -> None:
    intro = page_for(FULL).body["widgets"][0]["properties"]["markdown"]
    assert "left out" not in intro
    assert "nodesFailed > 0" in intro


@pytest.mark.parametrize("name", SELECTIONS)
def test_alarms_exist_only_on_published_metrics(name: str) -> None:
    # given the alarms wanted when every metric is published
    metrics = SELECTIONS[name]
    everything = desired_alarms(CLUSTERS, AlarmOptions())
    # when they are built for the selection
    alarms = desired_alarms(CLUSTERS, AlarmOptions(metrics=metrics))
    # then they are those of the full set whose metric is published
    assert alarms == {key: alarm for key, alarm in everything.items() if alarm["MetricName"] in metrics}


def test_compat_has_no_alarm_unless_the_health_metrics_are_included() -> None:
    # when alarms are built for compat, then for compat with nodesFailed and nodesScraped included
    bare = desired_alarms(["alpha"], AlarmOptions(metrics=SELECTIONS["compat"]))
    health = desired_alarms(["alpha"], AlarmOptions(metrics=SELECTIONS["compat+health"]))
    # then compat alone has none (every alarm watches a metric the helper never published), and the
    # includes bring back the partial-collection and silent-collector alarms
    assert bare == {}
    assert sorted(health) == ["cni-metrics/alpha/collector-silent", "cni-metrics/alpha/nodes-failed"]


def test_the_default_deployment_alarms_on_everything_it_can() -> None:
    # given the dashboard function's settings with no selection (the default, standard)
    settings = load_dashboard_settings({"CLUSTER_NAMES": "alpha", "AWS_REGION": "us-east-1"})
    # then its options carry the standard selection, and every alarm kind is made
    assert settings.dashboard_options().metrics == settings.alarm_options().metrics == STANDARD | {
        "outboxDatumsDropped"}
    alarms = desired_alarms(["alpha"], settings.alarm_options())
    assert alarms == desired_alarms(["alpha"], AlarmOptions())


def test_settings_carry_the_selection_into_the_bodies() -> None:
    # given the function configured for compat with nodesFailed
    env = {"CLUSTER_NAMES": "alpha", "AWS_REGION": "us-east-1", "METRIC_SET": "compat",
           "METRICS_INCLUDE": "nodesFailed"}
    settings = load_dashboard_settings(env)
    # when the bodies are built from its options
    (page,) = build_dashboards(["alpha"], settings.dashboard_options())
    # then they draw upstream names and nodesFailed only
    assert {metric for _, metric, _ in drawn(page)} <= COMPAT | {"nodesFailed"}
    assert ("Collector: nodes scraped / failed", "nodesFailed", "alpha") in drawn(page)
