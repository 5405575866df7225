"""The built dashboard function (`make build-local`) under awslambdaric, on the sample events with
events/env.json, against moto: a direct invoke, and the custom resource's Create, Update and Delete answered
to the stand-ins' HTTPS receiver standing for CloudFormation's ResponseURL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from local_lambda.built import BuildError, load_function
from local_lambda.runner import InvokeResult, invoke_built
from local_lambda.stand_ins import StandIns, started

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
BUILD_DIR = REPO / ".aws-sam" / "local" / "build"
ENV_FILE = REPO / "events" / "env.json"
FUNCTION = "DashboardFunction"


def _event(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((REPO / "events" / name).read_text())
    return document


@pytest.fixture
def stand_ins() -> Iterator[StandIns]:
    """Fresh moto (the fake EKS is unused here) and the receiver; the local build must exist."""
    try:
        load_function(BUILD_DIR, FUNCTION)
    except BuildError as error:
        pytest.fail(f"{error} (run `make build-local`)")
    with started("demo", None, network=False) as running:
        yield running


def _invoke(stand_ins: StandIns, event: dict[str, Any]) -> InvokeResult:
    local = stand_ins.local_event(json.dumps(event).encode())
    result = invoke_built(BUILD_DIR, FUNCTION, local, ENV_FILE, stand_ins.variables, log_stream=None)
    assert result.ok, (result.error, result.logs[-3000:])
    return result


def _answer(stand_ins: StandIns, event: dict[str, Any]) -> dict[str, Any]:
    """The answer the receiver got for ``event``, checked against the request it answers."""
    _invoke(stand_ins, event)
    answer = stand_ins.receiver.next_answer(timeout=10)
    assert answer is not None, "no answer reached the receiver"
    body: dict[str, Any] = answer["body"]
    for key in ("RequestId", "StackId", "LogicalResourceId"):
        assert body[key] == event[key], key
    return body


def _dashboards(stand_ins: StandIns) -> dict[str, str]:
    cloudwatch = stand_ins.client("cloudwatch")
    names = [entry["DashboardName"] for entry in cloudwatch.list_dashboards()["DashboardEntries"]]
    return {name: cloudwatch.get_dashboard(DashboardName=name)["DashboardBody"] for name in names}


def _alarms(stand_ins: StandIns, prefix: str) -> list[str]:
    found = stand_ins.client("cloudwatch").describe_alarms(AlarmNamePrefix=prefix)["MetricAlarms"]
    return sorted(alarm["AlarmName"] for alarm in found)


def test_direct_invoke_puts_the_dashboard_once(stand_ins: StandIns) -> None:
    # Given the sample direct invoke and the function's environment from events/env.json
    event = _event("dashboard-direct-invoke.json")

    # When it is invoked twice
    first = _invoke(stand_ins, event).payload
    second = _invoke(stand_ins, event).payload

    # Then the first run puts the dashboard naming the event's clusters, the second writes nothing
    assert first["dashboards"]["put"] == ["cni-metrics"]
    body = _dashboards(stand_ins)["cni-metrics"]
    assert all(cluster in body for cluster in event["clusters"])
    assert second["dashboards"] == {"put": [], "unchanged": ["cni-metrics"], "deleted": []}


def test_custom_resource_lifecycle_of_the_sample_events(stand_ins: StandIns) -> None:
    # Given the sample Create, Update (alarms on) and Delete requests of the template's Custom::CniDashboard
    create, update, delete = (_event(f"dashboard-{kind}.json") for kind in ("create", "update", "delete"))
    clusters = create["ResourceProperties"]["Clusters"].split(",")
    name = create["ResourceProperties"]["DashboardName"]

    # When the stack creates it
    created = _answer(stand_ins, create)

    # Then CloudFormation hears SUCCESS with the dashboard name as physical id; the dashboard names every
    # cluster and no alarm exists
    assert (created["Status"], created["PhysicalResourceId"]) == ("SUCCESS", name), created
    assert all(cluster in _dashboards(stand_ins)[name] for cluster in clusters)
    assert _alarms(stand_ins, f"{name}/") == []

    # When the stack updates it with alarms on
    updated = _answer(stand_ins, update)

    # Then SUCCESS with the same physical id, and every cluster has its alarms, named NAME/<cluster>/<kind>
    assert (updated["Status"], updated["PhysicalResourceId"]) == ("SUCCESS", name), updated
    alarms = _alarms(stand_ins, f"{name}/")
    assert sorted({alarm.split("/")[1] for alarm in alarms}) == sorted(clusters)

    # When the stack deletes it
    deleted = _answer(stand_ins, delete)

    # Then SUCCESS, and the dashboard and its alarms are gone
    assert (deleted["Status"], deleted["PhysicalResourceId"]) == ("SUCCESS", name), deleted
    assert name not in _dashboards(stand_ins)
    assert _alarms(stand_ins, f"{name}/") == []
