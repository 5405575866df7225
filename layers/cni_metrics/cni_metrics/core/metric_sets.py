"""Which catalogue metrics a deployment publishes: ``METRIC_SET``, ``METRICS_INCLUDE``, ``METRICS_EXCLUDE``.

CloudWatch bills every metric (name and dimensions) that receives data, so the metric count per cluster
is the bill. Three sets:

- ``compat``: exactly the names the upstream cni-metrics-helper publishes (its gauges, counters and
  ``awsAPILatency``): a drop-in at its cost.
- ``standard``: every metric with the ``CLUSTER_ID`` dimension alone: compat plus ``noAvailableIPAddrs``,
  the derived numbers, collection health and the per-cluster capacity numbers. Its count does not grow
  with zones or subnets.
- ``full``: everything, the per-zone and per-subnet capacity series included.

``METRICS_INCLUDE`` adds names to the set, ``METRICS_EXCLUDE`` removes names from it. ``outboxDatumsDropped``
is published by every set and cannot be excluded: it is sent only by a run that dropped unpublished
datums, so it costs nothing while nothing is lost, and it is the one metric that says numbers are missing.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Literal

from cni_metrics.core.catalogue import FAMILIES, METRICS, METRICS_BY_NAME

MetricSet = Literal["compat", "standard", "full"]
DEFAULT_SET: MetricSet = "standard"

FULL: frozenset[str] = frozenset(metric.name for metric in METRICS)
COMPAT: frozenset[str] = frozenset(f.metric for f in FAMILIES if f.upstream and f.metric is not None)
PER_ZONE_AND_SUBNET: frozenset[str] = frozenset({
    "zoneAssignIPAddresses", "zoneTotalIPAddresses", "zoneMaxIPAddresses", "zoneIPUtilization",
    "zoneNodesNearIPExhaustion", "availableSubnetIPAddresses", "availableSubnetPrefixesMax",
})
"""The metrics published per (``CLUSTER_ID``, ``AvailabilityZone``) or per (``CLUSTER_ID``, ``SubnetId``,
``AvailabilityZone``): one series per zone or subnet."""
STANDARD: frozenset[str] = FULL - PER_ZONE_AND_SUBNET
ALWAYS: frozenset[str] = frozenset({"outboxDatumsDropped"})
"""Published by every set (only in a run that dropped datums); never excluded."""
SETS: Mapping[MetricSet, frozenset[str]] = MappingProxyType(
    {"compat": COMPAT, "standard": STANDARD, "full": FULL}
)


def check_names(names: Iterable[str]) -> list[str]:
    """The names, once each in their order; ``ValueError`` naming those the catalogue does not publish."""
    unique = list(dict.fromkeys(names))
    unknown = [name for name in unique if name not in METRICS_BY_NAME]
    if unknown:
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, METRICS_BY_NAME, n=1)
            hints.append(f"{name} (did you mean {close[0]}?)" if close else name)
        raise ValueError(
            f"unknown metric name(s): {', '.join(hints)}; the published metrics are listed in the README"
        )
    return unique


def check_excludable(names: Iterable[str]) -> list[str]:
    """``check_names``, and ``ValueError`` for a name every set publishes (``ALWAYS``)."""
    checked = check_names(names)
    always = [name for name in checked if name in ALWAYS]
    if always:
        raise ValueError(
            f"{', '.join(always)} cannot be excluded: it is sent only by a run that dropped unpublished "
            "datums, and says that numbers are missing"
        )
    return checked


def selected(
    metric_set: MetricSet, include: Iterable[str] = (), exclude: Iterable[str] = ()
) -> frozenset[str]:
    """The names a deployment publishes: the set, plus ``include``, less ``exclude``, plus ``ALWAYS``.

    ``ValueError`` for an unknown name, an excluded ``ALWAYS`` name, or a name both included and excluded.
    """
    added, removed = set(check_names(include)), set(check_excludable(exclude))
    both = sorted(added & removed)
    if both:
        raise ValueError(f"METRICS_INCLUDE and METRICS_EXCLUDE both name {', '.join(both)}")
    return frozenset((SETS[metric_set] | added) - removed) | ALWAYS
