"""The collector job: every cluster concurrently, counter state in a store, metrics through an outbox.

``run_collection(settings, deps=..., remaining_seconds=...)`` processes the clusters (configured, or
named by the event, plus any discovered by tag) at most ``CLUSTER_CONCURRENCY`` at a time; a cluster's
failure is caught and reported in its ``ClusterOutcome``, never stopping the others. Per cluster: load
the state and take its collection lease (or skip it: another run collects it), collect, aggregate,
keep the metrics the deployment publishes (METRIC_SET, METRICS_INCLUDE, METRICS_EXCLUDE), claim
(conditional write), then publish and settle a step at a time: the protocol and what it guarantees are
in docs/design/state.md.

In fleet mode (FLEET_DOCUMENT) each name the event gives is looked up in the fleet (``Deps.fleet``) in
that cluster's own thread: a name the fleet does not have is that cluster's ``error``. A cluster is
published, stored and reported under its id (``ClusterSpec.id``: a fleet entry's alias, else its name). A
dispatched event that arrives after its period skips every cluster (``skipped_late``: nothing read or
written; the next run's increases cover the interval).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

from cni_metrics.adapters.publishers import MetricBatch, Publisher, PublishResult
from cni_metrics.adapters.state_store import StateConflict, StateStore, StateStoreError
from cni_metrics.collector.batch import metrics_and_state
from cni_metrics.collector.cluster import ClusterCollection
from cni_metrics.collector.outbox import (
    LEASE_SKEW,
    MAX_OUTBOX_DATUMS,
    STUCK_AFTER,
    Busy,
    Claimed,
    Current,
    Stop,
    claim,
    publish_steps,
    release_lease,
    settle,
    take_lease,
)
from cni_metrics.collector.settings import ClusterSpec, Settings

logger = logging.getLogger(__name__)

Status = Literal[
    "ok", "no_aws_node_pods", "error", "skipped_busy", "skipped_late", "superseded", "timeout",
    "publish_failed", "publish_stuck", "rebaselined",
]
StateOutcome = Literal["created", "updated", "unchanged", "conflict", "error", "unsettled"]
NO_TIME = "no time left to publish before the invocation deadline"


Collector = Callable[[ClusterSpec, float], ClusterCollection]
"""Collect one cluster by a ``time.monotonic`` deadline."""
Discoverer = Callable[[tuple[str, str]], list[ClusterSpec]]
"""The clusters carrying a ``(key, value)`` tag."""


class FleetClusters(Protocol):
    """The fleet as a worker sees it (``cni_metrics.fleet.worker``); both raise when it cannot be read."""

    def lookup(self, cluster_id: str) -> ClusterSpec | None:
        """The fleet's cluster with this id (None: the fleet has none)."""
        ...

    def all(self) -> list[ClusterSpec]:
        """Every cluster of the fleet (a run whose event names none)."""
        ...


def utc_now() -> datetime:
    """The wall clock, UTC-aware."""
    return datetime.now(UTC)


def _ignore_deadline(deadline: float) -> None:
    """The default ``Deps.on_run_start``: nothing to bound."""


@dataclass(frozen=True, slots=True)
class Deps:
    """Everything the job talks to, injectable."""

    store: StateStore
    publisher: Publisher
    collect: Collector
    discover: Discoverer | None = None
    clock: Callable[[], datetime] = utc_now
    monotonic: Callable[[], float] = time.monotonic
    on_run_start: Callable[[float], None] = _ignore_deadline
    """Called first with the monotonic time at which the invocation ends (wiring bounds AWS calls by it)."""
    fleet: FleetClusters | None = None
    """The fleet's clusters (FLEET_DOCUMENT); None without fleet mode."""


@dataclass(slots=True)
class ClusterOutcome:
    """How one cluster went in this run."""

    cluster: str
    status: Status = "ok"
    nodes: int = 0
    failures: int = 0
    published: int = 0
    pending: int = 0
    dropped: int = 0
    state: StateOutcome = "unchanged"
    error: str | None = None
    collected_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)


@dataclass(slots=True)
class RunSummary:
    """The run's result: one outcome per cluster."""

    run_id: str
    clusters: list[ClusterOutcome] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether every cluster was collected and published."""
        return all(outcome.status in ("ok", "no_aws_node_pods") for outcome in self.clusters)

    @property
    def alarming(self) -> bool:
        """Whether the invocation must fail so the Errors alarm sees it: nothing could be collected, or
        some cluster's publishing is stuck (its datums are being dropped or wait for over ``STUCK_AFTER``)."""
        return self.failed_everywhere or any(outcome.status == "publish_stuck" for outcome in self.clusters)

    @property
    def failed_everywhere(self) -> bool:
        """Whether no cluster could be collected and published: the invocation as a whole failed.

        ``publish_stuck`` counts (publishing has failed for ``STUCK_AFTER``, or datums were dropped): a
        publish failure every cluster shares (IAM, the namespace condition) reaches the Errors alarm.
        ``publish_failed`` does not: those datums wait in the outbox for the next run. Neither does
        ``skipped_busy``: another run collects that cluster.
        """
        failed = ("error", "timeout", "publish_stuck")
        return bool(self.clusters) and all(outcome.status in failed for outcome in self.clusters)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (the handler's return value)."""
        return {"runId": self.run_id, "ok": self.ok, "clusters": [c.to_dict() for c in self.clusters]}


@dataclass(frozen=True, slots=True)
class _Invocation:
    settings: Settings
    deps: Deps
    run_id: str
    lease_until: datetime
    deadline: float  # monotonic: collection must end and claims be made by then
    publish_until: float  # monotonic: a publish step starts only before then (half the margin left)


def run_collection(
    settings: Settings, *, deps: Deps, remaining_seconds: float, run_id: str | None = None
) -> RunSummary:
    """Collect and publish every cluster; ``remaining_seconds`` is the invocation's time left."""
    end = deps.monotonic() + remaining_seconds
    deps.on_run_start(end)
    run = _Invocation(
        settings=settings,
        deps=deps,
        run_id=run_id or uuid.uuid4().hex,
        lease_until=deps.clock() + timedelta(seconds=remaining_seconds) + LEASE_SKEW,
        deadline=end - settings.publish_margin_seconds,
        publish_until=end - settings.publish_margin_seconds / 2,
    )
    summary = RunSummary(run.run_id)
    if settings.late(deps.clock()):
        summary.clusters.extend(_late(settings, deps.clock()))
        return summary
    if settings.fleet_document is not None:
        return _run_fleet(run, summary)
    specs = list(settings.clusters)
    if settings.discovery_enabled and settings.discovery_tag is not None:
        if deps.discover is None:
            summary.clusters.append(ClusterOutcome("(discovery)", "error", error="no discoverer configured"))
        else:
            try:
                known = {spec.name for spec in specs}
                discovered = settings.chosen(deps.discover(settings.discovery_tag))
                specs += [s for s in discovered if s.name not in known]
            except Exception as exc:
                logger.exception("cluster discovery by tag failed")
                failed = ClusterOutcome("(discovery)", "error", error=f"discovery failed: {exc}")
                summary.clusters.append(failed)
    with ThreadPoolExecutor(max_workers=settings.cluster_concurrency, thread_name_prefix="cluster") as pool:
        summary.clusters.extend(pool.map(lambda spec: _process_safely(run, spec), specs))
    summary.clusters.extend(_not_found(settings, {spec.name for spec in specs}))
    return summary


def _late(settings: Settings, now: datetime) -> list[ClusterOutcome]:
    """``skipped_late`` for each cluster of a dispatched event whose period had ended."""
    error = (f"dispatched at {settings.dispatched_at} for a {settings.period_seconds} s period that had "
             f"ended when the run started ({now.isoformat()}): skipped, the next run counts the interval")
    outcomes = []
    for name in dict.fromkeys(settings.requested or ()):
        outcomes.append(ClusterOutcome(name, "skipped_late", error=error))
        logger.warning("cluster %s: skipped_late: %s", name, error, extra={"cluster": name})
    return outcomes


def _run_fleet(run: _Invocation, summary: RunSummary) -> RunSummary:
    """Fleet mode: each name of the event looked up in its own thread, or every cluster of the fleet."""
    fleet, requested = run.deps.fleet, run.settings.requested
    if fleet is None:
        summary.clusters.append(ClusterOutcome("(fleet)", "error", error="no fleet configured"))
        return summary
    if requested is None:
        try:
            specs = fleet.all()
        except Exception as exc:
            logger.exception("reading the fleet failed")
            summary.clusters.append(ClusterOutcome("(fleet)", "error", error=f"fleet: {exc}"))
            return summary
        work: list[ClusterSpec | str] = list(specs)
    else:
        work = list(dict.fromkeys(requested))
    concurrency = run.settings.cluster_concurrency
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="cluster") as pool:
        summary.clusters.extend(pool.map(lambda item: _process_fleet_item(run, fleet, item), work))
    return summary


def _process_fleet_item(run: _Invocation, fleet: FleetClusters, item: ClusterSpec | str) -> ClusterOutcome:
    if isinstance(item, ClusterSpec):
        return _process_safely(run, item)
    try:
        spec = fleet.lookup(item)
    except Exception as exc:
        outcome = ClusterOutcome(item, "error", error=f"fleet lookup failed: {exc}")
    else:
        if spec is not None:
            return _process_safely(run, spec)
        error = f"not a cluster of the fleet ({run.settings.fleet_document}): refused"
        outcome = ClusterOutcome(item, "error", error=error)
    extra = {"cluster": item, "outcome": outcome.to_dict()}
    logger.warning("cluster %s: error: %s", item, outcome.error, extra=extra)
    return outcome


def _not_found(settings: Settings, collected: set[str]) -> list[ClusterOutcome]:
    """An error outcome for each name the event chose that is neither configured nor discovered."""
    tag = "=".join(settings.discovery_tag or ())
    return [
        ClusterOutcome(name, "error", error=f"not configured, and discovery by tag {tag} did not find it")
        for name in dict.fromkeys(settings.requested or ()) if name not in collected
    ]


def _process_safely(run: _Invocation, spec: ClusterSpec) -> ClusterOutcome:
    outcome = ClusterOutcome(spec.id)
    try:
        _process(run, spec, outcome)
    except Exception as exc:
        logger.exception("cluster %s failed", spec.id, extra={"cluster": spec.id})
        outcome.status, outcome.error = "error", f"unexpected {type(exc).__name__}: {exc}"
    log = logger.info if outcome.status in ("ok", "no_aws_node_pods") else logger.warning
    extra = {"cluster": spec.id, "outcome": outcome.to_dict()}
    log("cluster %s: %s", spec.id, outcome.status, extra=extra)
    return outcome


def _process(run: _Invocation, spec: ClusterSpec, outcome: ClusterOutcome) -> None:
    store, cluster = run.deps.store, spec.id  # the published id: state key, CLUSTER_ID
    if run.deps.monotonic() > run.deadline:
        outcome.status, outcome.error = "timeout", NO_TIME
        return
    # 1. load the state and take the collection lease (another run holding it: skip, nothing is lost)
    try:
        leased = take_lease(store, cluster, run.run_id, run.lease_until, run.deps.clock)
    except (Busy, StateConflict) as exc:  # held, or other runs' writes kept winning: they are active
        outcome.status, outcome.error = "skipped_busy", str(exc)
        return
    except StateStoreError as exc:
        outcome.status, outcome.state, outcome.error = "error", "error", str(exc)
        return
    outcome.error = leased.corrupt

    # 2. collect and aggregate against the leased baselines: no other run writes them meanwhile
    try:
        collection = run.deps.collect(spec, run.deadline)
        collection.cluster = cluster  # logged (capacity record) under the published id
        metrics, state = metrics_and_state(run.settings, collection, leased.document.state)
    except Exception:
        release_lease(store, cluster, run.run_id, (leased.document, leased.etag), run.deps.clock)
        raise
    outcome.nodes, outcome.failures = len(collection.nodes), len(collection.failed_keys)
    if collection.status == "error" or collection.error:
        outcome.status, outcome.error = "error", _joined(outcome.error, collection.error)
    elif collection.status == "no_aws_node_pods":
        outcome.status = "no_aws_node_pods"
    published = run.settings.published_metrics  # METRIC_SET, METRICS_INCLUDE, METRICS_EXCLUDE
    batch = MetricBatch(
        f"{run.run_id}/{cluster}", collection.collected_at, tuple(m for m in metrics if m.name in published)
    )
    outcome.collected_at = collection.collected_at.isoformat()

    # 3. claim: new baselines and the outbox, releasing the lease
    if run.deps.monotonic() > run.deadline:
        outcome.status, outcome.error = "timeout", NO_TIME
        release_lease(store, cluster, run.run_id, (leased.document, leased.etag), run.deps.clock)
        return
    try:
        claimed = claim(store, cluster, leased, run.run_id, state, batch, run.lease_until, run.deps.clock)
    except Stop as exc:
        outcome.status, outcome.state, outcome.error = "superseded", "conflict", str(exc)
        return
    except (StateConflict, StateStoreError) as exc:
        outcome.status, outcome.state, outcome.error = "error", "error", str(exc)
        return
    outcome.state = "updated" if leased.existed else "created"
    if leased.corrupt:
        outcome.status = "rebaselined"
    split = claimed.split
    if split.dropped:
        outcome.dropped = split.dropped
        message = (
            f"dropped {split.dropped} unpublished datums ({split.too_old} older than CloudWatch accepts, "
            f"{split.over_cap} beyond the outbox's newest {MAX_OUTBOX_DATUMS}): they are lost"
        )
        logger.error("cluster %s: %s", cluster, message, extra={"cluster": cluster})
        outcome.error = _joined(outcome.error, message)

    # 4 and 5. publish and settle, a step at a time
    _publish_and_settle(run, cluster, claimed, outcome)


def _publish_and_settle(run: _Invocation, cluster: str, claimed: Claimed, outcome: ClusterOutcome) -> None:
    """Publish this run's entries in steps of one PutMetricData call, settling after each, so that a run
    killed mid-publish leaves at most one step published and unsettled (docs/design/state.md)."""
    current: Current = (claimed.document, claimed.etag)
    steps = publish_steps(claimed.mine)
    unpublished: list[MetricBatch] = []
    for index, step in enumerate(steps):
        out_of_time = run.deps.monotonic() > run.publish_until
        if out_of_time:  # release the rest at once: the next run publishes it, nobody waits for a lease
            rest = [batch for later in steps[index:] for batch in later]
            result = PublishResult(unpublished=rest, error=f"{NO_TIME}: the next run publishes the rest")
        else:
            result = run.deps.publisher.publish(cluster, step)
        outcome.published += result.published
        outcome.error = _joined(outcome.error, result.error)
        unpublished += result.unpublished
        try:
            current = settle(
                run.deps.store, cluster, run.run_id, current,
                published={batch.id for batch in step}, released=result.unpublished, clock=run.deps.clock,
            )
        except (Stop, StateConflict, StateStoreError) as exc:
            outcome.state = "unsettled"
            logger.error(
                "cluster %s: could not settle the outbox (%s); this step's datums are published again "
                "after the lease", cluster, exc, extra={"cluster": cluster},
            )
            unpublished += [batch for later in steps[index + 1:] for batch in later]
            break
        if out_of_time:
            break
    outcome.pending = sum(len(batch.metrics) for batch in unpublished)
    _publish_status(run, cluster, unpublished, outcome)


def _publish_status(
    run: _Invocation, cluster: str, unpublished: list[MetricBatch], outcome: ClusterOutcome
) -> None:
    """``publish_stuck`` when datums were dropped or some are unpublished for ``STUCK_AFTER``;
    ``publish_failed`` when some wait for the next run."""
    oldest = min((batch.collected_at for batch in unpublished if batch.metrics), default=None)
    stuck_since = oldest if oldest is not None and run.deps.clock() - oldest > STUCK_AFTER else None
    if outcome.dropped or stuck_since is not None:
        outcome.status = "publish_stuck"
        if stuck_since is not None:
            message = f"publishing has failed since {stuck_since.isoformat()}"
            outcome.error = _joined(outcome.error, message)
            logger.error("cluster %s: %s", cluster, message, extra={"cluster": cluster})
    elif outcome.pending:
        outcome.status = "publish_failed"


def _joined(first: str | None, second: str | None) -> str | None:
    """Both messages when there are two (a corrupt state and a failed collection, say)."""
    return "; ".join(message for message in (first, second) if message) or None
