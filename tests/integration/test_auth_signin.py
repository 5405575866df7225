"""Signing in to the fake EKS over HTTPS: token expiry and refresh, wrong CA, RBAC denials, unmapped
identities, AssumeRole, and no token or secret in logs, errors or results."""

from __future__ import annotations

import base64
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest
from cni_metrics.adapters.eks_auth import ClusterTarget, TokenProvider, clear_caches, credentials_for
from cni_metrics.collector.cluster import ClusterCollection, collect_cluster
from fake_eks.testing import RunningFakeEks, start_fake_eks

pytestmark = pytest.mark.integration

USER = "arn:aws:iam::111122223333:user/cni-metrics-dev"
ROLE = "arn:aws:iam::111122223333:role/cni-metrics-reader"
LIST_ONLY = [{"verbs": ["list"], "resources": ["pods"], "namespaces": ["kube-system"]}]
PROXY_ONLY = [{"verbs": ["get"], "resources": ["pods/proxy"], "namespaces": ["kube-system"]}]
TOKEN_MAX_AGE = 4
SCENARIO = {
    "name": "auth",
    "seed": 5,
    "identity_arn": USER,
    "identities": {USER: ["cni-metrics"]},
    "clusters": [
        {"name": "auth-ok", "nodes": 4},
        {"name": "short-tokens", "nodes": 4, "token_max_age_seconds": TOKEN_MAX_AGE},
        {"name": "no-proxy", "nodes": 4, "groups": {"cni-metrics": LIST_ONLY}},
        {"name": "no-list", "nodes": 4, "groups": {"cni-metrics": PROXY_ONLY}},
        {"name": "role-only", "nodes": 4, "identities": {ROLE: ["cni-metrics"]}},
    ],
}


@pytest.fixture(scope="module")
def eks() -> Iterator[RunningFakeEks]:
    with start_fake_eks(SCENARIO) as running, pytest.MonkeyPatch.context() as patch:
        for key, value in running.env().items():
            patch.setenv(key, value)
        yield running


@pytest.fixture(autouse=True)
def _fresh_caches() -> Iterator[None]:
    clear_caches()
    yield
    clear_caches()


def _collect(eks: RunningFakeEks, target: ClusterTarget, **kwargs: object) -> ClusterCollection:
    return collect_cluster(target, deadline=time.monotonic() + 15, **kwargs)  # type: ignore[arg-type]


def _target(eks: RunningFakeEks, cluster: str, **kwargs: str) -> ClusterTarget:
    return ClusterTarget(cluster, eks.connection["region"], **kwargs)


def test_expired_token_is_refreshed_once(eks: RunningFakeEks) -> None:
    # given a cluster whose API server accepts tokens for 4 s, and a token already in use
    target = _target(eks, "short-tokens")
    session = boto3.Session()
    tokens = TokenProvider(target, session)
    assert _collect(eks, target, session=session, tokens=tokens).status == "ok"
    refused_before = len(eks.auth_failures("short-tokens"))
    refreshes_before = tokens.refreshes
    # when the cached token has expired and the cluster is collected again
    time.sleep(TOKEN_MAX_AGE + 0.5)
    result = _collect(eks, target, session=session, tokens=tokens)
    # then the API server refused it once, one new token was made, and the collection succeeded
    assert result.status == "ok", result.error
    assert tokens.refreshes == refreshes_before + 1
    assert len(eks.auth_failures("short-tokens")) == refused_before + 1
    truth = eks.truth("short-tokens")
    assert {n.key for n in result.nodes} == {p["uid"] for p in truth["pods"]}
    assert result.health.nodes_failed == 0


def test_wrong_ca_fails_closed_with_a_clear_error(eks: RunningFakeEks) -> None:
    # given the right endpoint with another cluster's CA
    target = _target(eks, "auth-ok", endpoint=eks.endpoint("auth-ok"), ca_data=eks.ca_pem("no-list"))
    # when it is collected
    result = _collect(eks, target)
    # then it is a cluster error naming TLS verification, and nothing was scraped
    assert result.status == "error"
    assert result.error is not None
    assert "TLS verification failed for cluster auth-ok endpoint" in result.error
    assert result.nodes == []


def test_rbac_without_pods_proxy_is_a_cluster_error_with_the_api_message(eks: RunningFakeEks) -> None:
    # given an identity allowed to list pods but not to get pods/proxy
    # when the cluster is collected
    result = _collect(eks, _target(eks, "no-proxy"))
    # then the cluster is in error with the API server's RBAC message, each node counted as forbidden
    assert result.status == "error"
    assert result.error is not None
    assert 'cannot get resource "pods/proxy"' in result.error
    assert result.health.failed_by_reason == {"forbidden": 4}


def test_rbac_without_list_is_a_cluster_error(eks: RunningFakeEks) -> None:
    result = _collect(eks, _target(eks, "no-list"))
    assert result.status == "error"
    assert result.error is not None
    assert "RBAC denies listing aws-node pods in cluster no-list" in result.error
    assert 'cannot list resource "pods"' in result.error


def test_unmapped_identity_is_refused_after_one_new_token(eks: RunningFakeEks) -> None:
    # given a cluster that maps only a role, not the caller
    target = _target(eks, "role-only")
    tokens = TokenProvider(target, boto3.Session())
    # when it is collected with the caller's own identity
    result = _collect(eks, target, tokens=tokens)
    # then a new token was tried once, and the error says the token was refused
    assert result.status == "error"
    assert result.error is not None
    assert "refused the bearer token" in result.error
    assert tokens.refreshes == 1


def test_role_arn_is_assumed_and_its_credentials_cached(eks: RunningFakeEks) -> None:
    # given the mapped role to assume
    target = _target(eks, "role-only", role_arn=ROLE)
    session = boto3.Session()
    # when the cluster is collected through the role
    result = _collect(eks, target, session=session)
    # then it succeeds and the assumed credentials are reused until shortly before they expire
    assert result.status == "ok", result.error
    assert len(result.nodes) == 4
    first = credentials_for(target, session)
    assert credentials_for(target, session).access_key == first.access_key
    assert first.access_key != eks.connection["credentials"]["access_key_id"]
    later = credentials_for(target, session, clock=lambda: time.time() + 3600)
    assert later.access_key != first.access_key


def test_nothing_sensitive_in_logs_errors_or_results(
    eks: RunningFakeEks, caplog: pytest.LogCaptureFixture
) -> None:
    # given every logger at DEBUG except botocore's wire dumps (which echo AWS responses at DEBUG)
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.INFO, logger="botocore")
    session = boto3.Session()
    role_target = _target(eks, "role-only", role_arn=ROLE)
    # when clusters are collected through success, refusal, RBAC denial, wrong CA and a role
    results = [
        _collect(eks, _target(eks, name), session=session) for name in ("auth-ok", "role-only", "no-proxy")
    ]
    results.append(_collect(eks, _target(
        eks, "auth-ok", endpoint=eks.endpoint("auth-ok"), ca_data=eks.ca_pem("no-list")
    ), session=session))
    results.append(_collect(eks, role_target, session=session))
    assumed = credentials_for(role_target, session)
    # then no token, secret key or session token appears anywhere
    text = caplog.text + "".join(repr(r) + str(r) for r in results)
    assert "cluster auth-ok" in caplog.text
    secrets = [
        "k8s-aws-v1.", eks.connection["credentials"]["secret_access_key"], assumed.secret_key, assumed.token,
    ]
    for secret in secrets:
        assert secret
        assert secret not in text


@pytest.fixture
def listener() -> Iterator[tuple[str, list[bytes]]]:
    """A plain TCP listener on 127.0.0.1: (its http:// URL, what each connection to it sent)."""
    server = socket.create_server(("127.0.0.1", 0))
    received: list[bytes] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conn.settimeout(1)
            try:
                received.append(conn.recv(65536))
            except OSError:
                received.append(b"")
            conn.close()

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}", received
    server.close()


def test_configured_plain_http_endpoint_gets_no_token(
    eks: RunningFakeEks, listener: tuple[str, list[bytes]]
) -> None:
    # given a target configured with an http:// endpoint (and the cluster's real CA)
    url, received = listener
    target = _target(eks, "auth-ok", endpoint=url, ca_data=eks.ca_pem("auth-ok"))
    # when it is collected
    result = _collect(eks, target)
    # then it fails with an error naming the problem, and the endpoint never saw a connection
    assert result.status == "error"
    assert "not an https:// URL" in (result.error or "")
    time.sleep(0.2)
    assert received == []


def test_describe_cluster_answering_plain_http_gets_no_token(
    eks: RunningFakeEks, listener: tuple[str, list[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # given an EKS API whose DescribeCluster names an http:// endpoint
    url, received = listener
    ca = base64.b64encode(eks.ca_pem("auth-ok").encode()).decode()
    answer = {"cluster": {"name": "auth-ok", "endpoint": url, "status": "ACTIVE",
                          "certificateAuthority": {"data": ca}}}

    class DescribeCluster(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Quiet."""

    api = ThreadingHTTPServer(("127.0.0.1", 0), DescribeCluster)
    threading.Thread(target=api.serve_forever, daemon=True).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_EKS", f"http://127.0.0.1:{api.server_address[1]}")
    try:
        # when the cluster is collected
        result = _collect(eks, _target(eks, "auth-ok"))
    finally:
        api.shutdown()
        api.server_close()
    # then it fails with an error naming the problem, and the endpoint never saw a connection
    assert result.status == "error"
    assert "not an https:// URL" in (result.error or "")
    time.sleep(0.2)
    assert received == []
