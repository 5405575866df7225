"""The fleet dispatcher's run, once a period: read, resolve, list, plan, invoke, publish the fleet's health.

``run_dispatch(settings, deps=..., remaining_seconds=...)``:

1. the fleet document (``load_fleet``: cached, re-read conditionally); unusable -> ``DispatchFailed``;
2. its clusters (``resolve``: entries, and discovery through each rule's role in its regions);
3. the state objects (``list_states``: one ListObjectsV2 per 1,000) for node estimates and staleness; a
   listing that fails leaves both unknown (every cluster then gets its own invocation);
4. the plan (``plan_dispatch``: FLEET_MODE) and the invocations (``invoke_groups``: Invoke Event,
   DISPATCH_CONCURRENCY at a time, never waiting for a worker);
5. the fleet's health (``fleet_health``) published under ``CLUSTER_ID`` ``fleet:<name>`` through the
   collector's publishers; problems, stale clusters and failed invocations logged.

Every AWS call is bounded by one ``Deadline``: the invocation's end less ``CALLS_END_BEFORE_SECONDS``. The
run fails (``DispatchFailed``: the Errors alarm and the on-failure destination see it) when the fleet
document cannot be used, or when it has clusters and not one invocation was accepted.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.config import Config

from cni_metrics.adapters.aws_clients import Deadline
from cni_metrics.adapters.publishers import EmfPublisher, MetricBatch, Publisher, PutMetricDataPublisher
from cni_metrics.fleet.dispatch import DispatchReport, invoke_groups, lambda_client, plan_dispatch
from cni_metrics.fleet.document import load_fleet
from cni_metrics.fleet.health import (
    FleetHealth,
    StateListingError,
    StateObject,
    fleet_cluster_id,
    fleet_health,
    list_states,
    node_estimates,
)
from cni_metrics.fleet.resolve import resolve
from cni_metrics.fleet.settings import DispatcherSettings

logger = logging.getLogger(__name__)

# AWS calls end this long before the invocation does: the handler logs and returns meanwhile.
CALLS_END_BEFORE_SECONDS = 2.0
# The S3 and CloudWatch clients' (the Lambda client's is ``dispatch.lambda_client``'s).
_CONFIG = Config(connect_timeout=2, read_timeout=10, retries={"mode": "standard", "total_max_attempts": 3})


class DispatchFailed(RuntimeError):
    """The fleet could not be dispatched: fail the invocation so the Errors alarm fires."""


@dataclass(frozen=True, slots=True)
class DispatchDeps:
    """What the dispatcher talks to, injectable; every client bounded by ``deadline``."""

    s3: Any
    lambda_client: Any
    publisher: Publisher
    deadline: Deadline
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    monotonic: Callable[[], float] = time.monotonic


def build_dispatch_deps(
    settings: DispatcherSettings, *, session: boto3.Session | None = None
) -> DispatchDeps:
    """The production wiring (``AWS_ENDPOINT_URL_<SERVICE>`` points it at local stand-ins)."""
    deadline = Deadline()
    session = session or boto3.Session(region_name=settings.region)
    deadline.bind(session.events)
    s3 = session.client("s3", config=_CONFIG)
    publisher: Publisher
    if settings.publish_mode == "emf":
        publisher = EmfPublisher(settings.namespace)
    else:
        publisher = PutMetricDataPublisher(session.client("cloudwatch", config=_CONFIG),
                                           settings.namespace)
    invoker = lambda_client(session, deadline, concurrency=settings.dispatch_concurrency)
    return DispatchDeps(s3, invoker, publisher, deadline)


@dataclass(slots=True)
class DispatchSummary:
    """What one dispatch did (the handler's return value, ``to_dict``)."""

    fleet: str
    mode: str
    dispatched_at: datetime
    health: FleetHealth
    seconds: float
    failed: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    published: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        health = self.health
        return {
            "fleet": self.fleet, "mode": self.mode, "dispatchedAt": self.dispatched_at.isoformat(),
            "clusters": health.clusters, "invocations": health.invocations, "dispatched": health.dispatched,
            "failed": self.failed, "problems": self.problems, "stale": list(health.stale or ()),
            "neverCollected": list(health.never_collected or ()), "published": self.published,
            "seconds": round(self.seconds, 3),
        }


def run_dispatch(
    settings: DispatcherSettings, *, deps: DispatchDeps, remaining_seconds: float
) -> DispatchSummary:
    """One period's dispatch of the fleet; ``remaining_seconds`` is the invocation's time left."""
    start = deps.monotonic()
    deps.deadline.set(start + remaining_seconds - CALLS_END_BEFORE_SECONDS)
    now = deps.clock()
    try:
        fleet = load_fleet(deps.s3, settings.fleet_document)
    except ValueError as exc:  # FleetDocumentError
        raise DispatchFailed(str(exc)) from None
    resolution = resolve(fleet, deadline=deps.deadline)
    states: dict[str, StateObject] | None
    try:
        states = list_states(deps.s3, settings.state_bucket, settings.state_prefix)
    except StateListingError as exc:
        logger.error("fleet %s: %s: node estimates and staleness unknown this period", fleet.name, exc)
        states = None
    plan = plan_dispatch(resolution.ids, node_estimates(resolution.ids, states or {}), mode=settings.mode)
    report = invoke_groups(
        deps.lambda_client, settings.collector_function, plan, dispatched_at=now,
        period_seconds=settings.period_seconds, deadline=deps.deadline,
        concurrency=settings.dispatch_concurrency,
    )
    seconds = deps.monotonic() - start
    health = fleet_health(resolution, now=now, period_seconds=settings.period_seconds, states=states,
                          report=report, stale_periods=settings.stale_periods, duration_ms=seconds * 1000)
    summary = DispatchSummary(fleet.name, plan.mode, now, health, seconds, report.failed,
                              [str(problem) for problem in resolution.problems])
    summary.published = _publish(deps.publisher, fleet.name, health, now)
    _log(summary, report)
    if health.clusters and not report.dispatched:
        raise DispatchFailed(f"fleet {fleet.name}: none of {health.clusters} clusters dispatched: "
                             + "; ".join(sorted({call.error or "" for call in report.invocations})))
    return summary


def _publish(publisher: Publisher, name: str, health: FleetHealth, now: datetime) -> int:
    """The fleet's health datums, then each stalest cluster's, stamped with the dispatch time; a failure is
    logged (no outbox: the next period publishes its own)."""
    published = 0
    by_cluster = {fleet_cluster_id(name): health.metrics(), **health.stale_metrics()}
    for cluster, metrics in by_cluster.items():
        batch = MetricBatch(f"fleet/{uuid.uuid4().hex}", now, tuple(metrics))
        result = publisher.publish(cluster, [batch])
        published += result.published
        if result.error or result.unpublished:
            logger.error("fleet %s: health of %s not published: %s", name, cluster,
                         result.error or "unpublished datums")
    return published


def _log(summary: DispatchSummary, report: DispatchReport) -> None:
    for problem in summary.problems:
        logger.warning("fleet %s: %s", summary.fleet, problem)
    for call in report.invocations:
        if not call.accepted:
            clusters = ", ".join(call.group.clusters)
            logger.error("fleet %s: invocation of %s failed: %s", summary.fleet, clusters, call.error)
    if summary.health.stale:
        logger.warning("fleet %s: not collected for %d periods or more: %s", summary.fleet,
                       len(summary.health.stale), ", ".join(summary.health.stale))
