"""State codec: compact JSON round trip, size for 10,000 pods, validation on load."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from cni_metrics.core import catalogue
from cni_metrics.core.model import ClusterState, HistoryPoint, PodState
from cni_metrics.core.state_codec import StateError, dump_state, load_state

T0 = datetime(2026, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


def _state(pods: int) -> ClusterState:
    families = [f.name for f in catalogue.COUNTERS]
    return ClusterState(
        collected_at=T0,
        pods={
            key: PodState(
                key=key,
                started_at=T0 - timedelta(days=3, seconds=i),
                restart_count=i % 3,
                counters={name: float(i * 7 + j) for j, name in enumerate(families) if (i + j) % 5},
                latency_sum=1234.5 + i,
                latency_count=float(50 + i),
            )
            for i, key in enumerate(str(uuid.UUID(int=n)) for n in range(pods))
        },
    )


def test_round_trip_is_exact() -> None:
    # given a state with optional fields set and unset, fractional values and micro-second times
    state = _state(20)
    state.pods["bare"] = PodState("bare", None, None, {}, None, None)
    state.pods["frac"] = PodState("frac", T0, 2, {"awscni_custom": 0.1 + 0.2}, 1e-7, 3.0)
    # when dumped and loaded, then it is equal
    assert load_state(dump_state(state)) == state


def test_naive_times_are_written_as_utc() -> None:
    state = ClusterState(T0.replace(tzinfo=None), {"a": PodState("a", T0.replace(tzinfo=None), 0, {})})
    loaded = load_state(dump_state(state))
    assert loaded.collected_at == T0
    assert loaded.pods["a"].started_at == T0


def test_the_written_form_is_the_documented_one() -> None:
    # given a state with a non-ASCII pod key, integral counters around 2^53 and a fractional latency
    at = datetime(1970, 1, 2, 0, 0, 1, 5, tzinfo=UTC)  # 86,401 s and 5 µs after the epoch
    counters = {"a": 1000.0, "b": 2.0**53 - 1, "c": 2.0**53, "d": 0.5}
    state = ClusterState(at, {"pod-é": PodState("pod-é", at, 3, counters, 1.25, 4.0)})
    # when written, then: UTC epoch microseconds, families once, integral values below 2^53 as JSON
    # integers, others as floats, UTF-8 without escapes, no blanks
    expected = (
        '{"v":1,"t":86401000005,"f":["a","b","c","d"],'
        '"p":{"pod-é":[86401000005,3,[1000,9007199254740991,9007199254740992.0,0.5],1.25,4]}}'
    )
    assert dump_state(state) == expected.encode()


def test_ten_thousand_pods_state_is_small() -> None:
    # given 10,000 pods with every counter family and latency
    data = dump_state(_state(10_000))
    # then it stays well under 2 MB (about 150 bytes a pod with UUID keys)
    print(f"state for 10,000 pods: {len(data):,} bytes ({len(data) / 10_000:.0f} B/pod)")
    assert len(data) < 2_000_000
    assert load_state(data) == _state(10_000)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1e300, 2.0**360 * (1 + 2**-52)])
def test_dump_refuses_values_cloudwatch_would_refuse(value: float) -> None:
    # given a baseline holding a number CloudWatch refuses, when written, then it is refused
    state = ClusterState(T0, {"a": PodState("a", None, None, {"x": value})})
    with pytest.raises(ValueError, match="not a number within ±2\\^360"):
        dump_state(state)


def test_values_at_the_limit_round_trip() -> None:
    # given the largest magnitudes CloudWatch accepts, as counter, latency and history values
    limit = 2.0**360
    state = ClusterState(T0, {"a": PodState("a", None, None, {"x": limit}, -limit, limit)})
    state.history = [HistoryPoint(T0, -limit)]
    # then they are kept
    assert load_state(dump_state(state)) == state


def _doc(**changes: object) -> bytes:
    doc: dict[str, object] = {"v": 1, "t": 1, "f": ["x"], "p": {"a": [None, None, [1], None, None]}}
    doc.update(changes)
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b'{"v": 1', "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b"[" * 100_000, "not JSON"),
        (_doc(v=2), "unsupported version 2"),
        (_doc(t="yesterday"), "collection time is not an integer timestamp"),
        (_doc(t=10**30), "collection time out of range"),
        (_doc(f="x"), "'f' is not a list of family names"),
        (_doc(f=["x", "x"], p={}), "'f' has duplicate family names"),
        (_doc(p=[]), "'p' is not an object"),
        (_doc(p={"a": [None, None, [1]]}), "pod 'a': expected a list of 5 fields"),
        (_doc(p={"a": [None, "1", [1], None, None]}), "pod 'a': restart count is not an integer"),
        (_doc(p={"a": [None, None, [1, 2], None, None]}), "pod 'a': expected 1 counter values"),
        (_doc(p={"a": [None, None, ["1"], None, None]}), "pod 'a' counter x is not a number"),
        (_doc(p={"a": [None, None, [True], None, None]}), "pod 'a' counter x is not a number"),
        (
            _doc(p={"a": [None, None, [10**400], None, None]}),
            f"pod 'a' counter x is 1{'0' * 23}, not a number within ±2^360",  # 24 digits of 401
        ),
        (_doc(h=5), "'h' is not a list"),
        (_doc(h={}), "'h' is not a list"),
        (_doc(h=[[1, 2, 3]]), "history point 0: expected [time, assigned]"),
        (_doc(h=[5]), "history point 0: expected [time, assigned]"),
        (
            _doc(p={"a": [None, None, [1e300], None, None]}),
            "pod 'a' counter x is 1e+300, not a number within",
        ),
        (_doc(p={"a": [None, None, [-(2**361)], None, None]}), "pod 'a' counter x is -469"),
        (_doc(p={"a": [None, None, [1], 1e200, None]}), "pod 'a' latency sum is 1e+200, not a number"),
        (_doc(p={"a": [None, None, [1], None, -1e109]}), "pod 'a' latency count is -1e+109, not a number"),
        (_doc(h=[[1, 1], [2, 1e300]]), "history point 1 assigned is 1e+300, not a number within ±2^360"),
        (_doc(p={"a": [1.5, None, [1], None, None]}), "pod 'a' start time is not an integer timestamp"),
        (_doc(p={"a": [None, None, [1], "s", None]}), "pod 'a' latency sum is not a number"),
        (b'{"v":1,"t":1,"f":["x"],"p":{"a":[null,null,[NaN],null,null]}}', "non-finite number NaN"),
        (b'{"v":1,"t":1,"f":["x"],"p":{"a":[null,null,[Infinity],null,null]}}', "non-finite number Infinity"),
        (
            b'{"v":1,"t":1,"f":["x"],"p":{"a":[null,null,[-Infinity],null,null]}}',
            "non-finite number -Infinity",
        ),
        (
            b'{"v":1,"t":1,"f":["x"],"p":{"a":[null,null,[1e400],null,null]}}',
            "pod 'a' counter x is inf, not a number within ±2^360",
        ),
        (
            b'{"v":1,"t":1,"f":["x"],"p":{},"h":[[1,-1e400]]}',
            "history point 0 assigned is -inf, not a number",
        ),
    ],
)
def test_corrupt_state_raises_state_error_with_reason(data: bytes, reason: str) -> None:
    # given corrupt stored bytes, when loaded, then StateError says why
    with pytest.raises(StateError) as caught:
        load_state(data)
    assert caught.value.reason.startswith(reason)
    assert str(caught.value) == f"invalid state: {caught.value.reason}"
    assert isinstance(caught.value, ValueError)
