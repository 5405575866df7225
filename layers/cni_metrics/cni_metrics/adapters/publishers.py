"""Sending a cluster's metrics to CloudWatch: the ``Publisher`` protocol and its two implementations.

- ``EmfPublisher``: CloudWatch Embedded Metric Format on stdout through Powertools Metrics (Lambda's log
  pipeline turns it into metrics): one flush per cluster, batch and dimension set (``CLUSTER_ID`` plus a
  datum's extra ``dimensions``; no ``service`` dimension), ``_aws.Timestamp`` = the collection time.
  Writing to stdout does not fail.
- ``PutMetricDataPublisher``: the CloudWatch API, in calls of at most 1,000 datums and 1 MB, each datum
  with its timestamp and unit, botocore retries (standard or adaptive). A call that still fails leaves
  its datums in ``PublishResult.unpublished`` so the caller can keep them for a later run. A call that
  CloudWatch refuses as invalid (``InvalidParameterValue`` and the like: a 400 that retrying cannot fix,
  and one bad datum fails all of its up to 1,000) is bisected until the datums it refuses are alone; those
  are dropped with an ERROR log and the rest is published (at most ``MAX_ISOLATION_CALLS`` extra calls).

Both send only values CloudWatch accepts: NaN, ±Inf and magnitudes beyond 2^360 are dropped (ERROR log
naming metric and value) and counted in ``dropped``; non-zero magnitudes below 2^-360 are sent as 0.
"""

from __future__ import annotations

import logging
import threading
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from aws_lambda_powertools.metrics import EphemeralMetrics
from botocore.exceptions import BotoCoreError, ClientError

from cni_metrics.core.catalogue import DIMENSION, in_range
from cni_metrics.core.model import MetricValue

logger = logging.getLogger(__name__)

MAX_DATUMS_PER_CALL = 1000
MAX_BYTES_PER_CALL = 1_000_000
# Bytes of a PutMetricData request besides its datums (action, version, namespace, headers slack).
_CALL_OVERHEAD_BYTES = 2_000
# CloudWatch's smallest non-zero magnitude (its largest is catalogue.VALUE_LIMIT).
MIN_MAGNITUDE = 2.0**-360
# Error codes of a call CloudWatch refuses for its content (not throttling, permissions or a fault).
INVALID_CODES = frozenset({
    "InvalidParameterValue", "InvalidParameterCombination", "MissingParameter", "MissingRequiredParameter",
    "ValidationError",
})
# Extra calls one publish may spend isolating refused datums (1 bad datum among 1,000 costs 20).
MAX_ISOLATION_CALLS = 64


@dataclass(frozen=True, slots=True)
class MetricBatch:
    """The metrics of one collection of one cluster, all stamped with its collection time."""

    id: str
    collected_at: datetime
    metrics: tuple[MetricValue, ...]


@dataclass(slots=True)
class PublishResult:
    """What a publish achieved: datums sent, datums still to send (per batch), datums dropped because
    CloudWatch rejects their value (never sent, or refused as invalid); dropped datums are never re-queued."""

    published: int = 0
    unpublished: list[MetricBatch] = field(default_factory=list)
    dropped: int = 0
    error: str | None = None

    @property
    def complete(self) -> bool:
        """Whether every datum was sent (or dropped as one CloudWatch rejects)."""
        return not self.unpublished


class Publisher(Protocol):
    """Sends the batches of one cluster; never raises for a CloudWatch failure (see ``PublishResult``)."""

    def publish(self, cluster: str, batches: Sequence[MetricBatch]) -> PublishResult:
        """Publish ``batches`` under dimension ``CLUSTER_ID=cluster``."""
        ...


def publishable(value: float) -> float | None:
    """``value`` as CloudWatch accepts it, or None when it rejects it (NaN, ±Inf, beyond ±2^360)."""
    if not in_range(value):
        return None
    return value if abs(value) >= MIN_MAGNITUDE else 0.0


def _publishable(cluster: str, metrics: Sequence[MetricValue]) -> tuple[list[MetricValue], int]:
    """The metrics CloudWatch accepts (tiny magnitudes as 0) and how many were dropped (each logged)."""
    kept = []
    for metric in metrics:
        value = publishable(metric.value)
        if value is None:
            logger.error(
                "cluster %s: metric %s has value %r, which CloudWatch rejects (NaN, ±Inf or beyond ±2^360): "
                "dropped", cluster, metric.name, metric.value, extra={"cluster": cluster},
            )
            continue
        kept.append(metric if value == metric.value else replace(metric, value=value))
    return kept, len(metrics) - len(kept)


class EmfPublisher:
    """EMF lines on stdout via Powertools ``EphemeralMetrics`` (not the process-wide shared metric set)."""

    # One flush is several print() calls when a batch exceeds 100 metrics; clusters run in threads.
    _lock = threading.Lock()

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace

    def publish(self, cluster: str, batches: Sequence[MetricBatch]) -> PublishResult:
        """Write one EMF document per batch and dimension set (Powertools splits beyond 100 metrics)."""
        result = PublishResult()
        for batch in batches:
            metrics, dropped = _publishable(cluster, batch.metrics)
            result.dropped += dropped
            by_dimensions: dict[tuple[tuple[str, str], ...], list[MetricValue]] = {}
            for metric in metrics:
                by_dimensions.setdefault(metric.dimensions, []).append(metric)
            for dimensions, group in by_dimensions.items():
                # service="" keeps Powertools from adding a "service" dimension (POWERTOOLS_SERVICE_NAME).
                emf = EphemeralMetrics(namespace=self.namespace, service="")
                with self._lock:
                    emf.set_timestamp(_epoch_ms(batch.collected_at))
                    emf.add_dimension(name=DIMENSION, value=cluster)
                    for name, value in dimensions:
                        emf.add_dimension(name=name, value=value)
                    for metric in group:
                        emf.add_metric(name=metric.name, unit=metric.unit, value=metric.value)
                    emf.flush_metrics()
            result.published += len(metrics)
        return result


@dataclass(frozen=True, slots=True)
class _Item:
    batch: MetricBatch
    metric: MetricValue
    size: int


class PutMetricDataPublisher:
    """PutMetricData in calls within the API limits; a failed call's datums are returned unpublished.

    Request size is estimated in the query-protocol encoding, the most verbose of CloudWatch's protocols,
    so a call stays under ``max_bytes`` whichever protocol botocore picks.
    """

    def __init__(
        self,
        client: Any,  # a boto3 CloudWatch client
        namespace: str,
        *,
        max_datums: int = MAX_DATUMS_PER_CALL,
        max_bytes: int = MAX_BYTES_PER_CALL,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.max_datums = max_datums
        self.max_bytes = max_bytes

    def publish(self, cluster: str, batches: Sequence[MetricBatch]) -> PublishResult:
        """Send every datum; on a failed call keep going and report the failed datums per batch."""
        result = PublishResult()
        items: list[_Item] = []
        for batch in batches:
            metrics, dropped = _publishable(cluster, batch.metrics)
            result.dropped += dropped
            items.extend(_Item(batch, metric, _datum_size(cluster, batch, metric)) for metric in metrics)
        failed: dict[str, list[MetricValue]] = {}
        isolation_calls = 0
        for chunk in self._chunks(items):
            parts = [chunk]  # a stack: a refused part is replaced by its two halves, first half on top
            while parts:
                part = parts.pop()
                try:
                    self.client.put_metric_data(
                        Namespace=self.namespace, MetricData=[_datum(cluster, item) for item in part]
                    )
                except ClientError as exc:
                    if _invalid(exc) and len(part) == 1:
                        _log_refused(cluster, part[0], exc)
                        result.dropped += 1
                    elif _invalid(exc) and isolation_calls + 2 <= MAX_ISOLATION_CALLS:
                        isolation_calls += 2
                        half = len(part) // 2
                        parts += [part[half:], part[:half]]
                    else:
                        _keep(failed, part, result, exc)
                except BotoCoreError as exc:
                    _keep(failed, part, result, exc)
                else:
                    result.published += len(part)
        result.unpublished = [
            MetricBatch(batch.id, batch.collected_at, tuple(failed[batch.id]))
            for batch in batches
            if batch.id in failed
        ]
        return result

    def _chunks(self, items: list[_Item]) -> list[list[_Item]]:
        budget = self.max_bytes - _CALL_OVERHEAD_BYTES - len(urllib.parse.quote(self.namespace))
        chunks: list[list[_Item]] = []
        current: list[_Item] = []
        size = 0
        for item in items:
            if current and (len(current) >= self.max_datums or size + item.size > budget):
                chunks.append(current)
                current, size = [], 0
            current.append(item)
            size += item.size
        if current:
            chunks.append(current)
        return chunks


def _epoch_ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _datum(cluster: str, item: _Item) -> dict[str, Any]:
    return {
        "MetricName": item.metric.name,
        "Dimensions": _dimensions(cluster, item.metric),
        "Timestamp": item.batch.collected_at,
        "Value": item.metric.value,
        "Unit": item.metric.unit,
    }


def _dimensions(cluster: str, metric: MetricValue) -> list[dict[str, str]]:
    return [{"Name": name, "Value": value} for name, value in ((DIMENSION, cluster), *metric.dimensions)]


def _datum_size(cluster: str, batch: MetricBatch, metric: MetricValue) -> int:
    """Bytes of one datum in the query encoding, with a 4-digit member index (the worst case ≤ 1,000)."""
    prefix = "MetricData.member.1000."
    fields: dict[str, Any] = {
        "MetricName": metric.name,
        "Timestamp": batch.collected_at.isoformat(),
        "Value": repr(metric.value),
        "Unit": metric.unit,
    }
    for index, dimension in enumerate(_dimensions(cluster, metric), start=1):
        fields[f"Dimensions.member.{index}.Name"] = dimension["Name"]
        fields[f"Dimensions.member.{index}.Value"] = dimension["Value"]
    return sum(
        len(prefix) + len(name) + len(urllib.parse.quote(str(value))) + 2 for name, value in fields.items()
    )


def _invalid(exc: ClientError) -> bool:
    """Whether CloudWatch refused the call's content (some datum), which no retry of it can fix."""
    return exc.response.get("Error", {}).get("Code") in INVALID_CODES


def _log_refused(cluster: str, item: _Item, exc: ClientError) -> None:
    logger.error(
        "cluster %s: CloudWatch refused metric %s with value %r (%s): dropped",
        cluster, item.metric.name, item.metric.value, _failure_text(exc), extra={"cluster": cluster},
    )


def _keep(
    failed: dict[str, list[MetricValue]], part: list[_Item], result: PublishResult, exc: Exception
) -> None:
    """A call that failed for good: its datums stay to be sent later."""
    result.error = _failure_text(exc)
    for item in part:
        failed.setdefault(item.batch.id, []).append(item.metric)


def _failure_text(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code, message = error.get("Code", "error"), error.get("Message", "")
        return f"PutMetricData failed: {code} (HTTP {status}): {message}"
    return f"PutMetricData failed: {type(exc).__name__}: {exc}"
