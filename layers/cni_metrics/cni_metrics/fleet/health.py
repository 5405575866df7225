"""Fleet health: what the dispatcher publishes about the fleet as a whole, once a period.

The state objects are listed, not read: ``list_states`` makes one ListObjectsV2 call per 1,000 clusters
and gives each object's size and last write. A cluster whose state was last written more than
``stale_periods`` periods ago is *stale*: no invocation reached it (never dispatched, throttled, every
worker late or failing before its lease). A cluster that has no state object was *never collected*. Each stale
cluster also gets ``minutesSinceCollected`` under its own ``CLUSTER_ID`` (the ``STALE_PUBLISHED`` stalest
of them: the fleet page's Metrics Insights query ranks them; ``fleetClustersStale`` counts them all). A
cluster that is reached but broken (unreachable, RBAC, no aws-node) still writes its state every period
(the lease, then its health datums): it shows through its own health metrics (``collectionFailed``,
``nodesFailed``), not here.

The size also gives an estimate of the cluster's nodes (``estimate_nodes``), which errs high: an aws-node
pod's baseline takes about ``POD_MIN_BYTES`` or more of the document (a UID key, start time, restart count,
latency and each counter family aws-node serves; measured 110 bytes with the stand-in's aws-node) beside
``STATE_BASE_BYTES`` of envelope, and the history and outbox only add to it. Measured on states the
collector wrote for the stand-in: 1 node -> 6, 5 -> 11, 20 -> 28, 35 -> 46, 60 -> 75. It errs low only for
baselines under 95 bytes a pod (two or three counter families, all of small values): a group may then
hold a few more nodes than planned.

The datums (``FLEET_METRICS``, listed in ``core.catalogue``) are published under ``CLUSTER_ID`` =
``fleet_cluster_id(name)`` (``fleet:<name>``: a colon is never in a cluster's name, so it never meets a
cluster's series).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from cni_metrics.adapters.aws_clients import error_text
from cni_metrics.core.catalogue import FLEET_METRICS
from cni_metrics.core.model import MetricValue
from cni_metrics.fleet.dispatch import DispatchReport
from cni_metrics.fleet.resolve import Resolution

STALE_PERIODS = 3
# Stale clusters given their own minutesSinceCollected datum in one period: one publish call each, and the
# fleet page shows the ten stalest.
STALE_PUBLISHED = 50
STATE_BASE_BYTES = 214
POD_MIN_BYTES = 95

_UNITS = {metric.name: metric.unit for metric in FLEET_METRICS}


class StateListingError(Exception):
    """The state objects could not be listed; the message is safe to log."""


@dataclass(frozen=True, slots=True)
class StateObject:
    """What the listing says of one cluster's state object."""

    size: int
    last_modified: datetime


def list_states(s3: Any, bucket: str, prefix: str) -> dict[str, StateObject]:
    """Every state object under ``prefix`` by cluster id (``<prefix><id>.json``): one call per 1,000."""
    states: dict[str, StateObject] = {}
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                rest = str(item["Key"])[len(prefix):]
                if rest.endswith(".json") and "/" not in rest:
                    states[rest.removesuffix(".json")] = StateObject(int(item["Size"]), item["LastModified"])
    except (ClientError, BotoCoreError) as exc:
        raise StateListingError(f"cannot list s3://{bucket}/{prefix}: {error_text(exc)}") from None
    return states


def estimate_nodes(size: int) -> int:
    """The aws-node pods a state document of ``size`` bytes holds baselines for, estimated high."""
    return max(0, math.ceil((size - STATE_BASE_BYTES) / POD_MIN_BYTES))


def node_estimates(clusters: Iterable[str], states: Mapping[str, StateObject]) -> dict[str, int | None]:
    """Each cluster's estimated nodes (None: no state yet)."""
    return {
        cluster: estimate_nodes(states[cluster].size) if cluster in states else None for cluster in clusters
    }


def fleet_cluster_id(fleet_name: str) -> str:
    """The ``CLUSTER_ID`` the fleet's health is published under."""
    return f"fleet:{fleet_name}"


@dataclass(frozen=True, slots=True)
class FleetHealth:
    """The fleet's health for one period; None: not known this time (nothing dispatched, no listing)."""

    clusters: int
    entries_refused: int
    discovery_errors: int
    invocations: int | None = None
    dispatched: int | None = None
    dispatch_errors: int | None = None
    stale: tuple[str, ...] | None = None
    stale_minutes: tuple[tuple[str, float], ...] = ()
    """The stalest clusters (at most ``STALE_PUBLISHED``, stalest first) and their minutes since collected."""
    never_collected: tuple[str, ...] | None = None
    duration_ms: float | None = None

    def metrics(self) -> list[MetricValue]:
        """The datums to publish (``FLEET_METRICS``), those known this period."""
        values: dict[str, float | None] = {
            "fleetClusters": self.clusters,
            "fleetInvocations": self.invocations,
            "fleetClustersDispatched": self.dispatched,
            "fleetDispatchErrors": self.dispatch_errors,
            "fleetClustersStale": _count(self.stale),
            "fleetClustersNeverCollected": _count(self.never_collected),
            "fleetEntriesRefused": self.entries_refused,
            "fleetDiscoveryErrors": self.discovery_errors,
            "fleetDispatchDurationMs": self.duration_ms,
        }
        known = {name: value for name, value in values.items() if value is not None}
        return [MetricValue(name, float(value), _UNITS[name]) for name, value in known.items()]

    def stale_metrics(self) -> dict[str, list[MetricValue]]:
        """Each of the stalest clusters' ``minutesSinceCollected`` datum, by its ``CLUSTER_ID``."""
        unit = _UNITS["minutesSinceCollected"]
        return {cluster: [MetricValue("minutesSinceCollected", minutes, unit)]
                for cluster, minutes in self.stale_minutes}


def _count(clusters: tuple[str, ...] | None) -> int | None:
    return None if clusters is None else len(clusters)


def fleet_health(
    resolution: Resolution,
    *,
    now: datetime,
    period_seconds: float,
    states: Mapping[str, StateObject] | None = None,
    report: DispatchReport | None = None,
    stale_periods: int = STALE_PERIODS,
    duration_ms: float | None = None,
) -> FleetHealth:
    """The fleet's health from its resolution, the state listing (None: it failed) and the dispatch."""
    ids = resolution.ids
    stale = never = None
    stale_minutes: tuple[tuple[str, float], ...] = ()
    if states is not None:
        since = now - timedelta(seconds=stale_periods * period_seconds)
        never = tuple(cluster for cluster in ids if cluster not in states)
        stale = tuple(
            cluster for cluster in ids if cluster in states and states[cluster].last_modified < since
        )
        ages = {cluster: (now - states[cluster].last_modified).total_seconds() / 60 for cluster in stale}
        stalest = sorted(stale, key=lambda cluster: (-ages[cluster], cluster))[:STALE_PUBLISHED]
        stale_minutes = tuple((cluster, round(ages[cluster], 1)) for cluster in stalest)
    return FleetHealth(
        clusters=len(ids),
        entries_refused=sum(problem.kind == "entry" for problem in resolution.problems),
        discovery_errors=sum(problem.kind == "discovery" for problem in resolution.problems),
        invocations=None if report is None else len(report.invocations),
        dispatched=None if report is None else report.dispatched,
        dispatch_errors=None if report is None else len(report.failed),
        stale=stale,
        stale_minutes=stale_minutes,
        never_collected=never,
        duration_ms=duration_ms,
    )
