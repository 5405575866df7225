"""Settings of the dashboard function: environment, overridden by custom-resource properties.

Built on the same validators as the collector's (``cni_metrics.settings_fields``): the same variable
means the same thing, and is checked the same way, in both functions. METRIC_SET, METRICS_INCLUDE and
METRICS_EXCLUDE (``MetricSelection``, the collector's fields) say which metrics the dashboard draws and
alarms on.

Fleet mode (FLEET_DOCUMENT set): ``FleetSource`` holds FLEET_DOCUMENT, STATE_BUCKET and STATE_PREFIX with
the dispatcher's and the collector's field types (STATE_BUCKET then required, as theirs is); the clusters
are the fleet's (``clusters``), so CLUSTER_NAMES, CLUSTERS_JSON and CLUSTER_DISCOVERY_TAG stay empty, as
the collector requires too.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from cni_metrics.collector.settings import StateBucket, StatePrefix
from cni_metrics.dashboard.alarms import AlarmOptions
from cni_metrics.dashboard.body import MAX_CLUSTERS_PER_DASHBOARD, DashboardOptions
from cni_metrics.fleet.location import FleetDocumentLocation
from cni_metrics.settings_fields import (
    ConfigError,
    MetricSelection,
    Namespace,
    Tag,
    describe,
    environment_values,
    is_cluster_name,
    split_names,
)


def parse_clusters(value: str | list[Any]) -> tuple[str, ...]:
    """Sorted, de-duplicated, validated cluster names from a comma-separated string or a list."""
    names = set()
    for item in split_names(value):
        if not isinstance(item, str):
            raise ConfigError(f"cluster name {item!r} is not a string")
        name = item.strip()
        if name and not is_cluster_name(name):
            raise ConfigError(f"invalid cluster name {name!r}")
        if name:
            names.add(name)
    return tuple(sorted(names))


def _json_names(value: Any) -> Any:
    """Cluster names of a CLUSTERS_JSON list of ``{name, ...}`` objects (the collector's other settings)."""
    if not isinstance(value, str):
        return value
    try:
        entries = json.loads(value)
    except ValueError as error:
        raise ValueError(f"not JSON: {error}") from None
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ValueError("must be a list of objects")
    return parse_clusters([e.get("name") for e in entries])


def _names(value: Any) -> Any:
    return parse_clusters(value) if isinstance(value, str | list) else value


def _percent(value: Any) -> Any:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ValueError(f"{value!r}: not a number") from None
    if isinstance(value, int | float) and not 0 < value <= 100:
        raise ValueError(f"{value!r}: expected 0 < pct <= 100")
    return value


Names = Annotated[tuple[str, ...], BeforeValidator(_names)]
JsonNames = Annotated[tuple[str, ...], BeforeValidator(_json_names)]
Percent = Annotated[float, BeforeValidator(_percent)]


class FleetSource(BaseModel):
    """Fleet mode: the fleet document and the collector's state objects (field aliases = variable names)."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    location: FleetDocumentLocation = Field(alias="FLEET_DOCUMENT")
    state_bucket: StateBucket = Field(alias="STATE_BUCKET")
    state_prefix: StatePrefix = Field(default="cni-metrics/state/", alias="STATE_PREFIX")


class DashboardSettings(MetricSelection):
    """Validated settings of one run (field aliases = variable names)."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    name: str = Field(default="cni-metrics", pattern=r"^[A-Za-z0-9_-]{1,200}$", alias="DASHBOARD_NAME")
    region: str = Field(min_length=1, alias="AWS_REGION")
    namespace: Namespace = Field(default="Kubernetes", alias="METRICS_NAMESPACE")
    named_clusters: Names = Field(default=(), alias="CLUSTER_NAMES")
    json_clusters: JsonNames = Field(default=(), alias="CLUSTERS_JSON")
    discovery_tag: Tag = Field(default=None, alias="CLUSTER_DISCOVERY_TAG")
    alarms_enabled: bool = Field(default=False, alias="ALARMS_ENABLED")
    alarm_topic_arn: str = Field(default="", alias="ALARM_TOPIC_ARN")
    utilization_alarm_pct: Percent = Field(default=80.0, alias="IP_UTILIZATION_ALARM_PCT")
    critical_pct: Percent = Field(default=90.0, alias="EXHAUSTION_THRESHOLD_PCT")
    clusters_per_dashboard: int = Field(
        default=20, ge=1, le=MAX_CLUSTERS_PER_DASHBOARD, alias="CLUSTERS_PER_DASHBOARD"
    )
    collector_log_group: str = Field(default="", alias="COLLECTOR_LOG_GROUP")
    fleet: FleetSource | None = None
    """Fleet mode (FLEET_DOCUMENT set), else None; loaded by ``load_dashboard_settings``."""

    @model_validator(mode="after")
    def _fleet_alone(self) -> DashboardSettings:
        if self.fleet is not None and (self.named_clusters or self.json_clusters or self.discovery_tag):
            raise ValueError(
                "FLEET_DOCUMENT: the fleet document lists the clusters; leave CLUSTER_NAMES, CLUSTERS_JSON "
                "and CLUSTER_DISCOVERY_TAG empty"
            )
        return self

    @property
    def cluster_names(self) -> tuple[str, ...]:
        """CLUSTER_NAMES (or the ``Clusters`` property) plus the names in CLUSTERS_JSON, sorted."""
        return tuple(sorted(set(self.named_clusters) | set(self.json_clusters)))

    def dashboard_options(self) -> DashboardOptions:
        """Body-builder options."""
        return DashboardOptions(
            name=self.name, region=self.region, namespace=self.namespace,
            warn_pct=self.utilization_alarm_pct,
            critical_pct=max(self.critical_pct, self.utilization_alarm_pct),
            clusters_per_dashboard=self.clusters_per_dashboard,
            collector_log_group=self.collector_log_group, metrics=self.published_metrics,
        )

    def alarm_options(self) -> AlarmOptions:
        """Alarm options."""
        return AlarmOptions(name=self.name, namespace=self.namespace, topic_arn=self.alarm_topic_arn,
                            utilization_pct=self.utilization_alarm_pct, metrics=self.published_metrics)


# Custom-resource property -> environment variable it overrides.
PROPERTY_TO_ENV = {
    "DashboardName": "DASHBOARD_NAME",
    "Namespace": "METRICS_NAMESPACE",
    "Clusters": "CLUSTER_NAMES",
    "ClusterDiscoveryTag": "CLUSTER_DISCOVERY_TAG",
    "AlarmsEnabled": "ALARMS_ENABLED",
    "AlarmTopicArn": "ALARM_TOPIC_ARN",
    "IpUtilizationAlarmPct": "IP_UTILIZATION_ALARM_PCT",
    "MetricSet": "METRIC_SET",
    "MetricsInclude": "METRICS_INCLUDE",
    "MetricsExclude": "METRICS_EXCLUDE",
}


def load_dashboard_settings(
    env: Mapping[str, str] | None = None, properties: Mapping[str, Any] | None = None
) -> DashboardSettings:
    """Settings from ``env`` (default ``os.environ``), custom-resource ``properties`` taking precedence."""
    merged = dict(os.environ if env is None else env)
    for prop, value in (properties or {}).items():
        if prop in PROPERTY_TO_ENV and value is not None:
            merged[PROPERTY_TO_ENV[prop]] = ",".join(value) if isinstance(value, list) else str(value)
    problems: list[str] = []
    fleet = None
    try:
        fleet = _fleet_source(merged)
    except ValidationError as exc:
        problems.append(describe(exc))
    try:
        settings = DashboardSettings.model_validate({**_values(DashboardSettings, merged), "fleet": fleet})
    except ValidationError as exc:
        problems.append(describe(exc))
    if problems:
        raise ConfigError("invalid dashboard settings: " + "; ".join(problems))
    return settings


def _values(model: type[BaseModel], env: Mapping[str, str]) -> dict[str, str]:
    """The variables ``model`` reads, stripped; blank ones left out (they mean "the default")."""
    values = {name: value.strip() for name, value in environment_values(model, env).items()}
    return {name: value for name, value in values.items() if value}


def _fleet_source(env: Mapping[str, str]) -> FleetSource | None:
    """``FleetSource`` when FLEET_DOCUMENT is set (``ValidationError`` when it or its companions are bad)."""
    values = _values(FleetSource, env)
    return FleetSource.model_validate(values) if "FLEET_DOCUMENT" in values else None
