"""The collector job: every cluster concurrently, counter state in a store, metrics through an outbox.

``run_collection(settings, deps=..., remaining_seconds=...)`` processes the clusters (configured, or
named by the event, plus any discovered by tag) at most ``CLUSTER_CONCURRENCY`` at a time; a cluster's
failure is caught and reported in its ``ClusterOutcome``, never stopping the others. Per cluster: load
the state, collect, aggregate, claim (conditional write), publish, settle: the protocol and what it
guarantees are in docs/design/state.md.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from cni_metrics.adapters.publishers import MetricBatch, Publisher
from cni_metrics.adapters.state_store import (
    DocumentError,
    OutboxEntry,
    StateConflict,
    StateDocument,
    StateStore,
    StateStoreError,
    decode_document,
    encode_document,
)
from cni_metrics.collector.batch import metrics_and_state, usable
from cni_metrics.collector.cluster import ClusterCollection
from cni_metrics.collector.outbox import CLAIM_ATTEMPTS, LEASE_SKEW, read_document, settle, split_outbox
from cni_metrics.collector.settings import ClusterSpec, Settings
from cni_metrics.core.model import ClusterState, MetricValue
from cni_metrics.core.reconcile import after_lost_claim

logger = logging.getLogger(__name__)

Status = Literal["ok", "no_aws_node_pods", "error", "superseded", "timeout", "publish_failed", "rebaselined"]
StateOutcome = Literal["created", "updated", "merged", "unchanged", "conflict", "error", "unsettled"]


Collector = Callable[[ClusterSpec, float], ClusterCollection]
"""Collect one cluster by a ``time.monotonic`` deadline."""
Discoverer = Callable[[tuple[str, str]], list[ClusterSpec]]
"""The clusters carrying a ``(key, value)`` tag."""


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


@dataclass(slots=True)
class ClusterOutcome:
    """How one cluster went in this run."""

    cluster: str
    status: Status = "ok"
    nodes: int = 0
    failures: int = 0
    published: int = 0
    pending: int = 0
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
    def failed_everywhere(self) -> bool:
        """Whether no cluster could be collected at all: the invocation as a whole failed.

        ``publish_failed`` does not count: those datums wait in the outbox for the next run.
        """
        failed = ("error", "timeout")
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


def run_collection(
    settings: Settings, *, deps: Deps, remaining_seconds: float, run_id: str | None = None
) -> RunSummary:
    """Collect and publish every cluster; ``remaining_seconds`` is the invocation's time left."""
    deps.on_run_start(deps.monotonic() + remaining_seconds)
    run = _Invocation(
        settings=settings,
        deps=deps,
        run_id=run_id or uuid.uuid4().hex,
        lease_until=deps.clock() + timedelta(seconds=remaining_seconds) + LEASE_SKEW,
        deadline=deps.monotonic() + remaining_seconds - settings.publish_margin_seconds,
    )
    summary = RunSummary(run.run_id)
    specs = list(settings.clusters)
    if settings.discovery_enabled and settings.discovery_tag is not None:
        if deps.discover is None:
            summary.clusters.append(ClusterOutcome("(discovery)", "error", error="no discoverer configured"))
        else:
            try:
                known = {spec.name for spec in specs}
                specs += [s for s in deps.discover(settings.discovery_tag) if s.name not in known]
            except Exception as exc:
                logger.exception("cluster discovery by tag failed")
                failed = ClusterOutcome("(discovery)", "error", error=f"discovery failed: {exc}")
                summary.clusters.append(failed)
    with ThreadPoolExecutor(max_workers=settings.cluster_concurrency, thread_name_prefix="cluster") as pool:
        summary.clusters.extend(pool.map(lambda spec: _process_safely(run, spec), specs))
    return summary


def _process_safely(run: _Invocation, spec: ClusterSpec) -> ClusterOutcome:
    outcome = ClusterOutcome(spec.name)
    try:
        _process(run, spec, outcome)
    except Exception as exc:
        logger.exception("cluster %s failed", spec.name, extra={"cluster": spec.name})
        outcome.status, outcome.error = "error", f"unexpected {type(exc).__name__}: {exc}"
    log = logger.info if outcome.status in ("ok", "no_aws_node_pods") else logger.warning
    extra = {"cluster": spec.name, "outcome": outcome.to_dict()}
    log("cluster %s: %s", spec.name, outcome.status, extra=extra)
    return outcome


def _process(run: _Invocation, spec: ClusterSpec, outcome: ClusterOutcome) -> None:
    store, cluster = run.deps.store, spec.name
    # 1. load
    try:
        loaded = store.load(cluster)
    except StateStoreError as exc:
        outcome.status, outcome.state, outcome.error = "error", "error", str(exc)
        return
    document, corrupt = read_document(loaded, store.location(cluster))
    if corrupt:
        outcome.error = corrupt
    now = run.deps.clock()
    kept, taken = split_outbox(document.outbox, now, cluster)

    # 2. collect and aggregate
    collection = run.deps.collect(spec, run.deadline)
    outcome.nodes, outcome.failures = len(collection.nodes), len(collection.failed_keys)
    metrics, state = metrics_and_state(run.settings, collection, document.state)
    if collection.status == "error" or collection.error:
        outcome.status, outcome.error = "error", _joined(outcome.error, collection.error)
    elif collection.status == "no_aws_node_pods":
        outcome.status = "no_aws_node_pods"
    batch = MetricBatch(f"{run.run_id}/{cluster}", collection.collected_at, tuple(metrics))
    outcome.collected_at = collection.collected_at.isoformat()

    # 3. claim (after a lost race: merge this run's newer observations into the winner's state, or stop)
    if run.deps.monotonic() > run.deadline:
        outcome.status, outcome.error = "timeout", "no time left to publish before the invocation deadline"
        return
    etag_loaded = loaded.etag if loaded else None
    for _ in range(CLAIM_ATTEMPTS):
        mine = [OutboxEntry(entry.batch, run.run_id, run.lease_until) for entry in taken]
        if batch.metrics:
            mine.append(OutboxEntry(batch, run.run_id, run.lease_until))
        claim = StateDocument(state, kept + mine, run.run_id, now, etag_loaded)
        try:
            etag = store.save(cluster, encode_document(claim), if_match=etag_loaded)
            break
        except StateConflict:
            base = loaded.etag if loaded else None
            merged = _after_conflict(run, cluster, collection, document.state, base)
        except StateStoreError as exc:
            outcome.status, outcome.state, outcome.error = "error", "error", str(exc)
            return
        if merged is None:
            outcome.status, outcome.state = "superseded", "conflict"
            outcome.error = "another invocation updated this cluster's state first and saw newer values"
            return
        etag_loaded, state, kept, taken, counters = merged
        batch = MetricBatch(batch.id, batch.collected_at, tuple(counters))
        outcome.state = "merged"
    else:
        outcome.status, outcome.state = "superseded", "conflict"
        outcome.error = "the state kept changing under this run; the other invocations publish"
        return
    if outcome.state != "merged":
        outcome.state = "created" if loaded is None else "updated"
    if corrupt:
        outcome.status = "rebaselined"

    # 4. publish
    result = run.deps.publisher.publish(cluster, [entry.batch for entry in mine])
    outcome.published = result.published
    outcome.pending = sum(len(b.metrics) for b in result.unpublished)
    if not result.complete:
        outcome.status = "publish_failed"
        outcome.error = _joined(outcome.error, result.error)

    # 5. settle
    if mine and not settle(store, cluster, run.run_id, etag, claim, result, run.deps.clock):
        outcome.state = "unsettled"


def _joined(first: str | None, second: str | None) -> str | None:
    """Both messages when there are two (a corrupt state and a failed collection, say)."""
    return "; ".join(message for message in (first, second) if message) or None


def _after_conflict(
    run: _Invocation, cluster: str, collection: ClusterCollection, previous: ClusterState | None,
    base: str | None,
) -> tuple[str, ClusterState, list[OutboxEntry], list[OutboxEntry], list[MetricValue]] | None:
    """Another run claimed first: (ETag, merged state, kept and taken-over outbox, counter datums) this
    run may still add (``cni_metrics.core.reconcile``), or None (then it publishes nothing)."""
    try:
        reloaded = run.deps.store.load(cluster)
        document = decode_document(reloaded.body) if reloaded else None
    except (StateStoreError, DocumentError):
        return None
    if reloaded is None or document is None or document.state is None or not usable(collection):
        return None
    merged = after_lost_claim(
        collection.nodes, collection.collected_at, previous, document.state,
        same_base=previous is not None and base is not None and document.based_on == base,
        exhaustion_threshold_pct=run.settings.exhaustion_threshold_pct,
    )
    if merged is None:
        return None
    kept, taken = split_outbox(document.outbox, run.deps.clock(), cluster)
    return reloaded.etag, merged[0], kept, taken, merged[1]
