"""EKS cluster discovery by tag (ListClusters + DescribeCluster): one implementation for both functions."""

from __future__ import annotations

from typing import Any


def tagged_clusters(eks: Any, tag: tuple[str, str]) -> list[str]:
    """Names (sorted) of the clusters in the EKS client's region carrying tag ``key=value``."""
    key, value = tag
    found = []
    for page in eks.get_paginator("list_clusters").paginate():
        for name in page.get("clusters", []):
            tags = eks.describe_cluster(name=name)["cluster"].get("tags") or {}
            if tags.get(key) == value:
                found.append(name)
    return sorted(found)
