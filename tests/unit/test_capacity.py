"""Capacity core: per-zone sums, subnet headroom, nearest nodes, the time-to-exhaustion estimate; and the
pieces that carry them (extra dimensions in both publishers and the outbox, the history in the state)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from cni_metrics.adapters.publishers import EmfPublisher, MetricBatch, PutMetricDataPublisher
from cni_metrics.adapters.state_store import OutboxEntry, StateDocument, decode_document, encode_document
from cni_metrics.capacity.core import (
    HISTORY_MAX_POINTS,
    MIN_TREND_POINTS,
    Subnet,
    capacity,
    hours_to_exhaustion,
    node_capacities,
    remaining_ips,
    top_nodes,
    updated_history,
)
from cni_metrics.core.model import ClusterState, HistoryPoint, MetricValue, NodeInput, NodeMetrics
from cni_metrics.core.state_codec import dump_state, load_state

T0 = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)


def node(
    name: str, zone: str | None, assigned: float, held: float, maximum: float, prefixes: float = 0
) -> NodeInput:
    gauges = {
        "awscni_assigned_ip_addresses": assigned,
        "awscni_total_ip_addresses": held,
        "awscni_ip_max": maximum,
        "awscni_total_ipv4_prefixes": prefixes,
    }
    return NodeInput(
        name, f"aws-node-{name}", NodeMetrics(gauges, {}), node_name=name, zone=zone, instance_type="m5.large"
    )


def history(values: Sequence[float], minutes: float = 1.0) -> list[HistoryPoint]:
    return [HistoryPoint(T0 + timedelta(minutes=i * minutes), v) for i, v in enumerate(values)]


def by_name(metrics: list[MetricValue]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(m.name, m.dimensions): m.value for m in metrics}


def test_zone_sums_and_subnet_headroom() -> None:
    # given nodes in two zones (one without a zone label) and two subnets
    nodes = [
        node("a1", "az-a", 27, 27, 27),
        node("a2", "az-a", 3, 10, 27),
        node("b1", "az-b", 10, 20, 40),
        node("x", None, 5, 5, 10),
    ]
    subnets = [Subnet("subnet-2", "az-b", 40), Subnet("subnet-1", "az-a", 250)]
    # when
    result = capacity(nodes, subnets, {"subnet-1", "subnet-2"}, [], now=T0, threshold_pct=90)
    metrics = by_name(result.metrics)
    # then per zone: sums over that zone's nodes; the unlabelled node is in no zone
    a = (("AvailabilityZone", "az-a"),)
    assert metrics[("zoneAssignIPAddresses", a)] == 30
    assert metrics[("zoneTotalIPAddresses", a)] == 37
    assert metrics[("zoneMaxIPAddresses", a)] == 54
    assert metrics[("zoneIPUtilization", a)] == pytest.approx(30 / 54 * 100)
    assert metrics[("zoneNodesNearIPExhaustion", a)] == 1
    assert metrics[("zoneNodesNearIPExhaustion", (("AvailabilityZone", "az-b"),))] == 0
    assert not any(("AvailabilityZone", "None") in m.dimensions for m in result.metrics)
    # and per subnet its headroom with its zone, the smallest per cluster; no /28 bound without prefixes
    assert (
        metrics[("availableSubnetIPAddresses", (("SubnetId", "subnet-2"), ("AvailabilityZone", "az-b")))]
        == 40
    )
    assert metrics[("minSubnetAvailableIPAddresses", ())] == 40
    assert not any(m.name == "availableSubnetPrefixesMax" for m in result.metrics)
    assert result.near == 1


def test_prefix_delegation_publishes_an_upper_bound_of_free_prefixes() -> None:
    # given a node in prefix-delegation mode and a subnet with 47 free addresses
    result = capacity(
        [node("p", "az-a", 20, 32, 432, prefixes=2)],
        [Subnet("s", "az-a", 47)],
        {"s"},
        [],
        now=T0,
        threshold_pct=90,
    )
    # then at most 2 /28 prefixes fit (47 // 16), fewer if the free addresses are not contiguous
    bound = by_name(result.metrics)[
        ("availableSubnetPrefixesMax", (("SubnetId", "s"), ("AvailabilityZone", "az-a")))
    ]
    assert bound == 2


def test_top_nodes_order_by_utilisation_then_fewest_free() -> None:
    # given
    caps = node_capacities(
        [
            node("c", "z", 9, 9, 10),
            node("a", "z", 27, 27, 30),
            node("b", "z", 90, 90, 100),
            node("d", "z", 1, 5, 10),
        ]
    )
    # when / then: a, b and c are all at 90%: fewest free first (c 1, a 3, b 10); K=3 leaves d (10%) out
    assert [n.node for n in top_nodes(caps, 3)] == ["c", "a", "b"]


def test_remaining_is_bounded_by_subnets_only_when_they_are_known() -> None:
    caps = node_capacities([node("a", "z", 10, 14, 56), node("b", "z", 20, 28, 56)])
    # node room 82; subnet room 30 free + 12 warm = 42
    assert remaining_ips(caps, None) == 82
    assert remaining_ips(caps, [Subnet("s", "z", 30)]) == 42
    assert remaining_ips([], None) is None


@pytest.mark.parametrize(
    ("values", "remaining", "expected"),
    [
        ([10, 16, 22, 28, 34], 120, 120 / 360),  # 6 IPs a minute = 360 an hour
        ([10, 10, 10, 10, 10], 120, None),  # flat: no estimate
        ([34, 28, 22, 16, 10], 120, None),  # falling: no estimate
        ([10, 16, 22, 28], 120, None),  # too short a history
        ([10, 16, 22, 28, 34], 0, 0.0),  # nothing left: exhausted now
        ([10, 16, 22, 28, 34], None, None),  # nothing known
    ],
)
def test_hours_to_exhaustion(values: list[float], remaining: float | None, expected: float | None) -> None:
    assert len(values) >= MIN_TREND_POINTS - 1
    result = hours_to_exhaustion(history(values), remaining)
    assert result == (pytest.approx(expected) if expected is not None else None)


def test_noisy_trend_uses_the_least_squares_slope() -> None:
    # given a trend of 6 IPs a minute with noise of +-2 around it
    values = [10 + 6 * i + (2 if i % 2 else -2) for i in range(10)]
    # when / then: the fitted slope stays close to 6 a minute (360 an hour): about 1 hour for 360 IPs
    hours = hours_to_exhaustion(history(values), 360.0)
    assert hours is not None
    assert hours == pytest.approx(1.0, rel=0.05)


def test_history_keeps_the_last_points_within_two_hours() -> None:
    old = history([float(i) for i in range(40)], minutes=5)  # 200 minutes
    now = HistoryPoint(T0 + timedelta(minutes=200), 99.0)
    kept = updated_history(old, now)
    assert kept[-1] == now
    assert len(kept) <= HISTORY_MAX_POINTS
    assert all(now.at - p.at <= timedelta(hours=2) for p in kept)


def test_state_round_trips_history_and_loads_documents_without_it() -> None:
    # given a state with history
    state = ClusterState(T0, {}, history([1.0, 2.5]))
    # when / then
    assert load_state(dump_state(state)).history == state.history
    legacy = json.dumps({"v": 1, "t": 0, "f": [], "p": {}}).encode()
    assert load_state(legacy).history == []


def test_outbox_round_trips_extra_dimensions() -> None:
    dims = (("SubnetId", "subnet-1"), ("AvailabilityZone", "az-a"))
    batch = MetricBatch(
        "b",
        T0,
        (
            MetricValue("availableSubnetIPAddresses", 5.0, "Count", dims),
            MetricValue("ipUtilization", 50.0, "Percent"),
        ),
    )
    document = decode_document(encode_document(StateDocument(None, [OutboxEntry(batch, None, None)])))
    assert document.outbox[0].batch == batch


class RecordingClient:
    def __init__(self) -> None:
        self.calls: list[dict[str, object]] = []

    def put_metric_data(self, **kwargs: object) -> None:
        self.calls.append(kwargs)


def test_both_publishers_send_extra_dimensions_after_cluster_id(capsys: pytest.CaptureFixture[str]) -> None:
    # given one cluster-level and one per-zone datum
    batch = MetricBatch(
        "b",
        T0,
        (
            MetricValue("ipUtilization", 50.0, "Percent"),
            MetricValue("zoneIPUtilization", 70.0, "Percent", (("AvailabilityZone", "az-a"),)),
        ),
    )
    # when published with PutMetricData
    client = RecordingClient()
    PutMetricDataPublisher(client, "Kubernetes").publish("prod", [batch])
    datums = client.calls[0]["MetricData"]
    assert isinstance(datums, list)
    assert [d["Dimensions"] for d in datums] == [
        [{"Name": "CLUSTER_ID", "Value": "prod"}],
        [{"Name": "CLUSTER_ID", "Value": "prod"}, {"Name": "AvailabilityZone", "Value": "az-a"}],
    ]
    # and with EMF: one document per dimension set
    capsys.readouterr()
    EmfPublisher("Kubernetes").publish("prod", [batch])
    docs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    dimension_sets = sorted(tuple(d["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0]) for d in docs)
    assert dimension_sets == [("CLUSTER_ID",), ("CLUSTER_ID", "AvailabilityZone")]
    zone_doc = next(d for d in docs if "AvailabilityZone" in d)
    assert (zone_doc["AvailabilityZone"], zone_doc["zoneIPUtilization"], zone_doc["CLUSTER_ID"]) == (
        "az-a",
        [70.0],
        "prod",
    )


def test_collect_cli_report_shows_capacity() -> None:
    # given a collection with two nodes, their subnets and one capacity source that failed
    from cni_metrics.capacity.sources import CapacitySources
    from cni_metrics.cli.collect import _cluster_table, report
    from cni_metrics.collector.cluster import ClusterCollection, CollectionHealth

    sources = CapacitySources(
        subnets=[Subnet("subnet-1", "az-a", 30, "10.0.0.0/24")],
        pod_subnet_ids=frozenset({"subnet-1"}),
        errors=["listing ENIConfigs: HTTP 403"],
    )
    nodes = [node("n1", "az-a", 9, 14, 10), node("n2", "az-a", 2, 14, 28)]
    collection = ClusterCollection("prod", "ok", None, nodes, set(), CollectionHealth(2, 2), [], T0, sources)
    # when it is reported
    doc = report(collection)
    table = _cluster_table(doc)
    # then: subnet headroom, zone utilisation, remaining (min(27, 30 + 17)) and the nearest node first
    cap = doc["capacity"]
    assert cap["subnets"] == [
        {"subnetId": "subnet-1", "zone": "az-a", "cidr": "10.0.0.0/24", "available": 30}
    ]
    assert cap["zoneIPUtilization"] == {"az-a": round(11 / 38 * 100, 1)}
    assert cap["remainingIPAddresses"] == 27
    assert [n["node"] for n in cap["nearest"]] == ["n1", "n2"]
    assert "subnet subnet-1 az-a 10.0.0.0/24: 30 free" in table
    assert "capacity incomplete: listing ENIConfigs: HTTP 403" in table


def test_overflowing_sums_are_left_out_with_a_reason_and_never_enter_the_history() -> None:
    # given two nodes serving finite gauges whose sums overflow (1e308 each), after a history of 5 points
    nodes = [node("a", "az-a", 1e308, 1e308, 1e308), node("b", "az-a", 1e308, 1e308, 1e308)]
    past = history([10, 11, 12, 13, 14])
    # when the capacity numbers are computed
    cap = capacity(nodes, [Subnet("subnet-1", "az-a", 30)], {"subnet-1"}, past, now=T0 + timedelta(minutes=5),
                   threshold_pct=90)
    # then every published value is a number within ±2^360, the overflowing ones are named as left out,
    # the history keeps its points without the overflowed sum, and the state holding it can be written
    limit = 2.0**360
    assert all(-limit <= m.value <= limit for m in cap.metrics)
    names = {m.name for m in cap.metrics}
    assert {"zoneAssignIPAddresses", "zoneTotalIPAddresses", "zoneMaxIPAddresses"} & names == set()
    assert {"availableSubnetIPAddresses", "minSubnetAvailableIPAddresses", "zoneNodesNearIPExhaustion"} <= (
        names
    )
    assert cap.history == past
    assert (cap.remaining, cap.hours) == (0.0, 0.0)  # each node: max - assigned = 0 left
    assert any(reason.startswith("history: assigned IPs summed to inf") for reason in cap.dropped)
    assert "zoneAssignIPAddresses AvailabilityZone=az-a: inf is not a number within ±2^360" in cap.dropped
    assert load_state(dump_state(ClusterState(T0, history=cap.history))).history == past


def test_a_trend_beyond_range_is_left_out() -> None:
    # given a history rising by 1e-7 IPs a minute and one node whose room is within range, so that the
    # hours to exhaustion (about 2^359 / 6e-6) are not
    past = history([0, 1e-7, 2e-7, 3e-7, 4e-7])
    nodes = [node("a", "az-a", 5e-7, 5e-7, 2.0**359)]
    cap = capacity(nodes, None, (), past, now=T0 + timedelta(minutes=5), threshold_pct=90)
    # then the hours are left out (remaining / a slope near 0) and the remaining IPs are published
    assert cap.hours is None
    assert by_name(cap.metrics)[("remainingIPAddresses", ())] == 2.0**359 - 5e-7
    assert [reason.split(":")[0] for reason in cap.dropped] == ["hoursToIPExhaustion"]


def test_cluster_serving_overflowing_gauges_keeps_publishing_health_and_its_state() -> None:
    # given a cluster whose two nodes serve finite 1e308 gauges, run by the whole job twice
    from cni_metrics.adapters.publishers import PublishResult
    from cni_metrics.adapters.state_store import InMemoryStateStore
    from cni_metrics.collector.cluster import ClusterCollection, CollectionHealth
    from cni_metrics.collector.job import Deps, run_collection
    from cni_metrics.collector.settings import ClusterSpec, load_settings

    nodes = [node("a", "az-a", 1e308, 1e308, 1e308), node("b", "az-a", 1e308, 1e308, 1e308)]
    published: list[MetricValue] = []

    def collect(spec: ClusterSpec, deadline: float) -> ClusterCollection:
        return ClusterCollection("prod", "ok", None, nodes, set(), CollectionHealth(2, 2), [], T0)

    class Publisher:
        def publish(self, cluster: str, batches: Sequence[MetricBatch]) -> PublishResult:
            published.extend(m for batch in batches for m in batch.metrics)
            return PublishResult(published=sum(len(batch.metrics) for batch in batches))

    store = InMemoryStateStore()
    settings = load_settings({"CLUSTER_NAMES": "prod", "STATE_BUCKET": "state-bucket"})
    deps = Deps(store=store, publisher=Publisher(), collect=collect, clock=lambda: T0, monotonic=lambda: 0.0)
    # when the job runs twice
    outcomes = [run_collection(settings, deps=deps, remaining_seconds=300).clusters[0] for _ in range(2)]
    # then both runs succeed and publish the health numbers, and the state is stored
    assert [(o.status, o.error) for o in outcomes] == [("ok", None), ("ok", None)]
    assert [m.value for m in published if m.name == "nodesScraped"] == [2.0, 2.0]
    stored = store.load("prod")
    assert stored is not None
    document = decode_document(stored.body)
    assert document.state is not None
    assert set(document.state.pods) == {"a", "b"}
