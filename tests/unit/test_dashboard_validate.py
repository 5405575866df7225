"""The structural validator rejects what CloudWatch would refuse (and accepts the documented forms)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from cni_metrics.dashboard.validate import DashboardBodyError, check_body, validate_body


def metric_widget(**overrides: Any) -> dict[str, Any]:
    widget: dict[str, Any] = {
        "type": "metric", "x": 0, "y": 0, "width": 12, "height": 6,
        "properties": {"region": "us-east-1",
                       "metrics": [["Kubernetes", "ipUtilization", "CLUSTER_ID", "a"]]},
    }
    widget.update(overrides)
    return widget


def body(*widgets: dict[str, Any]) -> dict[str, Any]:
    return {"widgets": list(widgets)}


def with_metrics(*lines: Any) -> dict[str, Any]:
    widget = metric_widget()
    widget["properties"]["metrics"] = list(lines)
    return body(widget)


def test_a_good_body_passes() -> None:
    good = body(metric_widget(), {"type": "text", "x": 12, "y": 0, "width": 12, "height": 6,
                                  "properties": {"markdown": "hi"}})
    assert check_body(good) == []
    validate_body(good)


@pytest.mark.parametrize(
    ("lines", "problem"),
    [
        ([["Kubernetes", "ipUtilization", "CLUSTER_ID"]], "dimension pairs"),
        ([["Kubernetes", 7, "CLUSTER_ID", "a"]], "must be strings"),
        ([[]], "non-empty array"),
        (["Kubernetes"], "non-empty array"),
        ([[{"expression": "SUM(METRICS())"}]], "needs an id"),
        ([[{"label": "x"}]], "needs an expression"),
        ([["Kubernetes", "a", {"id": "Upper"}]], "lower-case"),
        ([["K", "a", {"id": "m1"}], ["K", "b", {"id": "m1"}]], "duplicate id"),
        ([["...", "b"]], "'...' must come first"),
        ([[".", "b"]], "nothing to repeat"),
        ([["K", "a", "D", "x", {"visible": "no"}]], "visible must be a boolean"),
        ([["K", "a", {"expression": "m1", "id": "e1"}]], "only its options"),
    ],
)
def test_bad_metric_arrays_are_rejected(lines: list[Any], problem: str) -> None:
    problems = check_body(with_metrics(*lines))
    assert any(problem in p for p in problems), problems


def test_shorthand_and_expressions_are_accepted() -> None:
    good = with_metrics(
        ["Kubernetes", "ipUtilization", "CLUSTER_ID", "a", {"id": "m1"}],
        ["...", "b", {"id": "m2"}],
        [".", "warmIPAddresses", ".", "c"],
        [{"expression": "SUM(METRICS())", "id": "e1", "label": "sum"}],
    )
    assert check_body(good) == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"type": "chart2"}, "type"),
        ({"x": 20}, "outside the 24-column grid"),
        ({"width": 25}, "outside the 24-column grid"),
        ({"width": 0}, "outside the 24-column grid"),
        ({"x": 1.5}, "must be integers"),
        ({"height": True}, "must be integers"),
        ({"y": -1}, "negative"),
        ({"height": 1001}, "height"),
        ({"properties": []}, "properties must be an object"),
    ],
)
def test_bad_widgets_are_rejected(change: dict[str, Any], problem: str) -> None:
    problems = check_body(body(metric_widget(**change)))
    assert any(problem in p for p in problems), problems


def test_missing_region_is_rejected() -> None:
    widget = metric_widget()
    del widget["properties"]["region"]
    assert any("without region" in p for p in check_body(body(widget)))


def test_overlapping_widgets_are_rejected_and_touching_ones_are_not() -> None:
    touching = body(metric_widget(), metric_widget(x=12), metric_widget(y=6, width=24))
    assert check_body(touching) == []
    overlapping = body(metric_widget(), metric_widget(x=11, y=5))
    assert check_body(overlapping) == ["widgets[0] and widgets[1] overlap"]


def test_too_many_widgets_and_oversized_bodies_are_rejected() -> None:
    many = body(*[metric_widget(y=6 * i) for i in range(501)])
    assert "501 widgets (> 500)" in check_body(many)
    huge = copy.deepcopy(metric_widget())
    huge["properties"]["title"] = "x" * 1_000_001
    assert any("bytes" in p for p in check_body(body(huge)))


def test_other_widget_types_need_their_properties() -> None:
    problems = check_body(body(
        {"type": "text", "x": 0, "y": 0, "width": 6, "height": 6, "properties": {}},
        {"type": "alarm", "x": 6, "y": 0, "width": 6, "height": 6,
         "properties": {"region": "r", "alarms": []}},
        {"type": "log", "x": 12, "y": 0, "width": 6, "height": 6, "properties": {"query": "q"}},
    ))
    assert problems == [
        "widgets[0]: text widget needs a markdown string",
        "widgets[1]: alarm widget needs a non-empty alarms array",
        "widgets[2]: region missing",
    ]


@pytest.mark.parametrize(("raw", "problem"), [("{", "not JSON"), ("[]", "not a JSON object"),
                                              ('{"widgets": {}}', "widgets must be an array")])
def test_non_bodies_are_rejected(raw: str, problem: str) -> None:
    with pytest.raises(DashboardBodyError, match=problem):
        validate_body(raw)
