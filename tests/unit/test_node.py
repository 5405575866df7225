"""Node reduction: parsed samples -> NodeMetrics, by family name, values computed by hand."""

from __future__ import annotations

import pytest
from cni_metrics.core.node import read_node_metrics, reduce_samples
from cni_metrics.core.parser import PayloadError
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


def test_non_finite_samples_are_ignored() -> None:
    # given NaN and ±Inf values mixed with finite ones
    extra = (
        render_family("awscni_ip_max", [({"x": "a"}, float("nan")), ({"x": "b"}, 10.0)])
        + render_family("awscni_eni_max", [({}, float("inf"))])
        + render_family(
            "awscni_reconcile_count", [({"fn": "a"}, float("-inf")), ({"fn": "b"}, 4.0)], "counter"
        )
        + render_family(
            "awscni_aws_api_latency_ms",
            [
                ({"api": "a", "quantile": "0.99"}, float("inf")),
                ({"api": "b", "quantile": "0.99"}, float("nan")),
                ({"api": "c", "quantile": "0.99"}, 7.0),
                ({"api": "d", "quantile": "0.99"}, 3.0),
                ({"api": "c", "quantile": "0.9"}, 99.0),
            ],
            "summary",
        )
        + render_family("awscni_aws_api_latency_ms_sum", [({"api": "a"}, float("nan"))], None)
    )
    # when read
    metrics = read_node_metrics(payload(extra=extra))
    # then only finite samples count; a family with no finite sample is absent
    assert metrics.gauges == {"awscni_ip_max": 10}
    assert metrics.counters == {"awscni_reconcile_count": 4}
    assert metrics.latency_p99 == 7
    assert metrics.latency_sum is None


def test_overflowing_sum_is_dropped() -> None:
    extra = render_family("awscni_ip_max", [({"x": "a"}, 1.7e308), ({"x": "b"}, 1.7e308)])
    assert "awscni_ip_max" not in read_node_metrics(payload(extra=extra)).gauges


def test_malformed_payload_raises_payload_error() -> None:
    with pytest.raises(PayloadError):
        read_node_metrics(b"awscni_ip_max nope\n")
