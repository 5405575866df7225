"""``parser.quick_scan`` (the hot path of ``read_node_metrics``) agrees with the full parser.

Whenever it answers, the full parser accepts the payload and reduces it to the same ``NodeMetrics``
(unless a value is not a number within ±2^360: then both reductions refuse it); whenever the full parser
rejects a payload, it declines (None). ``read_node_metrics`` = the full way.
"""

from __future__ import annotations

import math
import random
from functools import reduce
from operator import add

from cni_metrics.core import parser
from cni_metrics.core.catalogue import API_LATENCY, API_LATENCY_COUNT, API_LATENCY_SUM, BUILD_INFO, FAMILIES
from cni_metrics.core.model import NodeMetrics
from cni_metrics.core.node import ValueRangeError, _reduce_scan, read_node_metrics, reduce_samples
from cni_metrics.core.parser import PayloadError, parse_payload, quick_scan
from core_payloads import FIXTURE_NAMES, fixture, go_filler, render_family
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_NAMES = sorted({f.name for f in FAMILIES} | {f"{API_LATENCY}_sum", f"{API_LATENCY}_count", "awscni_x_y"})
label_values = st.one_of(st.text(max_size=12), st.sampled_from(["0.99", "0.5", "v1.23.1", "a,b", 'x"},y']))
label_sets = st.dictionaries(
    st.sampled_from(["quantile", "version", "fn", "api", "le", "a_b"]), label_values, max_size=3
)
values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**20), 10**20).map(float),
    st.sampled_from([0.0, -0.0, 1e308]),
)
families = st.dictionaries(
    st.sampled_from(_NAMES),
    st.tuples(
        st.sampled_from(["gauge", "counter", "summary", "untyped", None]),
        st.lists(st.tuples(label_sets, values), max_size=5, unique_by=lambda s: frozenset(s[0].items())),
    ),
    max_size=8,
)


def _full(data: bytes) -> NodeMetrics | None:
    """The full parser's reduction; None when it rejects the payload or a value (both PayloadError)."""
    try:
        return reduce_samples(parse_payload(data).samples())
    except (PayloadError, ValueRangeError):
        return None


def _parses(data: bytes) -> bool:
    try:
        parse_payload(data)
    except PayloadError:
        return False
    return True


def _same(a: NodeMetrics, b: NodeMetrics) -> bool:
    def eq(x: float | None, y: float | None) -> bool:
        return x == y or (x is not None and y is not None and math.isnan(x) and math.isnan(y))

    return (
        a.gauges == b.gauges
        and a.counters == b.counters
        and eq(a.latency_sum, b.latency_sum)
        and eq(a.latency_count, b.latency_count)
        and eq(a.latency_p99, b.latency_p99)
        and a.cni_version == b.cni_version
    )


def _agrees(data: bytes) -> bool:
    """quick_scan answers only for payloads the full parser accepts; its reduction declines whenever the
    full one refuses a value (it may decline more: a sample out of range in a family nobody reads, such as
    awscni_build_info, sends the payload to the full way, which gives the result), else gives the same
    result; True when the quick path gave the result."""
    full = _full(data)
    scan = quick_scan(data)
    quick = None if scan is None else _reduce_scan(scan)
    if scan is not None:
        assert _parses(data), "quick_scan accepted a payload the full parser rejects"
        if full is None:
            assert quick is None, "the quick reduction accepted a value the full one refuses"
    if quick is not None:
        assert full is not None
        assert _same(quick, full)
    if full is None:
        try:
            read_node_metrics(data)
        except PayloadError:
            pass
        else:
            raise AssertionError("read_node_metrics accepted a payload the full way refuses")
    else:
        assert _same(read_node_metrics(data), full)
    return quick is not None


def test_real_and_synthetic_fixtures_take_the_quick_path_with_the_same_result() -> None:
    for _ in range(2):  # the second time with memoised values and label sets
        assert all(_agrees(fixture(name)) for name in FIXTURE_NAMES)


def test_quick_path_declines_duplicates_conflicts_and_odd_forms() -> None:
    for data in (
        b"awscni_ip_max 1\nawscni_ip_max 2\n",  # duplicate series
        b'awscni_x{a="1",b="2"} 1\nawscni_x{b="2",a="1"} 2\n',  # same label set, other order
        b'awscni_x{a="1",a="2"} 1\n',  # duplicate label name
        b"awscni_x{} 1\nawscni_x 2\n",  # empty label set = no labels
        b"# TYPE awscni_x gauge\n# TYPE awscni_x counter\nawscni_x 1\n",
        b"awscni_x 1_0\n",
        b"awscni_x nope\n",
        b"awscni_x 1 2 3\n",
        b"awscni_x\t1\n",
        b"awscni_x 1\r\n",
        b'awscni_x{a="\\q"} 1\n',
        'awscni_x{a="é"} 1\n'.encode(),
        b'go_x{a="awscni_y"} 1\nawscni_z 1\n',
        b"# HELP awscni_x\xff\nawscni_x 1\n",
        b"  awscni_x 1\n",
        b"# HELP awscni_x-y help\n",
    ):
        assert quick_scan(data) is None, data
        _agrees(data)


def test_label_sets_in_any_order_still_catch_duplicate_series() -> None:
    # given label sets in the order Go writes (by name, le/quantile last) and in other orders
    for data, duplicate in (
        (b'awscni_h_bucket{a="1",le="0.5"} 1\nawscni_h_bucket{le="0.5",a="1"} 1\n', True),
        (b'awscni_s{quantile="0.5",a="1"} 1\nawscni_s{a="1",quantile="0.5"} 1\n', True),
        (b'awscni_x{b="1",a="2",c="3"} 1\nawscni_x{c="3",b="1",a="2"} 2\n', True),
        (b'awscni_x{b="1",a="2"} 1\nawscni_x{a="2",c="1"} 2\n', False),
        (b'awscni_h_bucket{a="1",le="0.5"} 1\nawscni_h_bucket{a="1",le="1"} 1\n', False),
        (b'awscni_x{le="1",a="2"} 1\nawscni_x{a="2",le="2"} 1\nawscni_y{a="2",le="1"} 1\n', False),
    ):
        for _ in range(2):  # the second time with memoised label sets
            # then the quick path declines exactly when the full parser finds a duplicate series
            assert (quick_scan(data) is None) is duplicate, data
            assert (_full(data) is None) is duplicate, data
            _agrees(data)


def test_memoised_values_are_the_full_parsers_and_bad_values_are_not_memoised() -> None:
    # given value tokens in every form a Go client writes, twice, and tokens float() rejects
    good = b"".join(
        b'awscni_ip_max{i="%d"} %s\n' % (i, token)
        for i, token in enumerate([b"0", b"-0", b"1e3", b"+Inf", b"-Inf", b"NaN", b"1.5e-07", b"17"])
    )
    for _ in range(2):
        assert _agrees(good) is False  # non-finite samples in a summed family: the full reduction
        assert _agrees(good.replace(b"Inf", b"1").replace(b"NaN", b"2"))
    for _ in range(2):
        for bad in (b"awscni_x 0x10\n", b"awscni_x 1e\n", b"awscni_x infinityy\n"):
            assert quick_scan(bad) is None
            _agrees(bad)


def test_memo_caches_stay_bounded() -> None:
    # given one payload with more distinct values and label sets than a cache holds
    count = parser._CACHE_LIMIT + 50
    data = "".join(f'awscni_ip_max{{a="{i}",b="x"}} {i}.5\n' for i in range(count)).encode()
    # when read, then the result is the full parser's and the caches did not grow past their limit
    assert _same(read_node_metrics(data), reduce_samples(parse_payload(data).samples()))
    assert len(parser._value_cache) <= parser._CACHE_LIMIT
    assert len(parser._canonical) <= parser._CACHE_LIMIT


def test_values_outside_the_range_take_the_full_reduction_which_refuses_them() -> None:
    # given strict payloads, each with a summed value (or p99) that is not a number within ±2^360
    for data in (
        b'awscni_ip_max{a="1"} NaN\nawscni_ip_max{a="2"} 3\n',
        b'awscni_ip_max{a="1"} +Inf\nawscni_add_ip_req_count -Inf\n',
        b'awscni_ip_max{a="1"} 1e308\nawscni_ip_max{a="2"} 1e308\nawscni_eni_max 2\n',
        b'awscni_ip_max{a="1"} NaN\nawscni_ip_max{a="2"} 1e300\n',  # NaN first: max() does not see 1e300
        b'awscni_ip_max{a="1"} 1e300\nawscni_ip_max{a="2"} -1e300\n',  # a sum in range of samples beyond
        b'awscni_ip_max{a="1"} 1.5e108\nawscni_ip_max{a="2"} 1.5e108\n',  # samples in range, the sum not
        f'{API_LATENCY_SUM} NaN\n{API_LATENCY_COUNT} 1e308\n{API_LATENCY_COUNT}{{a="1"}} 1e308\n'.encode(),
        f'{API_LATENCY}{{quantile="0.99"}} -Inf\n{API_LATENCY}{{quantile="0.99",a="1"}} 3\n'.encode(),
    ):
        # then the quick scan reads it, its reduction declines, and the full way refuses it
        scan = quick_scan(data)
        assert scan is not None
        assert _reduce_scan(scan) is None
        assert _full(data) is None
        assert _agrees(data) is False


def test_runs_of_a_name_are_added_in_line_order() -> None:
    # given _sum lines in runs of several, between _count lines, with values where the order of additions
    # shows in the result
    sums = [1e16, 1.0, 1.0, 3.0, 1.0]
    lines = [
        f'{API_LATENCY_SUM}{{api="A"}} {sums[0]!r}', f'{API_LATENCY_COUNT}{{api="A"}} 1',
        f'{API_LATENCY_SUM}{{api="B"}} {sums[1]!r}', f'{API_LATENCY_SUM}{{api="C"}} {sums[2]!r}',
        f'{API_LATENCY_COUNT}{{api="B"}} 1', f'{API_LATENCY_SUM}{{api="D"}} {sums[3]!r}',
        f'{API_LATENCY_SUM}{{api="E"}} {sums[4]!r}',
    ]  # fmt: skip
    data = ("\n".join(lines) + "\n").encode()
    # then the quick path gives the full parser's result: additions one by one, in line order
    assert _agrees(data)
    assert read_node_metrics(data).latency_sum == reduce(add, sums, 0.0) != 1e16 + (1.0 + 1.0) + (3.0 + 1.0)


def test_escaped_label_values_take_the_quick_path() -> None:
    data = (
        b'awscni_aws_utils_error_count{fn="Alloc",error="parameter \\"eni\\" is invalid\\n\\\\"} 1\n'
        b'awscni_aws_utils_error_count{error="parameter \\"eni\\" is invalid\\n\\\\",fn="Alloc"} 2\n'
    )
    assert quick_scan(data) is None  # the same series twice, labels in another order
    assert _agrees(data[: data.index(b"\n") + 1] + b'awscni_x{a="\\""} 1\n')


def test_interleaved_summary_lines_keep_line_order_sums() -> None:
    data = (
        f'{API_LATENCY}_sum{{api="A"}} 0.1\n{API_LATENCY}_count{{api="A"}} 1\n'
        f'{API_LATENCY}_sum{{api="B"}} 0.2\n{API_LATENCY}_count{{api="B"}} 2\n'
        f'{API_LATENCY}{{api="B",quantile="0.99"}} 7\n{BUILD_INFO}{{goversion="go"}} 1\n'
        f'{BUILD_INFO}{{version="v1"}} 1\n'
    ).encode()
    assert _agrees(data)
    metrics = read_node_metrics(data)
    assert (metrics.latency_sum, metrics.latency_count, metrics.latency_p99) == (0.1 + 0.2, 3.0, 7.0)
    assert metrics.cni_version == "v1"


@SETTINGS
@given(
    families=families, filler=st.integers(0, 3), crlf=st.booleans(), shuffled=st.booleans(), rnd=st.randoms()
)
def test_generated_payloads_agree(
    families: dict[str, tuple[str | None, list[tuple[dict[str, str], float]]]],
    filler: int,
    crlf: bool,
    shuffled: bool,
    rnd: random.Random,
) -> None:
    lines = (
        go_filler(filler)
        + "".join(render_family(name, series, kind) for name, (kind, series) in families.items())
    ).splitlines()
    if shuffled:  # families split across the payload, interleaved lines
        rnd.shuffle(lines)
    text = "\n".join(lines) + "\n"
    _agrees((text.replace("\n", "\r\n") if crlf else text).encode())


@SETTINGS
@given(
    name=st.sampled_from(FIXTURE_NAMES),
    flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=4),
)
def test_byte_flipped_fixtures_agree(name: str, flips: list[tuple[float, int]]) -> None:
    data = bytearray(fixture(name))
    for where, byte in flips:
        data[int(where * len(data))] = byte
    _agrees(bytes(data))


@SETTINGS
@given(
    tail=st.binary(max_size=80), lines=st.integers(1, 4), head=st.sampled_from([b"", b"# TYPE ", b"# HELP "])
)
def test_arbitrary_awscni_lines_agree(tail: bytes, lines: int, head: bytes) -> None:
    _agrees(b"\n".join([head + b"awscni_" + tail] * lines))


def test_an_out_of_range_sample_nobody_reads_takes_the_full_way() -> None:
    # given a payload whose only out-of-range number is in awscni_build_info, which is never summed
    data = b'awscni_assigned_ip_addresses 3\nawscni_build_info{version="v1.23.0"} 1e+308\n'
    # when it is read, then the quick reduction declines and the full way reads it as served
    assert _agrees(data) is False
    metrics = read_node_metrics(data)
    assert metrics.gauges == {"awscni_assigned_ip_addresses": 3.0}
    assert metrics.cni_version == "v1.23.0"
