"""Settings of the dashboard function: environment, overridden by custom-resource properties."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cni_metrics.dashboard.alarms import AlarmOptions
from cni_metrics.dashboard.body import MAX_CLUSTERS_PER_DASHBOARD, DashboardOptions

_DASHBOARD_NAME = re.compile(r"^[A-Za-z0-9_-]{1,200}$")
_CLUSTER_NAME = re.compile(r"^[0-9A-Za-z][A-Za-z0-9_-]{0,99}$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class SettingsError(ValueError):
    """A setting or event field with a value the function cannot use."""


@dataclass(frozen=True, slots=True)
class DashboardSettings:
    """Validated settings of one run."""

    name: str
    region: str
    namespace: str
    cluster_names: tuple[str, ...]
    discovery_tag: tuple[str, str] | None
    alarms_enabled: bool
    alarm_topic_arn: str
    utilization_alarm_pct: float
    critical_pct: float
    clusters_per_dashboard: int
    collector_log_group: str = ""

    def dashboard_options(self) -> DashboardOptions:
        """Body-builder options."""
        return DashboardOptions(
            name=self.name, region=self.region, namespace=self.namespace,
            warn_pct=self.utilization_alarm_pct,
            critical_pct=max(self.critical_pct, self.utilization_alarm_pct),
            clusters_per_dashboard=self.clusters_per_dashboard,
            collector_log_group=self.collector_log_group,
        )

    def alarm_options(self) -> AlarmOptions:
        """Alarm options."""
        return AlarmOptions(name=self.name, namespace=self.namespace, topic_arn=self.alarm_topic_arn,
                            utilization_pct=self.utilization_alarm_pct)


# Custom-resource property -> environment variable it overrides.
PROPERTY_TO_ENV = {
    "DashboardName": "DASHBOARD_NAME",
    "Namespace": "METRICS_NAMESPACE",
    "Clusters": "CLUSTER_NAMES",
    "ClusterDiscoveryTag": "CLUSTER_DISCOVERY_TAG",
    "AlarmsEnabled": "ALARMS_ENABLED",
    "AlarmTopicArn": "ALARM_TOPIC_ARN",
    "IpUtilizationAlarmPct": "IP_UTILIZATION_ALARM_PCT",
}


def load_settings(env: Mapping[str, str] | None = None, properties: Mapping[str, Any] | None = None
                  ) -> DashboardSettings:
    """Settings from ``env`` (default ``os.environ``), custom-resource ``properties`` taking precedence.

    The clusters are CLUSTER_NAMES (or the ``Clusters`` property) plus the names in CLUSTERS_JSON.
    """
    merged = dict(os.environ if env is None else env)
    for prop, value in (properties or {}).items():
        if prop in PROPERTY_TO_ENV and value is not None:
            merged[PROPERTY_TO_ENV[prop]] = ",".join(value) if isinstance(value, list) else str(value)
    name = merged.get("DASHBOARD_NAME", "").strip() or "cni-metrics"
    if not _DASHBOARD_NAME.match(name):
        raise SettingsError(f"DASHBOARD_NAME {name!r}: 1-200 of A-Z a-z 0-9 _ -")
    region = merged.get("AWS_REGION") or merged.get("AWS_DEFAULT_REGION") or ""
    if not region:
        raise SettingsError("AWS_REGION is not set")
    return DashboardSettings(
        name=name,
        region=region,
        namespace=merged.get("METRICS_NAMESPACE", "").strip() or "Kubernetes",
        cluster_names=tuple(sorted(
            set(parse_clusters(merged.get("CLUSTER_NAMES", "")))
            | set(_json_names(merged.get("CLUSTERS_JSON", "")))
        )),
        discovery_tag=_tag(merged.get("CLUSTER_DISCOVERY_TAG", "")),
        alarms_enabled=_bool("ALARMS_ENABLED", merged.get("ALARMS_ENABLED", "")),
        alarm_topic_arn=merged.get("ALARM_TOPIC_ARN", "").strip(),
        utilization_alarm_pct=_pct("IP_UTILIZATION_ALARM_PCT", merged.get("IP_UTILIZATION_ALARM_PCT", "80")),
        critical_pct=_pct("EXHAUSTION_THRESHOLD_PCT", merged.get("EXHAUSTION_THRESHOLD_PCT", "90")),
        clusters_per_dashboard=_int("CLUSTERS_PER_DASHBOARD", merged.get("CLUSTERS_PER_DASHBOARD", "20")),
        collector_log_group=merged.get("COLLECTOR_LOG_GROUP", "").strip(),
    )


def parse_clusters(value: str | list[Any]) -> tuple[str, ...]:
    """Sorted, de-duplicated, validated cluster names from a comma-separated string or a list."""
    items = value.split(",") if isinstance(value, str) else value
    names = set()
    for item in items:
        if not isinstance(item, str):
            raise SettingsError(f"cluster name {item!r} is not a string")
        name = item.strip()
        if not name:
            continue
        if not _CLUSTER_NAME.match(name):
            raise SettingsError(f"invalid cluster name {name!r}")
        names.add(name)
    return tuple(sorted(names))


def _json_names(value: str) -> tuple[str, ...]:
    """Cluster names of a CLUSTERS_JSON list of ``{name, ...}`` objects (the collector's other settings)."""
    if not value.strip():
        return ()
    try:
        entries = json.loads(value)
    except ValueError as error:
        raise SettingsError(f"CLUSTERS_JSON is not JSON: {error}") from None
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise SettingsError("CLUSTERS_JSON must be a list of objects")
    return parse_clusters([e.get("name") for e in entries])


def _tag(value: str) -> tuple[str, str] | None:
    value = value.strip()
    if not value:
        return None
    key, sep, tag_value = value.partition("=")
    if not sep or not key.strip():
        raise SettingsError(f"CLUSTER_DISCOVERY_TAG {value!r}: expected key=value")
    return key.strip(), tag_value.strip()


def _bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise SettingsError(f"{name} {value!r}: expected true or false")


def _pct(name: str, value: str) -> float:
    try:
        pct = float(value)
    except ValueError:
        raise SettingsError(f"{name} {value!r}: not a number") from None
    if not 0 < pct <= 100:
        raise SettingsError(f"{name} {value!r}: expected 0 < pct <= 100")
    return pct


def _int(name: str, value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise SettingsError(f"{name} {value!r}: not an integer") from None
    if not 1 <= number <= MAX_CLUSTERS_PER_DASHBOARD:
        raise SettingsError(f"{name} {value!r}: expected 1..{MAX_CLUSTERS_PER_DASHBOARD}")
    return number
