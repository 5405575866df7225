"""The fleet as a collector invocation (a worker) reaches it: ``collector.job.FleetClusters`` on the fleet
document (``load_fleet``: cached, re-read conditionally) and ``resolve``'s lookups, every AWS call bounded by
the run's ``Deadline``."""

from __future__ import annotations

import logging
from typing import Any

from cni_metrics.adapters.aws_clients import Deadline
from cni_metrics.collector.settings import ClusterSpec
from cni_metrics.fleet.document import load_fleet
from cni_metrics.fleet.location import FleetLocation
from cni_metrics.fleet.resolve import resolve, resolve_name

logger = logging.getLogger(__name__)


class FleetWorker:
    """The fleet's clusters by id (``lookup``) or all of them (``all``); ``FleetDocumentError`` when the
    document cannot be read, ``FleetLookupError`` when a discovery rule cannot be."""

    def __init__(self, s3: Any, location: FleetLocation, deadline: Deadline) -> None:
        self._s3, self._location, self._deadline = s3, location, deadline

    def lookup(self, cluster_id: str) -> ClusterSpec | None:
        """The fleet cluster ``cluster_id`` names (an entry: no AWS call; discovered: DescribeCluster)."""
        return resolve_name(load_fleet(self._s3, self._location), cluster_id, deadline=self._deadline)

    def all(self) -> list[ClusterSpec]:
        """Every cluster of the fleet (entries, then what discovery finds); problems are logged."""
        resolution = resolve(load_fleet(self._s3, self._location), deadline=self._deadline)
        for problem in resolution.problems:
            logger.warning("fleet %s: %s", resolution.fleet.name, problem)
        return list(resolution.clusters)
