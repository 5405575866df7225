"""Cluster aggregation: per-pod counter increases, gauges, derived numbers, new state."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from cni_metrics.core.aggregate import aggregate
from cni_metrics.core.model import Aggregate, ClusterState, NodeInput, NodeMetrics, PodState
from core_payloads import node

ADD = "awscni_add_ip_req_count"
DEL = "awscni_del_ip_req_count"
ERR = "awscni_aws_api_error_count"
T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=1)
T2 = T0 + timedelta(minutes=2)


def metrics_of(result: Aggregate) -> dict[str, float]:
    return {m.name: m.value for m in result.metrics}


def run(*rounds: list[NodeInput]) -> Aggregate:
    """Aggregate successive collections one minute apart, each against the previous state."""
    state: ClusterState | None = None
    result: Aggregate | None = None
    for i, nodes in enumerate(rounds):
        result = aggregate(nodes, state, now=T0 + timedelta(minutes=i))
        state = result.state
    assert result is not None
    return result


def test_upstream_bug_case_static_nodes_publish_zero() -> None:
    # given two nodes whose counter stays at 10 and 20 (upstream publishes 20 every poll)
    nodes = [node("a", {ADD: 10}), node("b", {ADD: 20})]
    # when collected twice
    result = run(nodes, nodes)
    # then the increase is 0, and the cumulative total 30
    assert metrics_of(result)["addReqCount"] == 0
    assert result.counter_totals["addReqCount"] == 30


def test_upstream_bug_case_plus_three_and_plus_five_publish_eight() -> None:
    result = run(
        [node("a", {ADD: 10}), node("b", {ADD: 20})],
        [node("a", {ADD: 13}), node("b", {ADD: 25})],
    )
    assert metrics_of(result)["addReqCount"] == 8


def test_first_run_publishes_gauges_only_and_records_baselines() -> None:
    # given no previous state
    result = aggregate([node("a", {ADD: 10}, {"awscni_ip_max": 15})], None, now=T0)
    # then no counter increase is published, the gauges are, and the state holds the baseline
    assert metrics_of(result) == {"maxIPAddresses": 15}
    assert result.state.collected_at == T0
    assert result.state.pods["a"].counters == {ADD: 10}
    assert result.nodes == 1


def test_counter_below_previous_is_a_reset_and_counts_current() -> None:
    result = run([node("a", {ADD: 50}), node("b", {ADD: 5})], [node("a", {ADD: 4}), node("b", {ADD: 7})])
    assert metrics_of(result)["addReqCount"] == 4 + 2


def test_restart_count_growth_is_a_reset_even_when_counter_is_higher() -> None:
    # given aws-node restarted (restart count 0 -> 1) and counted past its old value since
    result = run(
        [node("a", {ADD: 10}, restart_count=0)],
        [node("a", {ADD: 12}, restart_count=1)],
    )
    # then the whole current value is the increase
    assert metrics_of(result)["addReqCount"] == 12


def test_new_pod_started_after_previous_collection_counts_current() -> None:
    result = run(
        [node("a", {ADD: 10})],
        [node("a", {ADD: 10}), node("b", {ADD: 6}, started_at=T0 + timedelta(seconds=30))],
    )
    assert metrics_of(result)["addReqCount"] == 6


@pytest.mark.parametrize("started_at", [None, T0 - timedelta(hours=1), T0])
def test_new_pod_not_started_after_previous_collection_is_baseline_only(started_at: datetime | None) -> None:
    # given a pod seen for the first time that was already running (or whose start is unknown)
    result = run([node("a", {ADD: 10})], [node("a", {ADD: 11}), node("b", {ADD: 600}, started_at=started_at)])
    # then it contributes 0 now, and its value is the baseline for next time
    assert metrics_of(result)["addReqCount"] == 1
    assert result.state.pods["b"].counters == {ADD: 600}


def test_naive_datetimes_are_taken_as_utc() -> None:
    naive_start = (T0 + timedelta(seconds=1)).replace(tzinfo=None)
    result = run([node("a", {ADD: 1})], [node("a", {ADD: 1}), node("b", {ADD: 3}, started_at=naive_start)])
    assert metrics_of(result)["addReqCount"] == 3


def test_vanished_node_is_dropped_from_state_and_does_not_count() -> None:
    # given node b disappears (scaled in); the cluster total falls from 30 to 12
    result = run([node("a", {ADD: 10}), node("b", {ADD: 20})], [node("a", {ADD: 12})])
    # then the increase is a's +2 (upstream would see a cluster-wide reset and publish 12)
    assert metrics_of(result)["addReqCount"] == 2
    assert set(result.state.pods) == {"a"}


def test_failed_pod_keeps_its_baseline_for_next_time() -> None:
    # given b fails to scrape in round 2 (its previous baseline is kept), then comes back in round 3;
    # "gone" failed too, listed long before and unknown to the state
    first = aggregate([node("a", {ADD: 10}), node("b", {ADD: 20})], None, now=T0)
    failed = {"b": T0 - timedelta(days=1), "gone": T0 - timedelta(days=1)}
    second = aggregate([node("a", {ADD: 11})], first.state, now=T1, failed=failed)
    third = aggregate([node("a", {ADD: 11}), node("b", {ADD: 27})], second.state, now=T2)
    # then round 2 publishes only a's increase, the state keeps b unchanged, round 3 publishes b's +7
    assert metrics_of(second)["addReqCount"] == 1
    assert second.state.pods["b"] == first.state.pods["b"]
    assert "gone" not in second.state.pods
    assert metrics_of(third)["addReqCount"] == 7


def test_failed_key_does_not_override_a_scraped_pod() -> None:
    first = aggregate([node("a", {ADD: 10})], None, now=T0)
    second = aggregate([node("a", {ADD: 15})], first.state, now=T1, failed={"a": None})
    assert second.state.pods["a"].counters == {ADD: 15}


def test_labelled_family_appearing_after_first_increment_counts_from_zero() -> None:
    # given the error counter Vec is absent until the first error, then appears at 2
    result = run([node("a", {ADD: 1})], [node("a", {ADD: 1, ERR: 2})])
    # then its increase is 2, and families are published only once some node reports them
    assert metrics_of(result)["awsAPIErr"] == 2
    assert "ipamdErr" not in metrics_of(result)


def test_every_counter_is_published_under_its_upstream_name() -> None:
    names = {
        "awscni_add_ip_req_count": "addReqCount",
        "awscni_del_ip_req_count": "delReqCount",
        "awscni_aws_api_error_count": "awsAPIErr",
        "awscni_aws_utils_error_count": "awsUtilErr",
        "awscni_ipamd_error_count": "ipamdErr",
        "awscni_reconcile_count": "reconcileCount",
        "awscni_pod_eni_error_count": "podENIErr",
        "awscni_force_removed_enis": "forceRemoveENI",
        "awscni_force_removed_ips": "forceRemoveIPs",
        "awscni_ec2api_req_count": "ec2ApiReqCount",
        "awscni_ec2api_error_count": "ec2ApiErrCount",
        "awscni_no_available_ip_addresses": "noAvailableIPAddrs",
    }
    before = {family: float(i) for i, family in enumerate(names)}
    after = {family: float(3 * i + 1) for i, family in enumerate(names)}
    result = run([node("a", before)], [node("a", after)])
    published = metrics_of(result)
    for i, (family, metric) in enumerate(names.items()):
        assert published[metric] == (3 * i + 1) - i, family
        assert result.counter_totals[metric] == 3 * i + 1


def test_gauges_are_summed_over_nodes_under_upstream_names() -> None:
    gauges = {
        "awscni_assigned_ip_addresses": ("assignIPAddresses", 3, 4),
        "awscni_total_ip_addresses": ("totalIPAddresses", 10, 12),
        "awscni_ip_max": ("maxIPAddresses", 15, 30),
        "awscni_eni_allocated": ("eniAllocated", 1, 2),
        "awscni_eni_max": ("eniMaxAvailable", 3, 4),
        "awscni_total_ipv4_prefixes": ("totalIPv4Prefixes", 0, 2),
        "awscni_assigned_ip_per_cidr": ("totalAssignedIPv4sPerCidr", 3, 4),
        "awscni_ipamd_action_inprogress": ("ipamdActionInProgress", 1, 0),
    }
    a = node("a", gauges={f: v[1] for f, v in gauges.items()})
    b = node("b", gauges={f: v[2] for f, v in gauges.items()})
    published = metrics_of(aggregate([a, b], None, now=T0))
    for metric, x, y in gauges.values():
        assert published[metric] == x + y
    assert "assignedIPPerENI" not in published


def test_derived_gauges_warm_utilisation_and_exhaustion() -> None:
    # given three nodes: 9/10 assigned of 10 max, 2 of 20 (total 5), and an odd one (total < 0)
    a = node(
        "a", gauges={"awscni_assigned_ip_addresses": 9, "awscni_total_ip_addresses": 10, "awscni_ip_max": 10}
    )
    b = node(
        "b", gauges={"awscni_assigned_ip_addresses": 2, "awscni_total_ip_addresses": 5, "awscni_ip_max": 20}
    )
    odd = node("c", gauges={"awscni_assigned_ip_addresses": 4, "awscni_total_ip_addresses": -16})
    eni = node("d", gauges={"awscni_eni_allocated": 3, "awscni_eni_max": 4})
    # when aggregated with the default 90 % threshold
    published = metrics_of(aggregate([a, b, odd, eni], None, now=T0))
    # then warm = 1 + 3 + max(0, -20); utilisation over nodes with ip_max; a is at exactly 90 %
    assert published["warmIPAddresses"] == 4
    assert published["ipUtilization"] == pytest.approx((9 + 2) / (10 + 20) * 100)
    assert published["nodesNearIPExhaustion"] == 1
    assert published["eniUtilization"] == pytest.approx(75.0)
    assert published["assignIPAddresses"] == 15
    assert published["totalIPAddresses"] == -1


def test_exhaustion_threshold_is_configurable() -> None:
    nodes = [
        node(k, gauges={"awscni_assigned_ip_addresses": v, "awscni_ip_max": 10})
        for k, v in (("a", 5), ("b", 7), ("c", 10))
    ]
    assert (
        metrics_of(aggregate(nodes, None, now=T0, exhaustion_threshold_pct=70))["nodesNearIPExhaustion"] == 2
    )
    assert (
        metrics_of(aggregate(nodes, None, now=T0, exhaustion_threshold_pct=101))["nodesNearIPExhaustion"] == 0
    )


def test_no_ip_max_means_no_utilisation_numbers() -> None:
    published = metrics_of(aggregate([node("a", gauges={"awscni_assigned_ip_addresses": 3})], None, now=T0))
    assert published == {"assignIPAddresses": 3}


def test_latency_average_is_ratio_of_per_pod_deltas_with_resets() -> None:
    # given a: 100 ms over 10 calls then 400 ms over 20 (+300 / +10); b restarted: 50 ms over 2
    # calls now; c is new (started after T0): 90 ms over 3 calls
    result = run(
        [node("a", latency=(100, 10)), node("b", latency=(1000, 40), restart_count=0)],
        [
            node("a", latency=(400, 20)),
            node("b", latency=(50, 2), restart_count=1),
            node("c", latency=(90, 3), started_at=T0 + timedelta(seconds=5)),
        ],
    )
    # then the average is Σ Δsum / Σ Δcount
    latency = next(m for m in result.metrics if m.name == "awsAPILatencyAvg")
    assert latency.value == pytest.approx((300 + 50 + 90) / (10 + 2 + 3))
    assert latency.unit == "Milliseconds"


def test_latency_average_omitted_without_new_calls_and_p99_only_when_present() -> None:
    # given no new API calls and no quantile lines
    result = run([node("a", latency=(100, 10))], [node("a", latency=(100, 10))])
    # then neither latency metric is published (never a made-up 0)
    assert "awsAPILatencyAvg" not in metrics_of(result)
    assert "awsAPILatency" not in metrics_of(result)
    # given quantiles on two nodes, the max p99 is published even on a first run
    with_p99 = aggregate([node("a", p99=3.0), node("b", p99=8.5), node("c")], None, now=T0)
    assert metrics_of(with_p99)["awsAPILatency"] == 8.5


def test_duplicate_keys_first_one_wins() -> None:
    result = aggregate([node("a", {ADD: 1}), node("a", {ADD: 100})], None, now=T0)
    assert result.nodes == 1
    assert result.counter_totals == {"addReqCount": 1}


def test_no_nodes_publishes_nothing_but_carries_over() -> None:
    previous = ClusterState(T0, {"a": PodState("a", None, 0, {ADD: 3})})
    result = aggregate([], previous, now=T1, failed={"a": None})
    assert result.metrics == []
    assert result.state.pods == previous.pods
    assert result.nodes == 0


def test_outputs_are_always_finite() -> None:
    # given values that overflow when summed across nodes
    huge = {"awscni_ip_max": 1.7e308, "awscni_assigned_ip_addresses": 1.0}
    result = aggregate([node("a", {ADD: 1.7e308}, huge), node("b", {ADD: 1.7e308}, huge)], None, now=T0)
    assert all(math.isfinite(m.value) for m in result.metrics)
    assert all(math.isfinite(v) for v in result.counter_totals.values())
    assert "maxIPAddresses" not in metrics_of(result)


def test_sums_beyond_the_cloudwatch_range_are_left_out_with_a_reason() -> None:
    # given two nodes at the edge of CloudWatch's range (2^360 each): every sum over them is beyond it
    limit = 2.0**360
    nodes = [node(k, {ADD: limit}, {"awscni_ip_max": limit, "awscni_eni_max": 4.0}) for k in ("a", "b")]
    first = aggregate(nodes, None, now=T0)
    # and the same nodes after baselines of -2^360 each: every counter increase is 2^361
    previous = ClusterState(T0, {k: PodState(k, None, None, {ADD: -limit}) for k in ("a", "b")})
    second = aggregate(nodes, previous, now=T1)
    # then the sums are not published nor totalled, each named as left out; the rest is published
    assert metrics_of(first) == {"eniMaxAvailable": 8.0}
    assert first.dropped == (f"maxIPAddresses: {2 * limit!r} is not a number within ±2^360",)
    assert first.counter_totals == {}
    assert "addReqCount" not in metrics_of(second)
    assert f"addReqCount: {4 * limit!r} is not a number within ±2^360" in second.dropped
    # and the baselines keep each node's own value, within range
    assert second.state.pods["a"].counters == {ADD: limit}


def test_values_at_the_limit_are_published() -> None:
    # given a node serving exactly 2^360, when aggregated, then it is published and totalled
    limit = 2.0**360
    result = aggregate([node("a", {ADD: limit}, {"awscni_ip_max": limit})], None, now=T0)
    assert metrics_of(result) == {"maxIPAddresses": limit}
    assert result.counter_totals == {"addReqCount": limit}
    assert result.dropped == ()


def test_derived_gauges_at_their_edges() -> None:
    # given a node with an instance maximum of 1 and nothing assigned, one with a maximum of 0 (left out
    # of utilisation), a node with 1 ENI of at most 1 unused, and one whose ENI maximum is 0 (left out)
    nodes = [
        node("a", gauges={"awscni_assigned_ip_addresses": 0, "awscni_ip_max": 1}),
        node("b", gauges={"awscni_assigned_ip_addresses": 5, "awscni_ip_max": 0}),
        node("c", gauges={"awscni_eni_allocated": 0, "awscni_eni_max": 1}),
        node("d", gauges={"awscni_eni_allocated": 3, "awscni_eni_max": 0}),
    ]
    # when aggregated
    published = metrics_of(aggregate(nodes, None, now=T0))
    # then utilisation is 0 % over a (0 of 1) and c (0 of 1), and no node is near exhaustion
    assert published["ipUtilization"] == 0.0
    assert published["nodesNearIPExhaustion"] == 0
    assert published["eniUtilization"] == 0.0


def test_latency_average_counts_only_new_calls_of_pods_with_both_sum_and_count() -> None:
    # given a: 100 ms over 10 calls, then 130 over 11 (one new call of 30 ms); b serves no latency; c is
    # seen for the first time but was running before (a baseline only); d serves a sum without a count
    first = aggregate(
        [node("a", latency=(100, 10)), node("b", {ADD: 1}), node("d", latency=(10, 1))], None, now=T0
    )
    d = NodeInput("d", "d", NodeMetrics({}, {}, latency_sum=20.0, latency_count=None))
    second = aggregate(
        [node("a", latency=(130, 11)), node("b", {ADD: 2}), node("c", latency=(5000, 500), started_at=T0), d],
        first.state,
        now=T1,
    )
    # then the average is a's one new call: 30 ms
    assert metrics_of(second)["awsAPILatencyAvg"] == 30.0


@pytest.mark.parametrize(
    ("before", "after", "average"),
    [
        ((100.0, 10.0), (150.0, 5.0), 150 / 5),  # fewer calls: a reset, though the sum grew
        ((100.0, 10.0), (40.0, 12.0), 40 / 12),  # a smaller sum: a reset, though the calls grew
    ],
)
def test_latency_reset_seen_by_either_sum_or_count_counts_both_current_values(
    before: tuple[float, float], after: tuple[float, float], average: float
) -> None:
    # given a pod whose restart count is unknown and whose latency summary went back once
    result = run([node("a", latency=before)], [node("a", latency=after)])
    # then both its current sum and count are the increase
    assert metrics_of(result)["awsAPILatencyAvg"] == pytest.approx(average)


def test_every_failed_pod_is_carried_whatever_the_order() -> None:
    # given a and b known, a scraped now and also reported failed (first in the mapping), b failed
    first = aggregate([node("a", {ADD: 1}), node("b", {ADD: 2})], None, now=T0)
    second = aggregate([node("a", {ADD: 3})], first.state, now=T1, failed={"a": None, "b": None})
    # then a's new baseline is its scrape and b keeps its old one
    assert second.state.pods["a"].counters == {ADD: 3}
    assert second.state.pods["b"] == first.state.pods["b"]
