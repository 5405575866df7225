"""Parser: text format 0.0.4 as aws-node serves it, checked against prometheus_client's parser."""

from __future__ import annotations

import math

import pytest
from cni_metrics.core import parser
from cni_metrics.core.parser import PayloadError, parse_payload
from core_payloads import FIXTURE_NAMES, fixture, go_filler
from prometheus_client.parser import text_string_to_metric_families

Row = tuple[str, tuple[tuple[str, str], ...], float]


def _ours(data: bytes | str) -> list[Row]:
    parsed = parse_payload(data)
    return sorted((s.name, tuple(sorted(s.labels.items())), s.value) for s in parsed.samples())


def _reference(text: str) -> list[Row]:
    """prometheus_client's reading; it appends ``_total`` to counter samples, which we undo."""

    def name(sample_name: str) -> str:
        appended = sample_name.endswith("_total") and sample_name not in text
        return sample_name[: -len("_total")] if appended else sample_name

    return sorted(
        (name(s.name), tuple(sorted(s.labels.items())), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("awscni_")
    )


def _same(a: list[Row], b: list[Row]) -> bool:
    return len(a) == len(b) and all(
        x[:2] == y[:2] and (x[2] == y[2] or (math.isnan(x[2]) and math.isnan(y[2])))
        for x, y in zip(a, b, strict=True)
    )


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_fixture_samples_equal_prometheus_client_reference(name: str) -> None:
    # given a real (or modern synthetic) aws-node payload
    data = fixture(name)
    # when we parse it, then every awscni sample matches prometheus_client's reading of it
    ours = _ours(data)
    assert ours
    assert _same(ours, _reference(data.decode()))


def test_only_awscni_families_are_kept_and_grouped_by_declared_type() -> None:
    # given the modern payload (summary, histograms, go_ families)
    parsed = parse_payload(fixture("synthetic-v1.23.prom"))
    # then go_ families are gone and _sum/_count/_bucket samples belong to their family
    assert all(name.startswith("awscni_") for name in parsed.families)
    assert "go_goroutines" not in parsed.families
    latency = parsed.families["awscni_aws_api_latency_ms"]
    assert latency.type == "summary"
    assert {s.name for s in latency.samples} == {
        "awscni_aws_api_latency_ms_sum",
        "awscni_aws_api_latency_ms_count",
    }
    startup = parsed.families["awscni_ipamd_startup_duration_seconds"]
    assert startup.type == "histogram"
    assert len(startup.samples) == 14
    assert parsed.families["awscni_add_ip_req_count"].help == "The number of add IP address requests"


def test_label_escapes_timestamps_and_special_values() -> None:
    # given escapes in label values, a trailing comma, timestamps and NaN/Inf values
    text = (
        "# TYPE awscni_aws_utils_error_count counter\n"
        'awscni_aws_utils_error_count{fn="a",error="say \\"no\\"\\nback\\\\slash",} 3 1700000000000\n'
        'awscni_aws_utils_error_count{fn="b",error="é ✓"} +Inf\n'
        'awscni_aws_utils_error_count{fn="c",error=""} -Inf -5\n'
        'awscni_aws_utils_error_count{fn="d",error="x"} NaN\n'
        "awscni_eni_max{} 1.5e1\n"
    )
    # when parsed
    samples = parse_payload(text).samples()
    # then values, labels and timestamps are as written
    first, second, third, fourth, fifth = samples
    assert first.labels == {"fn": "a", "error": 'say "no"\nback\\slash'}
    assert (first.value, first.timestamp_ms) == (3.0, 1700000000000)
    assert second.labels["error"] == "é ✓"
    assert second.value == math.inf
    assert (third.value, third.timestamp_ms) == (-math.inf, -5)
    assert math.isnan(fourth.value)
    assert (fifth.name, fifth.labels, fifth.value) == ("awscni_eni_max", {}, 15.0)
    # and prometheus_client reads the same
    assert _same(_ours(text), _reference(text))


def test_crlf_blank_lines_whitespace_and_split_families() -> None:
    # given CRLF line ends, blank lines, indentation, and a family split across non-adjacent lines
    text = (
        "\r\n# TYPE awscni_del_ip_req_count counter\r\n"
        'awscni_del_ip_req_count{reason="PodDeleted"} 4\r\n'
        "\r\n"
        "go_goroutines 7\r\n"
        "   awscni_eni_allocated \t 2   \r\n"
        'awscni_del_ip_req_count {reason="SetupNSFailed"}\t1\r\n'
    )
    # when parsed
    parsed = parse_payload(text)
    # then both del samples are in one family and the indented gauge is read
    assert [s.value for s in parsed.families["awscni_del_ip_req_count"].samples] == [4.0, 1.0]
    assert parsed.families["awscni_eni_allocated"].samples[0].value == 2.0
    assert list(parsed.families) == ["awscni_del_ip_req_count", "awscni_eni_allocated"]


def test_str_and_bytes_inputs_are_equivalent() -> None:
    data = fixture("cni_test2.data")
    assert _same(_ours(data), _ours(data.decode()))


def test_non_awscni_lines_are_not_validated() -> None:
    # given garbage in go_ lines (the parser skips everything that is not awscni_ by prefix)
    text = "go_broken{{{ not a sample\nprocess_x \xff\xfe\n# TYPE go_x nonsense\nawscni_ip_max 3\n"
    # then the awscni sample is still read
    assert _ours(text) == [("awscni_ip_max", (), 3.0)]


def test_empty_payload_has_no_families() -> None:
    assert parse_payload(b"").families == {}
    assert parse_payload(go_filler(2)).families == {}


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("awscni_ip_max\n", 1, "malformed sample line"),
        ("go_x 1\nawscni_ip_max 1 2 3\n", 2, "malformed sample line"),
        ('awscni_ip_max{a="1" 1\n', 1, "malformed sample line"),
        ("awscni_ip_max{a=1} 1\n", 1, "malformed label set"),
        ('awscni_ip_max{a="1"b="2"} 1\n', 1, "malformed label set"),
        ('\n\nawscni_ip_max{a="1",a="2"} 1\n', 3, "duplicate label 'a'"),
        ('awscni_ip_max{a="\\t"} 1\n', 1, "invalid escape sequence \\'t'"),
        ("awscni_ip_max one\n", 1, "invalid value 'one'"),
        ("awscni_ip_max 1_000\n", 1, "invalid value '1_000'"),
        ("awscni_ip_max 1 1.5\n", 1, "invalid timestamp '1.5'"),
        ('awscni_ip_max{a="\xff"} 1\n', 1, "invalid UTF-8"),
        ("awscni_ip_max 1\nawscni_ip_max 2\n", 2, "duplicate series awscni_ip_max"),
        (
            "# TYPE awscni_ip_max gauge\n# TYPE awscni_ip_max counter\n",
            2,
            "conflicting TYPE for awscni_ip_max: gauge and counter",
        ),
        ("# TYPE awscni_ip_max meter\n", 1, "invalid TYPE 'meter' for awscni_ip_max"),
        ("# TYPE awscni_ip-max gauge\n", 1, "invalid metric name 'awscni_ip-max'"),
    ],
)
def test_malformed_awscni_line_raises_payload_error_with_line_and_reason(
    text: str, line: int, reason: str
) -> None:
    # given a payload with one malformed awscni line (bytes, so \xff stays an invalid byte)
    data = text.encode("latin-1")
    # when parsed, then the error names the line and the reason
    with pytest.raises(PayloadError) as caught:
        parse_payload(data)
    assert (caught.value.line, caught.value.reason) == (line, reason)
    assert isinstance(caught.value, ValueError)
    assert str(caught.value) == f"line {line}: {reason}"


def test_repeated_identical_type_line_is_accepted() -> None:
    text = "# TYPE awscni_ip_max gauge\nawscni_ip_max 1\n# TYPE awscni_ip_max gauge\n"
    assert parse_payload(text).families["awscni_ip_max"].type == "gauge"


@pytest.mark.timeout(20)
def test_adversarial_lines_do_not_backtrack_catastrophically() -> None:
    # given very long awscni lines built to defeat a backtracking matcher
    unterminated = 'awscni_x{a="' + "\\\\" * 200_000 + "\n"
    many_quotes = "awscni_x{" + 'a="",' * 50_000 + 'b="""\n'
    no_value = "awscni_x{" + 'a="b"' * 100_000 + "}\n"
    # when parsed, then each fails quickly with the parser's own error (the timeout guards the hang)
    for text in (unterminated, many_quotes, no_value):
        with pytest.raises(PayloadError):
            parse_payload(text)


def test_memoisation_stays_bounded() -> None:
    # given more distinct awscni lines than the caches hold, some longer than a cacheable key
    lines = [
        f'awscni_assigned_ip_per_cidr{{cidr="10.{i // 65536}.{i // 256 % 256}.{i % 256}/32"}} 1'
        for i in range(25_000)
    ]
    lines.append('awscni_aws_utils_error_count{error="' + "x" * 5_000 + '"} 1')
    # when parsed, then every sample is there and no cache grew past its limit
    assert len(parse_payload("\n".join(lines)).samples()) == 25_001
    for cache in (parser._label_cache, parser._line_cache, parser._name_cache, parser._comment_cache):
        assert len(cache) <= parser._CACHE_LIMIT
        assert all(len(key) <= parser._CACHE_KEY_MAX for key in cache)


def test_bytearray_and_memoryview_inputs_are_accepted() -> None:
    data = fixture("cni_test1.data")
    assert _same(_ours(bytearray(data)), _ours(data))  # type: ignore[arg-type]
    assert _same(_ours(memoryview(data)), _ours(data))  # type: ignore[arg-type]
