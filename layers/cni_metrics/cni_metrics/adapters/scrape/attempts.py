"""What both transports' runs share: pods waiting, due for a retry and done, the run's one token, and the
rule after a failed attempt (one token refresh after a 401, one retry when allowed, else the result)."""

from __future__ import annotations

import heapq
import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cni_metrics.adapters.scrape.policy import (
    DEADLINE_PASSED,
    FailureReason,
    ScrapeFailure,
    retry_delay,
    should_retry,
)
from cni_metrics.adapters.tokens import BearerTokens
from cni_metrics.core.model import NodeMetrics


@dataclass(frozen=True, slots=True)
class PodRef:
    """An aws-node pod to scrape: ``key`` identifies it across runs (its UID), ``name`` is in the URL."""

    key: str
    name: str


@dataclass(frozen=True, slots=True)
class ScrapeResult:
    """One pod's outcome: ``metrics`` on success, else ``reason`` and a short, secret-free ``message``."""

    key: str
    pod: str
    metrics: NodeMetrics | None
    reason: FailureReason | None = None
    message: str = ""
    bytes_read: int = 0
    attempts: int = 0


Progress = Callable[[int, int], None]
"""Told (pods done, pods in all) each time a pod's result is known, from the scraping thread."""


class Job:
    """One pod's progress over its attempts."""

    __slots__ = ("attempts", "connection_errors", "pod", "refreshed", "retried", "token", "wire_bytes")

    def __init__(self, pod: PodRef) -> None:
        self.pod = pod
        self.token = ""  # the token of the current attempt
        self.attempts = 0
        self.refreshed = False  # had its one token refresh (401)
        self.retried = False  # had its one retry (429, 503, connection error)
        self.connection_errors = 0  # requests lost to connection errors: at most two per pod (builtin)
        self.wire_bytes = 0  # bytes read by failed attempts


class Attempts:
    """One ``scrape_all``'s book: jobs ready, retries by due time, results (reported to ``progress``)."""

    def __init__(
        self, tokens: BearerTokens, rng: random.Random, deadline: float, progress: Progress | None
    ) -> None:
        self._tokens = tokens
        self._rng = rng
        self._deadline = deadline
        self._progress = progress
        self._ready: deque[Job] = deque()
        self._waiting: list[tuple[float, int, Job]] = []  # retries by the time they are due
        self._done: dict[str, ScrapeResult] = {}
        self._total = 0
        self._sequence = 0
        self._token = ""  # the token of this run, taken once, replaced after a 401 (provider calls cost CPU)

    def _begin(self, pods: Sequence[PodRef]) -> list[Job]:
        """A job per pod, all ready."""
        jobs = [Job(pod) for pod in pods]
        self._total = len(jobs)
        self._ready.extend(jobs)
        return jobs

    def _outcomes(self, pods: Sequence[PodRef]) -> list[ScrapeResult]:
        """Every pod's result in ``pods`` order; a pod without one timed out."""
        return [
            self._done.get(pod.key) or ScrapeResult(pod.key, pod.name, None, "timeout", DEADLINE_PASSED)
            for pod in pods
        ]

    def _all_done(self) -> bool:
        return len(self._done) >= self._total

    def _run_token(self, job: Job) -> str:
        """The run's token (taken once), now also ``job``'s."""
        if not self._token:
            self._token = self._tokens.token()
        job.token = self._token
        return job.token

    def _release_due(self, now: float) -> float | None:
        """Move the retries due by ``now`` to the ready jobs; when the next one is due (None: none)."""
        while self._waiting and self._waiting[0][0] <= now:
            self._ready.append(heapq.heappop(self._waiting)[2])
        return self._waiting[0][0] if self._waiting else None

    def _record(self, result: ScrapeResult) -> None:
        self._done[result.key] = result
        if self._progress is not None:
            self._progress(len(self._done), self._total)

    def _succeeded(self, job: Job, metrics: NodeMetrics, wire: int) -> None:
        self._record(ScrapeResult(
            job.pod.key, job.pod.name, metrics, bytes_read=job.wire_bytes + wire, attempts=job.attempts
        ))

    def _give_up(self, job: Job, failure: ScrapeFailure) -> None:
        self._record(ScrapeResult(
            job.pod.key, job.pod.name, None, failure.reason, failure.message, bytes_read=job.wire_bytes,
            attempts=job.attempts,
        ))

    def _failed(self, job: Job, failure: ScrapeFailure, now: float) -> None:
        """After a failed attempt: one token refresh (401), one retry when allowed, else the result."""
        job.wire_bytes += failure.bytes_read
        if failure.status == 401 and not job.refreshed:
            job.refreshed = True
            try:
                self._token = self._tokens.refresh(job.token)
            except Exception as exc:
                failure = ScrapeFailure("unauthorized", f"token refresh failed: {exc}")
            else:
                self._ready.appendleft(job)
                return
        delay = retry_delay(failure, self._rng)
        if should_retry(failure, delay, now=now, deadline=self._deadline, retried=job.retried):
            job.retried = True
            self._sequence += 1
            heapq.heappush(self._waiting, (now + delay, self._sequence, job))
            return
        self._give_up(job, failure)
