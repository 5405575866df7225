"""One ``scrape_all``: pods' attempts driven on non-blocking keep-alive TLS connections by one selector.

Each connection carries one request at a time and is kept for the next. Every attempt has a connect
timeout (for the TCP connect, and again for the TLS handshake), a read timeout per wait and a cap on its
whole duration; the run has one overall deadline: when it passes, the run returns at once and counts
unfinished pods as timed out. Bodies are decompressed under their cap, parsed as they complete and dropped.

Hand-written beside the requests transport (requests_transport.py: 64 threads over urllib3) because it
costs a third of that one's CPU: 5,000 nodes at concurrency 64 took 3.6 s of CPU against 11.3 s (0.73
against 2.25 ms per node) and 4.9 s against 10.8 s wall (``python -m bench scrape``, docs/benchmarks.md;
the scrape code of dddf745, 2 cores shared with the stand-in, load average 0.6 to 1.9).

The run reaches its scraper only through ``RunContext``; the scraper keeps the connections between runs.
"""

from __future__ import annotations

import os
import random
import selectors
import socket
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from cni_metrics.adapters.scrape import http1
from cni_metrics.adapters.scrape.attempts import Attempts, Job, PodRef, Progress, ScrapeResult
from cni_metrics.adapters.scrape.body import CappedBody, open_body, payload_metrics
from cni_metrics.adapters.scrape.policy import (
    BODY_TIMED_OUT,
    CONNECT_TIMED_OUT,
    ERROR_BODY_BYTES,
    HANDSHAKE_TIMED_OUT,
    RESPONSE_TIMED_OUT,
    FailureReason,
    ScrapeFailure,
    attempt_due,
    exception_text,
    status_failure,
    tls_refused,
    unexpected,
)
from cni_metrics.adapters.tokens import BearerTokens

RECV_BYTES = 64 * 1024
_TICK_SECONDS = 0.05  # how often in-flight attempts are checked against their timeouts
# a reused keep-alive connection the server had closed: one reconnect, which counts as the pod's retry
_STALE = (BrokenPipeError, ConnectionResetError, ssl.SSLEOFError)  # ClosedWithoutResponse is a reset


CONNECTING, HANDSHAKE, SENDING, RECEIVING, IDLE = range(5)


class Conn:
    """One non-blocking TLS connection and the attempt it carries."""

    __slots__ = (
        "attempt_due",
        "body",
        "due",
        "error_parts",
        "error_size",
        "fd",
        "job",
        "mask",
        "out",
        "raw",
        "reader",
        "reused",
        "state",
        "tls",
    )

    def __init__(self, raw: socket.socket) -> None:
        self.fd = raw.fileno()
        self.raw = raw
        self.tls: ssl.SSLSocket | None = None  # from the start of the TLS handshake on
        self.state = CONNECTING
        self.mask = 0  # the selector events it is registered for
        self.due = 0.0  # when the current wait times out
        self.attempt_due = 0.0  # when the attempt as a whole times out
        self.job: Job | None = None
        self.reused = False  # carried a complete response before this attempt
        self.out = b""  # request bytes not yet sent
        self.reader = http1.ResponseReader()
        self.body: CappedBody | None = None  # the 200 body being decoded
        self.error_parts: list[bytes] = []  # the start of an error body
        self.error_size = 0


class Limits(Protocol):
    """The settings a run reads (``ScrapeSettings`` has them)."""

    @property
    def concurrency(self) -> int: ...
    @property
    def connect_timeout(self) -> float: ...
    @property
    def read_timeout(self) -> float: ...
    @property
    def max_payload_bytes(self) -> int: ...


@dataclass(frozen=True, slots=True)
class RunContext:
    """What a run needs of its scraper, which owns the selector and keeps connections from run to run."""

    settings: Limits
    tokens: BearerTokens
    clock: Callable[[], float]
    rng: random.Random
    resolve: Callable[[], None]  # look the endpoint's addresses up (OSError when that fails)
    open: Callable[[float], Conn]  # a new TCP connection, connecting, watched for writing (OSError)
    wrap: Callable[[socket.socket], ssl.SSLSocket]  # TLS on a connected socket, handshake not started
    watch: Callable[[Conn, int], None]  # the selector events to wait for on a connection
    close: Callable[[Conn], None]  # close and forget a connection (again: nothing)
    select: Callable[[float], list[tuple[selectors.SelectorKey, int]]]  # the selector's ready events
    request: Callable[[PodRef, str], bytes]  # a pod's GET request with a bearer token
    conns: Mapping[int, Conn]  # every open connection by file descriptor
    idle: list[Conn]  # open, kept alive, carrying nothing: the run takes from and gives back to it


class ScrapeRun(Attempts):
    """One ``scrape_all``: jobs waiting, in flight and done, driven by the scraper's selector."""

    def __init__(self, context: RunContext, deadline: float, progress: Progress | None = None) -> None:
        super().__init__(context.tokens, context.rng, deadline, progress)
        self._ctx = context

    def run(self, pods: Sequence[PodRef]) -> list[ScrapeResult]:
        """Every pod's result, in ``pods`` order, by the deadline; connections still busy then are closed."""
        try:
            self._drive(self._begin(pods))
        finally:
            for conn in list(self._ctx.conns.values()):
                if conn.state != IDLE:  # the deadline passed with attempts in flight
                    self._ctx.close(conn)
        return self._outcomes(pods)

    def _drive(self, jobs: list[Job]) -> None:
        """The selector loop, until every job has its result or the deadline passes."""
        ctx = self._ctx
        if not jobs:
            return
        if ctx.clock() >= self._deadline:
            return
        try:
            ctx.resolve()
        except OSError as exc:
            for job in jobs:
                failure = ScrapeFailure("unreachable", f"resolving the endpoint: {exception_text(exc)}")
                self._give_up(job, failure)
            return
        self._events(0.0)  # idle connections the server closed since the last run
        next_check = 0.0
        while not self._all_done():
            now = ctx.clock()
            if now >= self._deadline:
                return
            retry_due = self._release_due(now)
            self._dispatch(now)
            if now >= next_check:  # timeouts are seconds long: checking them every tick is enough
                self._expire(now)
                next_check = now + _TICK_SECONDS
            wake = min(self._deadline, next_check, next_check if retry_due is None else retry_due)
            self._events(max(0.0, wake - now))

    def _events(self, timeout: float) -> None:
        for key, mask in self._ctx.select(timeout):
            conn: Conn = key.data
            if self._ctx.conns.get(conn.fd) is not conn:  # closed by an earlier event of this batch
                continue
            try:
                self._on_ready(conn, mask)
            except Exception as exc:  # one pod must never take the others down
                self._unexpected(conn, exc)

    def _dispatch(self, now: float) -> None:
        """Start ready jobs on idle connections, then on new ones up to the concurrency."""
        ctx = self._ctx
        while self._ready:
            if ctx.idle:
                self._start(ctx.idle.pop(), self._ready.popleft(), now)
            elif len(ctx.conns) < max(1, ctx.settings.concurrency):
                job = self._ready.popleft()
                job.attempts += 1
                self._connect(job, now)
            else:
                return

    def _connect(self, job: Job, now: float) -> None:
        """Carry ``job``'s attempt on a new connection."""
        try:
            conn = self._ctx.open(now)
        except OSError as exc:
            job.connection_errors += 1
            failure = ScrapeFailure("unreachable", exception_text(exc), retryable=job.connection_errors < 2)
            self._failed(job, failure, now)
            return
        conn.job = job
        conn.attempt_due = self._attempt_due(now)

    def _attempt_due(self, now: float) -> float:
        settings = self._ctx.settings
        return attempt_due(now, self._deadline, settings.connect_timeout, settings.read_timeout)

    def _start(self, conn: Conn, job: Job, now: float) -> None:
        """Send ``job``'s request, a new attempt, on the kept-alive ``conn``."""
        job.attempts += 1
        conn.attempt_due = self._attempt_due(now)
        conn.job = job
        conn.reused = True
        self._send_request(conn, now)

    def _send_request(self, conn: Conn, now: float) -> None:
        ctx = self._ctx
        job = conn.job
        assert job is not None
        conn.out = ctx.request(job.pod, self._run_token(job))
        conn.reader = http1.ResponseReader()
        conn.body = None
        conn.error_parts = []
        conn.error_size = 0
        conn.state = SENDING
        self._send(conn, now)

    def _send(self, conn: Conn, now: float) -> None:
        assert conn.tls is not None
        try:
            sent = conn.tls.send(conn.out)
        except ssl.SSLWantWriteError:
            sent = 0
        except ssl.SSLWantReadError:
            self._ctx.watch(conn, selectors.EVENT_READ)
            return
        except OSError as exc:
            self._connection_error(conn, exc, now)
            return
        conn.out = conn.out[sent:]
        if conn.out:
            self._ctx.watch(conn, selectors.EVENT_READ | selectors.EVENT_WRITE)
            conn.due = min(conn.attempt_due, now + self._ctx.settings.read_timeout)
            return
        conn.state = RECEIVING
        conn.due = min(conn.attempt_due, now + self._ctx.settings.read_timeout)
        self._ctx.watch(conn, selectors.EVENT_READ)

    def _on_ready(self, conn: Conn, mask: int) -> None:
        now = self._ctx.clock()
        state = conn.state
        if state == RECEIVING:
            self._receive(conn, now)
        elif state == SENDING:
            self._send(conn, now)
            if conn.state == RECEIVING and mask & selectors.EVENT_READ:
                self._receive(conn, now)
        elif state == IDLE:  # readable while idle: closed by the server (or bytes nobody asked for)
            self._ctx.close(conn)
        elif state == CONNECTING:
            code = conn.raw.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                self._connection_error(conn, OSError(code, os.strerror(code)), now)
                return
            try:
                conn.tls = self._ctx.wrap(conn.raw)
            except OSError as exc:
                self._connection_error(conn, exc, now)
                return
            conn.state = HANDSHAKE
            self._handshake(conn, now)
        else:
            self._handshake(conn, now)

    def _handshake(self, conn: Conn, now: float) -> None:
        """One step of the TLS handshake; each wait for the server gets the connect timeout (as a blocking
        socket with that timeout would give it)."""
        assert conn.tls is not None
        try:
            conn.tls.do_handshake()
        except ssl.SSLWantReadError:
            conn.due = min(conn.attempt_due, now + self._ctx.settings.connect_timeout)
            self._ctx.watch(conn, selectors.EVENT_READ)
            return
        except ssl.SSLWantWriteError:
            conn.due = min(conn.attempt_due, now + self._ctx.settings.connect_timeout)
            self._ctx.watch(conn, selectors.EVENT_WRITE)
            return
        except ssl.SSLError as exc:
            self._end_attempt(conn, tls_refused(exc), now)
            return
        except OSError as exc:
            self._connection_error(conn, exc, now)
            return
        self._send_request(conn, now)

    def _receive(self, conn: Conn, now: float) -> None:
        reader = conn.reader
        sock = conn.tls
        assert sock is not None
        try:
            data = sock.recv(RECV_BYTES)
            while data and sock.pending():  # the rest of a TLS record already decrypted
                data += sock.recv(RECV_BYTES)
        except ssl.SSLWantReadError:
            self._ctx.watch(conn, selectors.EVENT_READ)
            return
        except ssl.SSLWantWriteError:  # TLS needs to write first: wait until it can
            self._ctx.watch(conn, selectors.EVENT_READ | selectors.EVENT_WRITE)
            return
        except OSError as exc:
            self._connection_error(conn, exc, now)
            return
        if conn.mask != selectors.EVENT_READ:  # not writable any more: a writable socket would spin the loop
            self._ctx.watch(conn, selectors.EVENT_READ)
        try:
            if data:
                pieces = reader.feed(data)
            else:
                pieces = []
                reader.connection_closed()
        except http1.ClosedWithoutResponse as exc:
            self._connection_error(conn, exc, now)
            return
        except (http1.ProtocolError, http1.TruncatedBody) as exc:
            where = "body" if reader.head is not None else "response"
            reason: FailureReason = "bad_payload" if reader.head is not None else "unreachable"
            self._end_attempt(conn, ScrapeFailure(reason, f"{where}: {exc}", bytes_read=reader.received), now)
            return
        conn.due = min(conn.attempt_due, now + self._ctx.settings.read_timeout)
        try:
            self._take(conn, pieces)
        except ScrapeFailure as failure:
            failure.bytes_read = reader.received
            self._end_attempt(conn, failure, now)
            return
        if reader.done:
            self._response_done(conn, now)

    def _take(self, conn: Conn, pieces: list[bytes]) -> None:
        """Route body pieces: a 200 body is decoded under its cap, an error body kept up to its limit."""
        head = conn.reader.head
        if head is None:
            return
        if head.status == 200:
            if conn.body is None:
                conn.body = open_body(
                    head.header("content-encoding"), head.header("content-length"),
                    self._ctx.settings.max_payload_bytes,
                )
            for piece in pieces:
                conn.body.feed(piece)
            return
        for piece in pieces:
            conn.error_parts.append(piece)
            conn.error_size += len(piece)
        if conn.error_size >= ERROR_BODY_BYTES and not conn.reader.done:
            raise self._status_failure(conn, head)

    def _status_failure(self, conn: Conn, head: http1.Head) -> ScrapeFailure:
        return status_failure(
            head.status, b"".join(conn.error_parts), content_encoding=head.header("content-encoding"),
            retry_after=head.header("retry-after"),
        )

    def _response_done(self, conn: Conn, now: float) -> None:
        head = conn.reader.head
        job = conn.job
        assert head is not None
        assert job is not None
        wire = conn.reader.received
        if head.status != 200:
            failure = self._status_failure(conn, head)
            failure.bytes_read = wire
            self._end_attempt(conn, failure, now)
            return
        body = conn.body
        assert body is not None  # made when the head arrived
        conn.body = None
        self._release(conn, now)  # the next request goes out before this payload is parsed
        try:
            metrics = payload_metrics(body, head.header("content-type"))
        except ScrapeFailure as failure:
            failure.bytes_read = wire
            self._failed(job, failure, now)
            return
        self._succeeded(job, metrics, wire)

    def _release(self, conn: Conn, now: float) -> None:
        """The attempt on ``conn`` is over: keep the connection for the next job, or close it."""
        conn.job = None
        if not conn.reader.reusable:
            self._ctx.close(conn)
            return
        conn.state = IDLE
        conn.reused = True
        if self._ready:
            self._start(conn, self._ready.popleft(), now)
        else:
            self._ctx.idle.append(conn)

    def _connection_error(self, conn: Conn, exc: BaseException, now: float) -> None:
        """A connection-level error. The pod's first one is retried, at once on a new connection when a kept-
        alive connection turned out closed by the server; its second is its result (two requests at most)."""
        job = conn.job
        assert job is not None
        job.connection_errors += 1
        stale = conn.reused and conn.reader.received == 0 and isinstance(exc, _STALE)
        if stale and job.connection_errors == 1:
            conn.job = None
            self._ctx.close(conn)
            self._connect(job, now)
            return
        text, read = exception_text(exc), conn.reader.received
        retryable = job.connection_errors < 2
        failure = ScrapeFailure("unreachable", text, retryable=retryable, bytes_read=read)
        self._end_attempt(conn, failure, now)

    def _end_attempt(self, conn: Conn, failure: ScrapeFailure, now: float) -> None:
        """A failed attempt: the pod's next step first (after a 401 the token is new), then the connection."""
        job = conn.job
        assert job is not None
        conn.job = None
        self._failed(job, failure, now)
        self._release(conn, now)

    def _expire(self, now: float) -> None:
        """Fail attempts past their timeouts. What arrived meanwhile is read first: a pause of this process
        (a garbage collection, a throttled vCPU) must not count against the server."""
        if not any(conn.job is not None and conn.due <= now for conn in self._ctx.conns.values()):
            return
        self._events(0.0)
        for conn in list(self._ctx.conns.values()):
            if conn.job is None or conn.due > now:
                continue
            if conn.state == CONNECTING:
                message = CONNECT_TIMED_OUT
            elif conn.state == HANDSHAKE:
                message = HANDSHAKE_TIMED_OUT
            elif conn.reader.head is None:
                message = RESPONSE_TIMED_OUT
            else:
                message = BODY_TIMED_OUT
            self._end_attempt(conn, ScrapeFailure("timeout", message, bytes_read=conn.reader.received), now)

    def _unexpected(self, conn: Conn, exc: Exception) -> None:
        """An exception nobody expected while serving ``conn``: its pod fails, the run goes on."""
        job = conn.job
        conn.job = None
        self._ctx.close(conn)
        if job is not None:
            self._give_up(job, unexpected(exc))
