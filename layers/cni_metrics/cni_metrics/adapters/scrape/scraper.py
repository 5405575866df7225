"""The scraper of one cluster: aws-node metrics through the Kubernetes API server proxy.

``GET /api/v1/namespaces/kube-system/pods/<pod>:61678/proxy/metrics`` over keep-alive HTTPS (TLS
verified with the cluster CA, host name checked), from one thread: up to ``concurrency`` non-blocking
connections on one selector, owned here and kept from one ``scrape_all`` to the next, each of which is a
``loop.ScrapeRun``. ``ScrapeSettings`` is the home of the scrape defaults (``DEFAULT_SCRAPE``), the choice
of transport included (``transport.open_scraper``).
"""

from __future__ import annotations

import errno
import os
import random
import selectors
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args
from urllib.parse import quote, urlsplit

from cni_metrics.adapters.scrape import http1
from cni_metrics.adapters.scrape.attempts import PodRef, Progress, ScrapeResult
from cni_metrics.adapters.scrape.loop import IDLE, Conn, RunContext, ScrapeRun
from cni_metrics.adapters.tokens import BearerTokens

METRICS_PORT = 61678
USER_AGENT = "cni-metrics-lambda"
ACCEPT = "text/plain;version=0.0.4;q=1,*/*;q=0.1"
HEADERS = {"Accept": ACCEPT, "Accept-Encoding": "gzip", "User-Agent": USER_AGENT}
"""The header fields of every scrape request besides its bearer token (both transports)."""

Transport = Literal["builtin", "requests"]
TRANSPORTS: tuple[Transport, ...] = get_args(Transport)


@dataclass(frozen=True, slots=True)
class ScrapeSettings:
    """Knobs of one cluster's scrape; ``transport``: this module's ``Scraper`` (``builtin``) or
    ``requests_transport.RequestsScraper`` (``requests``)."""

    concurrency: int = 64
    connect_timeout: float = 3.0
    read_timeout: float = 10.0
    max_payload_bytes: int = 8 * 1024 * 1024
    transport: Transport = "builtin"


DEFAULT_SCRAPE = ScrapeSettings()


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a cluster's API server is: host name, port, ``host[:port]`` (no user info), path prefix."""

    host: str
    port: int
    netloc: str
    prefix: str


def checked_endpoint(endpoint_url: str, ssl_context: ssl.SSLContext) -> Endpoint:
    """The cluster's endpoint; ValueError unless its URL is https with a host and the TLS context verifies
    the certificate and the host name."""
    parts = urlsplit(endpoint_url)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"cluster endpoint must be an https URL, got {endpoint_url!r}")
    if ssl_context.verify_mode != ssl.CERT_REQUIRED or not ssl_context.check_hostname:
        raise ValueError("the cluster TLS context must verify the certificate and the host name")
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return Endpoint(parts.hostname, parts.port or 443, netloc, parts.path.rstrip("/"))


def metrics_path(pod: str) -> str:
    """The API server proxy path of a pod's metrics endpoint."""
    return f"/api/v1/namespaces/kube-system/pods/{quote(pod, safe='')}:{METRICS_PORT}/proxy/metrics"


class Scraper:
    """Scrapes aws-node pods of one cluster through its API server, from the calling thread."""

    def __init__(
        self,
        endpoint_url: str,
        ssl_context: ssl.SSLContext,
        tokens: BearerTokens,
        settings: ScrapeSettings = DEFAULT_SCRAPE,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        endpoint = checked_endpoint(endpoint_url, ssl_context)
        self._host = endpoint.host
        self._port = endpoint.port
        self._ssl_context = ssl_context
        self._prefix = endpoint.prefix
        self._netloc = endpoint.netloc
        self._settings = settings
        self._tokens = tokens
        self._clock = clock
        self._rng = rng or random.Random()
        self._headers: tuple[str, dict[str, str]] = ("", {})
        self._selector = selectors.DefaultSelector()
        self._conns: dict[int, Conn] = {}  # every open connection by file descriptor
        self._idle: list[Conn] = []  # open, kept alive, carrying nothing
        self._addresses: list[tuple[socket.AddressFamily, Any]] = []
        self._opened = 0  # connections opened so far (address rotation)

    def __repr__(self) -> str:
        return f"Scraper(host={self._host!r}, concurrency={self._settings.concurrency})"

    def close(self) -> None:
        """Close every connection."""
        for conn in list(self._conns.values()):
            self._close(conn)
        self._selector.close()

    def scrape_all(
        self, pods: Sequence[PodRef], deadline: float, progress: Progress | None = None
    ) -> list[ScrapeResult]:
        """Every pod's result, in ``pods`` order; returns by ``deadline`` (monotonic) whatever happens.

        Each call asks the token provider for its (cached or new) token again; keep-alive connections of
        earlier calls are reused. ``progress`` is told (done, total) as pods finish."""
        context = RunContext(
            settings=self._settings,
            tokens=self._tokens,
            clock=self._clock,
            rng=self._rng,
            resolve=self._resolve,
            open=self._open,
            wrap=self._wrap,
            watch=self._watch,
            close=self._close,
            select=self._selector.select,
            request=self._request,
            conns=self._conns,
            idle=self._idle,
        )
        return ScrapeRun(context, deadline, progress).run(pods)

    # -- connections --------------------------------------------------------------------------------

    def _resolve(self) -> None:
        """The endpoint's addresses, looked up once per run (blocking, like any client's DNS)."""
        infos = socket.getaddrinfo(self._host, self._port, type=socket.SOCK_STREAM)
        self._addresses = [(family, address) for family, _, _, _, address in infos]

    def _open(self, now: float) -> Conn:
        """Start a TCP connection to the next address (connect timeout from now)."""
        family, address = self._addresses[self._opened % len(self._addresses)]
        self._opened += 1
        raw = socket.socket(family, socket.SOCK_STREAM)
        try:
            raw.setblocking(False)
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            code = raw.connect_ex(address)
            if code not in (0, errno.EINPROGRESS):
                raise OSError(code, os.strerror(code))
        except BaseException:
            raw.close()
            raise
        conn = Conn(raw)
        conn.due = now + self._settings.connect_timeout
        self._conns[conn.fd] = conn
        self._watch(conn, selectors.EVENT_WRITE)
        return conn

    def _wrap(self, raw: socket.socket) -> ssl.SSLSocket:
        """TLS for the endpoint's host name on a connected socket; the run drives the handshake."""
        return self._ssl_context.wrap_socket(raw, server_hostname=self._host, do_handshake_on_connect=False)

    def _watch(self, conn: Conn, mask: int) -> None:
        """Wait for ``mask`` events on ``conn``."""
        if conn.mask == mask:
            return
        if conn.mask:
            self._selector.modify(conn.fd, mask, conn)
        else:
            self._selector.register(conn.fd, mask, conn)
        conn.mask = mask

    def _close(self, conn: Conn) -> None:
        """Close ``conn`` and forget it (a closed one again: nothing)."""
        if self._conns.pop(conn.fd, None) is None:
            return
        if conn.mask:
            self._selector.unregister(conn.fd)
        if conn.state == IDLE and conn in self._idle:
            self._idle.remove(conn)
        (conn.tls or conn.raw).close()

    def _request(self, pod: PodRef, token: str) -> bytes:
        """The GET request of ``pod``'s metrics with ``token`` (the headers are kept while it is the same)."""
        current, headers = self._headers
        if current != token:
            headers = {"Authorization": f"Bearer {token}", **HEADERS}
            self._headers = (token, headers)
        return http1.request_bytes(self._prefix + metrics_path(pod.name), self._netloc, headers)
