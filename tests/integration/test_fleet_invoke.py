"""The dispatcher's invocations through real boto3 Invoke calls, against a minimal loopback Lambda Invoke API
(``POST /2015-03-31/functions/<name>/invocations``; ``X-Amz-Invocation-Type: Event`` answers 202) reached
through ``AWS_ENDPOINT_URL_LAMBDA``, which records every request. (moto's Invoke runs the function's code,
in Docker, before it answers, even for Event.) What the server received is the truth: bounded concurrency,
asynchronous invocations only, events naming clusters only, one cluster's failure kept to its own
invocation, the deadline kept."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest
from cni_metrics.adapters import eks_auth
from cni_metrics.adapters.aws_clients import Deadline
from cni_metrics.fleet import resolve as fleet_resolve
from cni_metrics.fleet.dispatch import (
    GROUP_MAX_CLUSTERS,
    GROUP_MAX_NODES,
    Plan,
    invoke_groups,
    lambda_client,
    plan_dispatch,
)
from cni_metrics.fleet.document import parse_fleet
from cni_metrics.fleet.health import fleet_health
from cni_metrics.fleet.resolve import resolve
from fake_eks.fleet import fleet_document
from fake_eks.scenario import load_scenario
from fake_eks.testing import start_fake_eks

pytestmark = pytest.mark.integration

FUNCTION = "cni-metrics-collector"
_PATH = re.compile(r"^/2015-03-31/functions/([^/]+)/invocations$")
Answer = Callable[[dict[str, Any]], tuple[int, str | None]]
"""What the server answers to an event: (status, error type or None); status 0: never answer."""


@dataclass
class InvokeApi:
    """The loopback Invoke API: what it received, how many calls were in flight at most."""

    url: str
    answer: Answer = lambda event: (202, None)
    delay: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def invoke_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[InvokeApi]:
    """The server on a free loopback port, boto3's Lambda endpoint and test credentials pointed at it."""
    api = InvokeApi(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            match = _PATH.match(self.path.split("?")[0])
            event = json.loads(body) if body else {}
            with api.lock:
                api.in_flight += 1
                api.max_in_flight = max(api.max_in_flight, api.in_flight)
                api.requests.append({"function": match.group(1) if match else None, "event": event,
                                     "type": self.headers.get("X-Amz-Invocation-Type")})
            try:
                time.sleep(api.delay)
                known = match is not None and match.group(1) == FUNCTION
                status, error = api.answer(event) if known else (404, "ResourceNotFoundException")
                if status == 0:
                    time.sleep(30)  # a server that never answers in time
                    return
                payload = b"" if error is None else json.dumps({"Type": "User", "message": error}).encode()
            finally:
                # out of flight before answering: the client sends its next call as soon as it reads this
                with api.lock:
                    api.in_flight -= 1
            self.send_response(status)
            self.send_header("x-amzn-RequestId", "req-1")
            if error is not None:
                self.send_header("x-amzn-ErrorType", error)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    for key, value in {"AWS_ENDPOINT_URL_LAMBDA": api.url, "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    yield api
    server.shutdown()
    server.server_close()


def _dispatch(plan: Plan, *, seconds: float = 30, concurrency: int = 16, function: str = FUNCTION) -> Any:
    deadline = Deadline(time.monotonic() + seconds)
    client = lambda_client(boto3.Session(region_name="us-east-1"), deadline, concurrency=concurrency)
    at = datetime.now(UTC)
    return at, invoke_groups(client, function, plan, dispatched_at=at, period_seconds=60, deadline=deadline,
                             concurrency=concurrency)


def test_invocations_are_asynchronous_bounded_and_name_clusters_only(invoke_api: InvokeApi) -> None:
    # given 300 clusters of unknown size (one invocation each) and an Invoke API taking 50 ms per call
    ids = [f"fleet-{i:03d}" for i in range(300)]
    plan = plan_dispatch(ids, {}, mode="fanout")
    invoke_api.delay = 0.05
    # when dispatched 16 calls at a time
    at, report = _dispatch(plan, concurrency=16)
    # then every call was an Event invocation of the collector, at most 16 at once and truly in parallel
    # (how fast is for `make bench fleet`, not for a test on a shared machine)
    assert len(invoke_api.requests) == 300
    assert {(r["function"], r["type"]) for r in invoke_api.requests} == {(FUNCTION, "Event")}
    assert 4 <= invoke_api.max_in_flight <= 16
    # and each event is exactly its group's: cluster ids, the dispatch time and the period, nothing else
    events = sorted((r["event"] for r in invoke_api.requests), key=lambda e: e["clusters"])
    assert events == [
        {"clusters": [cluster], "dispatched_at": at.isoformat(), "period_seconds": 60} for cluster in ids
    ]
    assert (report.dispatched, report.failed) == (300, [])
    assert all(call.accepted and call.error is None for call in report.invocations)


def test_a_throttled_invocation_fails_alone_after_retries(invoke_api: InvokeApi) -> None:
    # given an Invoke API that always throttles the invocation naming fleet-013
    def answer(event: dict[str, Any]) -> tuple[int, str | None]:
        return (429, "TooManyRequestsException") if "fleet-013" in event["clusters"] else (202, None)

    invoke_api.answer = answer
    plan = plan_dispatch([f"fleet-{i:03d}" for i in range(20)], {}, mode="fanout")
    # when dispatched
    _, report = _dispatch(plan)
    # then that one was tried three times and is reported failed; every other was accepted at once
    attempts: dict[str, int] = {}
    for request in invoke_api.requests:
        for cluster in request["event"]["clusters"]:
            attempts[cluster] = attempts.get(cluster, 0) + 1
    assert attempts == {f"fleet-{i:03d}": 3 if i == 13 else 1 for i in range(20)}
    assert report.failed == ["fleet-013"]
    assert report.dispatched == 19
    (failed,) = [call for call in report.invocations if not call.accepted]
    assert (failed.error or "").startswith("TooManyRequestsException")


@pytest.mark.timeout(60)
def test_an_invoke_api_that_never_answers_is_cut_at_the_deadline(invoke_api: InvokeApi) -> None:
    # given an Invoke API that never answers the invocation of fleet-002, and 3.5 s left
    invoke_api.answer = lambda event: (0, None) if "fleet-002" in event["clusters"] else (202, None)
    plan = plan_dispatch([f"fleet-{i:03d}" for i in range(10)], {}, mode="fanout")
    # when dispatched
    started = time.monotonic()
    _, report = _dispatch(plan, seconds=3.5)
    elapsed = time.monotonic() - started
    # then the dispatcher returned by its deadline, that one invocation failed, the others were accepted
    assert elapsed < 4.5
    assert report.failed == ["fleet-002"]
    assert report.dispatched == 9


def test_an_unknown_function_is_reported_not_raised(invoke_api: InvokeApi) -> None:
    # given a plan of a group of small clusters and one alone
    plan = plan_dispatch(["a", "b", "c", "d", "big"], {"a": 5, "b": 5, "c": 5, "d": 5, "big": 500})
    # when dispatched to a function the API does not have
    _, report = _dispatch(plan, function="no-such-function")
    # then every cluster is reported failed with the API's error, once each (not retried)
    assert sorted(report.failed) == ["a", "b", "big", "c", "d"]
    assert {call.error.split(":")[0] for call in report.invocations if call.error} == {
        "ResourceNotFoundException"
    }
    assert len(invoke_api.requests) == 2


@pytest.mark.timeout(300)
def test_fleet_500_is_resolved_planned_and_fanned_out_once_per_cluster(
    invoke_api: InvokeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given the fleet-500 stand-in (its own process), a fleet document discovering every account through its
    # role in both regions, plus two bad entries; the scenario's node counts as the last known sizes
    scenario = load_scenario("fleet-500")
    nodes: dict[str, int | None] = {cluster.name: cluster.nodes for cluster in scenario.clusters}
    with start_fake_eks("fleet-500", subprocess_mode=True) as eks:
        for key, value in eks.env().items():
            monkeypatch.setenv(key, value)
        eks_auth.clear_caches()
        fleet_resolve.clear_caches()
        doc = fleet_document(eks.connection)
        doc["clusters"] = [{"name": "no-region"}, {"name": "fleet-1", "region": "eu-west-1", "alias": "x y"}]
        fleet = parse_fleet(json.dumps(doc).encode())
        # when the dispatcher's steps run: resolve, plan, invoke
        deadline = Deadline(time.monotonic() + 60)
        resolution = resolve(fleet, deadline=deadline)
        plan = plan_dispatch(resolution.ids, nodes)
        at, report = _dispatch(plan)
    health = fleet_health(resolution, now=at, period_seconds=60, report=report)
    # then the fleet is the scenario's 500 clusters, broken ones included, the bad entries reported
    assert sorted(resolution.ids) == sorted(nodes)
    problems = [(problem.where, problem.field) for problem in resolution.problems]
    assert problems == [("clusters[0]", "region"), ("clusters[1]", "alias")]
    # and each cluster was named in exactly one accepted Event invocation, groups within their limits
    named = [c for request in invoke_api.requests for c in request["event"]["clusters"]]
    assert sorted(named) == sorted(nodes)
    assert all(len(g.clusters) <= GROUP_MAX_CLUSTERS for g in plan.groups)
    assert all((g.nodes or 0) <= GROUP_MAX_NODES for g in plan.groups)
    assert len(plan.groups) < 250
    assert (health.clusters, health.dispatched, health.dispatch_errors) == (500, 500, 0)
    assert health.entries_refused == 2
    assert health.invocations == len(plan.groups) == len(invoke_api.requests)
