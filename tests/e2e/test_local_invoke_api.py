"""local_lambda's Invoke API through real boto3 calls, against a tiny `sam build`-shaped function run by warm
awslambdaric workers: Event answers 202 and queues, the pool bounds how many run at once, an event older
than the maximum event age and a failed or timed-out invocation go to the on-failure destination,
RequestResponse answers the payload, and the API's errors are Lambda's. The truth is what each worker
process reports (its pid, its start and end) and the records the API keeps."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from local_lambda.invoke_api import InvokeApi, PoolConfig, Record

pytestmark = pytest.mark.e2e

BUILT_TEMPLATE = """\
Transform: AWS::Serverless-2016-10-31
Resources:
  Work:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: Work
      Handler: app.lambda_handler
      Runtime: python%(minor)s
      Timeout: 2
      Environment:
        Variables:
          MARK: template
"""

WORK_HANDLER = '''\
import os
import time

STARTED = time.time()  # once per process: a warm worker keeps it


def lambda_handler(event, context):
    begun = time.time()
    if event.get("raise"):
        raise ValueError("boom")
    if event.get("count_in"):  # fails its first ``failures`` runs (the count kept in a file)
        runs = int(open(event["count_in"]).read()) + 1 if os.path.exists(event["count_in"]) else 1
        open(event["count_in"], "w").write(str(runs))
        if runs <= event.get("failures", 1):
            raise ValueError(f"run {runs} fails")
    time.sleep(event.get("sleep", 0))
    return {"event": event, "pid": os.getpid(), "process_started": STARTED, "begun": begun,
            "ended": time.time(), "mark": os.environ.get("MARK"), "request_id": context.aws_request_id}
'''


BUILD_FILES = {"Work/app.py": WORK_HANDLER}  # with BUILT_TEMPLATE, conftest's build_dir


def _api(build_dir: Path, size: int, max_age: float = 60.0, retries: int = 0,
         delays: tuple[float, ...] = (60.0, 120.0), **kwargs: Any) -> InvokeApi:
    config = PoolConfig(size=size, max_event_age_seconds=max_age, max_retry_attempts=retries,
                        retry_delays_seconds=delays)
    return InvokeApi(build_dir, {"Work": config}, variables={"MARK": "override"}, **kwargs)


def _client(api: InvokeApi) -> Any:
    return boto3.client("lambda", endpoint_url=api.url, region_name="us-east-1", aws_access_key_id="k",
                        aws_secret_access_key="s", config=Config(retries={"total_max_attempts": 1},
                                                                   read_timeout=30))


@pytest.fixture
def pool_of_two(build_dir: Path, tmp_path: Path) -> Iterator[InvokeApi]:
    with _api(build_dir, 2, on_failure_file=tmp_path / "failures.jsonl") as api:
        yield api


def _event(client: Any, event: dict[str, Any], function: str = "Work") -> Any:
    return client.invoke(FunctionName=function, InvocationType="Event", Payload=json.dumps(event).encode())


def _most_at_once(records: list[Record]) -> int:
    edges = sorted([(r.started_at, 1) for r in records if r.started_at is not None]
                   + [(r.ended_at, -1) for r in records if r.ended_at is not None])
    running = most = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    return most


def test_event_answers_202_at_once_and_runs_in_a_bounded_pool_of_warm_workers(pool_of_two: InvokeApi) -> None:
    # given a pool of two warm workers and six events of 0.5 s each
    client = _client(pool_of_two)
    warm = {worker.pid for worker in pool_of_two.pools["Work"].workers}
    # when they are invoked asynchronously
    answers, answered = [], []  # each call's answer, and when it came on the workers' clock
    for n in range(6):
        answers.append(_event(client, {"n": n, "sleep": 0.5}))
        answered.append(time.time())
    assert pool_of_two.wait_idle(30)
    # then each call was accepted (202) before its event was over, and all six were queued before the
    # third event began (the two workers were busy with the first two until then)
    assert [answer["StatusCode"] for answer in answers] == [202] * 6
    # and they ran in the two warm processes only, two at a time, in order of arrival, with the override
    records = pool_of_two.records("Work")
    payloads = [record.payload for record in records]
    assert [payload["event"]["n"] for payload in payloads] == list(range(6))
    assert {payload["pid"] for payload in payloads} == warm
    assert all(payload["process_started"] < payload["begun"] for payload in payloads)
    assert all(at < payload["ended"] for at, payload in zip(answered, payloads, strict=True))
    assert answered[-1] < payloads[2]["begun"]
    assert _most_at_once(records) == 2
    assert 1.5 <= max(p["ended"] for p in payloads) - min(p["begun"] for p in payloads) < 3.0
    assert {payload["mark"] for payload in payloads} == {"override"}
    assert pool_of_two.on_failure == []


def test_an_event_older_than_the_maximum_age_goes_to_the_on_failure_record(
    build_dir: Path, tmp_path: Path
) -> None:
    # given one worker, a maximum event age of 1 s, and an event that keeps it busy 1.5 s
    failures = tmp_path / "failures.jsonl"
    with _api(build_dir, 1, max_age=1.0, on_failure_file=failures) as api:
        client = _client(api)
        _event(client, {"n": 0, "sleep": 1.5})
        # when two more events arrive meanwhile, and one after the worker is free again
        _event(client, {"n": 1})
        _event(client, {"n": 2})
        assert api.wait_idle(30)
        _event(client, {"n": 3})
        assert api.wait_idle(30)
        records = api.records("Work")
    # then the two that waited longer than 1 s never ran: each is a destination record, as Lambda writes
    ran = [record.payload["event"]["n"] for record in records if record.payload is not None]
    assert ran == [0, 3]
    assert [(r.condition, r.started_at) for r in records[1:3]] == [("EventAgeExceeded", None)] * 2
    expired = [json.loads(line) for line in failures.read_text().splitlines()]
    assert api.on_failure == expired
    assert [d["requestPayload"] for d in expired] == [{"n": 1}, {"n": 2}]
    for document in expired:
        assert document["version"] == "1.0"
        assert document["requestContext"]["condition"] == "EventAgeExceeded"
        assert document["requestContext"]["approximateInvokeCount"] == 0
        assert document["requestContext"]["functionArn"].endswith(":function:Work:$LATEST")
        assert "responsePayload" not in document


def test_a_failed_or_timed_out_event_is_recorded_and_a_dead_worker_replaced(pool_of_two: InvokeApi) -> None:
    # given the pool's workers
    client = _client(pool_of_two)
    before = {worker.pid for worker in pool_of_two.pools["Work"].workers}
    # when one event raises and one outlives the function's 2 s timeout, then two more run
    _event(client, {"raise": True})
    _event(client, {"sleep": 5})
    assert pool_of_two.wait_idle(30)
    _event(client, {"n": 1})
    _event(client, {"n": 2})
    assert pool_of_two.wait_idle(30)
    # then both failures are destination records with the runtime's error, invoked once
    conditions = [(d["requestContext"]["condition"], d["requestContext"]["approximateInvokeCount"],
                   d["responsePayload"]["errorType"]) for d in pool_of_two.on_failure]
    assert sorted(conditions) == [
        ("RetriesExhausted", 1, "Sandbox.Timedout"), ("RetriesExhausted", 1, "ValueError")]
    # and the timed-out worker was replaced by a new process; the other stayed warm
    after = {worker.pid for worker in pool_of_two.pools["Work"].workers}
    assert len(after - before) == 1
    assert len(after & before) == 1
    later = [r.payload for r in pool_of_two.records("Work")[2:]]
    assert {payload["pid"] for payload in later} <= after


def test_a_failed_event_is_retried_as_configured_within_its_maximum_age(
    build_dir: Path, tmp_path: Path
) -> None:
    # given two retries 0.2 s then 0.4 s after a failure (MaximumRetryAttempts 2), a maximum age of 20 s
    with _api(build_dir, 1, max_age=20.0, retries=2, delays=(0.2, 0.4)) as api:
        client = _client(api)
        # when one event always fails, one fails once then succeeds, and a RequestResponse call fails
        _event(client, {"raise": True, "n": 0})
        _event(client, {"count_in": str(tmp_path / "flaky"), "n": 1})
        response = client.invoke(FunctionName="Work", Payload=json.dumps({"raise": True}).encode())
        assert api.wait_idle(30)
        records = {json.loads(r.event).get("n"): r for r in api.records("Work")}
    # then the failing event ran three times and went to the destination as retries exhausted
    assert (records[0].attempts, records[0].condition) == (3, "RetriesExhausted")
    (document,) = api.on_failure
    assert document["requestPayload"] == {"raise": True, "n": 0}
    assert document["requestContext"]["approximateInvokeCount"] == 3
    # and the flaky one succeeded on its retry, with nothing on the destination
    assert (records[1].attempts, records[1].condition, records[1].payload["event"]["n"]) == (2, None, 1)
    assert (tmp_path / "flaky").read_text() == "2"
    # and a synchronous call is never retried: the caller gets the error of its one run
    assert response["FunctionError"] == "Unhandled"
    assert records[None].attempts == 1


def test_a_retry_that_would_outlive_the_maximum_age_is_not_run(build_dir: Path, tmp_path: Path) -> None:
    # given a retry 1.5 s after a failure but a maximum event age of 1 s
    with _api(build_dir, 1, max_age=1.0, retries=2, delays=(1.5,)) as api:
        # when an event fails
        _event(_client(api), {"raise": True})
        assert api.wait_idle(30)
        (record,) = api.records("Work")
    # then it ran once, and its retry found it too old: the destination record says so
    assert (record.attempts, record.condition) == (1, "EventAgeExceeded")
    (document,) = api.on_failure
    assert document["requestContext"]["approximateInvokeCount"] == 1
    assert document["responsePayload"]["errorType"] == "ValueError"


def test_request_response_and_the_apis_errors(pool_of_two: InvokeApi) -> None:
    # given the API
    client = _client(pool_of_two)
    # when a function is invoked synchronously, by name and by ARN, and with a failing event
    plain = client.invoke(FunctionName="Work", Payload=b'{"n": 7}')
    by_arn = client.invoke(FunctionName="arn:aws:lambda:us-east-1:123456789012:function:Work", Payload=b"{}")
    failed = client.invoke(FunctionName="Work", Payload=b'{"raise": true}')
    dry = client.invoke(FunctionName="Work", InvocationType="DryRun")
    # then the payload comes back; an error as Lambda reports it (a function error, not an API error)
    assert plain["StatusCode"] == 200
    assert json.loads(plain["Payload"].read())["event"] == {"n": 7}
    assert json.loads(by_arn["Payload"].read())["event"] == {}
    assert failed["FunctionError"] == "Unhandled"
    assert json.loads(failed["Payload"].read())["errorMessage"] == "boom"
    assert dry["StatusCode"] == 204
    assert pool_of_two.on_failure == []  # synchronous failures are the caller's
    # and an unknown function and an event over 1 MB are refused with Lambda's error codes
    with pytest.raises(ClientError) as unknown:
        _event(client, {}, function="Nope")
    assert unknown.value.response["Error"]["Code"] == "ResourceNotFoundException"
    with pytest.raises(ClientError) as large:
        _event(client, {"pad": "x" * (1024 * 1024)})
    assert large.value.response["Error"]["Code"] == "RequestEntityTooLargeException"
