"""Dispatch planning: inline below the threshold, otherwise one invocation per cluster or per small group,
packed first-fit (largest first) within the group limits; the event names clusters only."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from cni_metrics.fleet.dispatch import (
    AUTO_INLINE_MAX_CLUSTERS,
    GROUP_MAX_CLUSTERS,
    GROUP_MAX_NODES,
    MAX_EVENT_CLUSTERS,
    SMALL_CLUSTER_NODES,
    Group,
    Plan,
    dispatch_event,
    plan_dispatch,
)
from hypothesis import given, settings
from hypothesis import strategies as st


def test_auto_is_inline_up_to_one_round_of_the_collectors_concurrency() -> None:
    # given fleets of 4 and of 5 clusters of known size
    four = [f"c{i}" for i in range(AUTO_INLINE_MAX_CLUSTERS)]
    five = [*four, "c4"]
    nodes = dict.fromkeys(five, 500)
    # when planned in auto mode
    small, large = plan_dispatch(four, nodes), plan_dispatch(five, nodes)
    # then 4 clusters are one inline invocation; 5 fan out, one each (500 nodes: not small)
    assert small == Plan("inline", (Group(tuple(four), 2000),))
    assert large.mode == "fanout"
    assert [group.clusters for group in large.groups] == [(name,) for name in five]


def test_inline_splits_only_beyond_what_one_event_may_name() -> None:
    # given 2,500 clusters forced inline, sizes unknown
    ids = [f"c{i:04d}" for i in range(2500)]
    # when planned
    plan = plan_dispatch(ids, {}, mode="inline")
    # then 1,000 clusters per event at most, in order, none lost
    assert [len(group.clusters) for group in plan.groups] == [MAX_EVENT_CLUSTERS, MAX_EVENT_CLUSTERS, 500]
    assert [c for group in plan.groups for c in group.clusters] == ids
    assert {group.nodes for group in plan.groups} == {None}


def test_small_clusters_share_invocations_large_and_unknown_go_alone() -> None:
    # given small clusters of 40, 30, 30, 20, 10, 10 and 5 nodes, one of 60 (not small) and a new one
    nodes: dict[str, int | None] = {"a": 40, "b": 30, "c": 30, "d": 20, "e": 10, "f": 10, "g": 5, "big": 60,
                                    "new": None}
    # when fanned out
    plan = plan_dispatch(list(nodes), nodes, mode="fanout")
    # then the large and the unknown are alone, the small packed largest first into groups of at most
    # 4 clusters and 100 nodes
    assert plan.groups == (
        Group(("big",), 60), Group(("new",), None),
        Group(("a", "b", "c"), 100), Group(("d", "e", "f", "g"), 45),
    )
    assert plan.clusters == len(nodes)


def test_duplicated_ids_are_planned_once() -> None:
    # when / then
    assert plan_dispatch(["a", "b", "a"], {}, mode="fanout").clusters == 2


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.text("abcdefgh", min_size=1, max_size=4),
        st.one_of(st.none(), st.integers(0, 3 * SMALL_CLUSTER_NODES)),
        min_size=5, max_size=80,
    ),
    st.integers(1, 6), st.integers(20, 200),
)
def test_fanout_packs_first_fit_within_the_limits(
    nodes: dict[str, int | None], max_clusters: int, max_nodes: int
) -> None:
    # given clusters of known and unknown sizes, and group limits
    # when fanned out
    plan = plan_dispatch(list(nodes), nodes, mode="fanout", group_max_clusters=max_clusters,
                         group_max_nodes=max_nodes)
    # then every cluster is in exactly one invocation
    planned = [cluster for group in plan.groups for cluster in group.clusters]
    assert sorted(planned) == sorted(nodes)
    for group in plan.groups:
        sizes = [nodes[c] for c in group.clusters]
        if len(group.clusters) == 1 and (sizes[0] is None or sizes[0] > SMALL_CLUSTER_NODES):
            assert group.nodes == sizes[0]  # a large or a new cluster: alone
            continue
        # a group of small clusters: within both limits, its node count their sum
        assert all(size is not None and size <= SMALL_CLUSTER_NODES for size in sizes)
        assert len(sizes) <= max_clusters
        assert group.nodes == sum(size or 0 for size in sizes) <= max(max_nodes, sizes[0] or 0)
    # and first fit: the largest cluster of a later group of small clusters fits in no earlier one
    packed = [g for g in plan.groups if all(n is not None and n <= SMALL_CLUSTER_NODES
                                             for n in (nodes[c] for c in g.clusters))]
    for i, earlier in enumerate(packed):
        for later in packed[i + 1:]:
            first = nodes[later.clusters[0]] or 0
            assert len(earlier.clusters) >= max_clusters or (earlier.nodes or 0) + first > max_nodes


def test_defaults_keep_a_group_within_one_round_of_the_collector() -> None:
    # given / then: a group's clusters are all collected at once by the collector's default concurrency
    assert GROUP_MAX_CLUSTERS == AUTO_INLINE_MAX_CLUSTERS == 4
    assert SMALL_CLUSTER_NODES <= GROUP_MAX_NODES


def test_the_event_names_clusters_only_with_the_dispatch_time_and_period() -> None:
    # given a group and the dispatch time
    at = datetime(2026, 12, 4, 12, 0, 0, 250000, tzinfo=UTC)
    # when its event is made
    event = dispatch_event(Group(("a", "prod-b"), 30), dispatched_at=at, period_seconds=60)
    # then it carries the ids, an ISO 8601 time that reads back the same, and the period; nothing else
    assert event == {"clusters": ["a", "prod-b"], "dispatched_at": "2026-12-04T12:00:00.250000+00:00",
                     "period_seconds": 60}
    assert datetime.fromisoformat(event["dispatched_at"]) == at


@pytest.mark.parametrize("mode", ["auto", "fanout", "inline"])
def test_an_empty_fleet_plans_no_invocation(mode: str) -> None:
    # when / then
    plan = plan_dispatch([], {}, mode=mode)  # type: ignore[arg-type]
    assert plan.clusters == 0
    assert plan.groups == ()
