"""The validator accepts Metrics Insights query widgets and refuses malformed expression entries."""

from __future__ import annotations

from typing import Any

import pytest
from cni_metrics.dashboard.body import DashboardOptions
from cni_metrics.dashboard.fleet_page import build_fleet_page
from cni_metrics.dashboard.validate import DashboardBodyError, check_body, validate_body

QUERY = ('SELECT MAX("ipUtilization") FROM SCHEMA("Kubernetes", CLUSTER_ID) '
         "GROUP BY CLUSTER_ID ORDER BY MAX() DESC LIMIT 10")


def widget(*lines: Any) -> dict[str, Any]:
    properties = {"region": "us-east-1", "view": "timeSeries", "metrics": list(lines)}
    placed = {"type": "metric", "x": 0, "y": 0, "width": 8, "height": 6, "properties": properties}
    return {"widgets": [placed]}


def test_a_query_widget_is_accepted() -> None:
    # given a widget holding one Metrics Insights query in the options-only form
    body = widget([{"expression": QUERY, "id": "q1", "label": "${LABEL} (max ${MAX})", "period": 60}])
    # then it passes, as does the whole fleet page
    assert check_body(body) == []
    validate_body(body)
    validate_body(build_fleet_page("prod", DashboardOptions()).body)


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ({"expression": "", "id": "q1"}, "the expression is empty"),
        ({"expression": "   ", "id": "q1"}, "the expression is empty"),
        ({"expression": 7, "id": "q1"}, "needs an expression"),
        ({"id": "q1", "label": "x"}, "needs an expression"),
        ({"expression": QUERY}, "needs an id"),
        ({"expression": QUERY, "id": "Q1"}, "lower-case"),
        ({"expression": QUERY, "id": "1q"}, "lower-case"),
        ({"expression": QUERY, "id": "q1", "label": 3}, "label must be a string"),
        ({"expression": QUERY, "id": "q1", "stat": ["Maximum"]}, "stat must be a string"),
        ({"expression": QUERY, "id": "q1", "period": 45}, "period 45"),
        ({"expression": QUERY, "id": "q1", "period": 0}, "period 0"),
        ({"expression": QUERY, "id": "q1", "period": "60"}, "period '60'"),
        ({"expression": QUERY, "id": "q1", "period": True}, "period True"),
        ({"expression": QUERY, "id": "q1", "yAxis": "top"}, "yAxis"),
    ],
)
def test_a_malformed_expression_entry_is_refused(entry: dict[str, Any], problem: str) -> None:
    problems = check_body(widget([entry]))
    assert any(problem in p for p in problems), problems
    with pytest.raises(DashboardBodyError):
        validate_body(widget([entry]))


@pytest.mark.parametrize("period", [1, 5, 10, 30, 60, 300, 3600])
def test_the_periods_getmetricdata_takes_are_accepted(period: int) -> None:
    assert check_body(widget([{"expression": QUERY, "id": "q1", "period": period}])) == []


def test_one_metrics_insights_query_per_widget() -> None:
    # given a widget with two queries (a GetMetricData call takes one), and one with a query and math
    two = widget([{"expression": QUERY, "id": "q1"}], [{"expression": QUERY.lower(), "id": "q2"}])
    mixed = widget([{"expression": QUERY, "id": "q1"}], [{"expression": "q1 * 2", "id": "e1"}])
    # then the first is refused and the second is not
    assert check_body(two) == ["widgets[0].metrics[1]: a second Metrics Insights query (one per widget)"]
    assert check_body(mixed) == []


def test_a_query_beside_metric_values_is_refused() -> None:
    # given an entry that names a metric and also carries an expression
    body = widget(["Kubernetes", "ipUtilization", {"expression": QUERY, "id": "q1"}])
    # then it is refused: an expression entry holds only its options object
    assert any("only its options" in p for p in check_body(body))
