"""A direct invoke cannot send the collector's EKS bearer token anywhere (issue 14, item 1).

Two listeners on 127.0.0.1 stand for an attacker's endpoint: one plain HTTP, one TLS with its own CA.
They record every connection and request. Each way an event could say how to reach a cluster (endpoint
over http, endpoint over https with that endpoint's CA, role_arn, region, ca_data alone) goes through
``load_settings`` and through the collector handler with moto and the EKS stand-in; the event must be
refused naming the field, the listeners must see nothing, and the stand-in must have served nothing.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socket import socket
from types import ModuleType
from typing import Any

import boto3
import pytest
from cni_metrics.adapters import eks_auth
from cni_metrics.collector.settings import ConfigError, load_settings
from fake_eks.certs import make_cluster_tls
from fake_eks.testing import RunningFakeEks
from harness import STATE_BUCKET, collector_settings, set_env
from lambda_app import LambdaContext, load_app

pytestmark = pytest.mark.integration

TAG = "cni-metrics=enabled"
SCENARIO: dict[str, Any] = {
    "name": "sec-event-token",
    "seed": 5,
    "clusters": [
        {"name": "sec-alpha", "nodes": 3, "tags": {"cni-metrics": "enabled"}},
        {"name": "sec-beta", "nodes": 3, "tags": {"cni-metrics": "enabled"}},
        {"name": "sec-untagged", "nodes": 3},
    ],
}


@dataclass
class Listener:
    """A loopback server that records every connection and every request it gets, and answers 401."""

    scheme: str
    url: str = ""
    connections: list[tuple[str, int]] = field(default_factory=list)
    requests: list[tuple[str, str, bool]] = field(default_factory=list)  # method, path, had Authorization
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def seen(self) -> list[Any]:
        with self.lock:
            return [*self.connections, *self.requests]


def _listener(scheme: str, wrap: Callable[[socket], socket] | None) -> tuple[Listener, ThreadingHTTPServer]:
    listener = Listener(scheme)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _record(self) -> None:
            with listener.lock:
                listener.requests.append((self.command, self.path, "Authorization" in self.headers))
            body = json.dumps({"kind": "Status", "status": "Failure", "code": 401}).encode()
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = _record

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def process_request(self, request: Any, client_address: Any) -> None:
            with listener.lock:
                listener.connections.append(client_address)
            super().process_request(request, client_address)

        def finish_request(self, request: Any, client_address: Any) -> None:
            # the TLS handshake happens in the request's thread, so a failed one blocks nobody
            super().finish_request(wrap(request) if wrap else request, client_address)

    server = Server(("127.0.0.1", 0), Handler)
    listener.url = f"{scheme}://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return listener, server


@dataclass
class Listeners:
    plain: Listener
    tls: Listener
    tls_ca_data: str  # base64 of the TLS listener's CA, as DescribeCluster and kubeconfig carry it

    def seen(self) -> dict[str, list[Any]]:
        return {"plain": self.plain.seen, "tls": self.tls.seen}


@pytest.fixture(scope="module")
def running_listeners() -> Iterator[Listeners]:
    tls = make_cluster_tls("attacker")
    context = tls.server_context()
    plain, plain_server = _listener("http", None)
    secure, tls_server = _listener("https", lambda sock: context.wrap_socket(sock, server_side=True))
    ca_data = base64.b64encode(tls.ca_pem.encode()).decode()
    yield Listeners(plain, secure, ca_data)
    for server in (plain_server, tls_server):
        server.shutdown()
        server.server_close()


@pytest.fixture
def listeners(running_listeners: Listeners) -> Listeners:
    """The two listeners, with nothing recorded yet in this test."""
    for listener in (running_listeners.plain, running_listeners.tls):
        with listener.lock:
            listener.connections.clear()
            listener.requests.clear()
    return running_listeners


# Every way an event could say how to reach sec-alpha, and the field the refusal must name.
FORMS: dict[str, tuple[Callable[[Listeners], dict[str, Any]], str]] = {
    "endpoint-http": (lambda ls: {"endpoint": ls.plain.url}, "endpoint"),
    "endpoint-https-with-its-ca": (
        lambda ls: {"endpoint": ls.tls.url, "ca_data": ls.tls_ca_data}, "endpoint"),
    "role_arn": (lambda ls: {"role_arn": "arn:aws:iam::210987654321:role/attacker"}, "role_arn"),
    "region": (lambda ls: {"region": "eu-west-1"}, "region"),
    "ca_data-alone": (lambda ls: {"ca_data": ls.tls_ca_data}, "ca_data"),
}


def load_handler() -> ModuleType:
    """A freshly imported handler module, no EKS endpoint or token cached."""
    eks_auth.clear_caches()
    return load_app("collector")


@pytest.fixture
def collector_env(aws: str, eks: RunningFakeEks, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The collector's environment (sec-alpha configured by name), also set in os.environ."""
    env = {
        **eks.env(),
        "AWS_ENDPOINT_URL_S3": aws,
        "AWS_ENDPOINT_URL_CLOUDWATCH": aws,
        **collector_settings(CLUSTER_NAMES="sec-alpha", PUBLISH_MAX_ATTEMPTS="1", READ_TIMEOUT_SECONDS="5"),
    }
    set_env(monkeypatch, env)
    return env


def scrapes(eks: RunningFakeEks) -> dict[str, int]:
    """How many times the stand-in served each cluster's aws-node pods, in total."""
    return {name: sum(pod["scrapes"] for pod in eks.truth(name)["pods"]) for name in eks.clusters}


def stored_and_published() -> tuple[list[str], list[str]]:
    """State objects in the bucket, and metric names in moto's CloudWatch."""
    listing = boto3.client("s3").list_objects_v2(Bucket=STATE_BUCKET)
    metrics = boto3.client("cloudwatch").list_metrics(Namespace="Kubernetes")["Metrics"]
    return [o["Key"] for o in listing.get("Contents", [])], [m["MetricName"] for m in metrics]


@pytest.mark.parametrize("form", list(FORMS))
def test_load_settings_refuses_every_override_naming_the_field(
    form: str, listeners: Listeners, collector_env: dict[str, str]
) -> None:
    # given sec-alpha configured by name, and an event that also says how to reach it
    extra, field_name = FORMS[form]
    event = {"clusters": [{"name": "sec-alpha", **extra(listeners)}]}
    # when the settings are loaded
    with pytest.raises(ConfigError) as raised:
        load_settings(collector_env, event)
    # then the event is refused naming the field, and nobody was contacted
    assert str(raised.value).startswith(f"invalid event: clusters.0.{field_name}: not allowed in an event")
    assert listeners.seen() == {"plain": [], "tls": []}


@pytest.mark.parametrize("form", list(FORMS))
def test_the_handler_refuses_every_override_and_no_token_leaves(
    form: str, listeners: Listeners, collector_env: dict[str, str], eks: RunningFakeEks
) -> None:
    # given the stand-in, moto, and what the stand-in has served so far
    extra, field_name = FORMS[form]
    event = {"clusters": [{"name": "sec-alpha", **extra(listeners)}]}
    served_before = scrapes(eks)
    # when the collector handler is invoked with the event
    with pytest.raises(ConfigError) as raised:
        load_handler().lambda_handler(event, LambdaContext())
    # then it is refused naming the field
    assert f"clusters.0.{field_name}: not allowed in an event" in str(raised.value)
    # and neither listener saw a connection, the stand-in served nothing, nothing was stored or published
    assert listeners.seen() == {"plain": [], "tls": []}
    assert scrapes(eks) == served_before
    assert stored_and_published() == ([], [])


def test_an_event_naming_a_cluster_the_deployment_does_not_configure_is_refused(
    listeners: Listeners, collector_env: dict[str, str], eks: RunningFakeEks
) -> None:
    # given sec-alpha configured and no discovery; sec-beta exists in the account but is not configured
    served_before = scrapes(eks)
    # when an event names sec-beta
    with pytest.raises(ConfigError) as raised:
        load_handler().lambda_handler({"clusters": ["sec-alpha", "sec-beta"]}, LambdaContext())
    # then it is refused naming its place in the event, and nothing was collected
    assert "clusters.1: 'sec-beta' is not a configured cluster" in str(raised.value)
    assert scrapes(eks) == served_before
    assert stored_and_published() == ([], [])


def test_an_event_by_name_collects_the_configured_cluster_only(
    listeners: Listeners, collector_env: dict[str, str], eks: RunningFakeEks
) -> None:
    # given sec-alpha configured by name
    served_before = scrapes(eks)
    # when an event chooses it by name
    result = load_handler().lambda_handler({"clusters": ["sec-alpha"]}, LambdaContext())
    # then it alone is collected, from the endpoint DescribeCluster gave, and the listeners saw nothing
    assert [(c["cluster"], c["status"]) for c in result["clusters"]] == [("sec-alpha", "ok")]
    served = scrapes(eks)
    assert served["sec-alpha"] > served_before["sec-alpha"]
    assert {name: served[name] - served_before[name] for name in ("sec-beta", "sec-untagged")} == {
        "sec-beta": 0, "sec-untagged": 0}
    assert listeners.seen() == {"plain": [], "tls": []}


def test_with_discovery_an_event_chooses_among_the_tagged_clusters_only(
    listeners: Listeners, collector_env: dict[str, str], eks: RunningFakeEks,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given discovery by tag only (sec-alpha and sec-beta carry it, sec-untagged does not)
    monkeypatch.delenv("CLUSTER_NAMES")
    monkeypatch.setenv("CLUSTER_DISCOVERY_TAG", TAG)
    served_before = scrapes(eks)
    # when an event names sec-beta and the untagged cluster
    result = load_handler().lambda_handler({"clusters": ["sec-beta", "sec-untagged"]}, LambdaContext())
    # then sec-beta is collected, the untagged one is an error of the run and never reached, and the
    # tagged cluster the event did not name is left alone
    outcomes = {c["cluster"]: (c["status"], c["error"]) for c in result["clusters"]}
    assert outcomes == {
        "sec-beta": ("ok", None),
        "sec-untagged": ("error", f"not configured, and discovery by tag {TAG} did not find it"),
    }
    served = scrapes(eks)
    assert served["sec-beta"] > served_before["sec-beta"]
    assert served["sec-untagged"] == served_before["sec-untagged"]
    assert served["sec-alpha"] == served_before["sec-alpha"]
    assert listeners.seen() == {"plain": [], "tls": []}
