"""The fleet dispatcher's configuration: one validated model from the environment.

The dispatcher reads the fleet document (FLEET_DOCUMENT), invokes the collector (COLLECTOR_FUNCTION) in
FLEET_MODE, DISPATCH_CONCURRENCY Invoke calls at a time, lists the collector's state objects (STATE_BUCKET,
STATE_PREFIX) and publishes the fleet's health like the collector publishes (PUBLISH_MODE,
METRICS_NAMESPACE). PERIOD_SECONDS is its schedule's period (the template sets it): the events say it, and
a cluster is stale after STALE_PERIODS of them. Its event is the schedule's (or ``{}``); anything else is
refused, as is an invalid variable (``ConfigError``, nothing done).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cni_metrics.collector.settings import (
    MAX_PERIOD_SECONDS,
    MIN_PERIOD_SECONDS,
    LogLevel,
    StateBucket,
    StatePrefix,
    parse_event,
)
from cni_metrics.fleet.dispatch import INVOKE_CONCURRENCY, MAX_INVOKE_CONCURRENCY, Mode
from cni_metrics.fleet.health import STALE_PERIODS
from cni_metrics.fleet.location import FleetDocumentLocation
from cni_metrics.settings_fields import REGION_PATTERN, ConfigError, Namespace, describe, environment_values

# A function name, its ARN (with or without a version or alias) or a partial ARN, as Invoke takes it.
_FUNCTION = re.compile(
    r"^(arn:aws[a-zA-Z-]*:lambda:[a-z]{2}(-[a-z]+)+-\d+:)?(\d{12}:)?(function:)?[a-zA-Z0-9_-]{1,64}"
    r"(:(\$LATEST|[a-zA-Z0-9_-]+))?$"
)


class DispatcherSettings(BaseModel):
    """Everything one dispatcher run needs (field aliases = variable names)."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    fleet_document: FleetDocumentLocation = Field(alias="FLEET_DOCUMENT")
    collector_function: str = Field(alias="COLLECTOR_FUNCTION")
    mode: Mode = Field(default="auto", alias="FLEET_MODE")
    dispatch_concurrency: int = Field(
        default=INVOKE_CONCURRENCY, ge=1, le=MAX_INVOKE_CONCURRENCY, alias="DISPATCH_CONCURRENCY"
    )
    period_seconds: int = Field(
        default=60, ge=MIN_PERIOD_SECONDS, le=MAX_PERIOD_SECONDS, alias="PERIOD_SECONDS"
    )
    stale_periods: int = Field(default=STALE_PERIODS, ge=1, le=1440, alias="STALE_PERIODS")
    state_bucket: StateBucket = Field(alias="STATE_BUCKET")
    state_prefix: StatePrefix = Field(default="cni-metrics/state/", alias="STATE_PREFIX")
    publish_mode: Literal["emf", "putmetricdata"] = Field(default="emf", alias="PUBLISH_MODE")
    namespace: Namespace = Field(default="Kubernetes", alias="METRICS_NAMESPACE")
    log_level: LogLevel = Field(default="INFO", alias="POWERTOOLS_LOG_LEVEL")
    region: str | None = Field(default=None, pattern=REGION_PATTERN, alias="AWS_REGION")

    @field_validator("collector_function")
    @classmethod
    def _function(cls, value: str) -> str:
        if not _FUNCTION.fullmatch(value):
            raise ValueError("a Lambda function name or ARN (the collector's)")
        return value


def load_dispatcher_settings(environ: Mapping[str, str], event: Any = None) -> DispatcherSettings:
    """The environment validated into ``DispatcherSettings``; ``ConfigError`` for it or for an event other
    than a schedule's (or ``{}``)."""
    if event not in (None, {}) and parse_event(event) is not None:
        raise ConfigError("invalid event: the dispatcher takes its schedule's event (or {}), no cluster")
    values = environment_values(DispatcherSettings, environ)
    try:
        return DispatcherSettings.model_validate(values)
    except ValidationError as exc:
        raise ConfigError("invalid configuration: " + describe(exc)) from None
