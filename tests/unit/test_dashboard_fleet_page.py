"""The fleet overview page (``dashboard.fleet_page``): a fixed set of widgets whatever the fleet's size,
Metrics Insights queries naming the configured namespace and metric, only published metrics ranked."""

from __future__ import annotations

from typing import Any

import pytest
from cni_metrics.core.catalogue import DIMENSION, FLEET_METRICS, METRICS
from cni_metrics.core.metric_sets import COMPAT, FULL
from cni_metrics.dashboard.body import TOP_N, DashboardOptions, build_dashboards, managed_marker
from cni_metrics.dashboard.fleet_page import (
    RANKINGS,
    InsightsQuery,
    build_fleet_page,
    fleet_page_name,
    fleet_queries,
    quote_identifier,
)
from cni_metrics.dashboard.validate import check_body, validate_body

OPTIONS = DashboardOptions(name="cni", region="eu-west-1", namespace="Kubernetes")


def page_for(clusters: int, options: DashboardOptions = OPTIONS) -> dict[str, Any]:
    """The fleet page as the dashboard function builds it beside ``clusters`` clusters' pages."""
    names = [f"c{i:05d}" for i in range(clusters)]
    pages = build_dashboards(names, options)
    page = build_fleet_page("prod", options, [p.name for p in pages], len(names))
    assert page.name == fleet_page_name(options.name)
    body: dict[str, Any] = page.body
    return body


def expressions(body: dict[str, Any]) -> list[str]:
    return [line[0]["expression"] for w in body["widgets"] if w["type"] == "metric"
            for line in w["properties"]["metrics"] if isinstance(line[0], dict) and "expression" in line[0]]


def test_the_page_has_the_same_widgets_for_1_500_and_5000_clusters() -> None:
    # given fleets of 1, 500 and 5,000 clusters (1, 25 and 250 per-cluster pages)
    bodies = [page_for(n) for n in (1, 500, 5000)]
    # then the overview page has the same widgets, in the same places, for each
    shapes = [[(w["type"], w["x"], w["y"], w["width"], w["height"]) for w in b["widgets"]] for b in bodies]
    assert shapes[0] == shapes[1] == shapes[2]
    # a text, two fleet-health graphs and one query per ranking
    assert len(bodies[0]["widgets"]) == 3 + len(RANKINGS) == 9
    # and the same queries: the fleet's size is nowhere in them
    assert expressions(bodies[0]) == expressions(bodies[1]) == expressions(bodies[2])


def test_the_body_passes_validation_and_carries_the_sets_marker() -> None:
    # given the page of a 500-cluster fleet
    body = page_for(500)
    # then CloudWatch's structural rules hold and reconciliation will recognise it as the set's
    assert check_body(body) == []
    validate_body(body)
    assert managed_marker("cni") in body["widgets"][0]["properties"]["markdown"]
    assert fleet_page_name("cni") == "cni-fleet"


def test_every_query_names_the_configured_namespace_and_its_metric() -> None:
    # given a namespace that needs quoting (a slash, a space, a quotation mark)
    options = DashboardOptions(name="cni", namespace='Team/K8s "prod"')
    body = page_for(3, options)
    found = expressions(body)
    # then each ranking is one query, in the documented Metrics Insights form
    assert len(found) == len(RANKINGS)
    for ranking, expression in zip(RANKINGS, found, strict=True):
        expected = (
            f'SELECT {ranking.function}("{ranking.metric}") FROM SCHEMA("Team/K8s \\"prod\\"", CLUSTER_ID) '  # noqa: S608
            f"GROUP BY CLUSTER_ID ORDER BY {ranking.function}() {ranking.order} LIMIT {TOP_N}"
        )
        assert expression == expected
        # and reads back as the namespace and metric it was built from
        query = InsightsQuery.parse(expression)
        assert query is not None
        assert (query.namespace, query.metric) == ('Team/K8s "prod"', ranking.metric)


def test_the_rankings_are_the_documented_ones() -> None:
    # then the page ranks utilisation, hours to exhaustion, remaining IPs, failed nodes, failed collections
    # and staleness, each the way that puts the worst cluster first
    expected = {
        "ipUtilization": ("MAX", "DESC"), "hoursToIPExhaustion": ("MIN", "ASC"),
        "remainingIPAddresses": ("MIN", "ASC"), "nodesFailed": ("MAX", "DESC"),
        "collectionFailed": ("MAX", "DESC"), "minutesSinceCollected": ("MAX", "DESC"),
    }
    assert {r.metric: (r.function, r.order) for r in RANKINGS} == expected
    # and every one is a metric the collector or the dispatcher publishes
    published = {m.name for m in METRICS} | {m.name for m in FLEET_METRICS}
    assert set(expected) <= published


def test_a_metric_left_out_by_the_selection_gives_no_widget() -> None:
    # given a deployment that excludes collectionFailed, and one publishing the compat set
    without = DashboardOptions(name="cni", metrics=FULL - {"collectionFailed"})
    compat = DashboardOptions(name="cni", metrics=COMPAT)
    # then the first has every ranking but collectionFailed's
    metrics = [q.metric for q in fleet_queries(without)]
    assert "collectionFailed" not in metrics
    assert len(metrics) == len(RANKINGS) - 1
    assert not [e for e in expressions(page_for(2, without)) if "collectionFailed" in e]
    # and the compat set (no derived, health or capacity metrics) keeps only the dispatcher's staleness
    assert [q.metric for q in fleet_queries(compat)] == ["minutesSinceCollected"]
    body = page_for(2, compat)
    assert len(body["widgets"]) == 4
    assert check_body(body) == []
    assert "5 ranking(s)" in body["widgets"][0]["properties"]["markdown"]


def test_the_fleet_health_graphs_read_the_dispatchers_series() -> None:
    # given the page of the fleet "prod" in namespace Custom/CNI
    body = page_for(10, DashboardOptions(name="cni", namespace="Custom/CNI"))
    health, duration = body["widgets"][1], body["widgets"][2]
    lines = health["properties"]["metrics"] + duration["properties"]["metrics"]
    # then every line is a fleet metric under CLUSTER_ID fleet:prod in the namespace
    assert {tuple(line[:4]) for line in lines} == {
        ("Custom/CNI", name, DIMENSION, "fleet:prod")
        for name in ("fleetClusters", "fleetClustersDispatched", "fleetDispatchErrors", "fleetClustersStale",
                     "fleetClustersNeverCollected", "fleetEntriesRefused", "fleetDiscoveryErrors",
                     "fleetDispatchDurationMs")}
    assert [line[1] for line in duration["properties"]["metrics"]] == ["fleetDispatchDurationMs"]


def test_each_query_widget_holds_one_labelled_query() -> None:
    body = page_for(5)
    queries = body["widgets"][3:]
    assert len(queries) == len(RANKINGS)
    for widget in queries:
        (line,) = widget["properties"]["metrics"]
        (entry,) = line
        # then it is the options-only form, with an id, the period and a label keeping the cluster's name
        assert set(entry) == {"expression", "id", "label", "period"}
        assert (entry["id"], entry["period"]) == ("q1", 60)
        assert entry["label"].startswith("${LABEL} (")
        assert entry["expression"].startswith("SELECT ")


@pytest.mark.parametrize(
    ("name", "quoted"),
    [("Kubernetes", '"Kubernetes"'), ("AWS-like/ns", '"AWS-like/ns"'), ('a"b', '"a\\"b"'),
     ("it's", '"it\\\'s"'), ("back\\slash", '"back\\\\slash"'), ("LIMIT", '"LIMIT"')],
)
def test_identifiers_are_quoted_and_escaped(name: str, quoted: str) -> None:
    # then a name is always in double quotes (valid for any identifier, needed for reserved words and
    # characters other than letters, digits and _), quotation marks escaped, and it parses back
    assert quote_identifier(name) == quoted
    query = InsightsQuery(name, "ipUtilization", "MAX", "DESC")
    assert InsightsQuery.parse(query.expression) == query


@pytest.mark.parametrize("expression", [
    "SELECT AVG(CPUUtilization) FROM \"AWS/EC2\"",
    'SELECT MAX("a") FROM SCHEMA("ns", CLUSTER_ID) GROUP BY CLUSTER_ID ORDER BY MIN() DESC LIMIT 10',
    "SLICE(SORT(METRICS(), MAX, DESC), 0, 10)",
])
def test_parse_reads_only_the_pages_own_queries(expression: str) -> None:
    assert InsightsQuery.parse(expression) is None
