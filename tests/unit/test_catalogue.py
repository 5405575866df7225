"""Catalogue: the single list of families and published metrics matches the documented contract."""

from __future__ import annotations

from pathlib import Path

from cni_metrics.core import catalogue

ROOT = Path(__file__).resolve().parents[2]

# REFERENCE.md section 2: every name the upstream helper publishes.
UPSTREAM = {
    "assignIPAddresses", "totalIPAddresses", "totalIPv4Prefixes", "totalAssignedIPv4sPerCidr",
    "eniAllocated", "eniMaxAvailable", "maxIPAddresses", "ipamdActionInProgress", "awsAPILatency",
    "awsAPIErr", "awsUtilErr", "ipamdErr", "forceRemoveENI", "forceRemoveIPs", "reconcileCount",
    "addReqCount", "delReqCount", "podENIErr", "ec2ApiReqCount", "ec2ApiErrCount",
}  # fmt: skip


def test_every_upstream_metric_is_published_under_the_same_name() -> None:
    assert set(catalogue.METRICS_BY_NAME) >= UPSTREAM
    upstream_families = {f.metric for f in catalogue.FAMILIES if f.upstream}
    assert upstream_families == UPSTREAM


def test_names_are_unique() -> None:
    assert len(catalogue.METRICS_BY_NAME) == len(catalogue.METRICS)
    assert len(catalogue.BY_NAME) == len(catalogue.FAMILIES)
    metrics = [f.metric for f in catalogue.FAMILIES if f.metric]
    assert len(set(metrics)) == len(metrics)


def test_units() -> None:
    assert catalogue.unit_of("awsAPILatencyAvg") == "Milliseconds"
    assert catalogue.unit_of("ipUtilization") == "Percent"
    assert catalogue.unit_of("bytesScraped") == "Bytes"
    assert catalogue.unit_of("addReqCount") == "Count"


def test_five_once_gauge_typed_counters_are_counters() -> None:
    for name in (
        "awscni_add_ip_req_count",
        "awscni_pod_eni_error_count",
        "awscni_aws_api_error_count",
        "awscni_force_removed_enis",
        "awscni_force_removed_ips",
    ):
        assert catalogue.BY_NAME[name].kind == "counter"
