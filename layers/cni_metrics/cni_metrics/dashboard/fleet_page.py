"""The fleet overview page ``<DASHBOARD_NAME>-fleet`` (pure: no I/O, no clock).

Its size does not grow with the fleet: a text, the fleet's health (the dispatcher's series under
``CLUSTER_ID`` ``fleet:<name>``) and one CloudWatch Metrics Insights query per ranking, each the top
``TOP_N`` clusters of the whole namespace whatever the fleet's size::

    SELECT MAX("ipUtilization") FROM SCHEMA("Kubernetes", CLUSTER_ID)
    GROUP BY CLUSTER_ID ORDER BY MAX() DESC LIMIT 10

``SCHEMA(namespace, CLUSTER_ID)`` keeps the series whose only dimension is ``CLUSTER_ID``: the per-cluster
metrics (the per-zone and per-subnet capacity series carry more dimensions and stay out). Namespace and
metric name are always in double quotes (Metrics Insights accepts any identifier quoted, and requires it
for characters other than letters, digits and ``_`` and for its many reserved words); a quotation mark
inside is escaped with a backslash. ``CLUSTER_ID`` needs neither.

A ranking of a metric the deployment does not publish (METRIC_SET, METRICS_INCLUDE, METRICS_EXCLUDE:
``DashboardOptions.metrics``) is left out. ``minutesSinceCollected`` is the dispatcher's (a fleet metric,
published for stale clusters whatever the selection), so the stale-clusters ranking is always there.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from cni_metrics.core.catalogue import DIMENSION, FLEET_METRICS
from cni_metrics.dashboard.body import (
    EXHAUSTION_HOURS,
    GRID_WIDTH,
    TOP_N,
    DashboardOptions,
    DashboardPage,
    _thresholds,
    managed_marker,
)
from cni_metrics.fleet.health import fleet_cluster_id

Json = dict[str, Any]
Function = Literal["MAX", "MIN"]
Order = Literal["ASC", "DESC"]

FLEET_PAGE_SUFFIX = "-fleet"
QUERY_ID = "q1"  # ids are per widget: each query widget holds one expression
# The dispatcher's fleet-health series: counts on one graph, the dispatch's duration on its own.
HEALTH_COUNTS = (
    ("fleetClusters", "clusters"),
    ("fleetClustersDispatched", "dispatched"),
    ("fleetDispatchErrors", "dispatch errors"),
    ("fleetClustersStale", "stale"),
    ("fleetClustersNeverCollected", "never collected"),
    ("fleetEntriesRefused", "entries refused"),
    ("fleetDiscoveryErrors", "discovery errors"),
)
HEALTH_DURATION = "fleetDispatchDurationMs"
_FLEET_NAMES = frozenset(metric.name for metric in FLEET_METRICS)


def fleet_page_name(name: str) -> str:
    """The overview page of the dashboard set ``name``."""
    return f"{name}{FLEET_PAGE_SUFFIX}"


def quote_identifier(name: str) -> str:
    """``name`` as a Metrics Insights identifier: in double quotes, quotation marks (and backslashes)
    escaped with a backslash."""
    escaped = re.sub(r"([\\\"'])", r"\\\1", name)
    return f'"{escaped}"'


_IDENTIFIER = r'"((?:[^"\\]|\\.)*)"'
_QUERY = re.compile(  # the pattern of the queries below, not a query
    rf"^SELECT (MAX|MIN)\({_IDENTIFIER}\) FROM SCHEMA\({_IDENTIFIER}, {DIMENSION}\) "  # noqa: S608
    rf"GROUP BY {DIMENSION} ORDER BY (MAX|MIN)\(\) (ASC|DESC) LIMIT ([0-9]+)$"
)


@dataclass(frozen=True, slots=True)
class InsightsQuery:
    """A top-N Metrics Insights query: ``function(metric)`` per cluster over the series of ``namespace``
    whose only dimension is ``CLUSTER_ID``, ordered by the same function over the time range shown."""

    namespace: str
    metric: str
    function: Function
    order: Order
    limit: int = TOP_N

    @property
    def expression(self) -> str:
        """The query as the dashboard body carries it."""
        # Identifiers quoted and escaped (quote_identifier); the rest is fixed vocabulary.
        return (
            f"SELECT {self.function}({quote_identifier(self.metric)}) "  # noqa: S608
            f"FROM SCHEMA({quote_identifier(self.namespace)}, {DIMENSION}) "
            f"GROUP BY {DIMENSION} ORDER BY {self.function}() {self.order} LIMIT {self.limit}"
        )

    @classmethod
    def parse(cls, expression: str) -> InsightsQuery | None:
        """The query ``expression`` is (one this module writes), else None."""
        match = _QUERY.match(expression)
        if match is None or match.group(1) != match.group(4):
            return None
        function: Function = "MAX" if match.group(1) == "MAX" else "MIN"
        order: Order = "DESC" if match.group(5) == "DESC" else "ASC"
        return cls(_unescape(match.group(3)), _unescape(match.group(2)), function, order, int(match.group(6)))


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


@dataclass(frozen=True, slots=True)
class Ranking:
    """One query widget: which metric, which way, and what it tells."""

    metric: str
    function: Function
    order: Order
    title: str
    meaning: str

    def query(self, namespace: str) -> InsightsQuery:
        """The ranking's query over ``namespace``."""
        return InsightsQuery(namespace, self.metric, self.function, self.order)


RANKINGS: tuple[Ranking, ...] = (
    Ranking("ipUtilization", "MAX", "DESC", "Highest IP utilisation (%)",
            "IPs assigned to pods / IPs the nodes can hold: above the warning line the warm pool runs low"),
    Ranking("hoursToIPExhaustion", "MIN", "ASC", "Fewest hours to IP exhaustion",
            "remaining IPs / the trend of assigned IPs (only with a rising trend): below 24 h, act"),
    Ranking("remainingIPAddresses", "MIN", "ASC", "Fewest IP addresses remaining",
            "what the nodes and subnets can still assign"),
    Ranking("nodesFailed", "MAX", "DESC", "Most failed nodes",
            "aws-node pods the collector could not scrape: that cluster's numbers are incomplete"),
    Ranking("collectionFailed", "MAX", "DESC", "Clusters failing collection (1 = not collected)",
            "1 when a run could not collect the cluster at all (sign-in, API server, RBAC, pod listing)"),
    Ranking("minutesSinceCollected", "MAX", "DESC", "Stale clusters: minutes since collected",
            "published by the dispatcher for clusters no invocation reached (state not written lately)"),
)


def rankings(options: DashboardOptions) -> tuple[Ranking, ...]:
    """The rankings of published metrics (the fleet's own metric always is)."""
    return tuple(r for r in RANKINGS if r.metric in options.metrics or r.metric in _FLEET_NAMES)


def fleet_queries(options: DashboardOptions) -> tuple[InsightsQuery, ...]:
    """The Metrics Insights queries the page holds, in order."""
    return tuple(ranking.query(options.namespace) for ranking in rankings(options))


def build_fleet_page(fleet: str, options: DashboardOptions, cluster_pages: Sequence[str] = (),
                     clusters: int | None = None) -> DashboardPage:
    """The overview page of the fleet named ``fleet`` (the fleet document's name).

    ``cluster_pages``: the per-cluster pages' names (the first and last are linked: the first page links
    every page); ``clusters``: how many clusters they show. Neither changes the number of widgets.
    """
    widgets: list[Json] = []
    shown = rankings(options)
    intro = _intro(fleet, options, shown, cluster_pages, clusters)
    widgets.append({**intro, "x": 0, "y": 0, "width": GRID_WIDTH, "height": 9})
    health, duration = _health(fleet, options)
    widgets.append({**health, "x": 0, "y": 9, "width": 16, "height": 6})
    widgets.append({**duration, "x": 16, "y": 9, "width": 8, "height": 6})
    per_row, width, height = 3, GRID_WIDTH // 3, 6
    for index, ranking in enumerate(shown):
        row, column = divmod(index, per_row)
        widget = _ranking_widget(ranking, options)
        widgets.append({**widget, "x": column * width, "y": 15 + row * height, "width": width,
                        "height": height})
    body: Json = {"start": "-PT3H", "periodOverride": "inherit", "widgets": widgets}
    return DashboardPage(fleet_page_name(options.name), body, ())


def _intro(fleet: str, options: DashboardOptions, shown: Sequence[Ranking], cluster_pages: Sequence[str],
           clusters: int | None) -> Json:
    rows = "\n".join(
        f"| {r.title} | `{r.function}({r.metric})` {'highest' if r.order == 'DESC' else 'lowest'} first "
        f"| {r.meaning} |"
        for r in shown
    )
    table = f"| graph | ranked by | meaning |\n|---|---|---|\n{rows}\n\n" if shown else ""
    left_out = len(RANKINGS) - len(shown)
    left_out_text = (
        f" {left_out} ranking(s) of metrics this deployment does not publish (METRIC_SET, METRICS_INCLUDE, "
        "METRICS_EXCLUDE) are left out." if left_out else ""
    )
    if cluster_pages:
        first, last = cluster_pages[0], cluster_pages[-1]
        count = f"{clusters} cluster(s) on " if clusters is not None else ""
        span = (f"[{first}](#dashboards/dashboard/{first})" if first == last else
                f"[{first}](#dashboards/dashboard/{first}) … [{last}](#dashboards/dashboard/{last})")
        pages = (f"Per-cluster pages: {count}{len(cluster_pages)} page(s), {span} "
                 "(the first links every page).")
    else:
        pages = f"Per-cluster pages: [{options.name}](#dashboards/dashboard/{options.name})."
    markdown = (
        f"# Fleet `{fleet}`: overview\n"
        f"Each graph is one CloudWatch Metrics Insights query over every cluster publishing to namespace "
        f"`{options.namespace}`: the top {TOP_N} of the fleet, whatever its size. A query ranks over the "
        "time range shown (this page opens on the latest 3 hours; Metrics Insights graphs reach back two "
        "weeks at most); each legend entry is a cluster (`CLUSTER_ID`) and its maximum or minimum in that "
        f"range.{left_out_text}\n\n"
        f"{table}"
        f"**Fleet health**: the dispatcher's series under `CLUSTER_ID` `{fleet_cluster_id(fleet)}`, once a "
        "period. Stale or never-collected clusters mean invocations did not reach them; dispatch or "
        "discovery errors and refused entries are in the dispatcher's log.\n\n"
        f"{pages}\n\n"
        f"_{managed_marker(options.name)}: manual edits are overwritten._"
    )
    return {"type": "text", "properties": {"markdown": markdown}}


def _health(fleet: str, options: DashboardOptions) -> tuple[Json, Json]:
    cluster_id = fleet_cluster_id(fleet)

    def line(metric: str, label: str) -> list[Any]:
        return [options.namespace, metric, DIMENSION, cluster_id, {"label": label}]

    def graph(title: str, lines: list[list[Any]]) -> Json:
        return {"type": "metric", "properties": {
            "title": title, "view": "timeSeries", "stacked": False, "region": options.region,
            "period": options.period, "stat": "Maximum", "metrics": lines, "yAxis": {"left": {"min": 0}},
        }}

    counts = graph(f"Fleet health ({cluster_id}): clusters, dispatched, errors, stale",
                   [line(metric, label) for metric, label in HEALTH_COUNTS])
    duration = graph("Dispatcher: run duration (ms)", [line(HEALTH_DURATION, "duration")])
    return counts, duration


def _ranking_widget(ranking: Ranking, options: DashboardOptions) -> Json:
    query = ranking.query(options.namespace)
    expression: Json = {
        "expression": query.expression,
        "id": QUERY_ID,
        # A dynamic label: each series keeps its default label (its CLUSTER_ID) and shows the value it was
        # ranked by over the time range shown.
        "label": f"${{LABEL}} ({ranking.function.lower()} ${{{ranking.function}}})",
        "period": options.period,
    }
    properties: Json = {
        "title": f"{ranking.title}: top {TOP_N}",
        "view": "timeSeries",
        "stacked": False,
        "region": options.region,
        "period": options.period,
        "metrics": [[expression]],
        "legend": {"position": "right"},
        "yAxis": {"left": {"min": 0}},
    }
    if ranking.metric == "ipUtilization":
        properties["annotations"] = _thresholds(options)
        properties["yAxis"] = {"left": {"min": 0, "max": 100}}
    elif ranking.metric == "hoursToIPExhaustion":
        properties["annotations"] = {"horizontal": [
            {"label": f"{EXHAUSTION_HOURS:g} h", "value": EXHAUSTION_HOURS, "color": "#d62728"}]}
    return {"type": "metric", "properties": properties}
