"""The truth API matches what was served, read back independently with prometheus_client's parser."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fake_eks.testing import RunningFakeEks
from fake_eks_helpers import PODS, kube_get, metrics_path
from prometheus_client.parser import text_string_to_metric_families

GAUGES = (
    "awscni_assigned_ip_addresses",
    "awscni_total_ip_addresses",
    "awscni_ip_max",
    "awscni_eni_allocated",
    "awscni_eni_max",
    "awscni_total_ipv4_prefixes",
    "awscni_assigned_ip_per_cidr",
    "awscni_assigned_ip_per_eni",
    "awscni_ipamd_action_inprogress",
)
COUNTERS = (
    "awscni_add_ip_req_count",
    "awscni_del_ip_req_count",
    "awscni_no_available_ip_addresses",
    "awscni_ipamd_error_count",
    "awscni_reconcile_count",
    "awscni_pod_eni_error_count",
    "awscni_aws_api_error_count",
    "awscni_aws_utils_error_count",
    "awscni_ec2api_req_count",
    "awscni_ec2api_error_count",
    "awscni_force_removed_enis",
    "awscni_force_removed_ips",
)
LATENCY = "awscni_aws_api_latency_ms"
MIXED = {
    "cni_shapes": {"modern": 1, "old": 1},
    "prefix_delegation": 0.5,
    "instance_types": {"t3.medium": 1, "m5.large": 1, "c5.4xlarge": 1, "m5.24xlarge": 1},
}


def _sums(text: str) -> dict[str, float]:
    """Sum of the samples of every awscni series name in a payload (independent reader)."""
    sums: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            # the parser names counter samples <family>_total; aws-node's names have no such suffix
            name = sample.name.removesuffix("_total") if family.type == "counter" else sample.name
            if name.startswith("awscni_") and "quantile" not in sample.labels:
                sums[name] = sums.get(name, 0.0) + sample.value
    return sums


def _served(eks: RunningFakeEks, cluster: str) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in eks.truth(cluster)["pods"]}


def _scrape_all(eks: RunningFakeEks, cluster: str) -> dict[str, dict[str, float]]:
    return {name: _sums(kube_get(eks, cluster, metrics_path(name)).text) for name in _served(eks, cluster)}


def test_truth_matches_every_served_payload(fake_eks_factory: Callable[..., RunningFakeEks]) -> None:
    # given a cluster of mixed shapes, types and modes
    eks = fake_eks_factory({"clusters": [{"name": "c", "nodes": 12, **MIXED}]})
    # when every pod is scraped twice
    _scrape_all(eks, "c")
    read = _scrape_all(eks, "c")
    truth = eks.truth("c")
    # then each pod's truth is what the parser read from the last payload, and sums add up
    expected_sums: dict[str, float] = {}
    for pod in truth["pods"]:
        got, served = read[pod["name"]], pod["served"]
        assert pod["scrapes"] == 2
        for fam in GAUGES:
            assert served["gauges"].get(fam, 0.0) == got.get(fam, 0.0), (pod["name"], fam)
        for fam in COUNTERS:
            assert served["counters"].get(fam, 0.0) == got.get(fam, 0.0), (pod["name"], fam)
        assert served["latency_sum"] == got.get(f"{LATENCY}_sum", 0.0)
        assert served["latency_count"] == got.get(f"{LATENCY}_count", 0.0)
        assert got["awscni_assigned_ip_addresses"] <= got["awscni_ip_max"]
        for fam in GAUGES:
            expected_sums[fam] = expected_sums.get(fam, 0.0) + got.get(fam, 0.0)
    for fam in GAUGES:
        assert truth["sums"]["gauges"].get(fam, 0.0) == expected_sums[fam]
    assert {p["shape"] for p in truth["pods"]} == {"modern", "old"}


def test_each_scrape_moves_values_counters_only_grow(fake_eks_factory: Callable[..., RunningFakeEks]) -> None:
    # given a pod scraped once
    eks = fake_eks_factory({"clusters": [{"name": "c", "nodes": 1, **MIXED}]})
    name = next(iter(_served(eks, "c")))
    before = _sums(kube_get(eks, "c", metrics_path(name)).text)
    inc_before = _served(eks, "c")[name]["increments"]
    # when scraped again
    after = _sums(kube_get(eks, "c", metrics_path(name)).text)
    inc_after = _served(eks, "c")[name]["increments"]
    # then counters did not go down, at least one grew by exactly its increments
    grown = [f for f in COUNTERS if after.get(f, 0) > before.get(f, 0)]
    assert grown
    for fam in COUNTERS:
        assert after.get(fam, 0.0) - before.get(fam, 0.0) == inc_after.get(fam, 0.0) - inc_before.get(
            fam, 0.0
        )


def test_restart_resets_counters_and_increments_carry_on(
    fake_eks_factory: Callable[..., RunningFakeEks],
) -> None:
    # given pods scraped once, in a cluster where every advance restarts every aws-node
    eks = fake_eks_factory(
        {"churn": {"restart": 1.0, "leave": 0, "join": 0}, "clusters": [{"name": "c", "nodes": 4, **MIXED}]}
    )
    _scrape_all(eks, "c")
    before = _served(eks, "c")
    # when time advances and the pods are scraped again
    events = eks.advance("c")
    read = _scrape_all(eks, "c")
    after = _served(eks, "c")
    # then counters restarted from 0: what is served now equals the increments since the last serve
    assert sorted(events["restarted"]) == sorted(before)
    for name, pod in after.items():
        assert pod["restartCount"] == before[name]["restartCount"] + 1
        assert pod["uid"] == before[name]["uid"]
        for fam in COUNTERS:
            delta = pod["increments"].get(fam, 0.0) - before[name]["increments"].get(fam, 0.0)
            assert read[name].get(fam, 0.0) == delta, (name, fam)


def test_nodes_leave_and_join_with_new_uids(fake_eks_factory: Callable[..., RunningFakeEks]) -> None:
    # given a cluster where every node leaves and is replaced at the next advance
    eks = fake_eks_factory(
        {"churn": {"restart": 0, "leave": 1.0, "join": 1.0}, "clusters": [{"name": "c", "nodes": 3}]}
    )
    old = _served(eks, "c")
    # when time advances
    events = eks.advance("c")
    listed = kube_get(eks, "c", PODS, params={"labelSelector": "k8s-app=aws-node"}).json()["items"]
    new = _served(eks, "c")
    # then new pods with new UIDs, started now, with counters from zero, are listed
    assert sorted(events["left"]) == sorted(old)
    assert sorted(events["joined"]) == sorted(new)
    assert not {p["uid"] for p in old.values()} & {p["uid"] for p in new.values()}
    assert sorted(p["metadata"]["name"] for p in listed) == sorted(new)
    assert all(p["status"]["startTime"] >= max(o["startTime"] for o in old.values()) for p in listed)
    name = next(iter(new))
    got = _sums(kube_get(eks, "c", metrics_path(name)).text)
    assert got["awscni_add_ip_req_count"] == _served(eks, "c")[name]["increments"]["awscni_add_ip_req_count"]


def test_old_shape_has_gauge_typed_counters_and_quantiles(
    fake_eks_factory: Callable[..., RunningFakeEks],
) -> None:
    # given an old-shape node and a modern one
    eks = fake_eks_factory(
        {
            "clusters": [
                {"name": "old", "nodes": 1, "cni_shapes": {"old": 1}},
                {"name": "new", "nodes": 1, "cni_shapes": {"modern": 1}},
            ]
        }
    )
    texts = {c: kube_get(eks, c, metrics_path(next(iter(_served(eks, c))))).text for c in ("old", "new")}
    # when / then
    assert "# TYPE awscni_add_ip_req_count gauge" in texts["old"]
    assert 'quantile="0.99"' in texts["old"]
    assert "# TYPE awscni_add_ip_req_count counter" in texts["new"]
    assert f'{LATENCY}{{api="GetMetadata"' not in texts["new"].replace("_sum{", "").replace("_count{", "")
    assert "awscni_build_info" in texts["new"]
    assert "_bucket{" in texts["new"]
    assert 10_000 <= len(texts["new"].encode()) <= 40_000
