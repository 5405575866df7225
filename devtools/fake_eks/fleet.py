"""Fleet documents (``cni_metrics.fleet.document``) for a running stand-in's clusters.

``fleet_document(connection)``: one discovery rule per account (its first declared role, or none for the
connection's own account when it declares none), over every region its clusters are in, with the tag
the scenario's clusters carry; plus explicit entries for the clusters named in ``entries``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def fleet_document(
    connection: Mapping[str, Any],
    *,
    tag: str = "cni-metrics=enabled",
    entries: Iterable[str] = (),
    discover: bool = True,
    name: str = "fake-eks",
) -> dict[str, Any]:
    """A fleet document reaching the stand-in's clusters through their accounts' roles."""
    clusters: Mapping[str, Mapping[str, Any]] = connection["clusters"]
    regions: dict[str, list[str]] = {}
    for cluster in clusters.values():
        account, region = _place(connection, cluster)
        if region not in regions.setdefault(account, []):
            regions[account].append(region)
    doc: dict[str, Any] = {"version": 1, "name": name, "clusters": [], "discovery": []}
    for cluster_name in entries:
        account, region = _place(connection, clusters[cluster_name])
        entry = {"name": cluster_name, "region": region}
        role = role_of(connection, account)
        if role is not None:
            entry["role_arn"] = role
        doc["clusters"].append(entry)
    if discover:
        for account, account_regions in sorted(regions.items()):
            rule: dict[str, Any] = {"regions": sorted(account_regions), "tag": tag}
            role = role_of(connection, account)
            if role is not None:
                rule["role_arn"] = role
            doc["discovery"].append(rule)
    return doc


def role_of(connection: Mapping[str, Any], account: str) -> str | None:
    """The first role the scenario declares in ``account`` (None: none declared)."""
    roles = connection.get("accounts", {}).get(account, {}).get("roles", [])
    return str(roles[0]) if roles else None


def _place(connection: Mapping[str, Any], cluster: Mapping[str, Any]) -> tuple[str, str]:
    account = cluster.get("account", connection["account"])
    return str(account), str(cluster.get("region", connection["region"]))
