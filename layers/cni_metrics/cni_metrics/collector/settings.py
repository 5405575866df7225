"""The collector's configuration: one validated model built from the environment and the event.

``load_settings(environ, event)`` is the only way in; nothing is read at import time. Every variable of
the configuration table in docs/ARCHITECTURE.md has a field here with the same default. The event may
replace the list of clusters (a direct invoke ``{"clusters": [...]}``); an EventBridge scheduled event
changes nothing. Anything invalid raises ``ConfigError`` with every problem named after its variable.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from cni_metrics.adapters.scrape import DEFAULT_SCRAPE, ScrapeSettings
from cni_metrics.settings_fields import (
    CLUSTER_NAME_PATTERN,
    REGION_PATTERN,
    ROLE_ARN_PATTERN,
    ClusterNames,
    ConfigError,
    Tag,
    describe,
    environment_values,
)

_BUCKET = r"^[a-z0-9][a-z0-9.-]+$"

__all__ = ["ClusterSpec", "ConfigError", "Settings", "load_settings", "parse_event"]


class ClusterSpec(BaseModel):
    """One cluster to monitor, with optional per-cluster access settings (a ``CLUSTERS_JSON`` entry)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=CLUSTER_NAME_PATTERN)
    region: str | None = Field(default=None, pattern=REGION_PATTERN)
    role_arn: str | None = Field(default=None, pattern=ROLE_ARN_PATTERN)
    endpoint: str | None = Field(default=None, pattern=r"^https?://[^\s/]+(/\S*)?$")
    ca_data: str | None = Field(default=None, min_length=1, repr=False)


def _parse_json(value: Any) -> Any:
    if isinstance(value, str):
        if not value.strip():
            return []
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON ({exc.msg} at character {exc.pos})") from exc
    return value


def _check_prefix(value: str) -> str:
    if value.startswith("/"):
        raise ValueError("must not start with '/'")
    return value if not value or value.endswith("/") else value + "/"


ClusterSpecs = Annotated[list[ClusterSpec], BeforeValidator(_parse_json)]


class Settings(BaseModel):
    """Everything one collector invocation needs to know, validated (field aliases = variable names)."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    cluster_names: ClusterNames = Field(default_factory=list, alias="CLUSTER_NAMES")
    clusters_json: ClusterSpecs = Field(default_factory=list, alias="CLUSTERS_JSON")
    discovery_tag: Tag = Field(default=None, alias="CLUSTER_DISCOVERY_TAG")
    publish_mode: Literal["emf", "putmetricdata"] = Field(default="emf", alias="PUBLISH_MODE")
    namespace: str = Field(default="Kubernetes", min_length=1, max_length=255, alias="METRICS_NAMESPACE")
    scrape_concurrency: int = Field(
        default=DEFAULT_SCRAPE.concurrency, ge=1, le=1024, alias="SCRAPE_CONCURRENCY"
    )
    cluster_concurrency: int = Field(default=4, ge=1, le=64, alias="CLUSTER_CONCURRENCY")
    connect_timeout_seconds: float = Field(
        default=DEFAULT_SCRAPE.connect_timeout, gt=0, le=60, alias="CONNECT_TIMEOUT_SECONDS"
    )
    read_timeout_seconds: float = Field(
        default=DEFAULT_SCRAPE.read_timeout, gt=0, le=300, alias="READ_TIMEOUT_SECONDS"
    )
    publish_margin_seconds: float = Field(default=15.0, ge=0, le=600, alias="PUBLISH_MARGIN_SECONDS")
    max_payload_bytes: int = Field(
        default=DEFAULT_SCRAPE.max_payload_bytes, ge=1024, alias="MAX_PAYLOAD_BYTES"
    )
    exhaustion_threshold_pct: float = Field(default=90.0, gt=0, le=100, alias="EXHAUSTION_THRESHOLD_PCT")
    state_bucket: str = Field(min_length=3, max_length=63, pattern=_BUCKET, alias="STATE_BUCKET")
    state_prefix: Annotated[str, AfterValidator(_check_prefix)] = Field(
        default="cni-metrics/state/", max_length=512, alias="STATE_PREFIX"
    )
    publish_retry_mode: Literal["standard", "adaptive"] = Field(
        default="standard", alias="PUBLISH_RETRY_MODE"
    )
    publish_max_attempts: int = Field(default=5, ge=1, le=20, alias="PUBLISH_MAX_ATTEMPTS")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        default="INFO", alias="POWERTOOLS_LOG_LEVEL"
    )
    region: str | None = Field(default=None, pattern=REGION_PATTERN, alias="AWS_REGION")
    event_clusters: list[ClusterSpec] | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _something_to_monitor(self) -> Settings:
        if not (self.event_clusters or self.cluster_names or self.clusters_json or self.discovery_tag):
            raise ValueError(
                "no cluster to monitor: set CLUSTER_NAMES, CLUSTERS_JSON or CLUSTER_DISCOVERY_TAG"
            )
        names = [spec.name for spec in self.clusters_json]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"CLUSTERS_JSON names a cluster more than once: {', '.join(duplicates)}")
        return self

    @property
    def clusters(self) -> list[ClusterSpec]:
        """The configured clusters (before discovery): the event's list if it has one, else the environment's.

        A bare name takes its per-cluster settings from ``CLUSTERS_JSON`` when that names it too.
        """
        by_name = {spec.name: spec for spec in self.clusters_json}
        if self.event_clusters:
            return [by_name.get(spec.name, spec) if spec.model_fields_set == {"name"} else spec
                    for spec in self.event_clusters]
        merged = dict.fromkeys(self.cluster_names) | dict.fromkeys(by_name)
        return [by_name.get(name) or ClusterSpec(name=name) for name in merged]

    @property
    def scrape(self) -> ScrapeSettings:
        """The scrape settings of every cluster's collection."""
        return ScrapeSettings(
            concurrency=self.scrape_concurrency, connect_timeout=self.connect_timeout_seconds,
            read_timeout=self.read_timeout_seconds, max_payload_bytes=self.max_payload_bytes,
        )

    @property
    def discovery_enabled(self) -> bool:
        """Whether clusters are also discovered by tag (never when the event names the clusters)."""
        return self.discovery_tag is not None and not self.event_clusters


class DirectInvokeEvent(BaseModel):
    """A direct invocation: ``{"clusters": ["name" | {ClusterSpec}, ...]}`` (``{}``: use the environment)."""

    model_config = ConfigDict(extra="forbid")

    clusters: list[ClusterSpec] | None = Field(default=None, min_length=1, max_length=1000)

    @model_validator(mode="before")
    @classmethod
    def _names_to_specs(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("clusters"), list):
            data = dict(data)
            data["clusters"] = [
                {"name": item} if isinstance(item, str) else item for item in data["clusters"]
            ]
        return data


class ScheduledEvent(EventBridgeModel):
    """An EventBridge (rule or Scheduler) scheduled event; its detail is ignored."""

    detail_type: Literal["Scheduled Event"] = Field(alias="detail-type")


def parse_event(event: Any) -> list[ClusterSpec] | None:
    """The clusters an event asks for (None: the configured ones); ``ConfigError`` when it is neither kind."""
    if event is None:
        return None
    if not isinstance(event, dict):
        raise ConfigError(f"invalid event: expected a JSON object, got {type(event).__name__}")
    try:
        if "detail-type" in event or "source" in event:
            parse(event=event, model=ScheduledEvent)
            return None
        return parse(event=event, model=DirectInvokeEvent).clusters
    except ValidationError as exc:
        raise ConfigError("invalid event: " + describe(exc)) from None
    except Exception as exc:  # Powertools wraps validation errors of some models in its own type
        cause = exc.__cause__
        if isinstance(cause, ValidationError):
            raise ConfigError("invalid event: " + describe(cause)) from None
        raise ConfigError(f"invalid event: {exc}") from None


def load_settings(environ: Mapping[str, str], event: Any = None) -> Settings:
    """Validate the environment (and the event's cluster list) into ``Settings``, or raise ``ConfigError``."""
    clusters = parse_event(event)
    values = environment_values(Settings, environ)
    if "POWERTOOLS_LOG_LEVEL" in values:
        values["POWERTOOLS_LOG_LEVEL"] = values["POWERTOOLS_LOG_LEVEL"].upper()
    values["event_clusters"] = clusters
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        raise ConfigError("invalid configuration: " + describe(exc)) from None

