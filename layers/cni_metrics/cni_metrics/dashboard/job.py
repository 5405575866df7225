"""One run of the dashboard function: dashboards (and alarms) for a list of clusters, or their removal."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from cni_metrics.dashboard.alarms import AlarmChanges, desired_alarms, reconcile_alarms
from cni_metrics.dashboard.body import DashboardPage, build_dashboards
from cni_metrics.dashboard.dashboards import DashboardChanges, reconcile_dashboards
from cni_metrics.dashboard.fleet_page import build_fleet_page
from cni_metrics.dashboard.settings import DashboardSettings


@dataclass(slots=True)
class Outcome:
    """What a run changed."""

    clusters: list[str]
    dashboards: DashboardChanges
    alarms: AlarmChanges

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary (the direct-invoke and schedule answer)."""
        return {
            "clusters": self.clusters,
            "dashboards": asdict(self.dashboards),
            "alarms": asdict(self.alarms),
        }


def pages_for(
    settings: DashboardSettings, clusters: Sequence[str], fleet: str | None = None
) -> list[DashboardPage]:
    """The set's pages for ``clusters`` (sorted, unique), and the overview page of ``fleet`` when named."""
    names = sorted(set(clusters))
    options = settings.dashboard_options()
    pages = build_dashboards(names, options)
    if fleet is not None:
        pages.append(build_fleet_page(fleet, options, [page.name for page in pages], len(names)))
    return pages


def apply(settings: DashboardSettings, clusters: Sequence[str], cloudwatch: Any,
          out_of_time: Callable[[], bool] = lambda: False, fleet: str | None = None) -> Outcome:
    """Dashboards for ``clusters``; alarms too when enabled, else this set's alarms are removed.

    ``fleet``: the fleet's name in fleet mode: its overview page (``NAME-fleet``) is put too; without it
    a set's overview page is deleted. Alarm puts still to do once ``out_of_time()`` are reported as pending
    (the next run does them).
    """
    names = sorted(set(clusters))
    dashboards = reconcile_dashboards(cloudwatch, settings.name, pages_for(settings, names, fleet))
    wanted = desired_alarms(names, settings.alarm_options()) if settings.alarms_enabled else {}
    alarms = reconcile_alarms(cloudwatch, settings.name, wanted, out_of_time)
    return Outcome(names, dashboards, alarms)


def remove(settings: DashboardSettings, cloudwatch: Any) -> Outcome:
    """Delete every dashboard and alarm of the set ``settings.name``."""
    dashboards = reconcile_dashboards(cloudwatch, settings.name, [])
    alarms = reconcile_alarms(cloudwatch, settings.name, {})
    return Outcome([], dashboards, alarms)
