"""Property tests: rendered families parse back equal; mutated payloads give a value or PayloadError."""

from __future__ import annotations

import math

from cni_metrics.core.node import read_node_metrics
from cni_metrics.core.parser import PayloadError, parse_payload
from core_payloads import FIXTURE_NAMES, fixture, go_filler, render_family
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_LOWER = "abcdefghijklmnopqrstuvwxyz"
_HEAD = _LOWER + _LOWER.upper() + "_"
_TAIL = _HEAD + "0123456789"
family_names = st.text(_LOWER + "0123456789_:", min_size=1, max_size=30).map(lambda s: f"awscni_{s}")
label_names = st.builds(lambda head, tail: head + tail, st.sampled_from(_HEAD), st.text(_TAIL, max_size=15))
label_values = st.text(max_size=40)
values = st.floats(allow_nan=True, allow_infinity=True)
label_sets = st.dictionaries(label_names, label_values, max_size=4)
families = st.dictionaries(
    family_names,
    st.tuples(
        st.sampled_from(["gauge", "counter", "untyped", None]),
        st.lists(st.tuples(label_sets, values), max_size=6, unique_by=lambda s: frozenset(s[0].items())),
    ),
    max_size=8,
)


def _same_value(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


@SETTINGS
@given(families=families, crlf=st.booleans(), filler=st.integers(0, 3))
def test_rendered_families_parse_back_equal(
    families: dict[str, tuple[str | None, list[tuple[dict[str, str], float]]]], crlf: bool, filler: int
) -> None:
    # given generated awscni families rendered in text format between go_ families
    text = go_filler(filler) + "".join(
        render_family(name, series, kind) for name, (kind, series) in families.items()
    )
    if crlf:
        text = text.replace("\n", "\r\n")
    # when parsed
    parsed = parse_payload(text.encode())
    # then every family with samples comes back with its type, labels and values
    expected = {name: spec for name, spec in families.items() if spec[1]}
    assert set(parsed.families) == set(expected)
    for name, (kind, series) in expected.items():
        family = parsed.families[name]
        assert family.type == (kind or "untyped")
        assert [s.name for s in family.samples] == [name] * len(series)
        assert [dict(s.labels) for s in family.samples] == [labels for labels, _ in series]
        assert all(_same_value(s.value, v) for s, (_, v) in zip(family.samples, series, strict=True))


def _parse_or_own_error(data: bytes) -> None:
    """Parsing returns, or raises PayloadError with a line and a reason; anything else fails the test."""
    for parse in (parse_payload, read_node_metrics):
        error: PayloadError | None = None
        try:
            parse(data)
        except PayloadError as exc:
            error = exc
        if error is not None:
            assert error.line >= 1
            assert error.reason


@SETTINGS
@given(name=st.sampled_from(FIXTURE_NAMES), cut=st.floats(0, 1))
def test_truncated_real_payloads_give_a_value_or_payload_error(name: str, cut: float) -> None:
    data = fixture(name)
    _parse_or_own_error(data[: int(len(data) * cut)])


@SETTINGS
@given(
    name=st.sampled_from(FIXTURE_NAMES),
    flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=8),
)
def test_byte_flipped_real_payloads_give_a_value_or_payload_error(
    name: str, flips: list[tuple[float, int]]
) -> None:
    data = bytearray(fixture(name))
    for where, byte in flips:
        data[int(where * len(data))] = byte
    _parse_or_own_error(bytes(data))


@settings(max_examples=30, deadline=None)
@given(
    name=st.sampled_from(FIXTURE_NAMES),
    where=st.floats(0, 1),
    size=st.integers(10_000, 300_000),
    char=st.sampled_from(["a", "\\", '"', "\\\\", '\\"', "{", "é"]),
)
def test_huge_label_values_give_a_value_or_payload_error(
    name: str, where: float, size: int, char: str
) -> None:
    # given a real payload with a huge run of characters inserted after some `="`
    data = fixture(name)
    quotes = [i for i in range(len(data)) if data.startswith(b'="', i)]
    at = quotes[int(where * (len(quotes) - 1))] + 2
    _parse_or_own_error(data[:at] + (char * (size // len(char))).encode() + data[at:])


@SETTINGS
@given(tail=st.binary(max_size=200), lines=st.integers(1, 5))
def test_arbitrary_awscni_lines_give_a_value_or_payload_error(tail: bytes, lines: int) -> None:
    _parse_or_own_error(b"\n".join([b"awscni_" + tail] * lines))


@SETTINGS
@given(data=st.binary(max_size=2000))
def test_arbitrary_bytes_give_a_value_or_payload_error(data: bytes) -> None:
    _parse_or_own_error(data)
