"""The scraper's HTTP/1.1 transport against a raw TLS server on loopback that sends scripted bytes.

Each script is the exact response bytes for one request; the assertions compare the body the client
reassembles with the body the script framed, and the reuse verdict with what the framing allows.
"""

from __future__ import annotations

import gzip
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from cni_metrics.adapters import http1
from fake_eks.certs import make_cluster_tls

pytestmark = pytest.mark.integration

BODY = b"# TYPE awscni_ip_max gauge\nawscni_ip_max 15\n" * 40
REQUEST = http1.request_bytes("/metrics", "127.0.0.1", {"Accept-Encoding": "gzip"})


class ScriptedServer:
    """Answers request number n on its one connection with ``responses[n]`` (then closes if told)."""

    def __init__(self, responses: list[bytes], close_after: bool) -> None:
        tls = make_cluster_tls("http1")
        self.ca_pem = tls.ca_pem
        self._context = tls.server_context()
        self._responses = responses
        self._close_after = close_after
        self.requests: list[bytes] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        try:
            raw, _ = self.listener.accept()
        except OSError:
            return
        with self._context.wrap_socket(raw, server_side=True) as sock:
            reader = sock.makefile("rb")
            for response in self._responses:
                head = b""
                while not head.endswith(b"\r\n\r\n"):
                    line = reader.readline()
                    if not line:
                        return
                    head += line
                self.requests.append(head)
                sock.sendall(response)
            if not self._close_after:
                reader.read()  # keep the connection until the client closes it

    @contextmanager
    def connection(self) -> Iterator[http1.Connection]:
        context = ssl.create_default_context(cadata=self.ca_pem)
        conn = http1.Connection("127.0.0.1", self.listener.getsockname()[1], context)
        conn.connect(2.0)
        try:
            yield conn
        finally:
            conn.close()


@pytest.fixture
def server() -> Iterator[Callable[..., ScriptedServer]]:
    started: list[ScriptedServer] = []

    def start(*responses: bytes, close_after: bool = False) -> ScriptedServer:
        started.append(ScriptedServer(list(responses), close_after))
        return started[-1]

    yield start
    for each in started:
        each.listener.close()


def _chunked(body: bytes, size: int, trailer: bytes = b"") -> bytes:
    pieces = [body[i : i + size] for i in range(0, len(body), size)]
    framed = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in pieces)
    return framed + b"0\r\n" + trailer + b"\r\n"


def _exchange(conn: http1.Connection) -> tuple[http1.Head, bytes]:
    conn.send(REQUEST, 2.0)
    head = conn.read_head()
    parts = []
    while piece := conn.read_body():
        parts.append(piece)
    return head, b"".join(parts)


def test_content_length_bodies_are_read_whole_and_the_connection_is_reused(
    server: Callable[..., ScriptedServer],
) -> None:
    # given two responses framed by Content-Length on one connection
    response = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Type: text/plain\r\n\r\n%s" % (
        len(BODY),
        BODY,
    )
    srv = server(response, response)
    with srv.connection() as conn:
        # when both are read
        first_head, first = _exchange(conn)
        reusable = conn.reusable()
        _, second = _exchange(conn)
    # then each body is the one framed, the head is parsed, and the one connection served both
    assert (first, second) == (BODY, BODY)
    assert first_head.status == 200
    assert first_head.header("content-type") == "text/plain"
    assert reusable
    assert conn.responses == 2
    assert len(srv.requests) == 2
    assert srv.requests[0] == REQUEST


def test_chunked_bodies_with_extensions_and_trailers_are_reassembled(
    server: Callable[..., ScriptedServer],
) -> None:
    # given a gzip body sent in 100-byte chunks with chunk extensions and a trailer field
    wire = gzip.compress(BODY)
    response = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Encoding: gzip\r\n\r\n" + _chunked(
        wire, 100, b"X-Checksum: 1\r\n"
    )
    srv = server(response, response)
    with srv.connection() as conn:
        head, body = _exchange(conn)
        reusable = conn.reusable()
        _, again = _exchange(conn)
    # then the de-chunked bytes are the gzip stream sent, and the connection stays usable
    assert head.header("content-encoding") == "gzip"
    assert body == again == wire
    assert gzip.decompress(body) == BODY
    assert reusable


def test_interim_100_responses_are_skipped(server: Callable[..., ScriptedServer]) -> None:
    srv = server(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc")
    with srv.connection() as conn:
        head, body = _exchange(conn)
    assert (head.status, body) == (200, b"abc")


def test_a_body_ended_by_close_is_read_to_the_end_and_not_reused(
    server: Callable[..., ScriptedServer],
) -> None:
    srv = server(b"HTTP/1.1 200 OK\r\n\r\n" + BODY, close_after=True)
    with srv.connection() as conn:
        _, body = _exchange(conn)
        reusable = conn.reusable()
    assert body == BODY
    assert not reusable


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
    ],
)
def test_responses_that_end_the_connection_make_it_not_reusable(
    server: Callable[..., ScriptedServer], head: bytes
) -> None:
    body = _chunked(b"abc", 2) if b"chunked" in head else b"abc"
    srv = server(head + body)
    with srv.connection() as conn:
        _, read = _exchange(conn)
        reusable = conn.reusable()
    assert read == b"abc"
    assert not reusable


def test_extra_bytes_after_a_response_make_the_connection_not_reusable(
    server: Callable[..., ScriptedServer],
) -> None:
    srv = server(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcHTTP/1.1 200 OK\r\n")
    with srv.connection() as conn:
        _, body = _exchange(conn)
        reusable = conn.reusable()
    assert body == b"abc"
    assert not reusable


@pytest.mark.parametrize(
    ("response", "error", "text"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", http1.TruncatedBody, "7 bytes before the end"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", http1.TruncatedBody, "of a chunk"),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
            http1.TruncatedBody,
            "size line",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            http1.ProtocolError,
            "bad chunk size",
        ),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n", http1.ProtocolError, "longer"),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1" + b"0" * 5000,
            http1.ProtocolError,
            "longer than",
        ),
    ],
)
def test_broken_bodies_raise_a_clear_error(
    server: Callable[..., ScriptedServer], response: bytes, error: type[Exception], text: str
) -> None:
    srv = server(response, close_after=True)
    with srv.connection() as conn, pytest.raises(error, match=text):
        _exchange(conn)


@pytest.mark.parametrize(
    ("response", "text"),
    [
        (b"SSH-2.0-OpenSSH\r\n\r\n", "bad status line"),
        (b"HTTP/1.1 2000 OK\r\n\r\n", "bad status line"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "bad header line"),
        (b"HTTP/1.1 200 OK\r\nA: b\r\n folded\r\n\r\n", "bad header line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 3, 4\r\n\r\nabc", "bad Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -3\r\n\r\nabc", "bad Content-Length"),
        (b"HTTP/1.1 200 OK\r\nX: " + b"a" * (70 * 1024), "longer than"),
        (b"HTTP/1.1 200 OK\r\nX: a", "closed inside the response head"),
    ],
)
def test_broken_heads_raise_a_protocol_error(
    server: Callable[..., ScriptedServer], response: bytes, text: str
) -> None:
    srv = server(response, close_after=True)
    with srv.connection() as conn, pytest.raises(http1.ProtocolError, match=text):
        _exchange(conn)


def test_a_close_before_any_response_byte_is_its_own_error(server: Callable[..., ScriptedServer]) -> None:
    srv = server(b"", close_after=True)
    with srv.connection() as conn, pytest.raises(http1.ClosedWithoutResponse):
        _exchange(conn)


def test_a_silent_server_times_out(server: Callable[..., ScriptedServer]) -> None:
    srv = server()  # accepts, never answers
    with srv.connection() as conn:
        conn.send(REQUEST, 0.3)
        with pytest.raises(TimeoutError):
            conn.read_head()


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/metrics\r\nX-Injected: 1", {}),
        ("/metrics HTTP/1.0", {}),
        ("/metrics", {"Authorization": "Bearer a\r\nX-Injected: 1"}),
        ("/metrics", {"Authorization": "Bearer a\nb"}),
    ],
)
def test_requests_that_could_be_split_are_refused(path: str, headers: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="control character"):
        http1.request_bytes(path, "example.com", headers)


def test_a_request_carries_the_host_and_headers_in_order() -> None:
    request = http1.request_bytes("/api/v1/x", "abc.eks.amazonaws.com", {"Accept": "*/*", "User-Agent": "u"})
    assert (
        request
        == b"GET /api/v1/x HTTP/1.1\r\nHost: abc.eks.amazonaws.com\r\nAccept: */*\r\nUser-Agent: u\r\n\r\n"
    )
