"""Small servers on 127.0.0.1 for the wire tests: they write crafted bytes where a real server would not.

``LoopbackServer`` listens on a free loopback port while its ``with`` block lasts and gives each accepted
connection to ``handle`` on a thread of its own (a subclass's), counting connections; ``TlsServer`` first
wraps each one in TLS with a certificate of a cluster CA (``fake_eks.certs``). ``Requests`` reads the
requests of a kept-alive HTTP/1.1 connection one head at a time; ``response`` crafts an answer's bytes,
``ok`` the healthy aws-node's; ``FixedTokens`` are bearer tokens that never change. (tests/integration is
on sys.path under pytest, and on mypy's path in pyproject.toml.)
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from fake_eks.certs import make_cluster_tls

# a healthy aws-node's metrics: the gauge awscni_ip_max 15 and the counter awscni_add_ip_req_count 3
PAYLOAD = (
    b"# TYPE awscni_ip_max gauge\nawscni_ip_max 15\n# TYPE awscni_add_ip_req_count counter\n"
    b"awscni_add_ip_req_count 3\n"
)


def response(status: str, body: bytes, **headers: bytes) -> bytes:
    """An HTTP/1.1 response with raw header values (``Content_Length`` for ``Content-Length``; the body's
    length unless given, none when given as b"")."""
    fields = {"Content-Length": str(len(body)).encode()}
    fields.update({name.replace("_", "-"): value for name, value in headers.items()})
    lines = [f"HTTP/1.1 {status}".encode()] + [name.encode() + b": " + v for name, v in fields.items() if v]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def ok() -> bytes:
    """A healthy aws-node's answer: ``PAYLOAD`` as Prometheus text."""
    return response("200 OK", PAYLOAD, Content_Type=b"text/plain; version=0.0.4")


class FixedTokens:
    """Bearer tokens for a scraper or a reader: always ``value``, a refresh gives it again."""

    def __init__(self, value: str) -> None:
        self.value = value

    def token(self) -> str:
        return self.value

    def refresh(self, stale: str) -> str:
        return self.value


class LoopbackServer:
    """A plain TCP server on 127.0.0.1, serving while its ``with`` block lasts; each connection goes to
    ``handle`` on a thread of its own and is closed when that returns (an ``OSError`` ends it quietly)."""

    scheme = "http"

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.connections = 0  # accepted so far; a connection's index is its number among them, from 0
        self.open_now = 0
        self.most_open = 0  # the most connections open at once
        self.lock = threading.Lock()
        self._acceptor = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.listener.getsockname()[1]}"

    def handle(self, conn: socket.socket, index: int) -> None:
        """Serve connection number ``index`` (from 0)."""
        raise NotImplementedError

    def wrap(self, raw: socket.socket) -> socket.socket:
        """The connection ``handle`` is given for an accepted socket."""
        return raw

    def __enter__(self) -> Self:
        self._acceptor.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop accepting (connections already open are left to their threads)."""
        with suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept (close alone does not)
        self.listener.close()
        if self._acceptor.is_alive():
            self._acceptor.join(timeout=5)

    def _accept(self) -> None:
        while True:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            index = self.connections
            self.connections += 1
            threading.Thread(target=self._connection, args=(raw, index), daemon=True).start()

    def _connection(self, raw: socket.socket, index: int) -> None:
        with self.lock:
            self.open_now += 1
            self.most_open = max(self.most_open, self.open_now)
        try:
            with self.wrap(raw) as conn:
                self.handle(conn, index)
        except OSError:  # ssl.SSLError among them: a failed handshake, a client gone
            return
        finally:
            with self.lock:
                self.open_now -= 1


class TlsServer(LoopbackServer):
    """A ``LoopbackServer`` speaking TLS: the server certificate of a CA made for ``cluster``, one
    ``tls_context`` for every connection (change it before the connection it is to apply to)."""

    scheme = "https"

    def __init__(self, cluster: str) -> None:
        super().__init__()
        self.tls = make_cluster_tls(cluster)
        self.tls_context = self.tls.server_context()

    def wrap(self, raw: socket.socket) -> socket.socket:
        return self.tls_context.wrap_socket(raw, server_side=True)


@dataclass(frozen=True)
class Request:
    """One request's head: its request line and header lines, up to and with the blank line."""

    head: bytes

    @property
    def line(self) -> str:
        """The request line, e.g. ``GET /path HTTP/1.1``."""
        return self.head.split(b"\r\n", 1)[0].decode()

    def header(self, name: str) -> str:
        """The value of the header ``name`` (any case), '' when the request has none."""
        prefix = name.lower().encode() + b":"
        for line in self.head.split(b"\r\n")[1:]:
            if line.lower().startswith(prefix):
                return line.decode().split(":", 1)[1].strip()
        return ""


class Requests:
    """The requests arriving on one kept-alive connection, one head at a time, until the client closes it
    (a body is not read: the wire tests' clients send none)."""

    def __init__(self, conn: socket.socket) -> None:
        self._reader = conn.makefile("rb")

    def __iter__(self) -> Iterator[Request]:
        while True:
            head = b""
            while not head.endswith(b"\r\n\r\n"):
                line = self._reader.readline()
                if not line:
                    return
                head += line
            yield Request(head)

    def wait_for_close(self) -> None:
        """Read, and drop, everything until the client closes the connection."""
        self._reader.read()
