"""The scraper's keep-alive connections against a real loopback TLS server, on both transports.

Reuse while the server keeps the connection; a connection the server closed while idle is replaced; on a
new connection a close without response is a connection error (one retry, then ``unreachable``). Never
more connections open at once than the concurrency; a server that never answers is a timeout; a token
refused mid-run is replaced once; a certificate from another CA fails closed; a pause of the scraper itself
does not count against the server.

Built-in transport only (the three ``test_builtin_*`` tests): a kept-alive connection the server closes just
as the next request arrives is reconnected once without counting as the pod's retry. The requests
transport cannot do that: urllib3 does not tell a reused connection's failure from a new one's, so there
the race costs the pod its one retry (``test_requests_*``; requests_transport's docstring).
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable

import pytest
from cni_metrics.adapters.scrape import (
    ClusterScraper,
    PodRef,
    ScrapeResult,
    ScrapeSettings,
    Transport,
    open_scraper,
)
from cni_metrics.adapters.tokens import BearerTokens
from fake_eks.certs import make_cluster_tls
from tls_server import PAYLOAD, FixedTokens, Requests, TlsServer

pytestmark = pytest.mark.integration

TOKEN = "k8s-aws-v1.secret-token-value"
# what the server does with request number n (from 0) on connection number c (from 0)
Behaviour = Callable[[int, int], str]
# "ok", "ok_then_close" (close when idle), "drop" (close, no response), "slow" (answer after 20 ms),
# "silent" (keep the connection, never answer), "unavailable" (503, connection kept), "held" (answer once
# ``release`` is set, telling ``arrived`` first)


class KeepAliveServer(TlsServer):
    """A TLS HTTP/1.1 server on 127.0.0.1 counting connections and requests."""

    def __init__(self, behaviour: Behaviour) -> None:
        super().__init__("keepalive")
        self.behaviour = behaviour
        self.requests: list[tuple[int, int, str]] = []
        self.refused_token = ""  # requests bearing it get a 401, on a connection kept alive
        self.arrived = threading.Event()
        self.release = threading.Event()

    def handle(self, sock: socket.socket, index: int) -> None:
        requests = Requests(sock)
        for number, request in enumerate(requests):
            refused = bool(self.refused_token) and f"Bearer {self.refused_token}\r\n".encode() in request.head
            action = "unauthorized" if refused else self.behaviour(index, number)
            self.requests.append((index, number, action))
            if action == "drop":
                return
            if action == "silent":
                requests.wait_for_close()
                return
            if action == "slow":
                time.sleep(0.02)
            if action == "held":
                self.arrived.set()
                self.release.wait(10)
            if action in ("unauthorized", "unavailable"):
                code = b"401 Unauthorized" if action == "unauthorized" else b"503 Service Unavailable"
                status = b'{"kind":"Status","message":"%s"}' % code
                sock.sendall(
                    b"HTTP/1.1 " + code + b"\r\nContent-Type: application/json\r\n"
                    b"Content-Length: " + str(len(status)).encode() + b"\r\n\r\n" + status
                )
                continue
            sock.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
                b"Content-Length: " + str(len(PAYLOAD)).encode() + b"\r\n\r\n" + PAYLOAD
            )
            if action == "ok_then_close":
                return


@pytest.fixture
def serve(loopback: Callable[[KeepAliveServer], KeepAliveServer]) -> Callable[[Behaviour], KeepAliveServer]:
    """Start a keep-alive server for the test (a test taking conftest's ``transport`` runs on both)."""
    return lambda behaviour: loopback(KeepAliveServer(behaviour))


def scraper_for(
    url: str, ca_pem: str, settings: ScrapeSettings, *, tokens: BearerTokens | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> ClusterScraper:
    """The scraper of ``settings.transport`` for ``url``, verifying with ``ca_pem`` alone."""
    context = ssl.create_default_context(cadata=ca_pem)
    return open_scraper(url, context, tokens or FixedTokens(TOKEN), settings, clock=clock)


def _scraper(server: KeepAliveServer, transport: Transport) -> ClusterScraper:
    settings = ScrapeSettings(concurrency=1, connect_timeout=2, read_timeout=2, transport=transport)
    return scraper_for(server.url, server.tls.ca_pem, settings)


def _scrape_one(scraper: ClusterScraper, pod: PodRef, deadline: float) -> ScrapeResult:
    """One pod (keep-alive connections of earlier calls are reused)."""
    return scraper.scrape_all([pod], deadline)[0]


def _scrape(scraper: ClusterScraper, name: str) -> tuple[str | None, str, int]:
    result = _scrape_one(scraper, PodRef(f"uid-{name}", name), time.monotonic() + 10)
    assert TOKEN not in result.message
    return result.reason, result.message, result.attempts


def _scrape_in_turn(
    server: KeepAliveServer, *names: str, transport: Transport = "builtin"
) -> list[tuple[str | None, str, int]]:
    """Scrape the pods one after another with one scraper (concurrency 1), then close it."""
    scraper = _scraper(server, transport)
    try:
        return [_scrape(scraper, name) for name in names]
    finally:
        scraper.close()


def test_one_connection_serves_every_request_while_the_server_keeps_it(
    serve: Callable[[Behaviour], KeepAliveServer], transport: Transport,
) -> None:
    # given a server that keeps every connection
    server = serve(lambda c, n: "ok")
    # when three pods are scraped one after another
    outcomes = _scrape_in_turn(server, *(f"aws-node-{i}" for i in range(3)), transport=transport)
    # then each is read at its first attempt, all three on one connection
    assert outcomes == [(None, "", 1)] * 3
    assert server.connections == 1
    assert len(server.requests) == 3


def test_a_connection_the_server_closed_while_idle_is_replaced(
    serve: Callable[[Behaviour], KeepAliveServer], transport: Transport,
) -> None:
    # given a server that closes each connection after one response
    server = serve(lambda c, n: "ok_then_close")
    scraper = _scraper(server, transport)
    try:
        first = _scrape(scraper, "aws-node-a")
        time.sleep(0.2)  # the close reaches the client's idle connection
        second = _scrape(scraper, "aws-node-b")
    finally:
        scraper.close()
    # then both succeed at the first attempt, on two connections
    assert (first, second) == ((None, "", 1), (None, "", 1))
    assert server.connections == 2
    assert len(server.requests) == 2


def test_builtin_a_stale_connection_dropped_at_the_next_request_is_reconnected_once_not_retried(
    serve: Callable[[Behaviour], KeepAliveServer],
) -> None:
    # given a server that drops the first connection when its second request arrives (keep-alive race)
    server = serve(lambda c, n: "drop" if (c, n) == (0, 1) else "ok")
    first, second = _scrape_in_turn(server, "aws-node-a", "aws-node-b")
    # then the second pod is scraped on a new connection, still its first attempt
    assert (first, second) == ((None, "", 1), (None, "", 1))
    assert server.connections == 2
    assert [action for _, _, action in server.requests] == ["ok", "drop", "ok"]


def test_requests_a_stale_connection_dropped_at_the_next_request_costs_the_pods_one_retry(
    serve: Callable[[Behaviour], KeepAliveServer],
) -> None:
    # given a server that drops the first connection when its second request arrives (keep-alive race)
    server = serve(lambda c, n: "drop" if (c, n) == (0, 1) else "ok")
    # when two pods are scraped one after another on the requests transport
    first, second = _scrape_in_turn(server, "aws-node-a", "aws-node-b", transport="requests")
    # then the second pod is scraped on a new connection, at its second attempt (the built-in transport's
    # first: test_builtin_a_stale_connection_dropped_at_the_next_request_is_reconnected_once_not_retried)
    assert (first, second) == ((None, "", 1), (None, "", 2))
    assert server.connections == 2
    assert [action for _, _, action in server.requests] == ["ok", "drop", "ok"]


def test_a_new_connection_closed_without_response_is_a_connection_error_retried_once(
    serve: Callable[[Behaviour], KeepAliveServer], transport: Transport,
) -> None:
    # given a server that drops every request
    server = serve(lambda c, n: "drop")
    # when a pod is scraped
    [(reason, message, attempts)] = _scrape_in_turn(server, "aws-node-a", transport=transport)
    # then it is unreachable after the one retry, with no extra reconnect (each try on a new connection)
    assert (reason, attempts) == ("unreachable", 2)
    assert "closed the connection without a response" in message
    assert server.connections == 2
    assert len(server.requests) == 2


def test_builtin_a_retry_that_finds_its_kept_connection_closed_is_sent_again_on_a_new_one(
    serve: Callable[[Behaviour], KeepAliveServer],
) -> None:
    # given a server that answers, then answers 503 on the same connection, then drops it at the retry
    script = {(0, 0): "ok", (0, 1): "unavailable", (0, 2): "drop"}
    server = serve(lambda c, n: script.get((c, n), "ok"))
    first, second = _scrape_in_turn(server, "aws-node-a", "aws-node-b")
    # then the retry after the 503 is not lost to the stale connection: it reaches the server on a new one
    assert first == (None, "", 1)
    assert second == (None, "", 2)
    assert [action for _, _, action in server.requests] == ["ok", "unavailable", "drop", "ok"]
    assert server.connections == 2


def test_builtin_a_reconnect_after_a_stale_connection_counts_as_the_one_retry(
    serve: Callable[[Behaviour], KeepAliveServer],
) -> None:
    # given a server that answers the first request, then drops every request
    server = serve(lambda c, n: "ok" if (c, n) == (0, 0) else "drop")
    first, (reason, _, attempts) = _scrape_in_turn(server, "aws-node-a", "aws-node-b")
    # then the second pod gets two requests in all (stale reuse, then one new connection), not three
    assert first == (None, "", 1)
    assert (reason, attempts) == ("unreachable", 1)
    assert [action for _, _, action in server.requests] == ["ok", "drop", "drop"]
    assert server.connections == 2


def test_never_more_connections_than_the_concurrency_and_each_is_reused(
    serve: Callable[[Behaviour], KeepAliveServer], transport: Transport,
) -> None:
    # given a server that answers every request after 20 ms, and a scraper with concurrency 4
    server = serve(lambda c, n: "slow")
    scraper = scraper_for(server.url, server.tls.ca_pem, ScrapeSettings(concurrency=4, transport=transport))
    pods = [PodRef(f"uid-{i}", f"aws-node-{i}") for i in range(30)]
    # when 30 pods are scraped
    try:
        results = scraper.scrape_all(pods, time.monotonic() + 20)
    finally:
        scraper.close()
    # then every pod is read once, in order, over at most 4 connections, none open beside 4 others
    assert [(r.key, r.reason, r.attempts) for r in results] == [(p.key, None, 1) for p in pods]
    assert all(r.metrics is not None and r.metrics.gauges["awscni_ip_max"] == 15 for r in results)
    assert len(server.requests) == 30
    assert server.connections <= 4
    assert server.most_open <= 4


def test_a_server_that_never_answers_is_a_timeout_and_the_run_goes_on(
    serve: Callable[[Behaviour], KeepAliveServer], transport: Transport,
) -> None:
    # given a server that never answers the first connection's request, and answers on the others
    server = serve(lambda c, n: "silent" if c == 0 else "ok")
    settings = ScrapeSettings(concurrency=2, connect_timeout=1, read_timeout=0.5, transport=transport)
    scraper = scraper_for(server.url, server.tls.ca_pem, settings)
    pods = [PodRef(f"uid-{i}", f"aws-node-{i}") for i in range(5)]
    # when five pods are scraped
    try:
        results = scraper.scrape_all(pods, time.monotonic() + 20)
    finally:
        scraper.close()
    # then the pod on the silent connection times out waiting for its response, and the others succeed
    reasons = [r.reason for r in results]
    assert reasons.count("timeout") == 1
    assert reasons.count(None) == 4
    timed_out = next(r for r in results if r.reason == "timeout")
    assert timed_out.message == "TimeoutError: timed out waiting for the response"
    assert len(server.requests) == 5


class RotatingTokens:
    """An expired token first; each refresh of it gives the one new token (as the provider caches it)."""

    def __init__(self) -> None:
        self.current = "k8s-aws-v1.expired"
        self.refresh_calls = 0

    def token(self) -> str:
        return self.current

    def refresh(self, stale: str) -> str:
        self.refresh_calls += 1
        if stale == self.current:
            self.current = TOKEN
        return self.current


def test_a_token_refused_mid_run_is_replaced_and_no_pod_sends_it_twice(
    serve: Callable[[Behaviour], KeepAliveServer], transport: Transport,
) -> None:
    # given a server that refuses the expired token on kept-alive connections, and concurrency 4
    server = serve(lambda c, n: "slow")
    tokens = RotatingTokens()
    server.refused_token = tokens.current
    settings = ScrapeSettings(concurrency=4, transport=transport)
    scraper = scraper_for(server.url, server.tls.ca_pem, settings, tokens=tokens)
    pods = [PodRef(f"uid-{i}", f"aws-node-{i}") for i in range(12)]
    # when 12 pods are scraped
    try:
        results = scraper.scrape_all(pods, time.monotonic() + 20)
    finally:
        scraper.close()
    # then every pod succeeds; only the requests already in flight bore the expired token, once each
    assert [r.reason for r in results] == [None] * 12
    refused = [action for _, _, action in server.requests].count("unauthorized")
    assert 1 <= refused <= 4
    assert tokens.refresh_calls == refused
    assert sorted(r.attempts for r in results) == [1] * (12 - refused) + [2] * refused
    assert len(server.requests) == 12 + refused
    assert server.connections <= 4


def test_a_server_with_a_certificate_from_another_ca_fails_closed_without_a_retry(
    serve: Callable[[Behaviour], KeepAliveServer], transport: Transport,
) -> None:
    # given a server whose certificate the scraper's CA did not sign
    server = serve(lambda c, n: "ok")
    other_ca = make_cluster_tls("another-cluster").ca_pem
    scraper = scraper_for(server.url, other_ca, ScrapeSettings(transport=transport))
    # when a pod is scraped
    try:
        result = _scrape_one(scraper, PodRef("uid-a", "aws-node-a"), time.monotonic() + 10)
    finally:
        scraper.close()
    # then the handshake fails verification, once, and no request was sent
    assert (result.reason, result.attempts) == ("unreachable", 1)
    assert result.message.startswith("TLS verification failed: ")
    assert "CERTIFICATE_VERIFY_FAILED" in result.message
    assert server.requests == []


def test_a_port_nobody_listens_on_is_unreachable_after_the_one_retry(transport: Transport) -> None:
    # given a loopback port that was bound and released, so nothing listens on it
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    tls = make_cluster_tls("nobody")
    settings = ScrapeSettings(concurrency=2, transport=transport)
    scraper = scraper_for(f"https://127.0.0.1:{port}", tls.ca_pem, settings)
    pods = [PodRef(f"uid-{i}", f"aws-node-{i}") for i in range(3)]
    # when pods are scraped
    try:
        results = scraper.scrape_all(pods, time.monotonic() + 10)
    finally:
        scraper.close()
    # then each is unreachable with the refusal named, after two connection attempts
    assert [(r.reason, r.attempts) for r in results] == [("unreachable", 2)] * 3
    assert all("Connection refused" in r.message for r in results)


def test_a_pause_of_the_scraper_itself_is_not_counted_against_the_server(
    serve: Callable[[Behaviour], KeepAliveServer], transport: Transport,
) -> None:
    # given a server that answers as soon as it is let, and a scraper whose clock jumps 10 s ahead (a
    # garbage collection, a throttled vCPU) just after letting it, the answer already in the socket
    server = serve(lambda c, n: "held")
    server.tls_context.maximum_version = ssl.TLSVersion.TLSv1_2  # no session ticket after the handshake
    jump: list[float] = []
    pausing = threading.Lock()  # the requests transport reads the clock from its threads too

    def clock() -> float:
        with pausing:
            if server.arrived.is_set() and not jump:
                server.release.set()
                time.sleep(0.2)  # the answer lands while the scraper is paused
                jump.append(10.0)
            return time.monotonic() + sum(jump)

    settings = ScrapeSettings(concurrency=1, connect_timeout=1, read_timeout=2, transport=transport)
    scraper = scraper_for(server.url, server.tls.ca_pem, settings, clock=clock)
    # when a pod is scraped
    try:
        result = _scrape_one(scraper, PodRef("uid-a", "aws-node-a"), time.monotonic() + 60)
    finally:
        scraper.close()
    # then the answer that arrived during the pause is read: no timeout, one request
    assert jump == [10.0]
    assert (result.reason, result.attempts) == (None, 1)
    assert len(server.requests) == 1
