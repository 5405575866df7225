"""Dashboard bodies: every one passes the structural validator; layout, content, splitting, determinism."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from cni_metrics.dashboard.body import (
    FLEET_CHUNK,
    MAX_CLUSTERS_PER_DASHBOARD,
    MAX_WIDGETS,
    TOP_EXPRESSION,
    WIDGETS_PER_CLUSTER,
    DashboardOptions,
    DashboardPage,
    build_dashboards,
    managed_marker,
)
from cni_metrics.dashboard.validate import check_body
from hypothesis import given, settings
from hypothesis import strategies as st

PER_CLUSTER_METRICS = {
    "assignIPAddresses", "totalIPAddresses", "maxIPAddresses", "ipUtilization", "warmIPAddresses",
    "eniAllocated", "eniMaxAvailable", "totalIPv4Prefixes", "ipamdErr", "awsAPIErr", "noAvailableIPAddrs",
    "ec2ApiReqCount", "awsAPILatencyAvg", "nodesScraped", "nodesFailed", "scrapeDurationMs",
}
cluster_names = st.from_regex(r"[0-9A-Za-z][A-Za-z0-9_-]{0,30}", fullmatch=True)


def names(count: int) -> list[str]:
    return [f"cluster-{i:04d}" for i in range(count)]


def build(clusters: list[str], **options: Any) -> list[DashboardPage]:
    pages = build_dashboards(clusters, DashboardOptions(**options))
    for page in pages:
        assert check_body(page.body) == [], page.name
        assert check_body(page.body_json()) == []
    return pages


def metric_lines(page: DashboardPage) -> list[tuple[int, list[Any]]]:
    return [(i, line) for i, w in enumerate(page.body["widgets"]) if w["type"] == "metric"
            for line in w["properties"]["metrics"] if isinstance(line[0], str)]


def widgets_of(page: DashboardPage, cluster: str) -> list[dict[str, Any]]:
    """The metric widgets of ``cluster``'s own section (not the fleet row)."""
    return [w for w in page.body["widgets"][1:] if w["type"] == "metric" and all(
        isinstance(line[0], str) and line[3] == cluster for line in w["properties"]["metrics"])
        and not w["properties"]["title"].startswith("IP utilisation, every")]


@pytest.mark.parametrize("count", [0, 1, 2, 3, 19, 20, 21, 45, 101, 250])
def test_every_body_is_valid_and_within_limits(count: int) -> None:
    # given a fleet of `count` clusters
    # when the bodies are built
    pages = build(names(count))
    # then each is valid, within 500 widgets, and every cluster is on exactly one page
    assert all(len(p.body["widgets"]) <= MAX_WIDGETS for p in pages)
    shown = [c for p in pages for c in p.clusters]
    assert shown == names(count)


def test_same_clusters_in_any_order_give_the_same_bodies() -> None:
    # given the same clusters, shuffled and duplicated
    first = build(["b", "a", "c"])
    second = build(["c", "a", "b", "a"])
    # then the bodies are byte-for-byte equal
    assert [p.body_json() for p in first] == [p.body_json() for p in second]


def test_each_cluster_section_shows_every_required_metric() -> None:
    # given two clusters in a custom namespace
    (page,) = build(["alpha", "beta"], namespace="Custom/NS", region="eu-west-1")
    for cluster in ("alpha", "beta"):
        # when we look at the widgets of one cluster
        widgets = widgets_of(page, cluster)
        shown = {line[1] for w in widgets for line in w["properties"]["metrics"]}
        # then every metric is there, in the namespace, by CLUSTER_ID, in the region
        assert shown >= PER_CLUSTER_METRICS
        for widget in widgets:
            assert widget["properties"]["region"] == "eu-west-1"
            for line in widget["properties"]["metrics"]:
                assert line[0] == "Custom/NS"
                assert line[2:4] == ["CLUSTER_ID", cluster]


def test_counters_are_sums_and_utilisation_has_threshold_annotations() -> None:
    # given one cluster and thresholds 75 / 92
    (page,) = build(["alpha"], warn_pct=75.0, critical_pct=92.0)
    by_metric = {line[1]: w for w in widgets_of(page, "alpha") for line in w["properties"]["metrics"]}
    # then errors and EC2 requests are summed per period
    for counter in ("ipamdErr", "awsAPIErr", "noAvailableIPAddrs", "ec2ApiReqCount"):
        assert by_metric[counter]["properties"]["stat"] == "Sum"
    # and the utilisation graph carries both thresholds as horizontal annotations
    values = [a["value"] for a in by_metric["ipUtilization"]["properties"]["annotations"]["horizontal"]]
    assert values == [75.0, 92.0]


def test_fleet_row_puts_every_cluster_on_one_graph_and_ranks_the_closest_to_exhaustion() -> None:
    # given five clusters
    clusters = ["e", "d", "c", "b", "a"]
    (page,) = build(clusters)
    fleet, top = page.body["widgets"][1], page.body["widgets"][2]
    # then the fleet graph shows each cluster's ipUtilization, sorted
    assert [line[3] for line in fleet["properties"]["metrics"]] == sorted(clusters)
    assert {line[1] for line in fleet["properties"]["metrics"]} == {"ipUtilization"}
    # and the ranking widget sorts hidden per-cluster series with metric math
    expressions = [line[0] for line in top["properties"]["metrics"] if isinstance(line[0], dict)]
    assert expressions == [{"expression": TOP_EXPRESSION, "id": "top"}]
    hidden = [line for line in top["properties"]["metrics"] if isinstance(line[0], str)]
    assert [line[3] for line in hidden] == sorted(clusters)
    assert all(line[-1]["visible"] is False for line in hidden)
    assert top["properties"]["view"] == "bar"


def test_a_large_fleet_is_split_and_pages_link_to_each_other() -> None:
    # given 250 clusters, 20 per dashboard
    pages = build(names(250), name="fleet")
    # then there are 13 pages named fleet, fleet-2, ... each linking to all others
    assert [p.name for p in pages] == ["fleet"] + [f"fleet-{i}" for i in range(2, 14)]
    for page in pages:
        intro = page.body["widgets"][0]["properties"]["markdown"]
        linked = set(re.findall(r"\(#dashboards/dashboard/([^)]+)\)", intro))
        assert linked == {p.name for p in pages} - {page.name}
        assert managed_marker("fleet") in intro
    # and the first page's fleet row covers all 250 clusters in chunks of FLEET_CHUNK
    fleet_graphs = [w for w in pages[0].body["widgets"] if w["type"] == "metric"
                    and w["properties"]["title"].startswith("IP utilisation, every cluster")]
    assert [len(w["properties"]["metrics"]) for w in fleet_graphs] == [FLEET_CHUNK] * 5
    assert sorted(line[3] for w in fleet_graphs for line in w["properties"]["metrics"]) == names(250)


def test_a_thousand_clusters_still_fit_the_limits() -> None:
    # given 1000 clusters (ten times the default EKS quota per region), as many per dashboard as fit
    pages = build(names(1000), clusters_per_dashboard=MAX_CLUSTERS_PER_DASHBOARD)
    # then the first page makes room for its fleet row (two widgets per chunk) and no page exceeds 500
    assert max(len(p.body["widgets"]) for p in pages) <= MAX_WIDGETS
    fleet_widgets = 2 * (1000 // FLEET_CHUNK)
    assert len(pages[0].clusters) == (MAX_WIDGETS - 1 - fleet_widgets) // WIDGETS_PER_CLUSTER
    assert len(pages[1].body["widgets"]) == 1 + MAX_CLUSTERS_PER_DASHBOARD * WIDGETS_PER_CLUSTER


def test_no_clusters_gives_a_valid_page_saying_so() -> None:
    (page,) = build([])
    assert page.body["widgets"][0]["type"] == "text"
    assert "no clusters configured" in page.body["widgets"][0]["properties"]["markdown"]


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="clusters_per_dashboard"):
        DashboardOptions(clusters_per_dashboard=MAX_CLUSTERS_PER_DASHBOARD + 1)
    with pytest.raises(ValueError, match="warn_pct"):
        DashboardOptions(warn_pct=95.0, critical_pct=90.0)


@settings(max_examples=60, deadline=None)
@given(st.lists(cluster_names, max_size=60), st.integers(min_value=1, max_value=MAX_CLUSTERS_PER_DASHBOARD))
def test_any_fleet_gives_valid_deterministic_bodies(clusters: list[str], per_page: int) -> None:
    # given any set of valid cluster names and page size
    first = build(clusters, clusters_per_dashboard=per_page)
    # then the bodies are valid, and rebuilding from the reversed list gives the same JSON
    second = build(list(reversed(clusters)), clusters_per_dashboard=per_page)
    assert [p.body_json() for p in first] == [p.body_json() for p in second]
    assert sorted(c for p in first for c in p.clusters) == sorted(set(clusters))
    assert json.loads(first[0].body_json()) == first[0].body
