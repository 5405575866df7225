"""Parsed awscni samples of one node -> ``NodeMetrics`` (sums over labels, by catalogue kind).

Non-finite samples (NaN, +Inf, -Inf) are ignored as if absent: aws-node never serves them for its
gauges and counters, and a summary quantile is NaN when it has no observations. A family whose sum is
no longer finite (overflow) is dropped. Families outside the catalogue are ignored.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from itertools import chain, pairwise
from typing import Protocol

from cni_metrics.core import catalogue
from cni_metrics.core.model import NodeMetrics
from cni_metrics.core.parser import QuickScan, parse_payload, quick_scan, series_labels

_KIND: Mapping[str, str] = {f.name: f.kind for f in catalogue.FAMILIES if f.kind in ("gauge", "counter")}
_API_LATENCY = catalogue.API_LATENCY.encode()
_BUILD_INFO = catalogue.BUILD_INFO.encode()
# quick_scan sample names whose values are summed -> (name, 0 gauge / 1 counter / 2 latency)
_SUMMED: Mapping[bytes, tuple[str, int]] = {
    name.encode(): (name, slot)
    for name, slot in (
        *((name, 0 if kind == "gauge" else 1) for name, kind in _KIND.items()),
        (catalogue.API_LATENCY_SUM, 2),
        (catalogue.API_LATENCY_COUNT, 2),
    )
}


class SampleLike(Protocol):
    """What reduction needs of a sample (``parser.Sample`` and prometheus_client's ``Sample`` both fit)."""

    @property
    def name(self) -> str: ...
    @property
    def labels(self) -> Mapping[str, str]: ...
    @property
    def value(self) -> float: ...


def reduce_samples(samples: Iterable[SampleLike]) -> NodeMetrics:
    """Sum each catalogue gauge and counter over its label sets; pick out latency and build info."""
    gauges: dict[str, float] = {}
    counters: dict[str, float] = {}
    latency_sum: float | None = None
    latency_count: float | None = None
    p99: float | None = None
    version: str | None = None
    isfinite = math.isfinite
    for sample in samples:
        name, value = sample.name, sample.value
        kind = _KIND.get(name)
        if kind is not None:
            if isfinite(value):
                target = gauges if kind == "gauge" else counters
                target[name] = target.get(name, 0.0) + value
        elif name == catalogue.API_LATENCY_SUM:
            if isfinite(value):
                latency_sum = (latency_sum or 0.0) + value
        elif name == catalogue.API_LATENCY_COUNT:
            if isfinite(value):
                latency_count = (latency_count or 0.0) + value
        elif name == catalogue.API_LATENCY:
            if sample.labels.get("quantile") == "0.99" and isfinite(value):
                p99 = value if p99 is None else max(p99, value)
        elif name == catalogue.BUILD_INFO and version is None:
            version = sample.labels.get("version")
    return _node_metrics(gauges, counters, latency_sum, latency_count, p99, version)


def _node_metrics(
    gauges: dict[str, float],
    counters: dict[str, float],
    latency_sum: float | None,
    latency_count: float | None,
    p99: float | None,
    version: str | None,
) -> NodeMetrics:
    """The sums as ``NodeMetrics``, any that overflowed to a non-finite value left out."""
    isfinite = math.isfinite
    return NodeMetrics(
        gauges={k: v for k, v in gauges.items() if isfinite(v)},
        counters={k: v for k, v in counters.items() if isfinite(v)},
        latency_sum=latency_sum if latency_sum is not None and isfinite(latency_sum) else None,
        latency_count=latency_count if latency_count is not None and isfinite(latency_count) else None,
        latency_p99=p99,
        cni_version=version,
    )


def _reduce_scan(scan: QuickScan) -> NodeMetrics | None:
    """``reduce_samples`` over a ``parser.quick_scan`` result; None when a sum is not finite."""
    names, series, values, runs = scan
    gauges: dict[str, float] = {}
    counters: dict[str, float] = {}
    latency: dict[str, float] = {}
    targets = (gauges, counters, latency)
    isfinite = math.isfinite
    p99: float | None = None
    version: str | None = None
    for begin, stop in pairwise(runs):
        name = names[begin]
        summed = _SUMMED.get(name)
        if summed is not None:
            key, slot = summed
            sums = targets[slot]
            total = sums.get(key, 0.0)
            # in line order, run after run, like reduce_samples (sum() compensates); for runs mostly one
            # sample long, this loop beats functools.reduce over a slice
            for i in range(begin, stop):
                total += values[i]
            sums[key] = total
        elif name == _API_LATENCY:
            for i in range(begin, stop):
                if series_labels(series[i]).get("quantile") == "0.99" and isfinite(values[i]):
                    p99 = values[i] if p99 is None else max(p99, values[i])
        elif name == _BUILD_INFO and version is None:
            for i in range(begin, stop):
                version = series_labels(series[i]).get("version")
                if version is not None:
                    break
    if not all(map(isfinite, chain(gauges.values(), counters.values(), latency.values()))):
        return None  # a non-finite sample (to ignore) or an overflow: reduce_samples decides
    return NodeMetrics(
        gauges,
        counters,
        latency.get(catalogue.API_LATENCY_SUM),
        latency.get(catalogue.API_LATENCY_COUNT),
        p99,
        version,
    )


def read_node_metrics(data: bytes | str) -> NodeMetrics:
    """Parse one aws-node payload and reduce it; raises ``parser.PayloadError`` when malformed.

    Payloads in the strict form Go clients write take ``parser.quick_scan``; anything else (and every
    error) goes through the full parser.
    """
    if type(data) is bytes:
        scan = quick_scan(data)
        metrics = None if scan is None else _reduce_scan(scan)
        if metrics is not None:
            return metrics
    return reduce_samples(parse_payload(data).samples())
