"""Which clusters the dashboards show.

Without fleet mode: CLUSTER_NAMES (and the names in CLUSTERS_JSON) plus the clusters found by
CLUSTER_DISCOVERY_TAG (EKS ListClusters).

Fleet mode (FLEET_DOCUMENT): the fleet document's entries (their ids: the alias, else the name) plus every
cluster whose state object was written within ``RECENT_STATE`` (24 hours), so a cluster found by a
discovery rule gets its page once it has been collected, and one no longer in the fleet loses it a day
after its last collection. Two S3 reads, no cross-account role: the document (``fleet.document.load_fleet``:
one GetObject, cached 60 s, then conditional) and the state listing (``fleet.health.list_states``: one
ListObjectsV2 per 1,000 clusters, sizes and last writes only). The fleet's name names the overview page.

A document that cannot be read or used, or a listing that fails, raises ``FleetUnavailable``: the run stops
before any dashboard or alarm is put or deleted (so a passing S3 problem never removes pages), the
invocation fails (its Errors metric, the schedule's retry and dead-letter queue) and a custom-resource
request is answered FAILED with the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cni_metrics.adapters.eks_clusters import tagged_clusters
from cni_metrics.dashboard.settings import DashboardSettings, FleetSource
from cni_metrics.fleet.document import Fleet, FleetDocumentError, load_fleet
from cni_metrics.fleet.health import StateListingError, StateObject, list_states
from cni_metrics.settings_fields import is_cluster_name

logger = logging.getLogger(__name__)

RECENT_STATE = timedelta(hours=24)


class FleetUnavailable(RuntimeError):
    """Fleet mode could not tell the fleet's clusters; nothing was changed. The message is safe to log."""


@dataclass(frozen=True, slots=True)
class Selection:
    """The clusters to show and, in fleet mode, the fleet's name (its overview page is put too)."""

    clusters: list[str]
    fleet: str | None = None


def utcnow() -> datetime:
    """The time the state objects' last writes are compared with (tests replace it)."""
    return datetime.now(UTC)


def resolve_clusters(settings: DashboardSettings, eks: Any | None) -> list[str]:
    """CLUSTER_NAMES together with the clusters found by CLUSTER_DISCOVERY_TAG (sorted, unique)."""
    names = set(settings.cluster_names)
    if settings.discovery_tag is not None:
        if eks is None:
            raise ValueError("cluster discovery needs an EKS client")
        names.update(tagged_clusters(eks, settings.discovery_tag))
    return sorted(names)


def select_clusters(settings: DashboardSettings, *, eks: Any | None = None, s3: Any | None = None,
                    requested: Sequence[str] | None = None) -> Selection:
    """The clusters of this run: ``requested`` (a direct invoke's), else the configured or fleet's ones.

    In fleet mode the fleet document is read in every case (its name names the overview page)."""
    if settings.fleet is None:
        names = list(requested) if requested is not None else resolve_clusters(settings, eks)
        return Selection(sorted(set(names)))
    if s3 is None:
        raise ValueError("fleet mode needs an S3 client")
    fleet = _read_fleet(s3, settings.fleet)
    if requested is not None:
        return Selection(sorted(set(requested)), fleet.name)
    try:
        states = list_states(s3, settings.fleet.state_bucket, settings.fleet.state_prefix)
    except StateListingError as error:
        raise FleetUnavailable(f"fleet mode: {error} (no dashboard or alarm was changed)") from None
    return Selection(fleet_clusters(fleet, states, now=utcnow()), fleet.name)


def fleet_clusters(fleet: Fleet, states: Mapping[str, StateObject], *, now: datetime,
                   recent: timedelta = RECENT_STATE) -> list[str]:
    """The entries' ids plus every id whose state object was written at or after ``now - recent``."""
    since = now - recent
    written = {cluster for cluster, state in states.items() if state.last_modified >= since}
    odd = sorted(cluster for cluster in written if not is_cluster_name(cluster))
    if odd:
        logger.warning("fleet mode: %d state object(s) not named like a cluster left out: %s",
                       len(odd), ", ".join(odd[:5]))
    return sorted(set(fleet.index) | (written - set(odd)))


def _read_fleet(s3: Any, source: FleetSource) -> Fleet:
    try:
        fleet = load_fleet(s3, source.location)
    except FleetDocumentError as error:
        raise FleetUnavailable(f"fleet mode: {error} (no dashboard or alarm was changed)") from None
    for problem in fleet.problems:
        logger.warning("fleet document %s: skipped %s", source.location, problem)
    return fleet
