"""What a failed scrape attempt means: its class, its message, whether and when it is tried again (pure)."""

from __future__ import annotations

import email.utils
import json
import random
import time
import zlib
from typing import Literal, get_args

from cni_metrics.adapters.scrape.http1 import decimal

FailureReason = Literal[
    "timeout", "unreachable", "forbidden", "not_found", "throttled", "bad_payload", "too_large",
    "unauthorized", "other",
]
FAILURE_REASONS: tuple[FailureReason, ...] = get_args(FailureReason)

MAX_RETRY_AFTER_SECONDS = 10.0
MIN_ATTEMPT_SECONDS = 0.5
ERROR_BODY_BYTES = 16 * 1024  # read of an error body, at most: its start names the problem

# What a timed-out attempt says, by where it stopped (both transports)
CONNECT_TIMED_OUT = "TimeoutError: TCP connect timed out"
HANDSHAKE_TIMED_OUT = "TimeoutError: TLS handshake timed out"
RESPONSE_TIMED_OUT = "TimeoutError: timed out waiting for the response"
BODY_TIMED_OUT = "body not complete within the timeouts or the deadline"
DEADLINE_PASSED = "deadline passed before the scrape finished"


class ScrapeFailure(Exception):
    """A classified failure of one attempt; ``retry_after`` is the server's hint, when it gave one."""

    def __init__(
        self,
        reason: FailureReason,
        message: str,
        *,
        status: int | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
        bytes_read: int = 0,
    ) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after
        self.bytes_read = bytes_read


def unexpected(exc: BaseException) -> ScrapeFailure:
    """The failure of an attempt that raised what nobody expected: its pod fails, the run goes on."""
    return ScrapeFailure("other", f"unexpected {type(exc).__name__}")


def tls_refused(exc: BaseException) -> ScrapeFailure:
    """The failure of a TLS handshake that refused the server (certificate or host name)."""
    return ScrapeFailure("unreachable", f"TLS verification failed: {exception_text(exc)}")


def attempt_due(now: float, deadline: float, connect_timeout: float, read_timeout: float) -> float:
    """When an attempt started at ``now``, body included, must end: connect + read timeout later (slow
    drips end there), the run's deadline at the latest."""
    return min(deadline, now + connect_timeout + read_timeout)


def one_line(text: str) -> str:
    """``text`` as one printable line of at most 300 characters."""
    return " ".join(text.split())[:300]


def exception_text(exc: BaseException, *, named: bool = True) -> str:
    """A one-line description of a connection-level exception (never carries headers): the exception it
    wraps as ``reason`` when there is one, after the type name unless ``named`` is False."""
    reason = getattr(exc, "reason", None)
    text = one_line(str(reason if isinstance(reason, BaseException) else exc))
    return f"{type(exc).__name__}: {text}"[:300] if named else text


def status_message(body: bytes) -> str:
    """The API server's ``Status.message``, else the start of the body, as one printable line."""
    text = body.decode("utf-8", "replace")
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    if isinstance(document, dict) and isinstance(document.get("message"), str):
        text = document["message"]
    return one_line(text)


def classify_status(status: int, body: bytes) -> ScrapeFailure:
    """The failure an HTTP status other than 200 stands for (Status JSON message included)."""
    message = f"HTTP {status}: {status_message(body)}".rstrip(": ")
    reason: FailureReason
    retryable = False
    if status == 401:
        reason = "unauthorized"
    elif status == 403:
        reason = "forbidden"
    elif status == 404:
        reason = "not_found"
    elif status == 429:
        reason, retryable = "throttled", True
    elif status == 503:
        reason, retryable = "unreachable", True
    elif status == 502:
        reason = "unreachable"
    elif status == 504:
        reason = "timeout"
    else:
        reason = "other"
    return ScrapeFailure(reason, message, status=status, retryable=retryable)


def status_failure(
    status: int, body: bytes, *, content_encoding: str | None, retry_after: str | None
) -> ScrapeFailure:
    """The failure a response other than 200 stands for, from the start of its body (gzip decoded, at most
    ``ERROR_BODY_BYTES``) and its ``Retry-After``."""
    body = body[:ERROR_BODY_BYTES]
    if (content_encoding or "").strip().lower() in ("gzip", "x-gzip"):
        try:
            body = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(body, ERROR_BODY_BYTES)
        except zlib.error:
            body = b""
    failure = classify_status(status, body)
    failure.retry_after = parse_retry_after(retry_after)
    return failure


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date), None if absent/invalid."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if (seconds := decimal(value)) is not None:
        return float(seconds)
    if not value.isascii():
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    wall = time.time() if now is None else now
    return max(0.0, when.timestamp() - wall)


def retry_delay(failure: ScrapeFailure, rng: random.Random) -> float:
    """How long to wait before the one retry: Retry-After (capped) when given, plus jitter."""
    jitter = rng.uniform(0.05, 0.3)
    if failure.retry_after is not None:
        return min(failure.retry_after, MAX_RETRY_AFTER_SECONDS) + jitter
    return 0.05 + jitter


def should_retry(failure: ScrapeFailure, delay: float, *, now: float, deadline: float, retried: bool) -> bool:
    """One retry, only for retryable failures and only when the deadline leaves time for another attempt."""
    return failure.retryable and not retried and now + delay + MIN_ATTEMPT_SECONDS <= deadline
