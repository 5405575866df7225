"""What the readers make of crafted bytes from a real TLS server on 127.0.0.1: a gzip member followed by
more bytes, and numbers written in Unicode digits (``²`` passes ``str.isdigit`` and fails ``int``) in
Content-Length, Retry-After (scrape and pod listing) and a pod's restartCount."""

from __future__ import annotations

import gzip
import json
import socket
import ssl
import time
from collections.abc import Callable

import pytest
from cni_metrics.adapters.kube import api_client, list_aws_node_pods
from cni_metrics.adapters.scrape import PodRef, Scraper, ScrapeResult, ScrapeSettings
from tls_server import PAYLOAD, FixedTokens, Requests, TlsServer, ok, response

pytestmark = pytest.mark.integration

TOKEN = "k8s-aws-v1.crafted"
SUPERSCRIPT_TWO = b"\xb2"  # "²" in Latin-1, the charset HTTP header bytes are read in
# the answer to a request, from its request line; returned bytes are written as they are
Answer = Callable[[str], bytes]


class CraftedServer(TlsServer):
    """A TLS server answering each request with the bytes ``answer`` gives for its request line."""

    def __init__(self, answer: Answer) -> None:
        super().__init__("crafted")
        self.answer = answer
        self.requests: list[str] = []

    def handle(self, conn: socket.socket, index: int) -> None:
        for request in Requests(conn):
            self.requests.append(request.line)
            conn.sendall(self.answer(request.line))


@pytest.fixture
def crafted(loopback: Callable[[CraftedServer], CraftedServer]) -> Callable[[Answer], CraftedServer]:
    return lambda answer: loopback(CraftedServer(answer))


def scrape(server: CraftedServer, *names: str) -> dict[str, ScrapeResult]:
    context = ssl.create_default_context(cadata=server.tls.ca_pem)
    settings = ScrapeSettings(concurrency=2, connect_timeout=2, read_timeout=2)
    scraper = Scraper(server.url, context, FixedTokens(TOKEN), settings)
    try:
        results = scraper.scrape_all([PodRef(f"uid-{n}", n) for n in names], time.monotonic() + 10)
    finally:
        scraper.close()
    return {result.pod: result for result in results}


def test_bytes_after_the_gzip_member_are_refused_not_buffered(
    crafted: Callable[[Answer], CraftedServer],
) -> None:
    # given a pod whose body is a valid gzip member followed by 8 MiB more, and a healthy pod
    member = gzip.compress(PAYLOAD)
    trailing = b"\0" * (8 * 1024 * 1024)
    padded = response("200 OK", member + trailing, Content_Encoding=b"gzip")

    def answer(request_line: str) -> bytes:
        return padded if "aws-node-padded" in request_line else ok()

    server = crafted(answer)
    # when both are scraped
    results = scrape(server, "aws-node-padded", "aws-node-fine")
    # then the padded body is a bad payload, refused before the trailing bytes were read, the other is fine
    padded_result = results["aws-node-padded"]
    assert padded_result.reason == "bad_payload"
    assert "after the end of the gzip body" in padded_result.message
    assert padded_result.bytes_read < len(trailing)
    assert results["aws-node-fine"].metrics is not None


def test_unicode_digits_in_content_length_or_retry_after_fail_only_that_pod(
    crafted: Callable[[Answer], CraftedServer],
) -> None:
    # given one pod answering with "Content-Length: ²", one with 429 and "Retry-After: ²", one healthy
    length = response("200 OK", PAYLOAD, Content_Length=SUPERSCRIPT_TWO)
    throttled = response("429 Too Many Requests", b"", Retry_After=SUPERSCRIPT_TWO)

    def answer(request_line: str) -> bytes:
        if "aws-node-length" in request_line:
            return length
        return throttled if "aws-node-throttled" in request_line else ok()

    server = crafted(answer)
    # when they are scraped
    results = scrape(server, "aws-node-length", "aws-node-throttled", "aws-node-fine")
    # then the first two fail as their own pods (the throttled one after its retry), the third is read
    assert results["aws-node-length"].reason == "unreachable"
    assert "bad Content-Length" in results["aws-node-length"].message
    assert (results["aws-node-throttled"].reason, results["aws-node-throttled"].attempts) == ("throttled", 2)
    assert results["aws-node-fine"].metrics is not None


def _pod_list(restart_count: object) -> bytes:
    pod = {"metadata": {"name": "aws-node-a", "uid": "uid-a"}, "spec": {"nodeName": "node-a"},
           "status": {"phase": "Running", "podIP": "10.0.0.1", "startTime": "2026-01-01T00:00:00Z",
                      "containerStatuses": [{"name": "aws-node", "restartCount": restart_count}]}}
    body = json.dumps({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": [pod]}).encode()
    return response("200 OK", body, Content_Type=b"application/json")


def test_listing_pods_survives_unicode_digits_in_retry_after_and_restart_count(
    crafted: Callable[[Answer], CraftedServer],
) -> None:
    # given an API server that throttles the first pod list with "Retry-After: ²", then lists a pod whose
    # restartCount is the string "²"
    throttled = response("429 Too Many Requests", b"", Retry_After=SUPERSCRIPT_TWO)
    answers = iter([throttled, _pod_list("²")])
    server = crafted(lambda request_line: next(answers))
    tokens = FixedTokens(TOKEN)
    # when the aws-node pods are listed
    api = api_client(server.url, server.tls.ca_pem.encode(), tokens)
    pods = list_aws_node_pods(api, tokens, "crafted", deadline=time.monotonic() + 10)
    # then the throttled page was asked again and the pod is listed, its restart count unknown
    assert len(server.requests) == 2
    assert [(pod.name, pod.restart_count) for pod in pods] == [("aws-node-a", None)]
