"""The collector job: every cluster concurrently, counter state in a store, metrics through an outbox.

``run_collection(settings, deps=..., remaining_seconds=...)`` processes the clusters (configured, or
named by the event, plus any discovered by tag) at most ``CLUSTER_CONCURRENCY`` at a time; a cluster's
failure is caught and reported in its ``ClusterOutcome``, never stopping the others.

Per cluster, the outbox protocol keeps counter increases exact across overlapping and failing runs:

1. Load the state document and its ETag. Outbox entries whose lease expired (their run died, or a
   publish failed and released them) are taken over by this run; live entries of another run are kept
   untouched. A corrupt document is reported and replaced: this run is a first run (rebaseline).
2. Collect and aggregate against the stored baselines (pods that failed keep their old baseline), giving
   the new baselines and this run's batch of datums, stamped with the collection time.
3. Claim: write {new baselines, outbox = kept + taken-over + this batch, owned by this run, lease = the
   invocation's hard deadline} with If-Match on the loaded ETag (If-None-Match for a first run). The loser
   of a race (412) re-reads the winner's state and publishes counter increases only: beyond the winner's
   baselines for pods it scraped later, and, when both runs started from the same state (``based_on``),
   what the winner's single step missed for pods it scraped earlier (a reset or departure in between);
   with nothing to add it publishes nothing and reports ``superseded``. No interval is counted twice.
4. Publish the run's outbox entries.
5. Settle: remove the published entries with a conditional write (re-reading and retrying on a conflict,
   touching only this run's entries); datums whose publishing failed stay in the outbox, released, and the
   next run publishes them with their original timestamps.

At-least-once window: if the run dies (or the settle write keeps failing) after publishing and before
settling, its entries are published again once their lease expires.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import boto3
from botocore.config import Config

from cni_metrics.adapters.eks_auth import ClusterTarget
from cni_metrics.adapters.publishers import (
    EmfPublisher,
    MetricBatch,
    Publisher,
    PublishResult,
    PutMetricDataPublisher,
)
from cni_metrics.adapters.state_store import (
    DocumentError,
    OutboxEntry,
    S3StateStore,
    StateConflict,
    StateDocument,
    StateStore,
    StateStoreError,
    StoredObject,
    decode_document,
    encode_document,
)
from cni_metrics.capacity.core import Capacity, capacity
from cni_metrics.collector.cluster import ClusterCollection, CollectionHealth, collect_cluster
from cni_metrics.collector.settings import ClusterSpec, Settings
from cni_metrics.core import catalogue
from cni_metrics.core.aggregate import aggregate
from cni_metrics.core.model import ClusterState, MetricValue, NodeInput, NodeMetrics, PodState

logger = logging.getLogger(__name__)

# CloudWatch drops datums older than two weeks; older outbox entries are discarded (and logged).
MAX_OUTBOX_AGE = timedelta(days=14) - timedelta(hours=1)
# Added to a lease so that clock differences between Lambda hosts cannot end it early.
LEASE_SKEW = timedelta(seconds=10)
SETTLE_ATTEMPTS = 5
CLAIM_ATTEMPTS = 3
_COUNTER_METRICS = frozenset(family.metric for family in catalogue.COUNTERS if family.metric is not None)

CAPACITY_MESSAGE = "nodes nearest IP exhaustion"
Status = Literal["ok", "no_aws_node_pods", "error", "superseded", "timeout", "publish_failed", "rebaselined"]
StateOutcome = Literal["created", "updated", "merged", "unchanged", "conflict", "error", "unsettled"]


Collector = Callable[[ClusterSpec, float], ClusterCollection]
"""Collect one cluster by a ``time.monotonic`` deadline."""
Discoverer = Callable[[tuple[str, str]], list[ClusterSpec]]
"""The clusters carrying a ``(key, value)`` tag."""


def utc_now() -> datetime:
    """The wall clock, UTC-aware."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Deps:
    """Everything the job talks to, injectable."""

    store: StateStore
    publisher: Publisher
    collect: Collector
    discover: Discoverer | None = None
    clock: Callable[[], datetime] = utc_now
    monotonic: Callable[[], float] = time.monotonic


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
class _Run:
    settings: Settings
    deps: Deps
    run_id: str
    lease_until: datetime
    deadline: float  # monotonic: collection must end and claims be made by then


def run_collection(
    settings: Settings, *, deps: Deps, remaining_seconds: float, run_id: str | None = None
) -> RunSummary:
    """Collect and publish every cluster; ``remaining_seconds`` is the invocation's time left."""
    run = _Run(
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


def _process_safely(run: _Run, spec: ClusterSpec) -> ClusterOutcome:
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


def _process(run: _Run, spec: ClusterSpec, outcome: ClusterOutcome) -> None:
    store, cluster = run.deps.store, spec.name
    # 1. load
    try:
        loaded = store.load(cluster)
    except StateStoreError as exc:
        outcome.status, outcome.state, outcome.error = "error", "error", str(exc)
        return
    document, corrupt = _read(loaded, store.location(cluster))
    if corrupt:
        outcome.error = corrupt
    now = run.deps.clock()
    kept, taken = _split_outbox(document.outbox, now, cluster)

    # 2. collect and aggregate
    collection = run.deps.collect(spec, run.deadline)
    outcome.nodes, outcome.failures = len(collection.nodes), len(collection.failed_keys)
    metrics, state = _metrics_and_state(run.settings, collection, document.state)
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
    if mine and not _settle(run, cluster, etag, claim, result):
        outcome.state = "unsettled"


def _joined(first: str | None, second: str | None) -> str | None:
    """Both messages when there are two (a corrupt state and a failed collection, say)."""
    return "; ".join(message for message in (first, second) if message) or None


def _after_conflict(
    run: _Run, cluster: str, collection: ClusterCollection, previous: ClusterState | None, base: str | None
) -> tuple[str, ClusterState, list[OutboxEntry], list[OutboxEntry], list[MetricValue]] | None:
    """Another run claimed first: what this run may still add, or None (then it publishes nothing).

    A pod this run saw after the winner did (higher restart count, or no counter lower) adds its increase
    beyond the winner's baseline, which it replaces. When the winner started from the same stored state
    as this run (``previous``, ETag ``base``), a pod this run saw *before* the winner (or that the winner,
    listing later, no longer lists) adds what the winner's single step missed: inc(previous -> mine) +
    inc(mine -> winner) - inc(previous -> winner), non-zero only when a reset or departure came between
    the two scrapes. Only counters are published: the winner published this interval's gauges. Returns
    (ETag, merged state, kept and taken-over outbox, counter datums).
    """
    try:
        reloaded = run.deps.store.load(cluster)
        document = decode_document(reloaded.body) if reloaded else None
    except (StateStoreError, DocumentError):
        return None
    if reloaded is None or document is None or document.state is None or not _usable(collection):
        return None
    current = document.state
    same_base = previous is not None and base is not None and document.based_on == base
    newer: list[NodeInput] = []
    corrections: dict[str, float] = {}
    listed_later = collection.collected_at > current.collected_at
    for node in collection.nodes:
        before = current.pods.get(node.key)
        # a pod the winner does not know: new since its listing if this run listed later, else gone
        if (before is not None or not same_base or listed_later) and _newer(node, before):
            newer.append(node)
        elif same_base and previous is not None:
            for name, value in _missed(previous, node, before, collection.collected_at).items():
                corrections[name] = corrections.get(name, 0.0) + value
    if not newer and not any(corrections.values()):
        return None
    result = aggregate(
        newer,
        current,
        now=max(current.collected_at, collection.collected_at),
        carry_over=current.pods.keys() - {node.key for node in newer},
        exhaustion_threshold_pct=run.settings.exhaustion_threshold_pct,
    )
    kept, taken = _split_outbox(document.outbox, run.deps.clock(), cluster)
    counters = [metric for metric in result.metrics if metric.name in _COUNTER_METRICS]
    for name, value in corrections.items():
        counters.append(MetricValue(name, value))
    result.state.history = current.history
    return reloaded.etag, result.state, kept, taken, _merge_counters(counters)


def _missed(
    previous: ClusterState, mine: NodeInput, winner: PodState | None, seen_at: datetime
) -> dict[str, float]:
    """Counter increases of one pod that the winner's step previous -> winner missed (never negative)."""
    total = _increases(previous, mine)
    if winner is not None:
        theirs = _as_node(winner)
        mine_state = ClusterState(seen_at, {mine.key: _as_pod(mine)})
        for name, value in _increases(mine_state, theirs).items():
            total[name] = total.get(name, 0.0) + value
        for name, value in _increases(previous, theirs).items():
            total[name] = total.get(name, 0.0) - value
    return {name: value for name, value in total.items() if value > 0}


def _increases(previous: ClusterState, node: NodeInput) -> dict[str, float]:
    """The counter increases ``aggregate`` gives one pod against ``previous``."""
    pods = {node.key: previous.pods[node.key]} if node.key in previous.pods else {}
    result = aggregate([node], ClusterState(previous.collected_at, pods), now=previous.collected_at)
    return {m.name: m.value for m in result.metrics if m.name in _COUNTER_METRICS}


def _as_pod(node: NodeInput) -> PodState:
    metrics = node.metrics
    return PodState(
        node.key, node.started_at, node.restart_count, dict(metrics.counters),
        metrics.latency_sum, metrics.latency_count,
    )


def _as_node(pod: PodState) -> NodeInput:
    metrics = NodeMetrics({}, dict(pod.counters), pod.latency_sum, pod.latency_count)
    return NodeInput(pod.key, pod.key, metrics, pod.started_at, pod.restart_count)


def _merge_counters(metrics: list[MetricValue]) -> list[MetricValue]:
    """One datum per counter name (sums)."""
    totals: dict[str, float] = {}
    for metric in metrics:
        totals[metric.name] = totals.get(metric.name, 0.0) + metric.value
    return [MetricValue(name, value) for name, value in totals.items()]


def _newer(node: NodeInput, before: PodState | None) -> bool:
    """Whether ``node`` was observed after ``before`` (counters only grow between restarts)."""
    if before is None:
        return True
    restarts, restarts_before = node.restart_count, before.restart_count
    if restarts is not None and restarts_before is not None and restarts != restarts_before:
        return restarts > restarts_before
    counters = node.metrics.counters
    return all(counters.get(name, 0.0) >= value for name, value in before.counters.items())


def _usable(collection: ClusterCollection) -> bool:
    """Whether the collection saw nodes (not an error, not every node failed)."""
    return collection.status != "error" and not (not collection.nodes and collection.failed_keys)


def _read(loaded: StoredObject | None, location: str) -> tuple[StateDocument, str | None]:
    """The stored document, or an empty one; a corrupt object gives an empty one and the reason."""
    if loaded is None:
        return StateDocument(None), None
    try:
        return decode_document(loaded.body), None
    except DocumentError as exc:
        message = f"corrupt state object {location}: {exc}; replaced (counter increases start again next run)"
        logger.error(message)
        return StateDocument(None), message


def _split_outbox(
    outbox: Sequence[OutboxEntry], now: datetime, cluster: str
) -> tuple[list[OutboxEntry], list[OutboxEntry]]:
    """(entries another live run owns, entries this run takes over); too old ones are dropped."""
    kept: list[OutboxEntry] = []
    taken: list[OutboxEntry] = []
    for entry in outbox:
        if not entry.claimable(now):
            kept.append(entry)
        elif now - entry.batch.collected_at > MAX_OUTBOX_AGE:
            logger.error(
                "cluster %s: dropping %d unpublished datums of %s (older than CloudWatch accepts)",
                cluster, len(entry.batch.metrics), entry.batch.collected_at.isoformat(),
                extra={"cluster": cluster},
            )
        else:
            taken.append(entry)
    return kept, taken


def _metrics_and_state(
    settings: Settings, collection: ClusterCollection, previous: ClusterState | None
) -> tuple[list[MetricValue], ClusterState | None]:
    """This collection's datums and the new baselines.

    A failed collection (status ``error``, or every node failed) publishes its health numbers only and
    keeps the previous baselines: no gauge is summed over zero nodes. A usable one adds the capacity
    numbers (``cni_metrics.capacity``), keeps their history in the state and logs the nodes nearest
    exhaustion.
    """
    health = collection.health.to_metrics()
    if not _usable(collection):
        return health, previous
    result = aggregate(
        collection.nodes,
        previous,
        now=collection.collected_at,
        carry_over=collection.failed_keys,
        exhaustion_threshold_pct=settings.exhaustion_threshold_pct,
    )
    if previous is not None:
        # A pod that failed and is unknown to the previous state was not listed by the previous
        # collection: it started since, so all of its counts are new. A zero baseline keeps them.
        for key in collection.failed_keys - previous.pods.keys() - result.state.pods.keys():
            result.state.pods[key] = PodState(key, None, None, {}, 0.0, 0.0)
    sources = collection.capacity
    cap = capacity(
        collection.nodes,
        sources.subnets if sources is not None else None,
        sources.pod_subnet_ids if sources is not None else (),
        previous.history if previous is not None else [],
        now=collection.collected_at,
        threshold_pct=settings.exhaustion_threshold_pct,
    )
    result.state.history = cap.history
    _log_capacity(collection.cluster, cap, settings.exhaustion_threshold_pct)
    return [*result.metrics, *cap.metrics, *health], result.state


def _log_capacity(cluster: str, cap: Capacity, threshold_pct: float) -> None:
    """One structured record per cluster and run: the nodes nearest exhaustion (dashboard log widget)."""
    plain = {m.name: m.value for m in cap.metrics if not m.dimensions}
    nearest = "; ".join(
        f"{n.node} {n.instance_type or '?'} {n.zone or '?'} {n.assigned:g}/{n.held:g}/{n.maximum:g}"
        for n in cap.top
    )
    logger.info(CAPACITY_MESSAGE, extra={
        "cluster": cluster,
        "capacity": {
            "nodesNearIPExhaustion": cap.near,
            "thresholdPct": threshold_pct,
            "remainingIPAddresses": cap.remaining,
            "hoursToIPExhaustion": cap.hours,
            "minSubnetAvailableIPAddresses": plain.get("minSubnetAvailableIPAddresses"),
            "topNodes": [n.as_record() for n in cap.top],
        },
        "nearest": nearest,
    })


def _settle(run: _Run, cluster: str, etag: str, claim: StateDocument, result: PublishResult) -> bool:
    """Remove this run's published entries (conditional write, re-read on conflict); True when done."""
    store = run.deps.store
    unpublished = {batch.id: batch for batch in result.unpublished}
    document = claim
    for _ in range(SETTLE_ATTEMPTS):
        outbox = []
        for entry in document.outbox:
            if entry.owner != run.run_id:
                outbox.append(entry)
            elif entry.batch.id in unpublished:  # released: the next run takes it over
                outbox.append(OutboxEntry(unpublished[entry.batch.id], None, None))
        settled = StateDocument(document.state, outbox, run.run_id, run.deps.clock(), document.based_on)
        try:
            store.save(cluster, encode_document(settled), if_match=etag)
            return True
        except (StateConflict, StateStoreError) as exc:
            logger.info("cluster %s: settling again (%s)", cluster, exc, extra={"cluster": cluster})
        try:
            loaded = store.load(cluster)
            if loaded is None:
                return False
            document, etag = decode_document(loaded.body), loaded.etag
        except (StateStoreError, DocumentError) as exc:
            logger.warning("cluster %s: cannot re-read state to settle: %s", cluster, exc)
        if not any(entry.owner == run.run_id for entry in document.outbox):
            logger.warning(
                "cluster %s: this run's outbox entries were taken over before it settled", cluster,
                extra={"cluster": cluster},
            )
            return False
    logger.error(
        "cluster %s: could not settle the outbox; its datums will be published again after the lease",
        cluster, extra={"cluster": cluster},
    )
    return False


def build_deps(settings: Settings, *, session: boto3.Session | None = None) -> Deps:
    """The production wiring: S3 state store, the configured publisher, ``collect_cluster``, tag discovery.

    Endpoints and credentials come from the usual AWS configuration (``AWS_ENDPOINT_URL_<SERVICE>``
    included), which is how the demo and the tests point the job at local stand-ins.
    """
    session = session or boto3.Session(region_name=settings.region)
    region = settings.region or session.region_name
    s3 = session.client("s3", config=Config(retries={"mode": "standard"}))
    store = S3StateStore(s3, settings.state_bucket, settings.state_prefix)
    publisher: Publisher
    if settings.publish_mode == "emf":
        publisher = EmfPublisher(settings.namespace)
    else:
        # total_max_attempts counts the first attempt too (max_attempts would count retries only).
        attempts = settings.publish_max_attempts
        retries: Any = {"mode": settings.publish_retry_mode, "total_max_attempts": attempts}
        cloudwatch = session.client("cloudwatch", config=Config(retries=retries))
        publisher = PutMetricDataPublisher(cloudwatch, settings.namespace)
    return Deps(store, publisher, collect=_collector(settings, region), discover=_discoverer(session, region))


def _collector(settings: Settings, region: str | None) -> Collector:
    def collect(spec: ClusterSpec, deadline: float) -> ClusterCollection:
        target_region = spec.region or region
        if target_region is None:
            return _no_region(spec)
        target = ClusterTarget(spec.name, target_region, spec.role_arn, spec.endpoint, spec.ca_data)
        # A session per collection: boto3 sessions are not thread-safe, clusters run in threads.
        return collect_cluster(
            target,
            concurrency=settings.scrape_concurrency,
            connect_timeout=settings.connect_timeout_seconds,
            read_timeout=settings.read_timeout_seconds,
            deadline=deadline,
            max_payload_bytes=settings.max_payload_bytes,
        )

    return collect


def _no_region(spec: ClusterSpec) -> ClusterCollection:
    error = f"no region for cluster {spec.name}: set AWS_REGION or the cluster's region in CLUSTERS_JSON"
    return ClusterCollection(spec.name, "error", error, [], set(), CollectionHealth(), [], utc_now())


def _discoverer(session: boto3.Session, region: str | None) -> Discoverer:
    def discover(tag: tuple[str, str]) -> list[ClusterSpec]:
        eks: Any = session.client("eks", region_name=region)
        found = []
        for page in eks.get_paginator("list_clusters").paginate():
            for name in page.get("clusters", []):
                tags = eks.describe_cluster(name=name)["cluster"].get("tags", {})
                if tags.get(tag[0]) == tag[1]:
                    found.append(ClusterSpec(name=name, region=region))
        logger.info("discovered %d clusters tagged %s=%s", len(found), *tag)
        return found

    return discover
