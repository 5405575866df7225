"""Dashboard bodies for a set of clusters (pure: no I/O, no clock).

Same clusters and options give the same bodies: clusters are de-duplicated and sorted, and every
widget is placed by a fixed layout. A fleet larger than one page is split across several dashboards
(``name``, ``name-2``, ...) whose text widgets link to each other. The first page carries the fleet row
(every cluster's utilisation, and the clusters closest to exhaustion); each page carries one section of
fourteen widgets per cluster, the last row for capacity: hours to exhaustion, utilisation per zone and
free IPs per subnet (SEARCH expressions: zones and subnets are found in the metrics), and a Logs Insights
table of the nodes nearest exhaustion from the collector's log group. The totalIPv4Prefixes graph is
drawn whenever it is published: it stays flat at 0 on clusters that do not use prefix delegation, which
is itself worth seeing.

Only published metrics are drawn (``DashboardOptions.metrics``: the deployment's METRIC_SET,
METRICS_INCLUDE and METRICS_EXCLUDE): a line of another metric is left out, a graph left without lines
is left out and the others of its row share its width; without ``ipUtilization`` there is no fleet row.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cni_metrics.core.catalogue import CAPACITY_LOG_MESSAGE, DIMENSION
from cni_metrics.core.metric_sets import FULL

Json = dict[str, Any]
Line = list[Any]
Cell = tuple[int, int, Json | None]

GRID_WIDTH = 24
MAX_WIDGETS = 500
WIDGETS_PER_CLUSTER = 14
MAX_CLUSTERS_PER_DASHBOARD = (MAX_WIDGETS - 1) // WIDGETS_PER_CLUSTER
EXHAUSTION_HOURS = 24.0
FLEET_CHUNK = 50  # clusters on one fleet graph (the ranking widget holds one more: its expression)
TOP_N = 10
TOP_EXPRESSION = f"SLICE(SORT(METRICS(), MAX, DESC), 0, {TOP_N})"
MANAGED_BY = "cni-metrics-lambda"


@dataclass(frozen=True, slots=True)
class DashboardOptions:
    """Everything besides the clusters that shapes the bodies."""

    name: str = "cni-metrics"
    region: str = "us-east-1"
    namespace: str = "Kubernetes"
    period: int = 60
    warn_pct: float = 80.0
    critical_pct: float = 90.0
    clusters_per_dashboard: int = 20
    collector_log_group: str = ""
    metrics: frozenset[str] = FULL
    """The metric names the collector publishes; lines, graphs and searches of the others are left out."""

    def __post_init__(self) -> None:
        if not 1 <= self.clusters_per_dashboard <= MAX_CLUSTERS_PER_DASHBOARD:
            raise ValueError(f"clusters_per_dashboard out of range: {self.clusters_per_dashboard}")
        if not 0 < self.warn_pct <= self.critical_pct <= 100:
            raise ValueError("need 0 < warn_pct <= critical_pct <= 100")


@dataclass(frozen=True, slots=True)
class Search:
    """A SEARCH expression for one metric of one cluster over every value of the other ``dimensions``."""

    namespace: str
    dimensions: tuple[str, ...]
    metric: str
    cluster: str
    stat: str
    period: int

    @property
    def expression(self) -> str:
        """The expression as the dashboard body carries it."""
        schema = ",".join([_quote(self.namespace), *self.dimensions])
        return (f"SEARCH('{{{schema}}} MetricName=\"{self.metric}\" {DIMENSION}=\"{self.cluster}\"', "
                f"'{self.stat}', {self.period})")


@dataclass(frozen=True, slots=True)
class DashboardPage:
    """One dashboard to put: its name, body, the clusters it shows and the SEARCH expressions it holds."""

    name: str
    body: Json
    clusters: tuple[str, ...]
    searches: tuple[Search, ...] = ()

    def body_json(self) -> str:
        """The body as PutDashboard takes it (stable key order)."""
        return json.dumps(self.body, sort_keys=True, separators=(",", ":"))


def page_name(name: str, index: int) -> str:
    """Name of page ``index`` (0-based) of the dashboard set ``name``."""
    return name if index == 0 else f"{name}-{index + 1}"


def managed_marker(name: str) -> str:
    """Text every page of the set ``name`` carries; reconciliation only touches bodies holding it."""
    return f"Managed by {MANAGED_BY} (dashboard set `{name}`)"


def build_dashboards(clusters: Iterable[str], options: DashboardOptions) -> list[DashboardPage]:
    """Bodies for ``clusters``: one page, or several when the fleet does not fit on one."""
    names = sorted(set(clusters))
    pages = _paginate(names, options)
    page_names = [page_name(options.name, i) for i in range(len(pages))]
    result = []
    for index, page_clusters in enumerate(pages):
        layout = _Layout()
        layout.add_row([(24, 8, _intro(options, page_names, index, page_clusters))])
        if index == 0:
            for chunk_start in range(0, len(names), FLEET_CHUNK):
                chunk = names[chunk_start : chunk_start + FLEET_CHUNK]
                layout.add_row(_fleet_row(chunk, chunk_start, len(names), options))
        for cluster in page_clusters:
            for row in _cluster_rows(cluster, options):
                layout.add_row(row)
        body: Json = {"start": "-PT3H", "periodOverride": "inherit", "widgets": layout.widgets}
        searches = tuple(
            s for cluster in page_clusters for s in _capacity_searches(cluster, options)
            if s.metric in options.metrics
        )
        result.append(DashboardPage(page_names[index], body, tuple(page_clusters), searches))
    return result


def _paginate(names: list[str], options: DashboardOptions) -> list[list[str]]:
    """Split the sorted clusters into pages that stay within the widget limit."""
    fleet_widgets = 2 * math.ceil(len(names) / FLEET_CHUNK) if "ipUtilization" in options.metrics else 0
    first_room = (MAX_WIDGETS - 1 - fleet_widgets) // WIDGETS_PER_CLUSTER
    if first_room < 1 and names:
        raise ValueError(f"too many clusters for one fleet row: {len(names)}")
    first = min(first_room, options.clusters_per_dashboard)
    pages = [names[:first]]
    step = options.clusters_per_dashboard
    pages.extend(names[i : i + step] for i in range(first, len(names), step))
    return pages


class _Layout:
    """Rows of widgets stacked down the 24-column grid."""

    def __init__(self) -> None:
        self.widgets: list[Json] = []
        self._y = 0

    def add_row(self, cells: list[Cell]) -> None:
        """Place the row's widgets; when some are left out (None), the others share the row evenly."""
        kept = [(width, height, widget) for width, height, widget in cells if widget is not None]
        if len(kept) < len(cells) and kept:
            kept = [(GRID_WIDTH // len(kept), height, widget) for _, height, widget in kept]
        x = 0
        height = 0
        for width, cell_height, widget in kept:
            self.widgets.append({**widget, "x": x, "y": self._y, "width": width, "height": cell_height})
            x += width
            height = max(height, cell_height)
        self._y += height


def _text(markdown: str) -> Json:
    return {"type": "text", "properties": {"markdown": markdown}}


def _metric(cluster: str, name: str, options: DashboardOptions, **extra: Any) -> Line | None:
    """The graph line of one cluster's metric; None when the metric is not published."""
    if name not in options.metrics:
        return None
    metric: Line = [options.namespace, name, DIMENSION, cluster]
    return [*metric, extra] if extra else metric


def _graph(
    title: str, lines: list[Line | None], options: DashboardOptions, stat: str, **props: Any
) -> Json | None:
    """A time-series graph of the published ``lines``; None when none is."""
    metrics = [line for line in lines if line is not None]
    if not metrics:
        return None
    properties: Json = {
        "title": title,
        "view": "timeSeries",
        "stacked": False,
        "region": options.region,
        "period": options.period,
        "stat": stat,
        "metrics": metrics,
    }
    properties.update(props)
    return {"type": "metric", "properties": properties}


def _thresholds(options: DashboardOptions) -> Json:
    return {
        "horizontal": [
            {"label": f"warning {options.warn_pct:g}%", "value": options.warn_pct, "color": "#ff7f0e"},
            {"label": f"critical {options.critical_pct:g}%", "value": options.critical_pct,
             "color": "#d62728"},
        ]
    }


def _intro(options: DashboardOptions, page_names: list[str], index: int, clusters: list[str]) -> Json:
    warn, crit = f"{options.warn_pct:g}", f"{options.critical_pct:g}"
    if len(page_names) > 1:
        links = " · ".join(
            f"**{name}**" if i == index else f"[{name}](#dashboards/dashboard/{name})"
            for i, name in enumerate(page_names)
        )
        pages = f"\n\nPages: {links}"
    else:
        pages = ""
    shown = " … ".join(dict.fromkeys([clusters[0], clusters[-1]])) if clusters else "no clusters configured"
    published = options.metrics
    failed_assignments = (
        "; **noAvailableIPAddrs > 0** means pods already failed to get an IP"
        if "noAvailableIPAddrs" in published else ""
    )
    health = (
        " Collector health: nodesFailed > 0 or gaps in nodesScraped mean the numbers above are incomplete."
        if {"nodesFailed", "nodesScraped"} <= published else ""
    )
    left_out = (
        f" This deployment publishes {len(FULL & published)} of the {len(FULL)} metrics (METRIC_SET, "
        "METRICS_INCLUDE, METRICS_EXCLUDE): graphs of the others are left out."
        if FULL - published else ""
    )
    markdown = (
        f"# Amazon VPC CNI: IP addresses per cluster ({shown})\n"
        "**ipUtilization** = IPs assigned to pods / IPs the nodes' instance types can hold (%). "
        "Counters (errors, failed assignments, EC2 calls) are increases summed per period.\n\n"
        "| utilisation | meaning | what to do |\n|---|---|---|\n"
        f"| below {warn}% | healthy | nothing |\n"
        f"| {warn} to {crit}% | warning: the warm pool runs low | check warm IPs and subnet free addresses; "
        "plan prefix delegation or larger/more subnets; tune WARM_IP_TARGET / MINIMUM_IP_TARGET |\n"
        f"| above {crit}% | critical: pods will soon wait for IPs | act now: add nodes or subnets, enable "
        f"prefix delegation{failed_assignments} |\n\n"
        "Errors (ipamdErr, awsAPIErr) rising with ec2ApiReqCount usually mean EC2 throttling or "
        f"permissions.{health}{left_out}{pages}\n\n"
        f"_{managed_marker(options.name)}: manual edits are overwritten._"
    )
    return _text(markdown)


def _fleet_row(chunk: list[str], start: int, total: int, options: DashboardOptions) -> list[Cell]:
    """Every cluster's ipUtilization on one graph and the top ranking (nothing when it is not published)."""
    if "ipUtilization" not in options.metrics:
        return []
    suffix = f" ({start + 1} to {start + len(chunk)} of {total})" if total > FLEET_CHUNK else ""
    lines = [
        _metric(c, "ipUtilization", options, id=f"u{i}", label=c) for i, c in enumerate(chunk)
    ]
    fleet = _graph(f"IP utilisation, every cluster{suffix}", lines, options, "Maximum",
                   annotations=_thresholds(options), yAxis={"left": {"min": 0, "max": 100}})
    hidden = [
        _metric(c, "ipUtilization", options, id=f"u{i}", label=c, visible=False)
        for i, c in enumerate(chunk)
    ]
    top = _graph(
        f"Closest to exhaustion: top {TOP_N} by max utilisation{suffix}",
        [[{"expression": TOP_EXPRESSION, "id": "top"}], *hidden],
        options,
        "Maximum",
        view="bar",
        setPeriodToTimeRange=True,
        annotations=_thresholds(options),
    )
    return [(16, 6, fleet), (8, 6, top)]


def _cluster_rows(cluster: str, options: DashboardOptions) -> list[list[Cell]]:
    def m(name: str, **extra: Any) -> Line | None:
        return _metric(cluster, name, options, **extra)

    header = _text(f"## Cluster `{cluster}`")
    ips = _graph(
        "IP addresses: assigned / held / maximum",
        [m("assignIPAddresses", label="assigned"), m("totalIPAddresses", label="held (warm + assigned)"),
         m("maxIPAddresses", label="maximum")],
        options, "Average",
    )
    utilisation = _graph(
        "IP utilisation % (and nodes near exhaustion)",
        [m("ipUtilization", label="ipUtilization"),
         m("nodesNearIPExhaustion", label="nodes near exhaustion", yAxis="right")],
        options, "Maximum",
        annotations=_thresholds(options),
        yAxis={"left": {"min": 0, "max": 100, "label": "%", "showUnits": False}, "right": {"min": 0}},
    )
    warm = _graph("Warm IPs (held, not assigned)", [m("warmIPAddresses", label="warm")], options, "Average")
    enis = _graph("ENIs: allocated / maximum",
                  [m("eniAllocated", label="allocated"), m("eniMaxAvailable", label="maximum")],
                  options, "Average")
    prefixes = _graph("IPv4 /28 prefixes (prefix delegation; 0 when off)",
                      [m("totalIPv4Prefixes", label="prefixes")], options, "Average")
    errors = _graph(
        "Errors and failed IP assignments (Sum per period)",
        [m("ipamdErr", label="ipamdErr"), m("awsAPIErr", label="awsAPIErr"),
         m("noAvailableIPAddrs", label="noAvailableIPAddrs")],
        options, "Sum",
    )
    ec2 = _graph("EC2 API requests (Sum per period)",
                 [m("ec2ApiReqCount", label="requests"), m("ec2ApiErrCount", label="errors")],
                 options, "Sum")
    latency = _graph(
        "AWS API latency: average / p99 (ms)",
        [m("awsAPILatencyAvg", label="average"), m("awsAPILatency", label="p99 (older aws-node)")],
        options, "Average",
    )
    nodes = _graph("Collector: nodes scraped / failed",
                   [m("nodesScraped", label="scraped"), m("nodesFailed", label="failed")],
                   options, "Maximum")
    duration = _graph("Collector: scrape duration (ms)", [m("scrapeDurationMs", label="duration")],
                      options, "Maximum")
    return [
        [(24, 1, header)],
        [(8, 6, ips), (8, 6, utilisation), (8, 6, warm)],
        [(6, 6, enis), (6, 6, prefixes), (6, 6, errors), (6, 6, ec2)],
        [(8, 6, latency), (8, 6, nodes), (8, 6, duration)],
        _capacity_row(cluster, options),
    ]


def _capacity_searches(cluster: str, options: DashboardOptions) -> tuple[Search, Search]:
    """Utilisation per zone and free IPs per subnet of one cluster."""
    return (
        Search(options.namespace, (DIMENSION, "AvailabilityZone"), "zoneIPUtilization", cluster, "Maximum",
               options.period),
        Search(options.namespace, (DIMENSION, "AvailabilityZone", "SubnetId"), "availableSubnetIPAddresses",
               cluster, "Minimum", options.period),
    )


def _quote(name: str) -> str:
    return f'"{name}"' if not name.replace("_", "").isalnum() else name


def _capacity_row(cluster: str, options: DashboardOptions) -> list[Cell]:
    def m(name: str, **extra: Any) -> Line | None:
        return _metric(cluster, name, options, **extra)

    hours = _graph(
        "Capacity: hours to IP exhaustion (trend of assigned IPs) / IPs remaining",
        [m("hoursToIPExhaustion", label="hours to exhaustion"),
         m("remainingIPAddresses", label="IPs remaining", yAxis="right")],
        options, "Minimum",
        annotations={"horizontal": [{"label": f"{EXHAUSTION_HOURS:g} h", "value": EXHAUSTION_HOURS,
                                     "color": "#d62728"}]},
        yAxis={"left": {"min": 0, "label": "hours", "showUnits": False}, "right": {"min": 0}},
    )
    zones, subnets = _capacity_searches(cluster, options)
    zones_and_subnets = _graph(
        "Capacity: utilisation % per zone / free IPs per subnet",
        [[{"expression": zones.expression, "id": "zones"}] if zones.metric in options.metrics else None,
         [{"expression": subnets.expression, "id": "subnets", "yAxis": "right"}]
         if subnets.metric in options.metrics else None],
        options, "Maximum",
        yAxis={"left": {"min": 0, "max": 100, "label": "%", "showUnits": False}, "right": {"min": 0}},
    )
    return [(8, 6, hours), (8, 6, zones_and_subnets), (8, 6, _nearest_nodes(cluster, options))]


def _nearest_nodes(cluster: str, options: DashboardOptions) -> Json:
    """Logs Insights table of the collector's nearest-nodes records (a text without a log group)."""
    title = "Nodes nearest IP exhaustion (node instance-type zone assigned/held/max)"
    if not options.collector_log_group:
        return _text(f"**{title}**: set COLLECTOR_LOG_GROUP (the collector's log group) to show them here.")
    query = (
        f"SOURCE '{options.collector_log_group}' | fields @timestamp, "
        "`capacity.nodesNearIPExhaustion` as near, nearest "
        f"| filter message = '{CAPACITY_LOG_MESSAGE}' and cluster = '{cluster}' "
        "| sort @timestamp desc | limit 10"
    )
    return {"type": "log", "properties": {"title": title, "query": query, "region": options.region,
                                          "view": "table"}}
