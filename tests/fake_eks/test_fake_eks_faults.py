"""Every fault kind of the `faults` scenario behaves as SCENARIOS.md describes."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
import requests
from fake_eks.testing import RunningFakeEks, start_fake_eks
from fake_eks_helpers import PODS, kube_get, metrics_path, pod_by_fault
from prometheus_client.parser import text_string_to_metric_families

CLUSTER = "faults"


@pytest.fixture(scope="module")
def faults() -> Iterator[RunningFakeEks]:
    """One `faults` stand-in shared by this module (each test uses a different node)."""
    with start_fake_eks("faults") as eks:
        yield eks


def _scrape(
    eks: RunningFakeEks, fault: str, *, timeout: float | tuple[float, float] = 10, stream: bool = False
) -> requests.Response:
    path = metrics_path(pod_by_fault(eks, CLUSTER, fault)["name"])
    return kube_get(eks, CLUSTER, path, timeout=timeout, stream=stream)


def test_latency_delays_then_serves(faults: RunningFakeEks) -> None:
    # given a node with 1000 ms +- 100 ms added latency
    start = time.monotonic()
    # when scraped
    resp = _scrape(faults, "latency")
    # then the answer is late but whole, and counts as a serve
    assert time.monotonic() - start >= 0.8
    assert resp.status_code == 200
    assert list(text_string_to_metric_families(resp.text))
    assert pod_by_fault(faults, CLUSTER, "latency")["scrapes"] == 1


def test_hang_never_answers(faults: RunningFakeEks) -> None:
    # given / when / then
    with pytest.raises(requests.exceptions.ReadTimeout):
        _scrape(faults, "hang", timeout=(3, 1.5))


def test_port_blocked_is_a_503_status(faults: RunningFakeEks) -> None:
    resp = _scrape(faults, "port_blocked")
    assert resp.status_code == 503
    body = resp.json()
    assert body["reason"] == "ServiceUnavailable"
    assert body["message"].startswith("error trying to reach service: dial tcp ")


def test_throttle_429_has_retry_after(faults: RunningFakeEks) -> None:
    resp = _scrape(faults, "throttle_429")
    assert resp.status_code == 429
    assert resp.headers["Retry-After"] == "2"


def test_error_500(faults: RunningFakeEks) -> None:
    resp = _scrape(faults, "error_500")
    assert resp.status_code == 500
    assert resp.text.startswith("An error has occurred while serving metrics")


def test_reset_breaks_the_connection(faults: RunningFakeEks) -> None:
    with pytest.raises(requests.exceptions.ConnectionError):
        _scrape(faults, "reset")


def test_truncated_body_is_incomplete(faults: RunningFakeEks) -> None:
    # given / when the body stops at half its Content-Length
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        _scrape(faults, "truncated")


def test_garbage_is_not_a_payload(faults: RunningFakeEks) -> None:
    resp = _scrape(faults, "garbage")
    assert resp.status_code == 200
    assert len(resp.content) == 4096
    assert b"awscni_" not in resp.content


def test_huge_body_is_at_least_50_mb(faults: RunningFakeEks) -> None:
    # given / when reading the whole streamed body
    resp = _scrape(faults, "huge", stream=True, timeout=60)
    size = sum(len(chunk) for chunk in resp.iter_content(1 << 20))
    # then
    assert resp.status_code == 200
    assert size >= 50 * 1024 * 1024


def test_slow_drip_trickles(faults: RunningFakeEks) -> None:
    # given a node sending 64 bytes every 0.5 s
    resp = _scrape(faults, "slow_drip", stream=True)
    total = int(resp.headers["Content-Length"])
    # when reading for about 1.5 seconds
    got = b""
    deadline = time.monotonic() + 1.5
    for chunk in resp.iter_content(64):
        got += chunk
        if time.monotonic() > deadline:
            break
    resp.close()
    # then only a small part has arrived
    assert 0 < len(got) < total / 4


def test_invalid_utf8(faults: RunningFakeEks) -> None:
    resp = _scrape(faults, "invalid_utf8")
    assert resp.status_code == 200
    with pytest.raises(UnicodeDecodeError):
        resp.content.decode("utf-8")


def test_html_error_page(faults: RunningFakeEks) -> None:
    resp = _scrape(faults, "html_error")
    assert resp.headers["Content-Type"].startswith("text/html")
    assert resp.text.startswith("<!DOCTYPE html>")


def test_pending_pod_has_no_ip_and_cannot_be_reached(faults: RunningFakeEks) -> None:
    # given the pending pod as listed
    name = pod_by_fault(faults, CLUSTER, "pending")["name"]
    pod = next(p for p in kube_get(faults, CLUSTER, PODS).json()["items"] if p["metadata"]["name"] == name)
    # when scraped
    resp = _scrape(faults, "pending")
    # then
    assert pod["status"]["phase"] == "Pending"
    assert "podIP" not in pod["status"]
    assert resp.status_code == 503


def test_not_ready_pod_is_listed_not_ready_and_serves(faults: RunningFakeEks) -> None:
    name = pod_by_fault(faults, CLUSTER, "not_ready")["name"]
    pod = next(p for p in kube_get(faults, CLUSTER, PODS).json()["items"] if p["metadata"]["name"] == name)
    ready = next(c for c in pod["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False"
    assert _scrape(faults, "not_ready").status_code == 200


def test_failed_faults_never_count_as_serves(faults: RunningFakeEks) -> None:
    # given the scrapes of the tests above (any order)
    for fault in ("port_blocked", "throttle_429", "error_500", "garbage", "html_error", "invalid_utf8"):
        _scrape(faults, fault)
    # when reading the truth
    pods = {p["fault"]: p for p in faults.truth(CLUSTER)["pods"] if p["fault"]}
    # then
    for fault in ("port_blocked", "throttle_429", "error_500", "garbage", "html_error", "invalid_utf8"):
        assert pods[fault]["scrapes"] == 0
        assert pods[fault]["served"] is None
        assert pods[fault]["attempts"] >= 1


def test_a_fault_can_be_set_and_healed_at_runtime(fake_eks_factory: Callable[..., RunningFakeEks]) -> None:
    # given a healthy pod
    eks = fake_eks_factory({"clusters": [{"name": "c", "nodes": 2}]})
    name = eks.truth("c")["pods"][0]["name"]
    # when it is made to fail, then made Pending, then healed
    eks.set_fault("c", name, "error_500")
    failing = kube_get(eks, "c", metrics_path(name)).status_code
    eks.set_fault("c", name, "pending")
    listed = {p["metadata"]["name"]: p for p in kube_get(eks, "c", PODS).json()["items"]}
    eks.set_fault("c", name, None)
    healed = kube_get(eks, "c", metrics_path(name)).status_code
    # then each state shows, and only the healed scrape was a serve
    assert failing == 500
    assert listed[name]["status"]["phase"] == "Pending"
    assert healed == 200
    assert next(p for p in eks.truth("c")["pods"] if p["name"] == name)["scrapes"] == 1
