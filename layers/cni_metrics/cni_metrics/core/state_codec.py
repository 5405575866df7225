"""``ClusterState`` <-> compact JSON bytes, validated on load.

Layout (version 1)::

    {"v": 1, "t": <collected_at, epoch µs>, "f": [counter family, ...],
     "p": {<pod key>: [<started_at µs | null>, <restart count | null>, [<value | null per "f">],
                       <latency sum | null>, <latency count | null>]},
     "h": [[<epoch µs>, <assigned IPs>], ...]}

``h`` (the recent assigned-IP history, oldest first) is optional: written only when not empty, and a
document without it (written before it existed) loads with an empty history.

``state_document`` / ``state_from_document`` are the same layout as a JSON value, for a document that
embeds it (the state store's), so that it is neither written nor parsed twice.

Family names are written once in ``f`` and each pod's counters are a positional list, so a pod costs
about its key plus a dozen numbers. Times are UTC epoch microseconds (naive datetimes are taken as UTC;
loaded ones are UTC-aware). Integral values are written as JSON integers. Every value is a number within
±2^360 (CloudWatch's range): ``dump_state`` refuses others (ValueError) and ``load_state`` refuses a
document holding one (``StateError``: NaN, Infinity, 1e400, 1e300 ...), so it is replaced by fresh
baselines instead of poisoning every later run.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from cni_metrics.core.catalogue import VALUE_LIMIT, in_range
from cni_metrics.core.model import ClusterState, HistoryPoint, PodState

VERSION = 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_EXACT = 2**53


class StateError(ValueError):
    """Stored state that cannot be loaded; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"invalid state: {reason}")
        self.reason = reason


def _micros(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _encoded_number(value: float) -> float | int:
    if not in_range(value):
        raise ValueError(f"value {value!r} in state is not a number within ±2^360")
    return int(value) if value.is_integer() and abs(value) < _MAX_EXACT else value


def _optional(value: float | None) -> float | int | None:
    return None if value is None else _encoded_number(value)


def dump_state(state: ClusterState) -> bytes:
    """Serialise ``state`` (ValueError if it holds a non-finite number)."""
    doc = state_document(state)
    return json.dumps(doc, separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode()


def state_document(state: ClusterState) -> dict[str, Any]:
    """``state`` as the JSON object ``dump_state`` writes (for embedding in a larger document); ValueError
    if it holds a number not within ±2^360."""
    families = sorted({name for pod in state.pods.values() for name in pod.counters})
    pods: dict[str, list[Any]] = {}
    for key, pod in state.pods.items():
        pods[key] = [
            None if pod.started_at is None else _micros(pod.started_at),
            pod.restart_count,
            [_optional(pod.counters.get(name)) for name in families],
            _optional(pod.latency_sum),
            _optional(pod.latency_count),
        ]
    doc: dict[str, Any] = {"v": VERSION, "t": _micros(state.collected_at), "f": families, "p": pods}
    if state.history:
        doc["h"] = [[_micros(point.at), _encoded_number(point.assigned)] for point in state.history]
    return doc


def _reject_constant(name: str) -> Any:
    raise StateError(f"non-finite number {name}")


def _decoded_time(value: Any, what: str) -> datetime:
    if type(value) is not int:
        raise StateError(f"{what} is not an integer timestamp")
    try:
        return _EPOCH + timedelta(microseconds=value)
    except OverflowError:
        raise StateError(f"{what} out of range") from None


def _float(value: Any, what: str) -> float:
    if type(value) not in (int, float):
        raise StateError(f"{what} is not a number")
    if not -VALUE_LIMIT <= value <= VALUE_LIMIT:  # exact for integers of any size; inf (from 1e400) too
        raise StateError(f"{what} is {str(value)[:24]}, not a number within ±2^360")
    return float(value)


def _pod(key: str, entry: Any, families: list[str]) -> PodState:
    if not isinstance(entry, list) or len(entry) != 5:
        raise StateError(f"pod {key!r}: expected a list of 5 fields")
    started, restarts, values, lsum, lcount = entry
    if restarts is not None and type(restarts) is not int:
        raise StateError(f"pod {key!r}: restart count is not an integer")
    if not isinstance(values, list) or len(values) != len(families):
        raise StateError(f"pod {key!r}: expected {len(families)} counter values")
    counters = {
        name: _float(value, f"pod {key!r} counter {name}")
        for name, value in zip(families, values, strict=True)
        if value is not None
    }
    return PodState(
        key=key,
        started_at=None if started is None else _decoded_time(started, f"pod {key!r} start time"),
        restart_count=restarts,
        counters=counters,
        latency_sum=None if lsum is None else _float(lsum, f"pod {key!r} latency sum"),
        latency_count=None if lcount is None else _float(lcount, f"pod {key!r} latency count"),
    )


def load_state(data: bytes) -> ClusterState:
    """Deserialise and validate; raises ``StateError`` (only) when the bytes are not a valid state."""
    try:
        doc = json.loads(data, parse_constant=_reject_constant)
    except StateError:
        raise
    except (ValueError, TypeError, RecursionError) as exc:
        raise StateError(f"not JSON: {exc}") from None
    return state_from_document(doc)


def state_from_document(doc: Any) -> ClusterState:
    """The state of a JSON value already parsed (embedded in a larger document); ``StateError`` (only)
    when it is not a valid state."""
    if not isinstance(doc, dict):
        raise StateError("not a JSON object")
    if doc.get("v") != VERSION:
        raise StateError(f"unsupported version {doc.get('v')!r}")
    families, pods = doc.get("f"), doc.get("p")
    if not isinstance(families, list) or not all(isinstance(f, str) for f in families):
        raise StateError("'f' is not a list of family names")
    if len(set(families)) != len(families):
        raise StateError("'f' has duplicate family names")
    if not isinstance(pods, dict):
        raise StateError("'p' is not an object")
    return ClusterState(
        collected_at=_decoded_time(doc.get("t"), "collection time"),
        pods={key: _pod(key, entry, families) for key, entry in pods.items()},
        history=_history(doc.get("h", [])),
    )


def _history(raw: Any) -> list[HistoryPoint]:
    if not isinstance(raw, list):
        raise StateError("'h' is not a list")
    points = []
    for index, entry in enumerate(raw):
        if not isinstance(entry, list) or len(entry) != 2:
            raise StateError(f"history point {index}: expected [time, assigned]")
        at = _decoded_time(entry[0], f"history point {index} time")
        points.append(HistoryPoint(at, _float(entry[1], f"history point {index} assigned")))
    return points
