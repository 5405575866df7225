"""Parsed awscni samples of one node -> ``NodeMetrics`` (sums over labels, by catalogue kind).

Every number kept must be one CloudWatch and the stored state accept: each sample of a catalogue gauge
or counter and of the latency ``_sum``/``_count``, each sum of them, and each ``quantile="0.99"`` sample
must lie within ±2^360 (``catalogue.in_range``; NaN and ±Inf do not). Anything else makes the payload
bad (``ValueRangeError``; ``read_node_metrics`` raises it as ``PayloadError``): the node fails this time
and keeps its baseline, rather than a family vanishing for one collection and counting its whole value
when it comes back. The one exception: a NaN quantile is what a summary serves without observations, and
is ignored. Families outside the catalogue are ignored.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from itertools import chain, pairwise
from typing import Protocol

from cni_metrics.core import catalogue
from cni_metrics.core.catalogue import VALUE_LIMIT, in_range
from cni_metrics.core.model import NodeMetrics
from cni_metrics.core.parser import PayloadError, QuickScan, parse_payload, quick_scan, series_labels

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


class ValueRangeError(ValueError):
    """A sample or sum the reduction needs that is not a number within ±2^360; ``name``: its sample name."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(reason)
        self.name = name
        self.reason = reason


def _checked(name: str, labels: Mapping[str, str], value: float) -> float:
    if not in_range(value):
        series = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else "")
        raise ValueRangeError(name, f"{series} is {value!r}, not a number within ±2^360")
    return value


def reduce_samples(samples: Iterable[SampleLike]) -> NodeMetrics:
    """Sum each catalogue gauge and counter over its label sets; pick out latency and build info.

    Raises ``ValueRangeError`` for a sample or sum outside ±2^360 (see the module docstring).
    """
    gauges: dict[str, float] = {}
    counters: dict[str, float] = {}
    latency_sum: float | None = None
    latency_count: float | None = None
    p99: float | None = None
    version: str | None = None
    for sample in samples:
        name, value = sample.name, sample.value
        kind = _KIND.get(name)
        if kind is not None:
            target = gauges if kind == "gauge" else counters
            target[name] = target.get(name, 0.0) + _checked(name, sample.labels, value)
        elif name == catalogue.API_LATENCY_SUM:
            latency_sum = (latency_sum or 0.0) + _checked(name, sample.labels, value)
        elif name == catalogue.API_LATENCY_COUNT:
            latency_count = (latency_count or 0.0) + _checked(name, sample.labels, value)
        elif name == catalogue.API_LATENCY:
            if sample.labels.get("quantile") == "0.99" and not math.isnan(value):
                _checked(name, sample.labels, value)
                p99 = value if p99 is None else max(p99, value)
        elif name == catalogue.BUILD_INFO and version is None:
            version = sample.labels.get("version")
    sums = {
        **gauges,
        **counters,
        catalogue.API_LATENCY_SUM: latency_sum,
        catalogue.API_LATENCY_COUNT: latency_count,
    }
    for name, total in sums.items():
        if total is not None and not in_range(total):
            raise ValueRangeError(name, f"{name} sums to {total!r} over its series, beyond ±2^360")
    return NodeMetrics(gauges, counters, latency_sum, latency_count, p99, version)


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
    # Any sample beyond ±2^360 (±Inf included) or a first sample NaN (then max() is NaN), a NaN sample of a
    # summed family (its sum is NaN) or a sum beyond: reduce_samples says which, if any, is refused. One
    # C-level pass: a check per run of samples cost 5-10 % of the whole read (measured on the fixtures).
    if not max(map(abs, values), default=0.0) <= VALUE_LIMIT:
        return None
    if not all(map(in_range, chain(gauges.values(), counters.values(), latency.values()))):
        return None
    return NodeMetrics(
        gauges,
        counters,
        latency.get(catalogue.API_LATENCY_SUM),
        latency.get(catalogue.API_LATENCY_COUNT),
        p99,
        version,
    )


def read_node_metrics(data: bytes | str) -> NodeMetrics:
    """Parse one aws-node payload and reduce it; raises ``parser.PayloadError`` when malformed or when a
    number it needs is not within ±2^360 (then the line is its family's first sample line).

    Payloads in the strict form Go clients write take ``parser.quick_scan``; anything else (and every
    error) goes through the full parser.
    """
    if type(data) is bytes:
        scan = quick_scan(data)
        metrics = None if scan is None else _reduce_scan(scan)
        if metrics is not None:
            return metrics
    try:
        return reduce_samples(parse_payload(data).samples())
    except ValueRangeError as exc:
        raise PayloadError(_first_line(data, exc.name), exc.reason) from None


def _first_line(data: bytes | str, name: str) -> int:
    """The 1-based number of the first sample line of ``name`` (1 when not found)."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    found = re.search(rb"(?m)^[ \t]*" + re.escape(name.encode()) + rb"[ \t{]", raw)
    return 1 if found is None else raw.count(b"\n", 0, found.start()) + 1
