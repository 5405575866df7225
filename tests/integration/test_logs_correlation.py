"""Both functions log JSON lines through Powertools Logger with a correlation id (issue 15).

The dashboard function's scheduled run keeps its INFO lines, and its custom-resource run is correlated by
CloudFormation's RequestId without ever logging the pre-signed ResponseURL; the collector's lines carry
the EventBridge event id.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from lambda_app import LambdaContext, load_app
from local_lambda.receiver import CfnReceiver

pytestmark = pytest.mark.integration

SIGNATURE = "X-Amz-Signature=0123456789abcdef"


def _load(function: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """A fresh copy of a function's app.py, logging under a service name of its own."""
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", f"test-{uuid.uuid4().hex[:8]}")
    return load_app(function)


def _context() -> LambdaContext:
    """A Lambda context with a minute left."""
    return LambdaContext("fn", 60, memory_mb=256)


def _records(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.fixture
def cloudformation(monkeypatch: pytest.MonkeyPatch) -> Iterator[CfnReceiver]:
    """HTTPS stand-in for CloudFormation's pre-signed ResponseURL (crhelper verifies it by AWS_CA_BUNDLE)."""
    with CfnReceiver() as receiver:
        monkeypatch.setenv("AWS_CA_BUNDLE", str(receiver.ca_file))
        yield receiver


def test_dashboard_scheduled_run_logs_info_with_the_event_id(
    aws: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # given the dashboard function configured for one cluster against moto
    for key, value in {"CLUSTER_NAMES": "alpha", "DASHBOARD_NAME": "logs-test", "AWS_REGION": "us-east-1",
                       "POWERTOOLS_LOG_LEVEL": "INFO"}.items():
        monkeypatch.setenv(key, value)
    app = _load("dashboard", monkeypatch)
    # when EventBridge's schedule invokes it
    event = {"id": "evt-dash-1", "source": "aws.events", "detail-type": "Scheduled Event",
             "time": "2026-12-04T00:00:00Z", "detail": {}}
    app.lambda_handler(event, _context())
    # then its INFO summary is a JSON line correlated by the event id
    records = _records(capsys.readouterr().out)
    runs = [r for r in records if str(r.get("message", "")).startswith("dashboard run")]
    assert runs, records
    assert runs[0]["level"] == "INFO"
    assert runs[0]["correlation_id"] == "evt-dash-1"


def test_custom_resource_run_is_correlated_by_request_id_and_never_logs_the_response_url(
    aws: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    cloudformation: CfnReceiver,
) -> None:
    # given the dashboard function at DEBUG, and CloudFormation's Delete of a set that was never made
    for key, value in {"AWS_REGION": "us-east-1", "POWERTOOLS_LOG_LEVEL": "DEBUG"}.items():
        monkeypatch.setenv(key, value)
    app = _load("dashboard", monkeypatch)
    url = f"https://{cloudformation.netloc}/cfn?{SIGNATURE}"
    event = {"RequestType": "Delete", "RequestId": "req-cfn-7", "ResponseURL": url,
             "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/s/1",
             "LogicalResourceId": "Dash",
             "PhysicalResourceId": "logs-test-gone", "ResourceType": "Custom::CniDashboard",
             "ResourceProperties": {"ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:fn"}}
    # when it is invoked
    app.lambda_handler(event, _context())
    # then CloudFormation got its answer, the lines carry the RequestId, and no line holds the URL
    answer = cloudformation.next_answer(timeout=10)
    assert answer is not None
    assert answer["body"]["Status"] == "SUCCESS"
    out = capsys.readouterr()
    records = _records(out.out)
    assert any(r.get("correlation_id") == "req-cfn-7" for r in records), records
    assert SIGNATURE not in out.out + out.err
    assert "/cfn?" not in out.out + out.err


def test_collector_lines_carry_the_eventbridge_event_id(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # given a collector whose configuration is refused (no STATE_BUCKET)
    monkeypatch.setenv("CLUSTER_NAMES", "alpha")
    monkeypatch.delenv("STATE_BUCKET", raising=False)
    app = _load("collector", monkeypatch)
    # when the schedule invokes it
    event = {"id": "evt-coll-9", "source": "aws.events", "detail-type": "Scheduled Event",
             "time": "2026-12-04T00:00:00Z", "detail": {}, "account": "123456789012", "region": "us-east-1",
             "resources": [], "version": "0"}
    with pytest.raises(ValueError, match="STATE_BUCKET"):
        app.lambda_handler(event, _context())
    # then its error line is correlated by the event id
    records = _records(capsys.readouterr().out)
    rejected = [r for r in records if str(r.get("message", "")).startswith("rejected")]
    assert rejected, records
    assert rejected[0]["correlation_id"] == "evt-coll-9"
