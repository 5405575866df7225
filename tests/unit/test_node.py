"""Node reduction: parsed samples -> NodeMetrics, by family name, values computed by hand."""

from __future__ import annotations

import pytest
from cni_metrics.core.node import ValueRangeError, read_node_metrics, reduce_samples
from cni_metrics.core.parser import PayloadError, Sample
from core_payloads import fixture, payload, render_family
from prometheus_client.parser import text_string_to_metric_families


def test_real_payload_test1_sums_by_hand() -> None:
    # given the upstream helper's first real payload
    metrics = read_node_metrics(fixture("cni_test1.data"))
    # then gauges and counters are summed over labels
    assert metrics.gauges == {
        "awscni_assigned_ip_addresses": 1,
        "awscni_total_ip_addresses": 10,
        "awscni_ip_max": 15,
        "awscni_eni_allocated": 2,
        "awscni_eni_max": 3,
        "awscni_ipamd_action_inprogress": 0,
    }
    assert metrics.counters == {
        "awscni_add_ip_req_count": 100,
        "awscni_aws_api_error_count": 14,
        "awscni_ec2api_req_count": 1 + 1 + 1 + 1 + 1 + 13 + 1 + 2,
        "awscni_del_ip_req_count": 106 + 2,
    }
    # and the latency summary: 11 series of _sum/_count; the only non-NaN p99 is GetMetadata's 1
    assert metrics.latency_sum == 2938 + 4377 + 1328 + 1123 + 2364 + 1806 + 1330 + 2360 + 1828 + 4384 + 1551
    assert metrics.latency_count == 10 + 10 + 10 + 10 + 9 + 14 + 10 + 20 + 9 + 82716 + 10
    assert metrics.latency_p99 == 1
    assert metrics.cni_version is None


def test_real_payload_test2_has_prefix_delegation_gauges() -> None:
    metrics = read_node_metrics(fixture("cni_test2.data"))
    assert metrics.gauges["awscni_total_ipv4_prefixes"] == 1
    assert metrics.gauges["awscni_assigned_ip_per_cidr"] == 1
    assert metrics.gauges["awscni_total_ip_addresses"] == 16


def test_modern_payload_has_no_quantiles_so_no_p99() -> None:
    # given the v1.23-shaped payload: summary with only _sum/_count, build info, histograms
    metrics = read_node_metrics(fixture("synthetic-v1.23.prom"))
    # then
    assert metrics.latency_sum == 512 + 1840 + 310
    assert metrics.latency_count == 2 + 14 + 4021
    assert metrics.latency_p99 is None
    assert metrics.cni_version == "v1.23.1"
    assert metrics.gauges["awscni_assigned_ip_per_eni"] == 5 + 4
    assert metrics.gauges["awscni_assigned_ip_per_cidr"] == 1 + 0 + 1
    assert metrics.counters == {
        "awscni_add_ip_req_count": 57,
        "awscni_del_ip_req_count": 48,
        "awscni_ec2api_req_count": 2 + 1 + 1 + 14,
        "awscni_force_removed_enis": 0,
        "awscni_force_removed_ips": 0,
        "awscni_no_available_ip_addresses": 0,
        "awscni_reconcile_count": 2,
    }
    # families outside the catalogue (connmark, histograms) are not in the maps
    assert not any("connmark" in k for k in [*metrics.gauges, *metrics.counters])


def test_prometheus_client_samples_reduce_to_the_same_metrics() -> None:
    # given prometheus_client's samples of a gauge-typed payload (no _total renaming for gauges)
    data = fixture("cni_test1.data").decode()
    reference = [s for f in text_string_to_metric_families(data) for s in f.samples]
    renamed = [s._replace(name=s.name.removesuffix("_total")) for s in reference]
    # when reduced, then it equals our own parse + reduce
    assert reduce_samples(renamed) == read_node_metrics(data)


def test_counters_typed_gauge_before_v1_19_are_counters() -> None:
    # given the five monotonic families typed gauge, as CNI < v1.19 served them
    families = {
        "awscni_add_ip_req_count": 5,
        "awscni_pod_eni_error_count": 1,
        "awscni_aws_api_error_count": 2,
        "awscni_force_removed_enis": 3,
        "awscni_force_removed_ips": 4,
    }
    # when read
    metrics = read_node_metrics(payload(counters=families, counter_type="gauge"))
    # then they are counters, by name
    assert metrics.counters == families
    assert metrics.gauges == {}


def test_nan_quantiles_are_ignored_as_summaries_without_observations() -> None:
    # given the 2019-era payload, whose latency summary has NaN quantiles (no observations) except one
    data = fixture("cni_test1.data")
    assert data.count(b"NaN") > 10
    # when read, then it is accepted and the p99 is the one number among the 0.99 quantiles
    assert read_node_metrics(data).latency_p99 == 1


@pytest.mark.parametrize(
    ("family", "kind", "value"),
    [
        ("awscni_ip_max", "gauge", float("nan")),
        ("awscni_eni_max", "gauge", float("inf")),
        ("awscni_reconcile_count", "counter", float("-inf")),
        ("awscni_add_ip_req_count", "counter", 1e300),
        ("awscni_assigned_ip_addresses", "gauge", -(2.0**361)),
        ("awscni_aws_api_latency_ms_sum", None, float("nan")),
        ("awscni_aws_api_latency_ms_count", None, 2.0**360 * 1.5),
    ],
)
def test_a_value_that_is_not_a_number_within_the_cloudwatch_range_makes_the_payload_bad(
    family: str, kind: str | None, value: float
) -> None:
    # given a payload whose one sample of a summed family is NaN, ±Inf or beyond ±2^360, beside good ones
    extra = render_family(family, [({"fn": "good"}, 4.0), ({"fn": "bad"}, value)], kind)
    data = payload({"awscni_total_ip_addresses": 3.0}, extra=extra)
    # when read (strict bytes take the quick path first; the str takes the full parser)
    for form in (data, data.decode()):
        with pytest.raises(PayloadError) as caught:
            read_node_metrics(form)
        # then the node is refused: the reason names the series and the line is its family's first sample
        assert caught.value.reason.startswith(f'{family}{{fn="bad"}} is {value!r}')
        assert data.splitlines()[caught.value.line - 1].startswith(f'{family}{{fn="good"}}'.encode())


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), 1e200])
def test_a_p99_quantile_that_is_infinite_or_beyond_range_makes_the_payload_bad(value: float) -> None:
    # given a 0.99 quantile that is not NaN (no observations) but not a number within ±2^360 either
    series = [({"api": "a", "quantile": "0.99"}, 7.0), ({"api": "b", "quantile": "0.99"}, value)]
    data = payload(extra=render_family("awscni_aws_api_latency_ms", series, "summary"))
    # when read, then the payload is bad, naming the series
    with pytest.raises(PayloadError, match=r"awscni_aws_api_latency_ms\{api=\"b\",quantile=\"0.99\"\} is"):
        read_node_metrics(data)


def test_other_quantiles_are_not_read() -> None:
    # given an infinite median beside a finite p99: only the 0.99 quantile is used
    series = [({"api": "a", "quantile": "0.5"}, float("inf")), ({"api": "a", "quantile": "0.99"}, 7.0)]
    metrics = read_node_metrics(payload(extra=render_family("awscni_aws_api_latency_ms", series, "summary")))
    assert metrics.latency_p99 == 7


def test_a_sum_beyond_range_makes_the_payload_bad() -> None:
    # given two samples within ±2^360 whose sum is not
    half = 2.0**359 * 1.5
    data = payload(extra=render_family("awscni_ip_max", [({"x": "a"}, half), ({"x": "b"}, half)]))
    for form in (data, data.decode()):
        with pytest.raises(PayloadError, match=r"awscni_ip_max sums to .* beyond ±2\^360"):
            read_node_metrics(form)


def test_values_at_the_limit_are_kept() -> None:
    # given values exactly at ±2^360, when read, then they are kept as served
    limit = 2.0**360
    data = payload({"awscni_ip_max": limit}, {"awscni_add_ip_req_count": -limit})
    metrics = read_node_metrics(data)
    assert (metrics.gauges["awscni_ip_max"], metrics.counters["awscni_add_ip_req_count"]) == (limit, -limit)


def test_reduce_samples_names_the_bad_sample() -> None:
    # given a NaN gauge sample (as prometheus_client's samples would give it), when reduced, then the
    # error names the family, for the caller's line number
    sample = Sample("awscni_ip_max", {}, float("nan"))
    with pytest.raises(ValueRangeError) as caught:
        reduce_samples([sample])
    assert (caught.value.name, caught.value.reason) == (
        "awscni_ip_max",
        "awscni_ip_max is nan, not a number within ±2^360",
    )


def test_malformed_payload_raises_payload_error() -> None:
    with pytest.raises(PayloadError):
        read_node_metrics(b"awscni_ip_max nope\n")


@pytest.mark.parametrize("text", [False, True])
def test_the_largest_p99_and_the_first_build_version_are_kept_on_both_ways(text: bool) -> None:
    # given two 0.99 quantiles (the larger second) and two build_info series in one payload
    data = (
        'awscni_aws_api_latency_ms{api="a",quantile="0.99"} 5\n'
        'awscni_aws_api_latency_ms{api="b",quantile="0.99"} 9\n'
        'awscni_build_info{goversion="go1",version="v1.20.0"} 1\n'
        'awscni_build_info{goversion="go2",version="v1.23.0"} 1\n'
    )
    # when it is read through the quick way (bytes) or the full way (text)
    metrics = read_node_metrics(data if text else data.encode())
    # then the p99 is the largest served, and the version the first served
    assert metrics.latency_p99 == 9.0
    assert metrics.cni_version == "v1.20.0"


@pytest.mark.parametrize("text", [False, True])
def test_a_value_of_exactly_two_to_the_360_is_kept(text: bool) -> None:
    # given a gauge at CloudWatch's largest accepted magnitude
    data = f"awscni_ip_max {float(2**360)!r}\n"
    # then both ways read it as it is
    assert read_node_metrics(data if text else data.encode()).gauges == {"awscni_ip_max": float(2**360)}


def test_a_refused_value_names_the_line_of_its_family_after_leading_blank_lines() -> None:
    # given blank lines, then a good family, then a family out of range on line 5
    data = b"\n\nawscni_assigned_ip_addresses 3\n# TYPE awscni_ip_max gauge\nawscni_ip_max 1e300\n"
    # when it is read, then the error names line 5
    with pytest.raises(PayloadError) as caught:
        read_node_metrics(data)
    assert caught.value.line == 5
