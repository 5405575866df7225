"""Draw dashboard pages locally: the metric widgets' data from GetMetricData, laid out like the grid.

For looking without AWS (CloudWatch endpoint from AWS_ENDPOINT_URL_CLOUDWATCH, e.g. moto). Only what
this package's bodies use is drawn: line graphs (left/right axes, horizontal annotations), the "closest
to exhaustion" bar widget (its SORT/SLICE expression evaluated here), the fleet page's Metrics Insights
queries (evaluated here from ListMetrics and GetMetricData, as ``InsightsQuery`` describes them: moto
runs no SELECT; their titles say so), and text widgets as plain text. A Metrics Insights query of another
shape is drawn as a labelled placeholder.
"""

from __future__ import annotations

import base64
import io
import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates
import matplotlib.pyplot as plt
from cni_metrics.core.catalogue import DIMENSION
from cni_metrics.dashboard.body import (
    GRID_WIDTH,
    TOP_EXPRESSION,
    TOP_N,
    DashboardOptions,
    DashboardPage,
    Search,
    build_dashboards,
)
from cni_metrics.dashboard.fleet_page import InsightsQuery, build_fleet_page
from matplotlib.axes import Axes
from matplotlib.figure import Figure

UNIT_WIDTH_IN = 0.8
UNIT_HEIGHT_IN = 0.45
DPI = 80
_QUERIES_PER_CALL = 500
_SELECT = re.compile(r"^\s*SELECT\s", re.IGNORECASE)
LOCAL_QUERY_NOTE = " [Metrics Insights, evaluated here]"


@dataclass(frozen=True, slots=True)
class Series:
    """One plotted line: label, axis side and its points in time order."""

    label: str
    axis: str
    timestamps: tuple[datetime, ...]
    values: tuple[float, ...]


def render_dashboard(
    out: str | Path,
    clusters: Sequence[str],
    *,
    cloudwatch: Any | None = None,
    options: DashboardOptions | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    period: int | None = None,
    fleet: str | None = None,
) -> list[Path]:
    """Build the dashboards for ``clusters`` and draw them to ``out`` (.png, or .html embedding PNGs).

    A .png target gets one file per page (``out``, then ``out-2.png``, ...); returns the files written.
    Data is read from ``start`` to ``end`` (default: the last three hours) and each graph's time axis
    is fitted to the data found. ``period`` (seconds) replaces the widgets' own (60) when reading, e.g.
    1 to see every collection of a demo that runs its cycles seconds apart. ``fleet``: a fleet's name,
    whose overview page (``NAME-fleet``) is drawn last.
    """
    options = options or DashboardOptions(region=_default_region(cloudwatch))
    client = cloudwatch or boto3.client("cloudwatch", region_name=options.region)
    end = end or datetime.now(UTC) + timedelta(minutes=1)
    start = start or end - timedelta(hours=3)
    pages = with_fleet_page(build_dashboards(clusters, options), fleet, options, len(set(clusters)))
    return render_pages(pages, Path(out), client, start, end, period)


def with_fleet_page(pages: list[DashboardPage], fleet: str | None, options: DashboardOptions,
                    clusters: int) -> list[DashboardPage]:
    """``pages`` and, given a fleet's name, its overview page after them (as the dashboard function puts)."""
    if fleet is None:
        return pages
    return [*pages, build_fleet_page(fleet, options, [page.name for page in pages], clusters)]


def _default_region(cloudwatch: Any | None) -> str:
    region = cloudwatch.meta.region_name if cloudwatch is not None else boto3.session.Session().region_name
    return str(region or "us-east-1")


def render_pages(pages: Sequence[DashboardPage], out: Path, cloudwatch: Any, start: datetime,
                 end: datetime, period: int | None = None) -> list[Path]:
    """Draw ``pages`` to ``out`` (.png per page, or one .html); returns the files written."""
    images = []
    for page in pages:
        series = fetch_page_series(page, cloudwatch, start, end, period)
        images.append((page.name, _draw_page(page, series, *_time_axis(series, start, end))))
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".html":
        out.write_text(_html(images, start, end), encoding="utf-8")
        return [out]
    if out.suffix.lower() != ".png":
        raise ValueError(f"render target must end in .png or .html: {out}")
    written = []
    for index, (_, png) in enumerate(images):
        target = out if index == 0 else out.with_name(f"{out.stem}-{index + 1}{out.suffix}")
        target.write_bytes(png)
        written.append(target)
    return written


def fetch_page_series(page: DashboardPage, cloudwatch: Any, start: datetime, end: datetime,
                      period: int | None = None) -> dict[int, list[Series]]:
    """GetMetricData for every plain metric of the page's metric widgets, by widget index.

    ``period`` replaces the widgets' periods when given. A SEARCH expression of the page
    (``DashboardPage.searches``) becomes one line per metric ListMetrics finds for it; a Metrics Insights
    query of the fleet page (``InsightsQuery``) its top clusters' lines, ranked here.
    """
    queries: list[dict[str, Any]] = []
    meta: dict[str, tuple[int, str, str]] = {}
    series: dict[int, list[Series]] = {}
    searches = {search.expression: search for search in page.searches}
    for w_index, widget in enumerate(page.body["widgets"]):
        if widget["type"] != "metric":
            continue
        props = widget["properties"]
        for m_index, line in enumerate(props["metrics"]):
            options = line[-1] if isinstance(line[-1], dict) else {}
            values = line[:-1] if options else line
            if not values:
                insights = InsightsQuery.parse(str(options.get("expression", "")))
                if insights is not None:
                    query_period = period or int(options.get("period", props.get("period", 60)))
                    label = str(options.get("label", "${LABEL}"))
                    series.setdefault(w_index, []).extend(
                        insights_series(cloudwatch, insights, start, end, query_period, label))
                    continue
                found_search = searches.get(str(options.get("expression", "")))
                listed = _search(cloudwatch, found_search) if found_search is not None else []
                for s_index, (found, stat, label) in enumerate(listed):
                    query_id = f"w{w_index}m{m_index}s{s_index}"
                    queries.append({"Id": query_id, "ReturnData": True, "MetricStat": {
                        "Metric": found, "Period": period or int(props.get("period", 60)), "Stat": stat}})
                    meta[query_id] = (w_index, label, str(options.get("yAxis", "left")))
                continue  # any other expression: evaluated when drawing
            query_id = f"w{w_index}m{m_index}"
            dimensions = [{"Name": values[i], "Value": values[i + 1]} for i in range(2, len(values), 2)]
            queries.append({
                "Id": query_id,
                "MetricStat": {
                    "Metric": {"Namespace": values[0], "MetricName": values[1], "Dimensions": dimensions},
                    "Period": period or int(options.get("period", props.get("period", 60))),
                    "Stat": str(options.get("stat", props.get("stat", "Average"))),
                },
                "ReturnData": True,
            })
            label = str(options.get("label", values[1]))
            meta[query_id] = (w_index, label, str(options.get("yAxis", "left")))
    for batch_start in range(0, len(queries), _QUERIES_PER_CALL):
        batch = queries[batch_start : batch_start + _QUERIES_PER_CALL]
        results: dict[str, dict[str, Any]] = {}
        kwargs: dict[str, Any] = {"MetricDataQueries": batch, "StartTime": start, "EndTime": end,
                                  "ScanBy": "TimestampAscending"}
        while True:
            response = cloudwatch.get_metric_data(**kwargs)
            for result in response["MetricDataResults"]:
                entry = results.setdefault(result["Id"], {"Timestamps": [], "Values": []})
                entry["Timestamps"].extend(result.get("Timestamps", []))
                entry["Values"].extend(result.get("Values", []))
            if not response.get("NextToken"):
                break
            kwargs["NextToken"] = response["NextToken"]
        for query in batch:
            w_index, label, axis = meta[query["Id"]]
            points = sorted(zip(results.get(query["Id"], {}).get("Timestamps", []),
                                results.get(query["Id"], {}).get("Values", []), strict=True))
            series.setdefault(w_index, []).append(Series(
                label, axis, tuple(t for t, _ in points), tuple(float(v) for _, v in points)))
    return series


def insights_series(cloudwatch: Any, query: InsightsQuery, start: datetime, end: datetime, period: int,
                    label: str = "${LABEL}") -> list[Series]:
    """What ``query`` returns, computed here: every series of its metric whose only dimension is
    CLUSTER_ID, read with its function per ``period``, ordered by the function over the whole range (ties by
    cluster), the first ``query.limit``; labels are ``label`` with ``${LABEL}`` (the cluster), ``${MAX}``
    and ``${MIN}`` filled in."""
    clusters: list[str] = []
    for listing in cloudwatch.get_paginator("list_metrics").paginate(Namespace=query.namespace,
                                                                    MetricName=query.metric):
        for metric in listing.get("Metrics", []):
            dimensions = metric.get("Dimensions", [])
            if [d["Name"] for d in dimensions] == [DIMENSION] and dimensions[0]["Value"] not in clusters:
                clusters.append(dimensions[0]["Value"])  # moto repeats ListMetrics entries
    stat = "Maximum" if query.function == "MAX" else "Minimum"
    points: dict[str, list[tuple[datetime, float]]] = {cluster: [] for cluster in clusters}
    for batch_start in range(0, len(clusters), _QUERIES_PER_CALL):
        batch = clusters[batch_start : batch_start + _QUERIES_PER_CALL]
        kwargs: dict[str, Any] = {"StartTime": start, "EndTime": end, "ScanBy": "TimestampAscending",
                                  "MetricDataQueries": [{
                                      "Id": f"c{index}", "ReturnData": True, "MetricStat": {
                                          "Metric": {"Namespace": query.namespace, "MetricName": query.metric,
                                                     "Dimensions": [{"Name": DIMENSION, "Value": cluster}]},
                                          "Period": period, "Stat": stat}}
                                      for index, cluster in enumerate(batch)]}
        while True:
            response = cloudwatch.get_metric_data(**kwargs)
            for result in response["MetricDataResults"]:
                cluster = batch[int(result["Id"][1:])]
                points[cluster].extend(zip(result.get("Timestamps", []), result.get("Values", []),
                                           strict=True))
            if not response.get("NextToken"):
                break
            kwargs["NextToken"] = response["NextToken"]
    ranked: list[tuple[float, str, list[tuple[datetime, float]]]] = []
    for cluster, found in points.items():
        if found:
            numbers = [float(v) for _, v in found]
            key = max(numbers) if query.function == "MAX" else min(numbers)
            ranked.append((-key if query.order == "DESC" else key, cluster, sorted(found)))
    ranked.sort(key=lambda item: (item[0], item[1]))
    result = []
    for _, cluster, line in ranked[: query.limit]:
        values = tuple(float(v) for _, v in line)
        text = (label.replace("${LABEL}", cluster).replace("${MAX}", f"{max(values):g}")
                .replace("${MIN}", f"{min(values):g}"))
        result.append(Series(text, "left", tuple(t for t, _ in line), values))
    return result


def _search(cloudwatch: Any, search: Search) -> list[tuple[dict[str, Any], str, str]]:
    """(metric, stat, label) for each metric matching ``search``."""
    key = search.dimensions[0]
    found = []
    for page in cloudwatch.get_paginator("list_metrics").paginate(
        Namespace=search.namespace, MetricName=search.metric,
        Dimensions=[{"Name": key, "Value": search.cluster}],
    ):
        for candidate in page.get("Metrics", []):
            names = sorted(d["Name"] for d in candidate.get("Dimensions", []))
            # moto repeats ListMetrics entries
            if names == sorted(search.dimensions) and candidate not in found:
                found.append(candidate)
    found.sort(key=lambda c: sorted((d["Name"], d["Value"]) for d in c["Dimensions"]))
    label = search.metric
    return [
        (c, search.stat, " ".join(d["Value"] for d in c["Dimensions"] if d["Name"] != key) or label)
        for c in found
    ]


def _time_axis(series: dict[int, list[Series]], start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """The span of the data found (padded by 5%; 30 s around a single instant), else ``start``..``end``."""
    stamps = [t for lines in series.values() for s in lines for t in s.timestamps]
    if not stamps:
        return start, end
    first, last = min(stamps), max(stamps)
    pad = (last - first) / 20 if last > first else timedelta(seconds=30)
    return first - pad, last + pad


def top_by_max(series: Sequence[Series], n: int = TOP_N) -> list[tuple[str, float]]:
    """``SLICE(SORT(METRICS(), MAX, DESC), 0, n)`` reduced to one number per series (ties by label)."""
    peaks = [(s.label, max(s.values)) for s in series if s.values]
    return sorted(peaks, key=lambda p: (-p[1], p[0]))[:n]


def _draw_page(page: DashboardPage, series: dict[int, list[Series]], start: datetime, end: datetime) -> bytes:
    widgets = page.body["widgets"]
    rows = max((w["y"] + w["height"] for w in widgets), default=1)
    width_in, height_in = GRID_WIDTH * UNIT_WIDTH_IN, rows * UNIT_HEIGHT_IN
    fig = plt.figure(figsize=(width_in, height_in), dpi=DPI)
    try:
        for index, widget in enumerate(widgets):
            left = widget["x"] * UNIT_WIDTH_IN
            bottom = height_in - (widget["y"] + widget["height"]) * UNIT_HEIGHT_IN
            box = (left, bottom, widget["width"] * UNIT_WIDTH_IN, widget["height"] * UNIT_HEIGHT_IN)
            if widget["type"] == "text":
                _draw_text(fig, box, (width_in, height_in), widget["properties"]["markdown"], widget["width"])
            elif widget["type"] == "metric":
                _draw_metric(fig, box, (width_in, height_in), widget["properties"], series.get(index, []),
                             start, end)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=DPI, facecolor="white")
        return buffer.getvalue()
    finally:
        plt.close(fig)


def _axes(fig: Figure, box: tuple[float, float, float, float], size: tuple[float, float],
          pad: tuple[float, float, float, float]) -> Axes:
    """Axes inside ``box`` (inches) leaving ``pad`` (left, bottom, right, top) inches free."""
    left, bottom, width, height = box
    pl, pb, pr, pt = pad
    return fig.add_axes((
        (left + pl) / size[0], (bottom + pb) / size[1],
        max(width - pl - pr, 0.1) / size[0], max(height - pb - pt, 0.1) / size[1],
    ))


def _plain(markdown: str) -> list[str]:
    lines = []
    for line in markdown.splitlines():
        if re.match(r"^\|[-| ]+\|$", line):
            continue
        line = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", line)
        line = re.sub(r"[*`#]|(?<!\w)_|_(?!\w)", "", line).replace(" | ", "  ·  ").strip("| ").strip()
        lines.append(line)
    return lines


def _draw_text(fig: Figure, box: tuple[float, float, float, float], size: tuple[float, float],
               markdown: str, columns: int) -> None:
    ax = _axes(fig, box, size, (0.1, 0.05, 0.1, 0.05))
    ax.set_axis_off()
    chars = max(columns * 11, 20)
    text = "\n".join(textwrap.fill(line, chars) if line else "" for line in _plain(markdown))
    ax.text(0, 1, text, va="top", ha="left", fontsize=8 if columns < GRID_WIDTH or "\n" in text else 11,
            family="DejaVu Sans", transform=ax.transAxes)


def _draw_metric(fig: Figure, box: tuple[float, float, float, float], size: tuple[float, float],
                 props: dict[str, Any], series: list[Series], start: datetime, end: datetime) -> None:
    ax = _axes(fig, box, size, (0.5, 0.35, 0.55, 0.35))
    expressions = [str(line[0]["expression"]) for line in props["metrics"]
                   if isinstance(line[0], dict) and "expression" in line[0]]
    selects = [e for e in expressions if _SELECT.match(e)]
    note = LOCAL_QUERY_NOTE if selects else ""
    ax.set_title(str(props.get("title", "")) + note, fontsize=9, loc="left")
    ax.tick_params(labelsize=7)
    if selects and InsightsQuery.parse(selects[0]) is None:
        ax.set_axis_off()
        ax.text(0.5, 0.5, "Metrics Insights query (not evaluated here):\n" + textwrap.fill(selects[0], 70),
                ha="center", va="center", transform=ax.transAxes, color="grey", fontsize=7)
        return
    if props.get("view") == "bar" and TOP_EXPRESSION in expressions:
        top = top_by_max(series)
        ax.barh([label for label, _ in reversed(top)], [value for _, value in reversed(top)], color="#1f77b4")
        for annotation in props.get("annotations", {}).get("horizontal", []):
            ax.axvline(annotation["value"], color=annotation.get("color", "grey"), linestyle="--", lw=1)
        if not top:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="grey")
        return
    right = ax.twinx() if any(s.axis == "right" for s in series) else None
    for s in series:
        target = right if s.axis == "right" and right is not None else ax
        target.plot([_num(t) for t in s.timestamps], s.values, marker=".", markersize=3, lw=1.2,
                    label=s.label, color=None if target is ax else "#9467bd")
    for annotation in props.get("annotations", {}).get("horizontal", []):
        ax.axhline(annotation["value"], color=annotation.get("color", "grey"), linestyle="--", lw=1,
                   label=annotation.get("label"))
    y_left = props.get("yAxis", {}).get("left", {})
    if "min" in y_left or "max" in y_left:
        ax.set_ylim(y_left.get("min"), y_left.get("max"))
    ax.set_xlim(_num(start), _num(end))
    short = end - start < timedelta(minutes=10)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S" if short else "%H:%M"))  # type: ignore[no-untyped-call]
    if not any(s.values for s in series):
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="grey")
    handles, labels = ax.get_legend_handles_labels()
    if right is not None:
        more_handles, more_labels = right.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
        right.tick_params(labelsize=7)
    if handles and len(handles) <= 12:
        ax.legend(handles, labels, fontsize=6, loc="upper left")


def _num(moment: datetime) -> float:
    """Matplotlib date number (days since its default 1970 epoch)."""
    return moment.timestamp() / 86400.0


def _html(images: Sequence[tuple[str, bytes]], start: datetime, end: datetime) -> str:
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>cni-metrics dashboards</title></head>",
        f"<body><p>{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC</p>",
    ]
    for name, png in images:
        encoded = base64.b64encode(png).decode("ascii")
        parts.append(f"<h2>{name}</h2><img alt='{name}' style='max-width:100%' "
                     f"src='data:image/png;base64,{encoded}'>")
    parts.append("</body></html>")
    return "\n".join(parts)
