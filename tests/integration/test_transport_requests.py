"""What the requests transport is for: the environment's proxy settings, against the EKS stand-in.

With ``HTTPS_PROXY`` set, the requests transport reaches the API server through a CONNECT tunnel of that
proxy (a real one on loopback, recording its tunnels); ``NO_PROXY`` bypasses it; the built-in transport
ignores both (it always connects directly). A whole collection goes through the proxy with
``SCRAPE_TRANSPORT=requests``, the pod listing included. ``REQUESTS_CA_BUNDLE`` neither replaces nor
extends the cluster CA. Scraped pods are checked against the stand-in's truth API.
"""

from __future__ import annotations

import math
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import boto3
import pytest
from cni_metrics.adapters.eks_auth import ClusterTarget, TokenProvider, resolve_endpoint
from cni_metrics.adapters.scrape import (
    DEFAULT_SCRAPE,
    PodRef,
    ScrapeResult,
    ScrapeSettings,
    Transport,
    open_scraper,
)
from cni_metrics.collector.cluster import collect_cluster
from fake_eks.certs import make_cluster_tls
from fake_eks.testing import RunningFakeEks
from tls_server import LoopbackServer

pytestmark = pytest.mark.integration

CLUSTER = "proxied"
NODES = 6
SCENARIO = {"name": "proxy", "seed": 5, "clusters": [{"name": CLUSTER, "nodes": NODES}]}
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy")


class ConnectProxy(LoopbackServer):
    """An HTTP proxy on 127.0.0.1 that only tunnels (CONNECT), recording each tunnel's target."""

    def __init__(self) -> None:
        super().__init__()
        self.tunnels: list[str] = []

    def handle(self, client: socket.socket, index: int) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            data = client.recv(4096)
            if not data:
                return
            head += data
        method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
        if method != "CONNECT":
            client.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            return
        host, port = target.rsplit(":", 1)
        try:
            upstream = socket.create_connection((host, int(port)), timeout=5)
        except OSError:
            client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        self.tunnels.append(target)
        with upstream:
            upstream.settimeout(None)
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            back = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
            back.start()
            _pipe(client, upstream)
            back.join()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    """Copy until ``source`` ends, then end ``sink``'s sending side."""
    try:
        while data := source.recv(65536):
            sink.sendall(data)
        sink.shutdown(socket.SHUT_WR)
    except OSError:
        return


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[ConnectProxy]:
    """A CONNECT proxy, no proxy variable set yet."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    with ConnectProxy() as running:
        yield running


def _pods(eks: RunningFakeEks) -> list[PodRef]:
    return [PodRef(pod["uid"], pod["name"]) for pod in eks.truth(CLUSTER)["pods"]]


def _scrape(eks: RunningFakeEks, transport: Transport, ca_pem: str | None = None) -> list[ScrapeResult]:
    """Scrape every pod of the cluster once with ``transport``, verifying with ``ca_pem`` (the cluster's)."""
    target = ClusterTarget(CLUSTER, eks.connection["region"])
    session = boto3.Session()
    endpoint = resolve_endpoint(target, session)
    context = ssl.create_default_context(cadata=ca_pem or endpoint.ca_pem.decode())
    settings = ScrapeSettings(concurrency=3, transport=transport)
    scraper = open_scraper(endpoint.url, context, TokenProvider(target, session), settings)
    try:
        return scraper.scrape_all(_pods(eks), time.monotonic() + 20)
    finally:
        scraper.close()


def _scrapes(eks: RunningFakeEks) -> dict[str, int]:
    """Successful scrapes of each pod so far, as the stand-in counts them."""
    return {pod["uid"]: pod["scrapes"] for pod in eks.truth(CLUSTER)["pods"]}


def _endpoint_netloc(eks: RunningFakeEks) -> str:
    return eks.endpoint(CLUSTER).removeprefix("https://")


@pytest.mark.parametrize(("transport", "tunnelled"), [("requests", True), ("builtin", False)])
def test_https_proxy_carries_the_requests_transport_and_not_the_builtin_one(
    eks: RunningFakeEks, proxy: ConnectProxy, monkeypatch: pytest.MonkeyPatch, transport: Transport,
    tunnelled: bool,
) -> None:
    # given HTTPS_PROXY naming a CONNECT proxy on loopback
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    before = _scrapes(eks)
    # when every pod is scraped at concurrency 3
    results = _scrape(eks, transport)
    # then every pod is read once, as the stand-in counts it
    assert [r.reason for r in results] == [None] * NODES
    assert {uid: count - before[uid] for uid, count in _scrapes(eks).items()} == dict.fromkeys(before, 1)
    # and the requests transport went through 1 to 3 tunnels to the API server, the built-in one through none
    if tunnelled:
        assert 1 <= len(proxy.tunnels) <= 3
        assert set(proxy.tunnels) == {_endpoint_netloc(eks)}
    else:
        assert proxy.tunnels == []


def test_no_proxy_sends_the_requests_transport_directly(
    eks: RunningFakeEks, proxy: ConnectProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given HTTPS_PROXY, and NO_PROXY naming the API server's address
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    # when every pod is scraped with the requests transport
    results = _scrape(eks, "requests")
    # then every pod is read, and the proxy carried nothing
    assert [r.reason for r in results] == [None] * NODES
    assert proxy.tunnels == []


def test_a_whole_collection_goes_through_the_proxy_with_the_requests_transport(
    eks: RunningFakeEks, proxy: ConnectProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given HTTPS_PROXY, and EC2 (subnet headroom) on a closed loopback port
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_EC2", "http://127.0.0.1:9")
    # when the cluster is collected with SCRAPE_TRANSPORT=requests
    scrape = replace(DEFAULT_SCRAPE, transport="requests")
    result = collect_cluster(
        ClusterTarget(CLUSTER, eks.connection["region"]), scrape=scrape, deadline=time.monotonic() + 20
    )
    # then every node is read with the values the stand-in served
    assert result.status == "ok", result.error
    truth = {pod["uid"]: pod for pod in eks.truth(CLUSTER)["pods"]}
    assert {node.key for node in result.nodes} == set(truth)
    for node in result.nodes:
        for family, value in truth[node.key]["served"]["gauges"].items():
            assert math.isclose(node.metrics.gauges[family], value, rel_tol=1e-9, abs_tol=1e-6)
    # and every connection to the API server (pod list, node list, scrapes) was a tunnel of the proxy
    assert set(proxy.tunnels) == {_endpoint_netloc(eks)}
    assert len(proxy.tunnels) >= 2  # the kubernetes client's, and at least one of the scrape's


def test_requests_ca_bundle_neither_replaces_nor_extends_the_cluster_ca(
    eks: RunningFakeEks, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # given REQUESTS_CA_BUNDLE naming a file with another CA
    other_ca = make_cluster_tls("another-cluster").ca_pem
    bundle = tmp_path / "bundle.pem"
    bundle.write_text(other_ca)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    # when the pods are scraped with the requests transport, verifying with the cluster CA
    results = _scrape(eks, "requests")
    # then the cluster CA alone decides: every pod is read
    assert [r.reason for r in results] == [None] * NODES
    # and given the bundle holds the cluster CA while the scraper is given the other CA
    bundle.write_text(eks.ca_pem(CLUSTER))
    refused = _scrape(eks, "requests", ca_pem=other_ca)
    # then the bundle does not extend the trust: every pod fails verification, without a retry
    assert {(r.reason, r.attempts) for r in refused} == {("unreachable", 1)}
    assert all(r.message.startswith("TLS verification failed: ") for r in refused)
