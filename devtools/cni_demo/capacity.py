"""The demo's capacity rows: subnet headroom beside moto's DescribeSubnets, per-zone sums beside the
stand-in's truth, and the time-to-exhaustion estimate (shown, not compared: it has no truth in the demo)."""

from __future__ import annotations

import os
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from fake_eks.scenario import SERVING_FAULTS

ZONE_GAUGES = {
    "awscni_assigned_ip_addresses": "zoneAssignIPAddresses",
    "awscni_total_ip_addresses": "zoneTotalIPAddresses",
    "awscni_ip_max": "zoneMaxIPAddresses",
}
Row = tuple[str, str, float | None, float]


def published_value(
    cloudwatch: Any, cluster: str, name: str, dimensions: dict[str, str], at: datetime
) -> float | None:
    """The datum of ``name`` with exactly these extra dimensions at collection time ``at``."""
    dims = [{"Name": "CLUSTER_ID", "Value": cluster}]
    dims += [{"Name": k, "Value": v} for k, v in dimensions.items()]
    points = cloudwatch.get_metric_statistics(
        Namespace=os.environ.get("METRICS_NAMESPACE", "Kubernetes"), MetricName=name, Dimensions=dims,
        StartTime=at, EndTime=at + timedelta(seconds=1), Period=1, Statistics=["Maximum"],
    )["Datapoints"]
    return float(max(p["Maximum"] for p in points)) if points else None


def capacity_rows(cloudwatch: Any, ec2: Any, truth: dict[str, Any], at: datetime) -> list[Row]:
    """Rows (metric, what, CloudWatch, truth) of the last cycle's capacity numbers of one cluster."""
    cluster, network = truth["cluster"], truth["network"]
    rows: list[Row] = []
    ids = [*network["subnetIds"], *network["eniconfigs"].values()]
    subnets = ec2.describe_subnets(SubnetIds=ids)["Subnets"] if ids else []
    for subnet in sorted(subnets, key=lambda s: (s["AvailabilityZone"], s["CidrBlock"])):
        dims = {"SubnetId": subnet["SubnetId"], "AvailabilityZone": subnet["AvailabilityZone"]}
        value = published_value(cloudwatch, cluster, "availableSubnetIPAddresses", dims, at)
        rows.append((f"free IPs {subnet['CidrBlock']}", subnet["AvailabilityZone"], value,
                     float(subnet["AvailableIpAddressCount"])))
    zones: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for pod in truth["pods"]:
        if pod["served"] is not None and (pod["fault"] is None or pod["fault"] in SERVING_FAULTS):
            for family in ZONE_GAUGES:
                zones[pod["zone"]][family] += pod["served"]["gauges"].get(family, 0.0)
    for zone, sums in sorted(zones.items()):
        for family, name in ZONE_GAUGES.items():
            value = published_value(cloudwatch, cluster, name, {"AvailabilityZone": zone}, at)
            rows.append((name, zone, value, sums[family]))
    return rows
