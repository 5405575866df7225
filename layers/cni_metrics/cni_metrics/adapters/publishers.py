"""Sending a cluster's metrics to CloudWatch: the ``Publisher`` protocol and its two implementations.

- ``EmfPublisher``: CloudWatch Embedded Metric Format on stdout through Powertools Metrics (Lambda's log
  pipeline turns it into metrics): one flush per cluster, batch and dimension set (``CLUSTER_ID`` plus a
  datum's extra ``dimensions``; no ``service`` dimension), ``_aws.Timestamp`` = the collection time.
  Writing to stdout does not fail.
- ``PutMetricDataPublisher``: the CloudWatch API, in calls of at most 1,000 datums and 1 MB, each datum
  with its timestamp and unit, botocore retries (standard or adaptive). A call that still fails leaves
  its datums in ``PublishResult.unpublished`` so the caller can keep them for a later run.

Both drop non-finite values (CloudWatch rejects NaN and ±Inf) and count them in ``dropped``.
"""

from __future__ import annotations

import math
import threading
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from aws_lambda_powertools.metrics import EphemeralMetrics
from botocore.exceptions import BotoCoreError, ClientError

from cni_metrics.core.catalogue import DIMENSION
from cni_metrics.core.model import MetricValue

MAX_DATUMS_PER_CALL = 1000
MAX_BYTES_PER_CALL = 1_000_000
# Bytes of a PutMetricData request besides its datums (action, version, namespace, headers slack).
_CALL_OVERHEAD_BYTES = 2_000


@dataclass(frozen=True, slots=True)
class MetricBatch:
    """The metrics of one collection of one cluster, all stamped with its collection time."""

    id: str
    collected_at: datetime
    metrics: tuple[MetricValue, ...]


@dataclass(slots=True)
class PublishResult:
    """What a publish achieved: datums sent, datums still to send (per batch), non-finite datums dropped."""

    published: int = 0
    unpublished: list[MetricBatch] = field(default_factory=list)
    dropped: int = 0
    error: str | None = None

    @property
    def complete(self) -> bool:
        """Whether every datum was sent (or dropped as non-finite)."""
        return not self.unpublished


class Publisher(Protocol):
    """Sends the batches of one cluster; never raises for a CloudWatch failure (see ``PublishResult``)."""

    def publish(self, cluster: str, batches: Sequence[MetricBatch]) -> PublishResult:
        """Publish ``batches`` under dimension ``CLUSTER_ID=cluster``."""
        ...


def _finite(metrics: Sequence[MetricValue]) -> tuple[list[MetricValue], int]:
    kept = [metric for metric in metrics if math.isfinite(metric.value)]
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
            metrics, dropped = _finite(batch.metrics)
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
            metrics, dropped = _finite(batch.metrics)
            result.dropped += dropped
            items.extend(_Item(batch, metric, _datum_size(cluster, batch, metric)) for metric in metrics)
        failed: dict[str, list[MetricValue]] = {}
        for chunk in self._chunks(items):
            try:
                self.client.put_metric_data(
                    Namespace=self.namespace, MetricData=[_datum(cluster, item) for item in chunk]
                )
            except (ClientError, BotoCoreError) as exc:
                result.error = _failure_text(exc)
                for item in chunk:
                    failed.setdefault(item.batch.id, []).append(item.metric)
            else:
                result.published += len(chunk)
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


def _failure_text(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code, message = error.get("Code", "error"), error.get("Message", "")
        return f"PutMetricData failed: {code} (HTTP {status}): {message}"
    return f"PutMetricData failed: {type(exc).__name__}: {exc}"
