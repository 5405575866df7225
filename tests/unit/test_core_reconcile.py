"""What the loser of a claim race adds (``core.reconcile.after_lost_claim``), against hand-made timelines.

Each test describes one pod's true counter timeline (values, restarts, who scraped when) and derives by
hand what was lost between the winner's single step and the loser's observation.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cni_metrics.core.model import ClusterState, HistoryPoint, MetricValue, NodeInput, NodeMetrics, PodState
from cni_metrics.core.reconcile import after_lost_claim, observed_after

ADD, DEL = "awscni_add_ip_req_count", "awscni_del_ip_req_count"
T0 = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
T1, T2 = T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)
HISTORY = [HistoryPoint(T0, 7.0), HistoryPoint(T1, 8.0)]


def scrape(
    key: str,
    counters: dict[str, float],
    restarts: int | None = 0,
    *,
    gauges: dict[str, float] | None = None,
    latency: tuple[float | None, float | None] = (None, None),
    started_at: datetime | None = None,
) -> NodeInput:
    """What a run scraped of one pod."""
    return NodeInput(key, key, NodeMetrics(gauges or {}, counters, *latency), started_at, restarts)


def baseline(key: str, counters: dict[str, float], restarts: int | None = 0) -> PodState:
    return PodState(key, None, restarts, counters)


def state(at: datetime, *pods: PodState) -> ClusterState:
    return ClusterState(at, {pod.key: pod for pod in pods}, list(HISTORY))


def values(datums: list[MetricValue]) -> list[tuple[str, float]]:
    return sorted((d.name, d.value) for d in datums)


def test_pod_scraped_after_the_winner_adds_its_increase_beyond_the_winners_baseline() -> None:
    # given a at 10 stored; the winner scraped it at 15 (and published +5) and knows b; this run listed
    # later and scraped a at 18
    previous = state(T0, baseline("a", {ADD: 10}))
    winner = state(T1, baseline("a", {ADD: 15}), baseline("b", {ADD: 40}))
    # when this run loses the claim
    merged = after_lost_claim([scrape("a", {ADD: 18})], T2, previous, winner, same_base=True,
                              exhaustion_threshold_pct=90)  # fmt: skip
    # then it adds the 3 beyond the winner's baseline, which its own replaces; b stays the winner's
    assert merged is not None
    new_state, counters = merged
    assert values(counters) == [("addReqCount", 3.0)]
    assert new_state.pods["a"].counters == {ADD: 18}
    assert new_state.pods["b"] == winner.pods["b"]
    assert new_state.collected_at == T2
    assert new_state.history == HISTORY


def test_pod_scraped_before_the_winner_adds_nothing_without_a_reset() -> None:
    # given a at 10 stored; this run scraped 12 at T1, the winner 15 at T2 (published +5 = everything)
    previous = state(T0, baseline("a", {ADD: 10}))
    winner = state(T2, baseline("a", {ADD: 15}))
    # then there is nothing to add
    assert after_lost_claim([scrape("a", {ADD: 12})], T1, previous, winner, same_base=True,
                            exhaustion_threshold_pct=90) is None  # fmt: skip


def test_reset_between_this_runs_scrape_and_the_winners_is_added() -> None:
    # given a at 10 (ADD) and 5 (DEL) stored; this run scraped 14 and 5 at T1; aws-node then restarted and
    # counted 3 adds; the winner scraped 3 and 0 (restart count 1) at T2 and published +3, +0
    previous = state(T0, baseline("a", {ADD: 10, DEL: 5}))
    winner = state(T2, baseline("a", {ADD: 3, DEL: 0}, restarts=1))
    merged = after_lost_claim([scrape("a", {ADD: 14, DEL: 5})], T1, previous, winner, same_base=True,
                              exhaustion_threshold_pct=90)  # fmt: skip
    # then the 4 adds before the restart, which the winner's step could not see, are added; DEL missed
    # nothing and is not published; the state stays the winner's, which saw the pod last
    assert merged is not None
    new_state, counters = merged
    assert values(counters) == [("addReqCount", 4.0)]
    assert new_state.pods == winner.pods
    assert new_state.collected_at == T2
    assert new_state.history == HISTORY


def test_pod_the_winner_no_longer_lists_adds_what_this_run_saw_of_it() -> None:
    # given a at 10 stored; this run scraped 11 at T1; a was gone when the winner listed at T2
    previous = state(T0, baseline("a", {ADD: 10}))
    winner = state(T2)
    merged = after_lost_claim([scrape("a", {ADD: 11})], T1, previous, winner, same_base=True,
                              exhaustion_threshold_pct=90)  # fmt: skip
    # then its last 1 is added, and it stays out of the state
    assert merged is not None
    assert values(merged[1]) == [("addReqCount", 1.0)]
    assert merged[0].pods == {}


def test_family_that_appeared_after_this_runs_scrape_misses_nothing() -> None:
    # given a at 10 stored; this run scraped 12 at T1; then its first 2 API errors made the labelled
    # family appear; the winner scraped 15 and 2 errors at T2 (and published +5, +2)
    previous = state(T0, baseline("a", {ADD: 10}))
    winner = state(T2, baseline("a", {ADD: 15, "awscni_aws_api_error_count": 2}))
    # then the winner's step saw everything: nothing to add
    assert after_lost_claim([scrape("a", {ADD: 12})], T1, previous, winner, same_base=True,
                            exhaustion_threshold_pct=90) is None  # fmt: skip


def test_pod_unknown_to_the_winner_at_the_same_time_is_taken_as_gone() -> None:
    # given both runs listed at T1: a, at 10 stored and 13 here, is not in the winner's state
    previous = state(T0, baseline("a", {ADD: 10}))
    winner = state(T1)
    merged = after_lost_claim([scrape("a", {ADD: 13})], T1, previous, winner, same_base=True,
                              exhaustion_threshold_pct=90)  # fmt: skip
    # then the winner's listing was not earlier: a left, and its last 3 are added (not a new baseline)
    assert merged is not None
    assert values(merged[1]) == [("addReqCount", 3.0)]
    assert "a" not in merged[0].pods


def test_pods_new_since_the_winners_listing_follow_the_new_pod_rule() -> None:
    # given this run listed after the winner: c started after the winner's listing and counted 5; e ran
    # long before (skipped by the winner) and is at 100
    winner = state(T1)
    nodes = [scrape("c", {ADD: 5}, started_at=T1 + timedelta(seconds=10)), scrape("e", {ADD: 100})]
    merged = after_lost_claim(nodes, T2, state(T0), winner, same_base=True, exhaustion_threshold_pct=90)
    # then c's 5 are added and e only leaves its baseline
    assert merged is not None
    new_state, counters = merged
    assert values(counters) == [("addReqCount", 5.0)]
    assert new_state.pods["e"].counters == {ADD: 100}
    assert new_state.pods["c"].counters == {ADD: 5}


def test_restart_counts_decide_which_scrape_came_later() -> None:
    # given the winner saw a at 50 after one restart; this run saw it at 4 after a second one
    winner = state(T1, baseline("a", {ADD: 50}, restarts=1), baseline("b", {ADD: 60}, restarts=2))
    nodes = [scrape("a", {ADD: 4}, restarts=2), scrape("b", {ADD: 70}, restarts=1)]
    # when the runs did not start from the same state
    merged = after_lost_claim(nodes, T2, state(T0), winner, same_base=False, exhaustion_threshold_pct=90)
    # then a (restarted since the winner's scrape) adds its 4; b (one restart fewer: seen earlier) nothing
    assert merged is not None
    new_state, counters = merged
    assert values(counters) == [("addReqCount", 4.0)]
    assert new_state.pods["a"].counters == {ADD: 4}
    assert new_state.pods["b"] == winner.pods["b"]


def test_equal_counters_are_not_older_and_lower_ones_are() -> None:
    # given other bases: this run saw a exactly as the winner did, b lower than the winner did, and f
    # without the family whose first delete the winner saw (restart counts equal throughout)
    winner = state(T1, baseline("a", {ADD: 20}), baseline("b", {ADD: 30, DEL: 2}), baseline("f", {DEL: 1}))
    nodes = [scrape("a", {ADD: 20}), scrape("b", {ADD: 30, DEL: 1}), scrape("f", {})]
    merged = after_lost_claim(nodes, T2, state(T0), winner, same_base=False, exhaustion_threshold_pct=90)
    # then a counts as seen after (adding 0), b and f as seen before (adding nothing)
    assert merged is not None
    new_state, counters = merged
    assert values(counters) == [("addReqCount", 0.0)]
    assert new_state.pods["b"] == winner.pods["b"]
    assert new_state.pods["f"] == winner.pods["f"]


def test_only_counters_come_out_one_datum_per_name() -> None:
    # given a seen after the winner (+2, with gauges and API calls) and b lost to a reset before it
    # (+4 missed), with the same base
    previous = state(T0, baseline("a", {ADD: 10}), baseline("b", {ADD: 10}))
    winner = state(T1, baseline("a", {ADD: 12}), baseline("b", {ADD: 1}, restarts=1))
    nodes = [
        scrape("a", {ADD: 14}, gauges={"awscni_ip_max": 10.0}, latency=(100.0, 10.0)),
        scrape("b", {ADD: 14}),
    ]
    # when this run (listing later, but its scrape of b shows it before the restart) loses the claim
    merged = after_lost_claim(nodes, T2, previous, winner, same_base=True, exhaustion_threshold_pct=90)
    # then one addReqCount carries both (2 + 4); no gauge and no latency average: the winner's interval
    assert merged is not None
    assert values(merged[1]) == [("addReqCount", 6.0)]


def test_without_a_stored_state_nothing_is_corrected() -> None:
    # given no state before either run, and this run scraped a before the winner
    winner = state(T2, baseline("a", {ADD: 15}))
    # then there is no previous step to correct: nothing to add
    assert after_lost_claim([scrape("a", {ADD: 12})], T1, None, winner, same_base=True,
                            exhaustion_threshold_pct=90) is None  # fmt: skip


def test_counters_decide_when_a_restart_count_is_unknown() -> None:
    # given the winner's baseline of a without a restart count (at 5), this run's scrape with one (at 7)
    winner = state(T1, baseline("a", {ADD: 5}, restarts=None))
    merged = after_lost_claim([scrape("a", {ADD: 7}, restarts=1)], T2, state(T0), winner, same_base=False,
                              exhaustion_threshold_pct=90)  # fmt: skip
    # then higher counters mean seen later: +2
    assert merged is not None
    assert values(merged[1]) == [("addReqCount", 2.0)]


@pytest.mark.parametrize(
    ("restarts", "counter", "before_restarts", "before_counter", "after"),
    [
        (2, 1.0, 1, 9.0, True),  # restarted since: later whatever the counters
        (1, 9.0, 2, 1.0, False),  # one restart fewer: earlier whatever the counters
        (1, 9.0, 1, 9.0, True),  # same restarts, same counters: not earlier
        (1, 8.0, 1, 9.0, False),  # same restarts, a lower counter: earlier
        (None, 9.0, 1, 8.0, True),  # a restart count unknown: the counters decide
        (1, 8.0, None, 9.0, False),
    ],
)
def test_observed_after(
    restarts: int | None, counter: float, before_restarts: int | None, before_counter: float, after: bool
) -> None:
    # given this run's scrape and the winner's baseline of one pod, then which came later is as listed
    node = scrape("a", {ADD: counter}, restarts)
    assert observed_after(node, baseline("a", {ADD: before_counter}, before_restarts)) is after
    assert observed_after(node, None) is True
