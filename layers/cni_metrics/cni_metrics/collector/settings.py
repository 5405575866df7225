"""The collector's configuration: one validated model built from the environment and the event.

``load_settings(environ, event)`` is the only way in; nothing is read at import time. Every variable of
the configuration table in the README has a field here with the same default. A direct invoke
``{"clusters": ["name", ...]}`` chooses clusters by name among those the deployment configures
(CLUSTER_NAMES, CLUSTERS_JSON, or, with CLUSTER_DISCOVERY_TAG, the clusters discovery finds); it never
says where or how to reach a cluster: the collector's bearer token goes only to an endpoint from
DescribeCluster or from the deployment's CLUSTERS_JSON, always ``https://``. An EventBridge scheduled
event changes nothing. Anything invalid raises ``ConfigError`` with every problem named after its
variable (or its place in the event).

Fleet mode (FLEET_DOCUMENT, an ``s3://bucket/key``): the clusters are the fleet document's
(``cni_metrics.fleet``), alone (CLUSTER_NAMES, CLUSTERS_JSON and CLUSTER_DISCOVERY_TAG stay empty). The
names an event gives are fleet ids (an entry's alias, else its name), looked up when the run starts: a name
the fleet does not have is that cluster's error, not the event's. The dispatcher's events add when they
were sent and the period (``{"clusters": [...], "dispatched_at": "<ISO 8601>", "period_seconds": 60}``):
a run that starts after its period has ended skips every cluster (``Settings.late``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from cni_metrics.adapters.scrape import DEFAULT_SCRAPE, ScrapeSettings, Transport
from cni_metrics.fleet.location import FleetDocumentLocation
from cni_metrics.settings_fields import (
    CLUSTER_NAME_PATTERN,
    REGION_PATTERN,
    ROLE_ARN_PATTERN,
    ClusterName,
    ClusterNames,
    ConfigError,
    MetricSelection,
    Namespace,
    Tag,
    describe,
    environment_values,
)

_BUCKET = r"^[a-z0-9][a-z0-9.-]+$"
# Lambda gives a process 1,024 file descriptors. A cluster in flight holds SCRAPE_CONCURRENCY connections
# and up to FDS_PER_CLUSTER others (its selector, the Kubernetes API and capacity readers' connections,
# its EKS, STS and EC2 clients: 4 to 5 measured against the stand-in, so about 3 times that is allowed);
# FDS_RESERVED stay for the runtime, the S3 and CloudWatch pools (10 each at most) and logs.
LAMBDA_FILE_DESCRIPTORS = 1024
FDS_PER_CLUSTER = 16
FDS_RESERVED = 128
# A real aws-node payload is tens of KiB and the default cap 8 MiB. The scraper holds a body in memory
# while it arrives and the parser its text and samples after: 256 MiB (32 times the default) still fits
# a Lambda's memory with its parse; anything larger could only exhaust it.
MAX_PAYLOAD_CAP = 256 * 1024 * 1024
# What a direct invoke may not say about a cluster: where and as whom the collector signs in.
_DEPLOYMENT_ONLY = ("region", "role_arn", "endpoint", "ca_data")
# The dispatcher's period: one minute (its schedule's smallest) to a day.
MIN_PERIOD_SECONDS, MAX_PERIOD_SECONDS = 60, 86400

__all__ = ["ClusterSpec", "ConfigError", "Settings", "load_settings", "parse_event"]


class ClusterSpec(BaseModel):
    """One cluster to monitor, with optional per-cluster access settings (a ``CLUSTERS_JSON`` entry)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=CLUSTER_NAME_PATTERN)
    region: str | None = Field(default=None, pattern=REGION_PATTERN)
    role_arn: str | None = Field(default=None, pattern=ROLE_ARN_PATTERN)
    endpoint: str | None = None
    ca_data: str | None = Field(default=None, min_length=1, repr=False)

    @field_validator("endpoint")
    @classmethod
    def _https_only(cls, value: str | None) -> str | None:
        """The bearer token is sent to the endpoint: only over TLS."""
        if value is not None and not re.fullmatch(r"https://[^\s/]+(/\S*)?", value):
            raise ValueError("must be an https:// URL (the collector's bearer token is sent there)")
        return value

    @property
    def id(self) -> str:
        """The name the cluster is published (``CLUSTER_ID``), stored and invoked under: its name here; a
        fleet entry's alias (``cni_metrics.fleet.document.FleetCluster``)."""
        return self.name


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


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


ClusterSpecs = Annotated[list[ClusterSpec], BeforeValidator(_parse_json)]
LogLevel = Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], BeforeValidator(_upper)]
"""POWERTOOLS_LOG_LEVEL, in any case (the fleet dispatcher's too)."""
StateBucket = Annotated[str, Field(min_length=3, max_length=63, pattern=_BUCKET)]
StatePrefix = Annotated[str, Field(max_length=512), AfterValidator(_check_prefix)]
"""STATE_BUCKET and STATE_PREFIX (the fleet dispatcher lists the same state objects)."""


class Settings(MetricSelection):
    """Everything one collector invocation needs to know, validated (field aliases = variable names).

    METRIC_SET, METRICS_INCLUDE and METRICS_EXCLUDE come from ``MetricSelection`` (shared with the
    dashboard function): ``published_metrics`` are the names the run publishes.
    """

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    cluster_names: ClusterNames = Field(default_factory=list, alias="CLUSTER_NAMES")
    clusters_json: ClusterSpecs = Field(default_factory=list, alias="CLUSTERS_JSON")
    discovery_tag: Tag = Field(default=None, alias="CLUSTER_DISCOVERY_TAG")
    publish_mode: Literal["emf", "putmetricdata"] = Field(default="emf", alias="PUBLISH_MODE")
    namespace: Namespace = Field(default="Kubernetes", alias="METRICS_NAMESPACE")
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
    scrape_transport: Transport = Field(default=DEFAULT_SCRAPE.transport, alias="SCRAPE_TRANSPORT")
    exhaustion_threshold_pct: float = Field(default=90.0, gt=0, le=100, alias="EXHAUSTION_THRESHOLD_PCT")
    state_bucket: StateBucket = Field(alias="STATE_BUCKET")
    state_prefix: StatePrefix = Field(default="cni-metrics/state/", alias="STATE_PREFIX")
    publish_retry_mode: Literal["standard", "adaptive"] = Field(
        default="standard", alias="PUBLISH_RETRY_MODE"
    )
    publish_max_attempts: int = Field(default=5, ge=1, le=20, alias="PUBLISH_MAX_ATTEMPTS")
    log_level: LogLevel = Field(default="INFO", alias="POWERTOOLS_LOG_LEVEL")
    region: str | None = Field(default=None, pattern=REGION_PATTERN, alias="AWS_REGION")
    fleet_document: FleetDocumentLocation | None = Field(default=None, alias="FLEET_DOCUMENT")
    requested: tuple[str, ...] | None = Field(default=None, exclude=True)
    """The cluster names a direct invoke chose, in its order (None: every configured cluster)."""
    dispatched_at: datetime | None = Field(default=None, exclude=True)
    """When the dispatcher sent the event (None: not a dispatched event)."""
    period_seconds: int | None = Field(default=None, exclude=True)
    """The period the dispatched event collects (None: not a dispatched event)."""

    @field_validator("max_payload_bytes")
    @classmethod
    def _payload_fits_in_memory(cls, value: int) -> int:
        if value > MAX_PAYLOAD_CAP:
            raise ValueError(
                f"at most {MAX_PAYLOAD_CAP} (256 MiB): a body is held in memory while it arrives and parsed "
                "after; real aws-node payloads are tens of KiB"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        listed = bool(self.cluster_names or self.clusters_json or self.discovery_tag)
        if self.fleet_document is not None and listed:
            raise ValueError(
                "FLEET_DOCUMENT: the fleet document lists the clusters; leave CLUSTER_NAMES, CLUSTERS_JSON "
                "and CLUSTER_DISCOVERY_TAG empty"
            )
        if not listed and self.fleet_document is None:
            raise ValueError(
                "no cluster to monitor: set CLUSTER_NAMES, CLUSTERS_JSON, CLUSTER_DISCOVERY_TAG or "
                "FLEET_DOCUMENT"
            )
        scrapes, clusters = self.scrape_concurrency, self.cluster_concurrency
        needed = clusters * (scrapes + FDS_PER_CLUSTER) + FDS_RESERVED
        if needed > LAMBDA_FILE_DESCRIPTORS:
            raise ValueError(
                f"SCRAPE_CONCURRENCY x CLUSTER_CONCURRENCY: {scrapes} x {clusters} need about {needed} file "
                f"descriptors ({clusters} x ({scrapes} + {FDS_PER_CLUSTER}) + {FDS_RESERVED}); Lambda allows "
                f"{LAMBDA_FILE_DESCRIPTORS}: lower either"
            )
        names = [spec.name for spec in self.clusters_json]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"CLUSTERS_JSON names a cluster more than once: {', '.join(duplicates)}")
        return self

    @property
    def configured(self) -> dict[str, ClusterSpec]:
        """CLUSTER_NAMES and CLUSTERS_JSON by name, once each (a name in both: its CLUSTERS_JSON entry)."""
        by_name = {spec.name: spec for spec in self.clusters_json}
        merged = dict.fromkeys(self.cluster_names) | dict.fromkeys(by_name)
        return {name: by_name.get(name) or ClusterSpec(name=name) for name in merged}

    @property
    def clusters(self) -> list[ClusterSpec]:
        """The configured clusters to collect before discovery: those the event chose, or all of them."""
        configured = self.configured
        if self.requested is None:
            return list(configured.values())
        return [configured[name] for name in dict.fromkeys(self.requested) if name in configured]

    @property
    def scrape(self) -> ScrapeSettings:
        """The scrape settings of every cluster's collection."""
        return ScrapeSettings(
            concurrency=self.scrape_concurrency, connect_timeout=self.connect_timeout_seconds,
            read_timeout=self.read_timeout_seconds, max_payload_bytes=self.max_payload_bytes,
            transport=self.scrape_transport,
        )

    @property
    def discovery_enabled(self) -> bool:
        """Whether this run discovers by tag: with a tag, unless the event chose configured clusters only."""
        if self.discovery_tag is None:
            return False
        return self.requested is None or any(name not in self.configured for name in self.requested)

    def chosen(self, discovered: Iterable[ClusterSpec]) -> list[ClusterSpec]:
        """The discovered clusters this run collects: those the event named (all without an event)."""
        if self.requested is None:
            return list(discovered)
        return [spec for spec in discovered if spec.name in self.requested]

    def late(self, now: datetime) -> bool:
        """Whether this is a dispatched event whose period had ended by ``now``: the run skips it, the next
        period's run counts the interval (counters are cumulative)."""
        if self.dispatched_at is None or self.period_seconds is None:
            return False
        return now >= self.dispatched_at + timedelta(seconds=self.period_seconds)

    def check_time(self, remaining_seconds: float) -> None:
        """``ConfigError`` unless PUBLISH_MARGIN_SECONDS leaves time to collect in the invocation."""
        if self.publish_margin_seconds >= remaining_seconds:
            raise ConfigError(
                f"invalid configuration: PUBLISH_MARGIN_SECONDS: {self.publish_margin_seconds:g} s is not "
                f"below the invocation's {remaining_seconds:.1f} s (the function's timeout): nothing could "
                "be collected; lower it or raise the timeout"
            )


class EventCluster(BaseModel):
    """A cluster a direct invoke names: its name only. How to reach it is the deployment's to say."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: ClusterName
    region: None = None
    role_arn: None = None
    endpoint: None = None
    ca_data: None = None

    @field_validator(*_DEPLOYMENT_ONLY, mode="before")
    @classmethod
    def _refused(cls, value: Any) -> None:
        raise ValueError(
            "not allowed in an event: a direct invoke names configured clusters only; endpoint, CA, "
            "role and region come from the deployment (CLUSTERS_JSON)"
        )


class DirectInvokeEvent(BaseModel):
    """A direct invocation: ``{"clusters": ["name", ...]}`` (``{"name": ...}`` items too; ``{}``: all); the
    dispatcher's adds ``dispatched_at`` (ISO 8601 with its offset) and ``period_seconds``, both or neither."""

    model_config = ConfigDict(extra="forbid")

    clusters: list[EventCluster] | None = Field(default=None, min_length=1, max_length=1000)
    dispatched_at: AwareDatetime | None = None
    period_seconds: int | None = Field(default=None, ge=MIN_PERIOD_SECONDS, le=MAX_PERIOD_SECONDS)

    @model_validator(mode="after")
    def _dispatched(self) -> DirectInvokeEvent:
        if (self.dispatched_at is None) != (self.period_seconds is None):
            raise ValueError("dispatched_at and period_seconds: give both or neither")
        if self.dispatched_at is not None and self.clusters is None:
            raise ValueError("clusters: a dispatched event names its clusters")
        return self

    @model_validator(mode="before")
    @classmethod
    def _names_to_items(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("clusters"), list):
            data = dict(data)
            data["clusters"] = [
                {"name": item} if isinstance(item, str) else item for item in data["clusters"]
            ]
        return data


class ScheduledEvent(EventBridgeModel):
    """An EventBridge (rule or Scheduler) scheduled event; its detail is ignored."""

    detail_type: Literal["Scheduled Event"] = Field(alias="detail-type")


def parse_event(event: Any) -> DirectInvokeEvent | None:
    """The direct invoke an event is (None: a scheduled event, or none); ``ConfigError`` for any other."""
    if event is None:
        return None
    if not isinstance(event, dict):
        raise ConfigError(f"invalid event: expected a JSON object, got {type(event).__name__}")
    try:
        if "detail-type" in event or "source" in event:
            parse(event=event, model=ScheduledEvent)
            return None
        invoke = parse(event=event, model=DirectInvokeEvent)
    except ValidationError as exc:
        raise ConfigError("invalid event: " + describe(exc)) from None
    except Exception as exc:  # Powertools wraps validation errors of some models in its own type
        cause = exc.__cause__
        if isinstance(cause, ValidationError):
            raise ConfigError("invalid event: " + describe(cause)) from None
        raise ConfigError(f"invalid event: {exc}") from None
    return invoke


def load_settings(environ: Mapping[str, str], event: Any = None) -> Settings:
    """The environment and the event's choice of clusters, validated into ``Settings``; else ``ConfigError``.

    Without discovery, every name the event gives must be a configured cluster; with discovery, the
    names it gives that are not configured select among the discovered clusters (``Settings.chosen``).
    In fleet mode they are looked up in the fleet when the run starts.
    """
    invoke = parse_event(event)
    requested = None
    if invoke is not None and invoke.clusters is not None:
        requested = tuple(cluster.name for cluster in invoke.clusters)
    values = environment_values(Settings, environ)
    values["requested"] = requested
    if invoke is not None:
        values["dispatched_at"], values["period_seconds"] = invoke.dispatched_at, invoke.period_seconds
    try:
        settings = Settings.model_validate(values)
    except ValidationError as exc:
        raise ConfigError("invalid configuration: " + describe(exc)) from None
    if requested is not None and settings.discovery_tag is None and settings.fleet_document is None:
        configured = settings.configured
        unknown = [f"clusters.{i}: {name!r} is not a configured cluster"
                   for i, name in enumerate(requested) if name not in configured]
        if unknown:
            raise ConfigError(
                "invalid event: " + "; ".join(unknown)
                + " (a direct invoke chooses among CLUSTER_NAMES and CLUSTERS_JSON)"
            )
    return settings
