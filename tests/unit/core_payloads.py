"""Test helpers for the metric core: render payloads, build node inputs, read fixtures."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path

from cni_metrics.core.model import NodeInput, NodeMetrics

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "aws-node"
FIXTURE_NAMES = ("cni_test1.data", "cni_test2.data", "synthetic-v1.23.prom")

Series = Sequence[tuple[Mapping[str, str], float]]


def fixture(name: str) -> bytes:
    """The bytes of a payload in tests/fixtures/aws-node."""
    return (FIXTURES / name).read_bytes()


def escape_label(value: str) -> str:
    """Escape a label value as the text format requires."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def format_value(value: float) -> str:
    """Render a sample value the way Go's client does (NaN, +Inf, -Inf, shortest repr)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def render_family(name: str, series: Series, kind: str | None = "gauge", help_text: str = "help") -> str:
    """One family in text format: HELP, TYPE (unless ``kind`` is None) and one line per series."""
    lines = [f"# HELP {name} {help_text}"]
    if kind is not None:
        lines.append(f"# TYPE {name} {kind}")
    for labels, value in series:
        block = ",".join(f'{k}="{escape_label(v)}"' for k, v in labels.items())
        lines.append(
            f"{name}{{{block}}} {format_value(value)}" if labels else f"{name} {format_value(value)}"
        )
    return "\n".join(lines) + "\n"


def go_filler(families: int = 20) -> str:
    """go_/process_ families like the bulk of a real payload."""
    parts = []
    for i in range(families):
        parts.append(
            render_family(
                "go_gc_duration_seconds" if i == 0 else f"go_memstats_field_{i}_bytes",
                [({"quantile": q}, 0.0001 * (i + 1)) for q in ("0", "0.25", "0.5", "0.75", "1")],
                "summary",
                "A summary of the pause duration of garbage collection cycles.",
            )
        )
    parts.append(render_family("process_resident_memory_bytes", [({}, 4.2e7)]))
    return "".join(parts)


def payload(
    gauges: Mapping[str, float] | None = None,
    counters: Mapping[str, float] | None = None,
    *,
    counter_type: str = "counter",
    extra: str = "",
) -> bytes:
    """A payload with unlabelled awscni gauges and counters, wrapped in go_ filler."""
    text = go_filler(3)
    for name, value in (gauges or {}).items():
        text += render_family(name, [({}, value)], "gauge")
    for name, value in (counters or {}).items():
        text += render_family(name, [({}, value)], counter_type)
    return (text + extra + go_filler(2)).encode()


def node(
    key: str,
    counters: Mapping[str, float] | None = None,
    gauges: Mapping[str, float] | None = None,
    *,
    started_at: datetime | None = None,
    restart_count: int | None = None,
    latency: tuple[float, float] | None = None,
    p99: float | None = None,
) -> NodeInput:
    """A NodeInput with the given sums."""
    metrics = NodeMetrics(
        gauges=dict(gauges or {}),
        counters=dict(counters or {}),
        latency_sum=latency[0] if latency else None,
        latency_count=latency[1] if latency else None,
        latency_p99=p99,
    )
    return NodeInput(key=key, name=key, metrics=metrics, started_at=started_at, restart_count=restart_count)
