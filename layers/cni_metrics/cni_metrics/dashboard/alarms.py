"""Per-cluster alarms: what should exist (pure) and keeping CloudWatch in step.

Alarm names are ``{set}/{cluster}/{kind}`` and every description carries ``alarm_marker(set)``. An alarm
is this set's only with both: the name prefix ``{set}/`` alone is anybody's to use, so reconciliation
never deletes (nor counts as its own) an alarm without the marker. Per cluster:

- ``ip-utilization``: Maximum ipUtilization > threshold for ``periods`` periods of 5 minutes; missing
  data keeps the current state.
- ``nodes-near-exhaustion``: Maximum nodesNearIPExhaustion > 0 in a period; missing data is fine.
- ``no-available-ips``: Sum of noAvailableIPAddrs > 0 in a period (pods failed to get an IP).
- ``nodes-failed``: Maximum nodesFailed > 0 for ``periods`` periods (partial collection).
- ``collector-silent``: SampleCount of nodesScraped < 1 for ``periods`` periods with missing data
  treated as breaching: the collector stopped publishing for that cluster (or cannot reach it).
- ``hours-to-exhaustion``: Minimum hoursToIPExhaustion < ``exhaustion_hours`` (24) in a period: at the
  current trend pods run out of IPs within a day; missing data (flat or falling trend) is fine.

An alarm on a metric the deployment does not publish (``AlarmOptions.metrics``) is not made: with
METRIC_SET=compat only ``METRICS_INCLUDE`` brings the health alarms back (nodesFailed, nodesScraped).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cni_metrics.core.catalogue import DIMENSION
from cni_metrics.core.metric_sets import FULL
from cni_metrics.dashboard.body import EXHAUSTION_HOURS, MANAGED_BY

ALARM_PERIOD = 300


@dataclass(frozen=True, slots=True)
class AlarmOptions:
    """How the alarms of one dashboard set are shaped."""

    name: str = "cni-metrics"
    namespace: str = "Kubernetes"
    topic_arn: str = ""
    utilization_pct: float = 80.0
    periods: int = 3
    exhaustion_hours: float = EXHAUSTION_HOURS
    metrics: frozenset[str] = FULL
    """The metric names the collector publishes; alarms on the others are not made."""


def alarm_prefix(name: str) -> str:
    """Every alarm of the set ``name`` starts with this."""
    return f"{name}/"


def alarm_marker(name: str) -> str:
    """Text the description of every alarm of the set ``name`` carries (its managed marker)."""
    return f"{MANAGED_BY} (set {name})."


def desired_alarms(clusters: Iterable[str], options: AlarmOptions) -> dict[str, dict[str, Any]]:
    """PutMetricAlarm arguments by alarm name, for every cluster (sorted, de-duplicated)."""
    alarms: dict[str, dict[str, Any]] = {}
    for cluster in sorted(set(clusters)):
        specs = [
            ("ip-utilization", "ipUtilization", "Maximum", "GreaterThanThreshold", options.utilization_pct,
             options.periods, "ignore", f"IP utilisation above {options.utilization_pct:g}%"),
            ("nodes-near-exhaustion", "nodesNearIPExhaustion", "Maximum", "GreaterThanThreshold", 0.0, 1,
             "notBreaching", "nodes near IP exhaustion"),
            ("no-available-ips", "noAvailableIPAddrs", "Sum", "GreaterThanThreshold", 0.0, 1,
             "notBreaching", "pods failed to get an IP address"),
            ("nodes-failed", "nodesFailed", "Maximum", "GreaterThanThreshold", 0.0, options.periods,
             "notBreaching", "the collector failed to scrape some nodes"),
            ("collector-silent", "nodesScraped", "SampleCount", "LessThanThreshold", 1.0, options.periods,
             "breaching", "the collector published nothing"),
            ("hours-to-exhaustion", "hoursToIPExhaustion", "Minimum", "LessThanThreshold",
             options.exhaustion_hours, 1, "notBreaching",
             f"IPs run out within {options.exhaustion_hours:g} h at the current trend"),
        ]
        for kind, metric, stat, operator, threshold, periods, missing, what in specs:
            if metric not in options.metrics:
                continue
            name = f"{alarm_prefix(options.name)}{cluster}/{kind}"
            actions = [options.topic_arn] if options.topic_arn else []
            alarms[name] = {
                "AlarmName": name,
                "AlarmDescription": f"{cluster}: {what}. {alarm_marker(options.name)}",
                "Namespace": options.namespace,
                "MetricName": metric,
                "Dimensions": [{"Name": DIMENSION, "Value": cluster}],
                "Statistic": stat,
                "Period": ALARM_PERIOD,
                "EvaluationPeriods": periods,
                "DatapointsToAlarm": periods,
                "Threshold": threshold,
                "ComparisonOperator": operator,
                "TreatMissingData": missing,
                "ActionsEnabled": bool(actions),
                "AlarmActions": actions,
                "OKActions": actions,
            }
    return alarms


def differs(wanted: Mapping[str, Any], current: Mapping[str, Any]) -> bool:
    """True when the DescribeAlarms entry ``current`` does not match PutMetricAlarm args ``wanted``."""
    for key, value in wanted.items():
        have = current.get(key)
        if key == "Dimensions":
            have = sorted(({"Name": d["Name"], "Value": d["Value"]} for d in have or []),
                          key=lambda d: d["Name"])
        elif key in {"AlarmActions", "OKActions"}:
            have = list(have or [])
        elif key == "Threshold" and have is not None:
            have = float(have)
        if have != value:
            return True
    return False


@dataclass(slots=True)
class AlarmChanges:
    """What one reconciliation did to the alarms."""

    put: list[str]
    unchanged: list[str]
    deleted: list[str]
    pending: list[str]


def reconcile_alarms(cloudwatch: Any, name: str, wanted: Mapping[str, dict[str, Any]],
                     out_of_time: Callable[[], bool] = lambda: False) -> AlarmChanges:
    """Make the set's alarms equal to ``wanted``: put what differs, delete what is no longer wanted.

    Only alarms carrying the set's marker are its own: others under the same prefix are never deleted
    (one bearing a name the set wants is put over, as the set's).
    PutMetricAlarm is throttled at a few calls per second, so a first run over a large fleet can take
    minutes: once ``out_of_time()`` the remaining puts are left ``pending`` for the next run (stale
    alarms are deleted first, in batches of 100).
    """
    current: dict[str, Mapping[str, Any]] = {}
    for page in cloudwatch.get_paginator("describe_alarms").paginate(
        AlarmNamePrefix=alarm_prefix(name), AlarmTypes=["MetricAlarm"]
    ):
        for alarm in page.get("MetricAlarms", []):
            if alarm_marker(name) in (alarm.get("AlarmDescription") or ""):
                current[alarm["AlarmName"]] = alarm
    changes = AlarmChanges(put=[], unchanged=[], deleted=sorted(set(current) - set(wanted)), pending=[])
    for batch in _batches(changes.deleted, 100):
        cloudwatch.delete_alarms(AlarmNames=batch)
    for alarm_name in sorted(wanted):
        if alarm_name in current and not differs(wanted[alarm_name], current[alarm_name]):
            changes.unchanged.append(alarm_name)
        elif changes.pending or out_of_time():
            changes.pending.append(alarm_name)
        else:
            cloudwatch.put_metric_alarm(**wanted[alarm_name])
            changes.put.append(alarm_name)
    return changes


def _batches(items: Sequence[str], size: int) -> list[list[str]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]
