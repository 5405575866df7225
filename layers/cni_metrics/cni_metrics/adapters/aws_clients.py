"""AWS calls bounded by a deadline: botocore's own timeouts and retries, never past the run's end.

A ``Deadline`` holds a ``time.monotonic`` time (unset: no bound). ``bind(events)`` registers two botocore
event handlers on a session's or a client's event system, so every client made from that session (the
credentials of an assumed role passed to ``session.client``, not a new session) carries them:

- ``before-send`` (after botocore's own, the adaptive rate limiter's wait included): an attempt starts only
  if its connect timeout and a read timeout of at least ``MIN_READ_SECONDS`` fit before the deadline; its
  read timeout is cut to what is left after the connect timeout, through the request context's
  ``read_timeout`` (botocore >= 1.43.66 reads it per request). Otherwise ``DeadlineExceeded``, a
  ``BotoCoreError``, which every caller already handles as a failed AWS call, and which is not retried.
- ``needs-retry.<service>`` (before botocore's retry handler): no retry when its longest possible backoff
  (``min(2^(n-1), 20)`` s after attempt n, plus 5 s when the answer carries ``x-amz-retry-after``) would
  leave no time for another attempt, so botocore never sleeps past the deadline.

An attempt therefore ends by the deadline (its read timeout counts from each byte received, so only a
server that drips its answer could hold it longer). Clients keep their own configured timeouts, retry mode
and attempts; the deadline only shortens them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

# The services the collector calls: their retry handlers are registered per service (``needs-retry.s3``),
# ahead of the generic event, so the no-retry decision must be registered on the same names.
SERVICES = ("s3", "cloudwatch", "eks", "sts", "ec2")
MIN_READ_SECONDS = 0.2
_DEFAULT_CONNECT_SECONDS = 60.0  # botocore's default connect timeout
# botocore's standard backoff: at most min(2^(n-1), 20) s after attempt n (throttling scale), plus up to
# 5 s more when the answer carries x-amz-retry-after.
_MAX_BACKOFF_SECONDS = 20.0
_RETRY_AFTER_EXTRA_SECONDS = 5.0


class DeadlineExceeded(BotoCoreError):
    """An AWS call attempt could not end before the run's deadline, so it was not started."""

    fmt = "no time left before the run's deadline for {operation}"


class Deadline:
    """A monotonic time AWS calls must end by (None: unbounded), shared by the clients it is bound to."""

    def __init__(self, end: float | None = None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._end = end
        self._clock = clock

    def set(self, end: float | None) -> None:
        """Bound calls by ``end`` from now on (None: no bound)."""
        self._end = end

    def remaining(self) -> float | None:
        """Seconds left before the deadline (negative once past), None when there is none."""
        end = self._end
        return None if end is None else end - self._clock()

    def bind(self, events: Any, services: tuple[str, ...] = SERVICES) -> None:
        """Register the handlers on a botocore event system (a session's, or one client's)."""
        events.register_last("before-send", self._before_send)
        for service in services:
            events.register_first(f"needs-retry.{service}", self._needs_retry)

    def session(self, **kwargs: Any) -> boto3.Session:
        """A new ``boto3.Session(**kwargs)`` whose clients are bounded by this deadline."""
        session = boto3.Session(**kwargs)
        self.bind(session.events)
        return session

    def _before_send(self, request: Any, event_name: str = "", **_: Any) -> None:
        remaining = self.remaining()
        if remaining is None:
            return
        config = request.context.get("client_config")
        connect = _connect_seconds(config)
        configured = request.context.get("read_timeout") or getattr(config, "read_timeout", None)
        read = remaining - connect if configured is None else min(configured, remaining - connect)
        if read < MIN_READ_SECONDS:
            operation = " ".join(event_name.split(".")[1:]) or "an AWS call"
            raise DeadlineExceeded(operation=operation)
        request.context["read_timeout"] = read

    def _needs_retry(
        self, attempts: int, response: Any = None, request_dict: Any = None, **_: Any
    ) -> bool | None:
        """False (no retry) when the longest backoff would leave no time for another attempt."""
        remaining = self.remaining()
        if remaining is None:
            return None
        backoff = min(2.0 ** (attempts - 1), _MAX_BACKOFF_SECONDS)
        if response is not None and "x-amz-retry-after" in response[0].headers:
            backoff += _RETRY_AFTER_EXTRA_SECONDS
        config = (request_dict or {}).get("context", {}).get("client_config")
        return False if remaining < backoff + _connect_seconds(config) + MIN_READ_SECONDS else None


def _connect_seconds(config: Any) -> float:
    """The connect timeout of a client's configuration (botocore's default when it sets none)."""
    return getattr(config, "connect_timeout", None) or _DEFAULT_CONNECT_SECONDS


def error_text(exc: Exception) -> str:
    """A short, secret-free description of a failed AWS call: ``Code: Message``, or ``Type: text``."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code, message = error.get("Code", "Error"), error.get("Message", "")
        return f"{code}: {message}" if message else str(code)
    return f"{type(exc).__name__}: {exc}"
