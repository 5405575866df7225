"""The scrape on ``requests`` (``SCRAPE_TRANSPORT=requests``): the way out beside the built-in transport.

One ``requests.Session`` per scraper, its urllib3 pool keeping up to ``concurrency`` keep-alive connections
from one ``scrape_all`` to the next, and a pool of ``concurrency`` threads, each carrying one attempt at a
time. The calling thread keeps the pods' progress and applies the built-in transport's rules (policy.py):
one retry (429, 503, connection errors; jittered, Retry-After honoured), one token refresh after a 401, the
run's deadline. Each attempt has the connect and read timeouts, every wait of it ending by the attempt's
end (connect + read timeout, the deadline at the latest), and the payload cap: the body is read as it came
and decoded by ``CappedBody`` (gzip bombs stop at the cap), never by urllib3.

TLS is verified with the cluster CA alone: its certificates go to a file passed as ``verify`` with every
request, so ``REQUESTS_CA_BUNDLE`` cannot replace it. The environment's ``HTTPS_PROXY`` and ``NO_PROXY``
apply as requests applies them (``trust_env``): the reason this transport exists. The token goes through an
auth hook (a ``.netrc`` entry cannot replace it); redirects are not followed (a 3xx is ``other``).

Where it differs from the built-in transport: a kept-alive connection the server closes just as a request
goes out costs the pod its one retry (urllib3 cannot tell it from a new connection's failure; the built-in
transport reconnects once without counting it); ``bytes_read`` counts bodies as they came (compressed,
without the head and chunk framing); a TLS handshake that times out reads as a response timeout.
"""

from __future__ import annotations

import contextlib
import http.client
import math
import os
import random
import ssl
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict

from cni_metrics.adapters.scrape.attempts import Attempts, Job, PodRef, Progress, ScrapeResult
from cni_metrics.adapters.scrape.body import open_body, payload_metrics
from cni_metrics.adapters.scrape.http1 import ProtocolError, content_length
from cni_metrics.adapters.scrape.policy import (
    BODY_TIMED_OUT,
    CONNECT_TIMED_OUT,
    DEADLINE_PASSED,
    ERROR_BODY_BYTES,
    RESPONSE_TIMED_OUT,
    ScrapeFailure,
    attempt_due,
    exception_text,
    status_failure,
    tls_refused,
    unexpected,
)
from cni_metrics.adapters.scrape.scraper import (
    DEFAULT_SCRAPE,
    HEADERS,
    ScrapeSettings,
    checked_endpoint,
    metrics_path,
)
from cni_metrics.adapters.tokens import BearerTokens
from cni_metrics.core.model import NodeMetrics

RECV_BYTES = 64 * 1024
_TICK_SECONDS = 0.05  # how often the calling thread reads its clock while attempts run
_LAST_WAIT_SECONDS = 0.001  # a read at or past the attempt's end still takes what already arrived

Outcome = tuple[NodeMetrics, int] | ScrapeFailure  # an attempt's metrics and body bytes, or its failure
# TLS errors that only say the server closed the connection: connection errors, as any other
_CLOSED = (ssl.SSLEOFError, ssl.SSLZeroReturnError)


class _BearerAuth(requests.auth.AuthBase):
    """The bearer token of one request."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request


class RequestsScraper:
    """Scrapes aws-node pods of one cluster through its API server with requests, ``concurrency`` at once."""

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
        self._base = f"https://{endpoint.netloc}{endpoint.prefix}"
        self._settings = settings
        self._tokens = tokens
        self._clock = clock
        self._rng = rng or random.Random()
        self._concurrency = max(1, settings.concurrency)
        self._ca_file = _ca_file(ssl_context)
        self._session = requests.Session()
        self._session.headers = CaseInsensitiveDict(HEADERS)
        # no retry inside urllib3: the policy's one retry is the only one
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=self._concurrency, max_retries=0)
        self._session.mount("https://", adapter)
        self._threads = ThreadPoolExecutor(max_workers=self._concurrency, thread_name_prefix="scrape")

    def __repr__(self) -> str:
        return f"RequestsScraper(base={self._base!r}, concurrency={self._concurrency})"

    def close(self) -> None:
        """Close idle connections, let the threads go (an attempt still running ends by its timeouts)."""
        self._threads.shutdown(wait=False, cancel_futures=True)
        self._session.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._ca_file)

    def scrape_all(
        self, pods: Sequence[PodRef], deadline: float, progress: Progress | None = None
    ) -> list[ScrapeResult]:
        """Every pod's result, in ``pods`` order; returns by ``deadline`` (monotonic) whatever happens.

        Each call asks the token provider for its (cached or new) token again; keep-alive connections of
        earlier calls are reused. ``progress`` is told (done, total) as pods finish."""
        run = _Run(self._tokens, self._clock, self._rng, self._concurrency, self._submit, deadline, progress)
        return run.run(pods)

    def _submit(self, pod: PodRef, token: str, deadline: float) -> Future[Outcome]:
        return self._threads.submit(self._attempt, pod, token, deadline)

    # -- one attempt, in a pool thread -------------------------------------------------------------

    def _attempt(self, pod: PodRef, token: str, deadline: float) -> Outcome:
        """One request of ``pod``'s metrics: its metrics or its failure (never raises)."""
        try:
            return self._request(pod, token, deadline)
        except ScrapeFailure as failure:
            return failure
        except Exception as exc:  # one pod must never take the others down
            return unexpected(exc)

    def _request(self, pod: PodRef, token: str, deadline: float) -> tuple[NodeMetrics, int]:
        settings = self._settings
        started = self._clock()
        due = attempt_due(started, deadline, settings.connect_timeout, settings.read_timeout)
        left = due - started
        if left <= 0:
            raise ScrapeFailure("timeout", DEADLINE_PASSED)
        try:
            response = self._session.get(
                self._base + metrics_path(pod.name), auth=_BearerAuth(token), verify=self._ca_file,
                timeout=(min(settings.connect_timeout, left), min(settings.read_timeout, left)),
                stream=True, allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise _request_failure(exc) from None
        with response:  # closed at the end: a body not read to its end closes its connection
            return self._response(response, due)

    def _response(self, response: requests.Response, due: float) -> tuple[NodeMetrics, int]:
        headers = response.headers
        length = headers.get("content-length")
        if length is not None and "transfer-encoding" not in headers:
            try:
                content_length(length)
            except ProtocolError as exc:
                raise ScrapeFailure("unreachable", f"response: {exc}") from None
        if response.status_code != 200:
            parts: list[bytes] = []
            size = 0
            while size < ERROR_BODY_BYTES and (chunk := self._read(response.raw, due, size)):
                parts.append(chunk)
                size += len(chunk)
            failure = status_failure(
                response.status_code, b"".join(parts), content_encoding=headers.get("content-encoding"),
                retry_after=headers.get("retry-after"),
            )
            failure.bytes_read = size
            raise failure
        body = open_body(headers.get("content-encoding"), length, self._settings.max_payload_bytes)
        try:
            while chunk := self._read(response.raw, due, body.wire_bytes):
                body.feed(chunk)
            return payload_metrics(body, headers.get("content-type")), body.wire_bytes
        except ScrapeFailure as failure:
            failure.bytes_read = body.wire_bytes
            raise

    def _read(self, raw: Any, due: float, received: int) -> bytes:
        """The next piece of the body as it came (not decoded), b"" at its end; every wait ends by ``due``."""
        connection = raw.connection  # None once the body ended (back in the pool)
        if connection is not None and connection.sock is not None:
            connection.sock.settimeout(max(due - self._clock(), _LAST_WAIT_SECONDS))
        try:
            data: bytes = raw.read1(RECV_BYTES, decode_content=False)
        except urllib3.exceptions.ReadTimeoutError:
            raise ScrapeFailure("timeout", BODY_TIMED_OUT, bytes_read=received) from None
        except (urllib3.exceptions.ProtocolError, urllib3.exceptions.SSLError) as exc:
            root = _root(exc)
            if isinstance(root, http.client.IncompleteRead):
                left = f"{root.expected} bytes " if isinstance(root.expected, int) else ""
                message = f"body: connection closed {left}before the end of the body"
                raise ScrapeFailure("bad_payload", message, bytes_read=received) from None
            text = exception_text(root)
            raise ScrapeFailure("unreachable", text, retryable=True, bytes_read=received) from None
        return data


class _Run(Attempts):
    """One ``scrape_all``: pods waiting, in flight on the threads and done, driven from the calling thread."""

    def __init__(
        self,
        tokens: BearerTokens,
        clock: Callable[[], float],
        rng: random.Random,
        concurrency: int,
        submit: Callable[[PodRef, str, float], Future[Outcome]],
        deadline: float,
        progress: Progress | None,
    ) -> None:
        super().__init__(tokens, rng, deadline, progress)
        self._clock = clock
        self._concurrency = concurrency
        self._submit = submit
        self._running: dict[Future[Outcome], Job] = {}

    def run(self, pods: Sequence[PodRef]) -> list[ScrapeResult]:
        """Every pod's result, in ``pods`` order, by the deadline; attempts not started by then never are."""
        self._begin(pods)
        try:
            self._drive()
        finally:
            for future in self._running:
                future.cancel()  # a started attempt ends by its own timeouts, bounded by the deadline
        return self._outcomes(pods)

    def _drive(self) -> None:
        clock = self._clock
        while not self._all_done():
            now = clock()
            if now >= self._deadline:
                return
            due = self._release_due(now)
            while self._ready and len(self._running) < self._concurrency:
                self._start(self._ready.popleft())
            retry_due = math.inf if due is None else due
            timeout = max(0.0, min(self._deadline, now + _TICK_SECONDS, retry_due) - now)
            if not self._running:
                time.sleep(timeout)
                continue
            done, _ = wait(self._running, timeout=timeout, return_when=FIRST_COMPLETED)
            for future in done:
                self._finished(self._running.pop(future), future.result())

    def _start(self, job: Job) -> None:
        token = self._run_token(job)
        job.attempts += 1
        self._running[self._submit(job.pod, token, self._deadline)] = job

    def _finished(self, job: Job, outcome: Outcome) -> None:
        if isinstance(outcome, ScrapeFailure):
            self._failed(job, outcome, self._clock())
            return
        metrics, wire = outcome
        self._succeeded(job, metrics, wire)


def _ca_file(context: ssl.SSLContext) -> str:
    """A file of the context's CA certificates (PEM) for ``verify``: the only certificates trusted."""
    certificates: list[bytes] = context.get_ca_certs(binary_form=True)
    if not certificates:
        raise ValueError("the cluster TLS context holds no CA certificate")
    handle, path = tempfile.mkstemp(prefix="cluster-ca-", suffix=".pem")
    with os.fdopen(handle, "w", encoding="ascii") as file:
        file.writelines(ssl.DER_cert_to_PEM_cert(der) for der in certificates)
    return path


def _root(exc: BaseException) -> BaseException:
    """The innermost exception ``exc`` wraps (requests, then urllib3, then http.client, socket or ssl)."""
    for _ in range(8):  # wrappers nest a few levels deep
        inner = getattr(exc, "reason", None)
        if not isinstance(inner, BaseException):
            inner = next((arg for arg in reversed(exc.args) if isinstance(arg, BaseException)), exc.__cause__)
        if inner is None or inner is exc:
            return exc
        exc = inner
    return exc


def _request_failure(exc: requests.RequestException) -> ScrapeFailure:
    """The failure a request that got no response stands for, classed as the built-in transport classes it."""
    root = _root(exc)
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return ScrapeFailure("timeout", CONNECT_TIMED_OUT)
    if isinstance(exc, requests.exceptions.Timeout):
        return ScrapeFailure("timeout", RESPONSE_TIMED_OUT)
    if isinstance(exc, requests.exceptions.SSLError) and not isinstance(root, _CLOSED):
        return tls_refused(root)
    if isinstance(exc, requests.exceptions.ConnectionError):  # SSLError is one too
        where = "proxy: " if isinstance(exc, requests.exceptions.ProxyError) else ""
        if isinstance(root, http.client.RemoteDisconnected):
            message = f"{where}RemoteDisconnected: the server closed the connection without a response"
            return ScrapeFailure("unreachable", message, retryable=True)
        if isinstance(root, http.client.HTTPException):  # the response broke HTTP/1.1: no retry
            return ScrapeFailure("unreachable", f"response: {exception_text(root)}")
        return ScrapeFailure("unreachable", where + exception_text(root), retryable=True)
    return ScrapeFailure("other", exception_text(root))
