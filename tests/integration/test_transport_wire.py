"""Both transports against the same crafted bytes from a real TLS server on 127.0.0.1: the same results.

Payload cap (a gzip bomb, an announced size over the cap), a gzip member with bytes after it, a chunked
body, a Content-Length in Unicode digits, a gzip-encoded Status error, Retry-After as an HTTP date, a 401
answered by one token refresh, a redirect never followed (the token goes nowhere else).
"""

from __future__ import annotations

import email.utils
import gzip
import json
import socket
import ssl
import time
from collections.abc import Callable

import pytest
from cni_metrics.adapters.scrape import (
    PodRef,
    ScrapeResult,
    ScrapeSettings,
    Transport,
    open_scraper,
)
from tls_server import PAYLOAD, Requests, TlsServer, ok, response

pytestmark = pytest.mark.integration

TOKEN, NEW_TOKEN = "k8s-aws-v1.crafted", "k8s-aws-v1.renewed"
CAP = 1024 * 1024
# the answer to a request, from its request line and its Authorization value; bytes written as they are
Answer = Callable[[str, str], bytes]


class CraftedServer(TlsServer):
    """A keep-alive TLS server answering each request with the bytes ``answer`` gives."""

    def __init__(self, answer: Answer) -> None:
        super().__init__("crafted")
        self.answer = answer
        self.requests: list[tuple[str, str]] = []  # (request line, Authorization)

    def handle(self, conn: socket.socket, index: int) -> None:
        for request in Requests(conn):
            authorization = request.header("authorization")
            self.requests.append((request.line, authorization))
            conn.sendall(self.answer(request.line, authorization))


class Tokens:
    """TOKEN first; a refresh of it gives NEW_TOKEN."""

    def __init__(self) -> None:
        self.current = TOKEN
        self.refreshed: list[str] = []

    def token(self) -> str:
        return self.current

    def refresh(self, stale: str) -> str:
        self.refreshed.append(stale)
        self.current = NEW_TOKEN
        return self.current


@pytest.fixture
def crafted(loopback: Callable[[CraftedServer], CraftedServer]) -> Callable[[Answer], CraftedServer]:
    """Start a crafted server for the test (each test runs on both transports: conftest's ``transport``)."""
    return lambda answer: loopback(CraftedServer(answer))


def scrape(
    server: CraftedServer, transport: Transport, *names: str, tokens: Tokens | None = None
) -> dict[str, ScrapeResult]:
    """Scrape the named pods at once (concurrency 2, payload cap ``CAP``); results by pod name."""
    context = ssl.create_default_context(cadata=server.tls.ca_pem)
    settings = ScrapeSettings(
        concurrency=2, connect_timeout=2, read_timeout=2, max_payload_bytes=CAP, transport=transport
    )
    scraper = open_scraper(server.url, context, tokens or Tokens(), settings)
    try:
        results = scraper.scrape_all([PodRef(f"uid-{n}", n) for n in names], time.monotonic() + 15)
    finally:
        scraper.close()
    return {result.pod: result for result in results}


def by_pod(answers: dict[str, bytes]) -> Answer:
    """Each pod named in the request line gets its answer; any other the healthy payload."""
    def answer(request_line: str, authorization: str) -> bytes:
        return next((data for pod, data in answers.items() if f"/{pod}:" in request_line), ok())

    return answer


def test_a_gzip_bomb_stops_at_the_cap_and_an_announced_size_over_it_is_not_read(
    crafted: Callable[[Answer], CraftedServer], transport: Transport
) -> None:
    # given a pod answering 128 MiB of zeros gzipped (about 570 KiB), one announcing a plain body of
    # 2 MiB (over the 1 MiB cap), and a healthy pod
    bomb = gzip.compress(bytes(128 * 1024 * 1024), compresslevel=1)
    server = crafted(by_pod({
        "aws-node-bomb": response("200 OK", bomb, Content_Encoding=b"gzip"),
        "aws-node-big": response("200 OK", b"# " + bytes(2 * CAP)),
    }))
    # when the three are scraped
    results = scrape(server, transport, "aws-node-bomb", "aws-node-big", "aws-node-fine")
    # then the bomb is too large, found before its compressed bytes were all read
    bomb_result = results["aws-node-bomb"]
    assert (bomb_result.reason, bomb_result.attempts) == ("too_large", 1)
    assert f"larger than {CAP} bytes after decompression" in bomb_result.message
    assert bomb_result.bytes_read < len(bomb)
    # and the announced size is refused before its body is read
    big = results["aws-node-big"]
    assert (big.reason, big.attempts) == ("too_large", 1)
    assert big.message == f"payload of {2 * CAP + 2} bytes is larger than {CAP} bytes"
    assert big.bytes_read < CAP
    # and the healthy pod is read as served
    assert results["aws-node-fine"].metrics is not None
    assert results["aws-node-fine"].metrics.gauges == {"awscni_ip_max": 15.0}


def test_bytes_after_the_gzip_member_are_a_bad_payload_and_a_chunked_body_is_read(
    crafted: Callable[[Answer], CraftedServer], transport: Transport
) -> None:
    # given a pod whose gzip member is followed by 1 MiB of zeros, and one answering in chunks
    padded = gzip.compress(PAYLOAD) + bytes(CAP)
    parts = (PAYLOAD[:40], PAYLOAD[40:])
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in parts) + b"0\r\n\r\n"
    server = crafted(by_pod({
        "aws-node-padded": response("200 OK", padded, Content_Encoding=b"gzip"),
        "aws-node-chunked": response("200 OK", chunked, Content_Length=b"", Transfer_Encoding=b"chunked"),
    }))
    # when both are scraped
    results = scrape(server, transport, "aws-node-padded", "aws-node-chunked")
    # then the padded body is refused before the padding was read, and the chunked one is read whole
    padded_result = results["aws-node-padded"]
    assert padded_result.reason == "bad_payload"
    assert padded_result.message == "bytes after the end of the gzip body"
    assert padded_result.bytes_read < CAP
    chunked_metrics = results["aws-node-chunked"].metrics
    assert chunked_metrics is not None
    assert chunked_metrics.counters == {"awscni_add_ip_req_count": 3.0}


def test_unicode_digits_in_content_length_and_a_gzip_status_error_are_classed_alike(
    crafted: Callable[[Answer], CraftedServer], transport: Transport
) -> None:
    # given a pod answering "Content-Length: ²" and one a 403 whose Status JSON is gzip-encoded
    message = 'pods "aws-node-denied:61678" is forbidden: User "x" cannot get resource "pods/proxy"'
    status = {"kind": "Status", "status": "Failure", "reason": "Forbidden", "code": 403, "message": message}
    denied = response("403 Forbidden", gzip.compress(json.dumps(status).encode()), Content_Encoding=b"gzip")
    server = crafted(by_pod({
        "aws-node-length": response("200 OK", PAYLOAD, Content_Length=b"\xb2"),
        "aws-node-denied": denied,
    }))
    # when both are scraped
    results = scrape(server, transport, "aws-node-length", "aws-node-denied")
    # then the first is a broken response, not retried, and the second is forbidden with the Status message
    length = results["aws-node-length"]
    assert (length.reason, length.attempts) == ("unreachable", 1)
    assert length.message == "response: bad Content-Length '²'"
    denied_result = results["aws-node-denied"]
    assert (denied_result.reason, denied_result.attempts) == ("forbidden", 1)
    assert denied_result.message == f"HTTP 403: {message}"


def test_retry_after_as_an_http_date_is_waited_for_before_the_one_retry(
    crafted: Callable[[Answer], CraftedServer], transport: Transport
) -> None:
    # given a pod throttled once with a Retry-After two seconds ahead as an HTTP date
    answers = iter([
        response("429 Too Many Requests", b"slow down", Retry_After=email.utils.formatdate(
            time.time() + 2, usegmt=True).encode()),
        ok(),
    ])
    server = crafted(lambda request_line, authorization: next(answers))
    # when it is scraped
    started = time.monotonic()
    results = scrape(server, transport, "aws-node-a")
    elapsed = time.monotonic() - started
    # then it is read at the second attempt, after the date
    assert (results["aws-node-a"].reason, results["aws-node-a"].attempts) == (None, 2)
    assert elapsed >= 1.0
    assert len(server.requests) == 2


def test_a_401_is_answered_by_one_token_refresh_and_a_redirect_is_not_followed(
    crafted: Callable[[Answer], CraftedServer], transport: Transport
) -> None:
    # given a server refusing the first token, and a pod redirected elsewhere
    def answer(request_line: str, authorization: str) -> bytes:
        if authorization != f"Bearer {NEW_TOKEN}":
            return response("401 Unauthorized", b'{"kind":"Status","message":"Unauthorized"}')
        if "/aws-node-moved:" in request_line:
            return response("302 Found", b"", Location=b"/elsewhere")
        return ok()

    server = crafted(answer)
    tokens = Tokens()
    # when two pods are scraped one at a time
    first = scrape(server, transport, "aws-node-a", tokens=tokens)["aws-node-a"]
    moved = scrape(server, transport, "aws-node-moved", tokens=tokens)["aws-node-moved"]
    # then the first is read after one refresh of the refused token, which nothing sent again
    assert (first.reason, first.attempts) == (None, 2)
    assert tokens.refreshed == [TOKEN]
    assert [auth for _, auth in server.requests[:2]] == [f"Bearer {TOKEN}", f"Bearer {NEW_TOKEN}"]
    # and the redirect is a failure of its own, its target never asked
    assert (moved.reason, moved.attempts) == ("other", 1)
    assert moved.message == "HTTP 302"
    assert len(server.requests) == 3
    assert not any("/elsewhere" in line for line, _ in server.requests)
