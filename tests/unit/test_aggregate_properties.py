"""Property tests of aggregation: per-pod additivity (what upstream breaks), order, finiteness."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from cni_metrics.core.aggregate import aggregate
from cni_metrics.core.model import Aggregate, NodeInput
from core_payloads import node
from hypothesis import given, settings
from hypothesis import strategies as st

T0 = datetime(2026, 5, 1, tzinfo=UTC)
FAMILIES = ("awscni_add_ip_req_count", "awscni_del_ip_req_count", "awscni_no_available_ip_addresses")

# previous counters, current counters, seen in the previous collection, restarts since, started after
# the previous collection, current latency (sum, count)
PodSpec = tuple[dict[str, float], dict[str, float], bool, int, bool, tuple[float, float]]

counter_maps = st.dictionaries(st.sampled_from(FAMILIES), st.integers(0, 10**6).map(float))
pod: st.SearchStrategy[PodSpec] = st.tuples(
    counter_maps,
    counter_maps,
    st.booleans(),
    st.integers(0, 2),
    st.booleans(),
    st.tuples(st.integers(0, 10**5).map(float), st.integers(0, 1000).map(float)),
)
pods = st.lists(pod, max_size=12)


def _round(specs: list[PodSpec]) -> tuple[list[NodeInput], list[NodeInput]]:
    before: list[NodeInput] = []
    now: list[NodeInput] = []
    for i, (prev, cur, existed, restarts, fresh, latency) in enumerate(specs):
        key = f"pod-{i}"
        if existed:
            before.append(node(key, prev, restart_count=0, latency=(latency[0] / 2, latency[1] / 2)))
        started = T0 + timedelta(seconds=30) if fresh else T0 - timedelta(days=1)
        now.append(node(key, cur, restart_count=restarts, started_at=started, latency=latency))
    return before, now


def _run(before: list[NodeInput], now: list[NodeInput]) -> Aggregate:
    first = aggregate(before, None, now=T0)
    return aggregate(now, first.state, now=T0 + timedelta(minutes=1))


def _values(result: Aggregate) -> dict[str, float]:
    return {m.name: m.value for m in result.metrics}


@settings(max_examples=200, deadline=None)
@given(specs=pods)
def test_cluster_increase_is_the_sum_of_per_pod_increases(specs: list[PodSpec]) -> None:
    # given any mix of steady, reset, restarted, new and old pods
    before, now = _round(specs)
    # when aggregated together and one pod at a time
    together = _values(_run(before, now))
    alone = [_values(_run([b for b in before if b.key == n.key], [n])) for n in now]
    # then every counter increase of the cluster is the sum of the pods' own increases
    for name in ("addReqCount", "delReqCount", "noAvailableIPAddrs"):
        assert together.get(name, 0.0) == sum(a.get(name, 0.0) for a in alone)
        assert together.get(name, 0.0) >= 0


@settings(max_examples=100, deadline=None)
@given(specs=pods, data=st.data())
def test_result_does_not_depend_on_node_order_and_is_finite(
    specs: list[PodSpec], data: st.DataObject
) -> None:
    before, now = _round(specs)
    shuffled = data.draw(st.permutations(now))
    a, b = _values(_run(before, now)), _values(_run(before, list(shuffled)))
    assert a.keys() == b.keys()
    assert all(math.isclose(a[k], b[k], rel_tol=1e-12) for k in a)
    assert all(math.isfinite(v) for v in a.values())
