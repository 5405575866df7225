"""Which clusters the dashboards show: named ones plus those found by tag (EKS ListClusters)."""

from __future__ import annotations

from typing import Any

from cni_metrics.adapters.eks_clusters import tagged_clusters
from cni_metrics.dashboard.settings import DashboardSettings


def resolve_clusters(settings: DashboardSettings, eks: Any | None) -> list[str]:
    """CLUSTER_NAMES together with the clusters found by CLUSTER_DISCOVERY_TAG (sorted, unique)."""
    names = set(settings.cluster_names)
    if settings.discovery_tag is not None:
        if eks is None:
            raise ValueError("cluster discovery needs an EKS client")
        names.update(tagged_clusters(eks, settings.discovery_tag))
    return sorted(names)
