"""The dashboard's capacity row: hours to exhaustion, zones and subnets by SEARCH, nearest nodes (log)."""

from __future__ import annotations

from typing import Any

from cni_metrics.core.catalogue import CAPACITY_LOG_MESSAGE
from cni_metrics.dashboard.body import DashboardOptions, build_dashboards
from cni_metrics.dashboard.validate import check_body


def capacity_widgets(options: DashboardOptions) -> list[dict[str, Any]]:
    (page,) = build_dashboards(["prod"], options)
    assert check_body(page.body) == []
    return list(page.body["widgets"][-3:])


def test_capacity_row_with_a_log_group() -> None:
    # given the collector's log group
    hours, zones, nearest = capacity_widgets(DashboardOptions(collector_log_group="/aws/lambda/s-collector"))
    # then hours to exhaustion has the 24 h line, zones and subnets are found by SEARCH on the cluster
    props = hours["properties"]
    assert [line[1] for line in props["metrics"]] == ["hoursToIPExhaustion", "remainingIPAddresses"]
    assert props["annotations"]["horizontal"][0]["value"] == 24.0
    expressions = [line[0]["expression"] for line in zones["properties"]["metrics"]]
    assert expressions == [
        "SEARCH('{Kubernetes,CLUSTER_ID,AvailabilityZone} MetricName=\"zoneIPUtilization\" "
        "CLUSTER_ID=\"prod\"', 'Maximum', 60)",
        "SEARCH('{Kubernetes,CLUSTER_ID,AvailabilityZone,SubnetId} MetricName=\"availableSubnetIPAddresses\" "
        "CLUSTER_ID=\"prod\"', 'Minimum', 60)",
    ]
    # and the log table reads the collector's one record per cluster and run
    assert nearest["type"] == "log"
    query = nearest["properties"]["query"]
    assert query.startswith("SOURCE '/aws/lambda/s-collector' |")
    assert f"message = '{CAPACITY_LOG_MESSAGE}'" in query
    assert "cluster = 'prod'" in query


def test_without_a_log_group_the_table_is_a_hint() -> None:
    *_, nearest = capacity_widgets(DashboardOptions())
    assert nearest["type"] == "text"
    assert "COLLECTOR_LOG_GROUP" in nearest["properties"]["markdown"]
