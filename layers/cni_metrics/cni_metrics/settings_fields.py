"""Validators shared by the collector's and the dashboard function's settings models.

One home for what both functions read from the same environment variables: the cluster-name, region
and role patterns, comma-separated names, the ``key=value`` discovery tag, the CloudWatch namespace, the
published metrics (``MetricSelection``: METRIC_SET, METRICS_INCLUDE, METRICS_EXCLUDE), environment values
taken by field alias, and the one-line description of a pydantic ``ValidationError``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from cni_metrics.core.metric_sets import DEFAULT_SET, MetricSet, check_excludable, check_names, selected

# EKS cluster names: 1-100 characters, letters, digits, hyphens and underscores, starting alphanumeric.
CLUSTER_NAME_PATTERN = r"^[0-9A-Za-z][A-Za-z0-9_-]{0,99}$"
REGION_PATTERN = r"^[a-z]{2}(-[a-z]+)+-\d+$"
ROLE_ARN_PATTERN = r"^arn:aws[a-z-]*:iam::\d{12}:role/.+$"


class ConfigError(ValueError):
    """The configuration or the event is invalid; nothing was collected, published or changed."""


def split_names(value: Any) -> Any:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``; anything else unchanged."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def parse_tag(value: Any) -> Any:
    """``"key=value"`` -> ``(key, value)``, blank -> None; ``ValueError`` without ``=`` or key."""
    if isinstance(value, str):
        if not value.strip():
            return None
        key, sep, tag_value = value.partition("=")
        if not sep or not key.strip():
            raise ValueError("expected key=value")
        return (key.strip(), tag_value.strip())
    return value


def check_namespace(value: str) -> str:
    """A namespace CloudWatch accepts for custom metrics: ``AWS/`` is reserved, a leading ``:`` refused."""
    if value.startswith("AWS/"):
        raise ValueError("must not start with 'AWS/' (CloudWatch reserves it for AWS services)")
    if value.startswith(":"):
        raise ValueError("must not start with ':'")
    return value


ClusterName = Annotated[str, Field(pattern=CLUSTER_NAME_PATTERN)]
ClusterNames = Annotated[list[ClusterName], BeforeValidator(split_names)]
Tag = Annotated[tuple[str, str] | None, BeforeValidator(parse_tag)]
Namespace = Annotated[str, Field(min_length=1, max_length=255), AfterValidator(check_namespace)]


def _metric_names(names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(check_names(names))


def _excludable_names(names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(check_excludable(names))


MetricNames = Annotated[tuple[str, ...], BeforeValidator(split_names), AfterValidator(_metric_names)]
ExcludedMetricNames = Annotated[
    tuple[str, ...], BeforeValidator(split_names), AfterValidator(_excludable_names)
]
_CLUSTER_NAME = TypeAdapter(ClusterName)


class MetricSelection(BaseModel):
    """The metrics a deployment publishes (cni_metrics.core.metric_sets): the collector publishes them,
    the dashboard function draws and alarms on them. Both settings models inherit these fields."""

    metric_set: MetricSet = Field(default=DEFAULT_SET, alias="METRIC_SET")
    metrics_include: MetricNames = Field(default=(), alias="METRICS_INCLUDE")
    metrics_exclude: ExcludedMetricNames = Field(default=(), alias="METRICS_EXCLUDE")

    @model_validator(mode="after")
    def _include_or_exclude(self) -> Self:
        """A name both included and excluded is refused."""
        selected(self.metric_set, self.metrics_include, self.metrics_exclude)
        return self

    @property
    def published_metrics(self) -> frozenset[str]:
        """The metric names published: the set, plus METRICS_INCLUDE, less METRICS_EXCLUDE."""
        return selected(self.metric_set, self.metrics_include, self.metrics_exclude)


def is_cluster_name(name: str) -> bool:
    """Whether ``name`` is a valid EKS cluster name."""
    try:
        _CLUSTER_NAME.validate_python(name)
    except ValidationError:
        return False
    return True


def environment_values(model: type[BaseModel], environ: Mapping[str, str]) -> dict[str, Any]:
    """The variables ``model`` reads (its field aliases), empty ones left out (they mean "the default").

    ``AWS_DEFAULT_REGION`` stands in for an unset ``AWS_REGION``, as in the AWS SDKs.
    """
    aliases = {field.alias for field in model.model_fields.values() if field.alias}
    values: dict[str, Any] = {
        name: value for name, value in environ.items() if name in aliases and value != ""
    }
    if "AWS_REGION" in aliases and "AWS_REGION" not in values and environ.get("AWS_DEFAULT_REGION"):
        values["AWS_REGION"] = environ["AWS_DEFAULT_REGION"]
    return values


def describe(exc: ValidationError) -> str:
    """One line per problem: ``VARIABLE: message``, or the message alone for a problem of several
    variables (input values never shown: some are secrets)."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        where = ".".join(str(part) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{where}: {message}" if where else message)
    return "; ".join(problems)
