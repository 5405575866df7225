"""Collection results without a network: health metrics, pod reading, the collect command's report."""

from __future__ import annotations

from datetime import UTC, datetime

from cni_metrics.adapters.kube import pod_from_json
from cni_metrics.cli.collect import _cluster_table, report
from cni_metrics.collector.cluster import ClusterCollection, CollectionHealth, NodeError
from cni_metrics.core.catalogue import unit_of
from cni_metrics.core.model import NodeInput, NodeMetrics

POD = {
    "metadata": {"name": "aws-node-abcde", "uid": "uid-1"},
    "spec": {"nodeName": "ip-10-0-0-1.ec2.internal"},
    "status": {
        "phase": "Running", "podIP": "10.0.0.1", "startTime": "2026-11-28T06:00:00Z",
        "containerStatuses": [
            {"name": "aws-vpc-cni-init", "restartCount": 9},
            {"name": "aws-node", "restartCount": 2},
        ],
    },
}


def test_health_metrics_have_catalogue_names_and_units() -> None:
    # given a collection's health
    health = CollectionHealth(10, 7, 2, 1, {"timeout": 2}, 1234.5, 4096)
    # when it becomes metrics
    metrics = health.to_metrics()
    # then every name is in the catalogue with the same unit, and the numbers add up
    assert {m.name: m.value for m in metrics} == {
        "nodesTotal": 10, "nodesScraped": 7, "nodesFailed": 2, "nodesSkipped": 1,
        "scrapeDurationMs": 1234.5, "bytesScraped": 4096, "collectionFailed": 0,
    }
    assert all(m.unit == unit_of(m.name) for m in metrics)
    assert health.as_dict()["nodesFailedByReason"] == {"timeout": 2}
    # and a cluster that could not be collected says so
    assert CollectionHealth(failed=True).as_dict()["collectionFailed"] == 1


def test_pod_reading_takes_the_aws_node_container_and_start_time() -> None:
    pod = pod_from_json(POD)
    assert (pod.uid, pod.name, pod.node_name, pod.pod_ip) == (
        "uid-1", "aws-node-abcde", "ip-10-0-0-1.ec2.internal", "10.0.0.1"
    )
    assert pod.restart_count == 2
    assert pod.started_at == datetime(2026, 11, 28, 6, tzinfo=UTC)
    assert pod.scrapable


def test_pending_pod_without_ip_is_not_scrapable() -> None:
    pod = pod_from_json({"metadata": {"name": "aws-node-x", "uid": "u"}, "status": {"phase": "Pending"}})
    assert not pod.scrapable
    assert pod.started_at is None
    assert pod.restart_count is None


def test_report_shows_aggregate_health_and_failed_nodes() -> None:
    # given a collection with one parsed node and one failure
    metrics = NodeMetrics(
        gauges={"awscni_assigned_ip_addresses": 5.0, "awscni_ip_max": 10.0, "awscni_total_ip_addresses": 8.0},
        counters={},
    )
    collection = ClusterCollection(
        "prod", "ok", None, [NodeInput("uid-1", "aws-node-a", metrics)], {"uid-2"},
        CollectionHealth(2, 1, 1, 0, {"timeout": 1}, 50.0, 100), [NodeError("aws-node-b", "timeout", "slow")],
        datetime(2026, 11, 28, tzinfo=UTC),
    )
    # when it is reported
    doc = report(collection)
    table = _cluster_table(doc)
    # then the gauges, the health and the failure are there
    assert doc["metrics"]["assignIPAddresses"] == 5
    assert doc["metrics"]["warmIPAddresses"] == 3
    assert doc["health"]["nodesFailedByReason"] == {"timeout": 1}
    assert "cluster prod: ok" in table
    assert "failed 1 (timeout 1)" in table
    assert "aws-node-b: timeout: slow" in table
