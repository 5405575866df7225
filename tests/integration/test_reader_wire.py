"""What the readers make of crafted bytes from a real TLS server on 127.0.0.1: a gzip member followed by
more bytes, and numbers written in Unicode digits (``²`` passes ``str.isdigit`` and fails ``int``) in
Content-Length, Retry-After (scrape and pod listing) and a pod's restartCount."""

from __future__ import annotations

import gzip
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from cni_metrics.adapters.kube import api_client, list_aws_node_pods
from cni_metrics.adapters.scrape import PodRef, Scraper, ScrapeResult, ScrapeSettings
from fake_eks.certs import make_cluster_tls

pytestmark = pytest.mark.integration

PAYLOAD = b"# TYPE awscni_ip_max gauge\nawscni_ip_max 15\n# TYPE awscni_add_ip_req_count counter\n" \
    b"awscni_add_ip_req_count 3\n"
TOKEN = "k8s-aws-v1.crafted"
SUPERSCRIPT_TWO = b"\xb2"  # "²" in Latin-1, the charset HTTP header bytes are read in
# the answer to a request, from its request line; returned bytes are written as they are
Answer = Callable[[str], bytes]


def response(status: str, body: bytes, **headers: bytes) -> bytes:
    """An HTTP/1.1 response with the given header values as raw bytes (``Content_Length`` for
    ``Content-Length``; the body's length unless given)."""
    fields = {"Content-Length": str(len(body)).encode()}
    fields.update({name.replace("_", "-"): value for name, value in headers.items()})
    lines = [f"HTTP/1.1 {status}".encode()] + [name.encode() + b": " + v for name, v in fields.items()]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def ok() -> bytes:
    return response("200 OK", PAYLOAD, Content_Type=b"text/plain; version=0.0.4")


@dataclass
class CraftedServer:
    """A TLS server answering each request with the bytes ``answer`` gives for its request line."""

    answer: Answer
    requests: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.tls = make_cluster_tls("crafted")
        self.sock = socket.create_server(("127.0.0.1", 0))
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        while True:
            try:
                raw, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._connection, args=(raw,), daemon=True).start()

    def _connection(self, raw: socket.socket) -> None:
        try:
            with self.tls.server_context().wrap_socket(raw, server_side=True) as conn:
                reader = conn.makefile("rb")
                while True:
                    head = b""
                    while not head.endswith(b"\r\n\r\n"):
                        line = reader.readline()
                        if not line:
                            return
                        head += line
                    request_line = head.split(b"\r\n", 1)[0].decode()
                    self.requests.append(request_line)
                    conn.sendall(self.answer(request_line))
        except OSError:
            return


class Tokens:
    def token(self) -> str:
        return TOKEN

    def refresh(self, stale: str) -> str:
        return TOKEN


@pytest.fixture
def crafted() -> Iterator[Callable[[Answer], CraftedServer]]:
    servers: list[CraftedServer] = []

    def start(answer: Answer) -> CraftedServer:
        server = CraftedServer(answer)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.sock.close()


def scrape(server: CraftedServer, *names: str) -> dict[str, ScrapeResult]:
    context = ssl.create_default_context(cadata=server.tls.ca_pem)
    settings = ScrapeSettings(concurrency=2, connect_timeout=2, read_timeout=2)
    scraper = Scraper(server.url, context, Tokens(), settings)
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
    tokens = Tokens()
    # when the aws-node pods are listed
    api = api_client(server.url, server.tls.ca_pem.encode(), tokens)
    pods = list_aws_node_pods(api, tokens, "crafted", deadline=time.monotonic() + 10)
    # then the throttled page was asked again and the pod is listed, its restart count unknown
    assert len(server.requests) == 2
    assert [(pod.name, pod.restart_count) for pod in pods] == [("aws-node-a", None)]
