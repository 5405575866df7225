"""Structural checks of a dashboard body against CloudWatch's rules (pure).

moto accepts any JSON as a body; CloudWatch does not. ``check_body`` returns every problem it finds
(empty when the body is fine); ``validate_body`` raises ``DashboardBodyError`` listing them.

A metric widget's ``metrics`` entry is a metric (namespace, name, dimension pairs, ``.``/``...``
shorthand, then an optional options object) or an expression: an array holding only an options object
with a non-empty ``expression`` string and an ``id`` (math, SEARCH or a Metrics Insights ``SELECT``).
Options: ``id`` starts with a lower-case letter and is unique in the widget, ``label`` and ``stat`` are
strings, ``visible`` a boolean, ``yAxis`` ``left`` or ``right``, ``period`` 1, 5, 10, 30 or a multiple of
60 seconds (GetMetricData's rule: a widget's data is read with it). One widget holds at most one Metrics
Insights query (a GetMetricData call takes one; a dashboard holds one per widget).
"""

from __future__ import annotations

import json
import re
from typing import Any

from cni_metrics.dashboard.body import GRID_WIDTH, MAX_WIDGETS

WIDGET_TYPES = frozenset({"metric", "text", "log", "alarm", "explorer"})
MAX_BODY_BYTES = 1_000_000
MAX_HEIGHT = 1000
_ID = re.compile(r"^[a-z][a-zA-Z0-9_]*$")
_REPEAT = "."
_REPEAT_REST = "..."
_SHORT_PERIODS = frozenset({1, 5, 10, 30})
_INSIGHTS = re.compile(r"^\s*SELECT\s", re.IGNORECASE)


class DashboardBodyError(ValueError):
    """A body CloudWatch would refuse; ``problems`` lists why."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def validate_body(body: dict[str, Any] | str) -> None:
    """Raise ``DashboardBodyError`` unless ``body`` passes every check."""
    problems = check_body(body)
    if problems:
        raise DashboardBodyError(problems)


def check_body(body: dict[str, Any] | str) -> list[str]:
    """Every structural problem of ``body`` (a dict or its JSON text)."""
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError as error:
            return [f"body is not JSON: {error}"]
    if not isinstance(body, dict):
        return ["body is not a JSON object"]
    size = len(json.dumps(body, separators=(",", ":")).encode())
    problems = [f"body is {size} bytes (> {MAX_BODY_BYTES})"] if size > MAX_BODY_BYTES else []
    widgets = body.get("widgets")
    if not isinstance(widgets, list):
        return [*problems, "widgets must be an array"]
    if len(widgets) > MAX_WIDGETS:
        problems.append(f"{len(widgets)} widgets (> {MAX_WIDGETS})")
    boxes: list[tuple[int, int, int, int, int]] = []
    for index, widget in enumerate(widgets):
        where = f"widgets[{index}]"
        if not isinstance(widget, dict):
            problems.append(f"{where} is not an object")
            continue
        box = _check_placement(widget, where, problems)
        if box is not None:
            boxes.append((index, *box))
        _check_widget(widget, where, problems)
    problems.extend(_overlaps(boxes))
    return problems


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_placement(widget: dict[str, Any], where: str, problems: list[str]) -> tuple[
        int, int, int, int] | None:
    x, y = widget.get("x", 0), widget.get("y", 0)
    width, height = widget.get("width", 6), widget.get("height", 6)
    if not all(_is_int(v) for v in (x, y, width, height)):
        problems.append(f"{where}: x, y, width and height must be integers")
        return None
    ok = True
    if x < 0 or y < 0:
        problems.append(f"{where}: negative position")
        ok = False
    if not 1 <= width <= GRID_WIDTH or x + width > GRID_WIDTH:
        problems.append(f"{where}: x + width = {x + width} outside the {GRID_WIDTH}-column grid")
        ok = False
    if not 1 <= height <= MAX_HEIGHT:
        problems.append(f"{where}: height {height} outside 1..{MAX_HEIGHT}")
        ok = False
    return (x, y, width, height) if ok else None


def _overlaps(boxes: list[tuple[int, int, int, int, int]]) -> list[str]:
    found = []
    ordered = sorted(boxes, key=lambda b: b[2])
    for i, (a, ax, ay, aw, ah) in enumerate(ordered):
        for b, bx, by, bw, bh in ordered[i + 1 :]:
            if by >= ay + ah:
                break
            if ax < bx + bw and bx < ax + aw and ay < by + bh:
                found.append(f"widgets[{a}] and widgets[{b}] overlap")
    return found


def _check_widget(widget: dict[str, Any], where: str, problems: list[str]) -> None:
    kind = widget.get("type")
    if kind not in WIDGET_TYPES:
        problems.append(f"{where}: type {kind!r} not one of {sorted(WIDGET_TYPES)}")
        return
    props = widget.get("properties")
    if not isinstance(props, dict):
        problems.append(f"{where}: properties must be an object")
        return
    if kind == "text" and not isinstance(props.get("markdown"), str):
        problems.append(f"{where}: text widget needs a markdown string")
    elif kind == "metric":
        _check_metric_widget(props, where, problems)
    elif kind == "alarm" and not (isinstance(props.get("alarms"), list) and props["alarms"]):
        problems.append(f"{where}: alarm widget needs a non-empty alarms array")
    elif kind == "log" and not isinstance(props.get("query"), str):
        problems.append(f"{where}: log widget needs a query string")
    if kind in {"log", "alarm", "explorer"} and not isinstance(props.get("region"), str):
        problems.append(f"{where}: region missing")


def _check_metric_widget(props: dict[str, Any], where: str, problems: list[str]) -> None:
    if not isinstance(props.get("region"), str) or not props["region"]:
        problems.append(f"{where}: metric widget without region")
    metrics = props.get("metrics")
    if not isinstance(metrics, list) or not metrics:
        problems.append(f"{where}: metric widget needs a non-empty metrics array")
        return
    ids: set[str] = set()
    previous: list[Any] | None = None
    queries = 0
    for index, line in enumerate(metrics):
        at = f"{where}.metrics[{index}]"
        if not isinstance(line, list) or not line:
            problems.append(f"{at}: each metric must be a non-empty array")
            continue
        options = line[-1] if isinstance(line[-1], dict) else None
        values = line[:-1] if options is not None else line
        if options is not None:
            _check_options(options, at, ids, problems)
        if not values:
            entry = options or {}
            expression = entry.get("expression")
            if not isinstance(expression, str):
                problems.append(f"{at}: an options-only entry needs an expression")
            elif not expression.strip():
                problems.append(f"{at}: the expression is empty")
            elif not isinstance(entry.get("id"), str):
                problems.append(f"{at}: an expression needs an id")
            if isinstance(expression, str) and _INSIGHTS.match(expression):
                queries += 1
                if queries == 2:
                    problems.append(f"{at}: a second Metrics Insights query (one per widget)")
            continue
        if options is not None and "expression" in options:
            problems.append(f"{at}: an expression entry holds only its options object")
            continue
        expanded = _expand(values, previous, at, problems)
        if expanded is not None:
            previous = expanded


def _check_options(options: dict[str, Any], at: str, ids: set[str], problems: list[str]) -> None:
    ident = options.get("id")
    if ident is not None:
        if not isinstance(ident, str) or not _ID.match(ident):
            problems.append(f"{at}: id {ident!r} must start with a lower-case letter ([a-zA-Z0-9_])")
        elif ident in ids:
            problems.append(f"{at}: duplicate id {ident!r}")
        else:
            ids.add(ident)
    if "visible" in options and not isinstance(options["visible"], bool):
        problems.append(f"{at}: visible must be a boolean")
    for key in ("label", "stat"):
        if key in options and not isinstance(options[key], str):
            problems.append(f"{at}: {key} must be a string")
    if "yAxis" in options and options["yAxis"] not in ("left", "right"):
        problems.append(f"{at}: yAxis must be 'left' or 'right'")
    if "period" in options:
        period = options["period"]
        if not _is_int(period) or period < 1 or (period not in _SHORT_PERIODS and period % 60):
            problems.append(f"{at}: period {period!r} must be 1, 5, 10, 30 or a multiple of 60 seconds")


def _expand(values: list[Any], previous: list[Any] | None, at: str, problems: list[str]) -> list[Any] | None:
    """Resolve the ``.``/``...`` shorthand and check namespace, name and dimension pairs."""
    if not all(isinstance(v, str) for v in values):
        problems.append(f"{at}: namespace, name and dimensions must be strings")
        return None
    if _REPEAT_REST in values:
        if previous is None or values.index(_REPEAT_REST) != 0:
            problems.append(f"{at}: '...' must come first and follow a full metric")
            return None
        rest = values[1:]
        # "..." keeps the previous metric and replaces the trailing values (dimension values).
        if len(rest) > len(previous):
            problems.append(f"{at}: '...' followed by more values than the previous metric has")
            return None
        expanded = previous[: len(previous) - len(rest)] + rest
    else:
        expanded = []
        for position, value in enumerate(values):
            if value == _REPEAT:
                if previous is None or position >= len(previous):
                    problems.append(f"{at}: '.' at position {position} has nothing to repeat")
                    return None
                value = previous[position]
            expanded.append(value)
    if len(expanded) < 2 or len(expanded) % 2:
        problems.append(f"{at}: expected namespace, name and name/value dimension pairs")
        return None
    if len(expanded) > 2 + 2 * 30:
        problems.append(f"{at}: more than 30 dimensions")
        return None
    if not expanded[0] or not expanded[1]:
        problems.append(f"{at}: empty namespace or metric name")
        return None
    return expanded
