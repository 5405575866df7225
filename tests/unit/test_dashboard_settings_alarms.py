"""Dashboard function settings (environment + custom-resource properties) and the desired alarms."""

from __future__ import annotations

import pytest
from cni_metrics.dashboard.alarms import AlarmOptions, alarm_marker, alarm_prefix, desired_alarms, differs
from cni_metrics.dashboard.settings import load_dashboard_settings
from cni_metrics.settings_fields import ConfigError

ENV = {"AWS_REGION": "eu-west-1", "CLUSTER_NAMES": "b,a", "DASHBOARD_NAME": "cni"}


def test_properties_override_the_environment() -> None:
    # given the environment and CloudFormation's string-valued properties
    properties = {"ServiceToken": "arn:x", "DashboardName": "other", "Clusters": "c, d",
                  "AlarmsEnabled": "true", "IpUtilizationAlarmPct": "70", "Namespace": "NS"}
    # when settings are loaded
    settings = load_dashboard_settings(ENV, properties)
    # then the properties win
    assert (settings.name, settings.cluster_names, settings.namespace) == ("other", ("c", "d"), "NS")
    assert settings.alarms_enabled is True
    assert settings.utilization_alarm_pct == 70.0
    assert settings.dashboard_options().warn_pct == 70.0
    assert settings.dashboard_options().critical_pct == 90.0


def test_defaults_and_clusters_json_names() -> None:
    settings = load_dashboard_settings({"AWS_REGION": "r", "CLUSTER_NAMES": "a",
                              "CLUSTERS_JSON": '[{"name": "z", "region": "x"}, {"name": "a"}]'})
    assert settings.name == "cni-metrics"
    assert settings.namespace == "Kubernetes"
    assert settings.cluster_names == ("a", "z")
    assert settings.alarms_enabled is False
    assert settings.discovery_tag is None


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"DASHBOARD_NAME": "bad/name"}, "DASHBOARD_NAME"),
        ({"CLUSTER_NAMES": "ok,-bad"}, "invalid cluster name"),
        ({"ALARMS_ENABLED": "maybe"}, "ALARMS_ENABLED"),
        ({"IP_UTILIZATION_ALARM_PCT": "abc"}, "not a number"),
        ({"IP_UTILIZATION_ALARM_PCT": "0"}, "0 < pct"),
        ({"CLUSTER_DISCOVERY_TAG": "novalue"}, "key=value"),
        ({"CLUSTERS_JSON": "{"}, "not JSON"),
        ({"CLUSTERS_JSON": '{"name": "a"}'}, "list of objects"),
        ({"AWS_REGION": ""}, "AWS_REGION"),
        ({"METRICS_NAMESPACE": "AWS/Lambda"}, "METRICS_NAMESPACE: must not start with 'AWS/'"),
    ],
)
def test_bad_settings_are_refused(env: dict[str, str], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        load_dashboard_settings({**ENV, **env})


def test_a_reserved_namespace_given_as_a_property_is_refused_too() -> None:
    # given the custom resource's Namespace property naming an AWS namespace
    with pytest.raises(ConfigError, match="METRICS_NAMESPACE: must not start with 'AWS/'"):
        load_dashboard_settings(ENV, {"Namespace": "AWS/EKS"})


def test_discovery_tag_is_parsed() -> None:
    settings = load_dashboard_settings({**ENV, "CLUSTER_DISCOVERY_TAG": "team = net"})
    assert settings.discovery_tag == ("team", "net")


def test_six_alarms_per_cluster_named_under_the_set_prefix() -> None:
    # given two clusters and a topic
    alarms = desired_alarms(["b", "a", "a"], AlarmOptions(name="cni", topic_arn="arn:topic", periods=3))
    # then each cluster has six alarms, all under "cni/", all notifying the topic
    assert sorted(alarms) == sorted(f"cni/{c}/{k}" for c in "ab" for k in (
        "ip-utilization", "nodes-near-exhaustion", "no-available-ips", "nodes-failed", "collector-silent",
        "hours-to-exhaustion"))
    assert all(name.startswith(alarm_prefix("cni")) for name in alarms)
    assert all(a["AlarmActions"] == ["arn:topic"] == a["OKActions"] for a in alarms.values())
    # and silence of the collector counts as breaching, while utilisation keeps its state
    assert alarms["cni/a/collector-silent"]["TreatMissingData"] == "breaching"
    assert alarms["cni/a/ip-utilization"]["TreatMissingData"] == "ignore"
    assert alarms["cni/a/ip-utilization"]["EvaluationPeriods"] == 3
    # and running out within 24 h at the current trend alarms; no estimate (flat trend) does not
    exhaustion = alarms["cni/a/hours-to-exhaustion"]
    assert (exhaustion["MetricName"], exhaustion["ComparisonOperator"], exhaustion["Threshold"]) == (
        "hoursToIPExhaustion", "LessThanThreshold", 24.0)
    assert exhaustion["TreatMissingData"] == "notBreaching"
    assert alarms["cni/a/no-available-ips"]["Statistic"] == "Sum"
    # and every one carries the set's managed marker, which another set's does not contain
    assert all(alarm_marker("cni") in a["AlarmDescription"] for a in alarms.values())
    assert all(alarm_marker("cn") not in a["AlarmDescription"] for a in alarms.values())


def test_alarms_without_topic_have_no_actions() -> None:
    alarm = desired_alarms(["a"], AlarmOptions())["cni-metrics/a/ip-utilization"]
    assert (alarm["ActionsEnabled"], alarm["AlarmActions"]) == (False, [])


def test_differs_compares_what_describe_alarms_returns() -> None:
    wanted = desired_alarms(["a"], AlarmOptions())["cni-metrics/a/ip-utilization"]
    current = {**wanted, "Threshold": 80, "AlarmArn": "arn", "StateValue": "OK",
               "Dimensions": [{"Name": "CLUSTER_ID", "Value": "a"}]}
    assert not differs(wanted, current)
    assert differs(wanted, {**current, "Threshold": 85.0})
    assert differs(wanted, {k: v for k, v in current.items() if k != "OKActions"} | {"OKActions": ["x"]})
