"""Which clusters the dashboards show: named ones plus those found by tag (EKS ListClusters)."""

from __future__ import annotations

from typing import Any

from cni_metrics.dashboard.settings import DashboardSettings


def discover_clusters(eks: Any, tag: tuple[str, str]) -> list[str]:
    """Names of the clusters in the region carrying tag ``key=value``."""
    key, value = tag
    found = []
    for page in eks.get_paginator("list_clusters").paginate():
        for name in page.get("clusters", []):
            tags = eks.describe_cluster(name=name)["cluster"].get("tags") or {}
            if tags.get(key) == value:
                found.append(name)
    return sorted(found)


def resolve_clusters(settings: DashboardSettings, eks: Any | None) -> list[str]:
    """CLUSTER_NAMES together with the clusters found by CLUSTER_DISCOVERY_TAG (sorted, unique)."""
    names = set(settings.cluster_names)
    if settings.discovery_tag is not None:
        if eks is None:
            raise ValueError("cluster discovery needs an EKS client")
        names.update(discover_clusters(eks, settings.discovery_tag))
    return sorted(names)
