"""Keeping the dashboards of one set in step with CloudWatch (idempotent)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cni_metrics.dashboard.body import DashboardPage, managed_marker
from cni_metrics.dashboard.fleet_page import FLEET_PAGE_SUFFIX
from cni_metrics.dashboard.validate import validate_body


@dataclass(slots=True)
class DashboardChanges:
    """What one reconciliation did to the dashboards."""

    put: list[str]
    unchanged: list[str]
    deleted: list[str]


def owned_dashboards(cloudwatch: Any, name: str) -> list[str]:
    """Dashboards of the set ``name``: named ``name``, ``name-N`` or ``name-fleet`` (fleet mode's overview)
    and carrying its marker."""
    pattern = re.compile(rf"^{re.escape(name)}(-[0-9]+|{re.escape(FLEET_PAGE_SUFFIX)})?$")
    names: list[str] = []
    for page in cloudwatch.get_paginator("list_dashboards").paginate(DashboardNamePrefix=name):
        names.extend(e["DashboardName"] for e in page.get("DashboardEntries", []))
    return sorted(n for n in set(names) if pattern.match(n) and _carries_marker(cloudwatch, n, name))


def _current_body(cloudwatch: Any, dashboard: str) -> str | None:
    try:
        body: str = cloudwatch.get_dashboard(DashboardName=dashboard)["DashboardBody"]
    except cloudwatch.exceptions.ResourceNotFound:
        return None
    return body


def _carries_marker(cloudwatch: Any, dashboard: str, name: str) -> bool:
    body = _current_body(cloudwatch, dashboard)
    return body is not None and managed_marker(name) in body


def reconcile_dashboards(cloudwatch: Any, name: str, pages: Sequence[DashboardPage]) -> DashboardChanges:
    """Put the pages whose body differs from CloudWatch's; delete this set's pages no longer wanted."""
    changes = DashboardChanges(put=[], unchanged=[], deleted=[])
    for page in pages:
        validate_body(page.body)
    for page in pages:
        current = _current_body(cloudwatch, page.name)
        if current is not None and _same(current, page.body):
            changes.unchanged.append(page.name)
            continue
        cloudwatch.put_dashboard(DashboardName=page.name, DashboardBody=page.body_json())
        changes.put.append(page.name)
    wanted = {page.name for page in pages}
    changes.deleted = [n for n in owned_dashboards(cloudwatch, name) if n not in wanted]
    if changes.deleted:
        cloudwatch.delete_dashboards(DashboardNames=changes.deleted)
    return changes


def _same(current: str, body: dict[str, Any]) -> bool:
    try:
        return bool(json.loads(current) == body)
    except ValueError:
        return False
