"""One cluster's collection: sign in, discover aws-node pods, scrape and parse them.

``collect_cluster`` never raises for a cluster-level problem (sign-in, wrong CA, RBAC, unreachable API
server): it returns status ``error`` with a clear message. Node failures are classified and counted in
``health``; one node's failure never changes another node's numbers.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import boto3

from cni_metrics.adapters.eks_auth import (
    ClusterAccessError,
    ClusterTarget,
    TokenProvider,
    forget_endpoint,
    redact,
    resolve_endpoint,
)
from cni_metrics.adapters.kube import DiscoveryError, api_client, list_aws_node_pods
from cni_metrics.adapters.scrape import (
    DEFAULT_SCRAPE,
    FAILURE_REASONS,
    PodRef,
    Progress,
    ScrapeResult,
    ScrapeSettings,
    open_scraper,
)
from cni_metrics.adapters.tokens import BearerTokens
from cni_metrics.capacity.sources import CapacitySources, start_reading
from cni_metrics.core.catalogue import datum
from cni_metrics.core.model import MetricValue, NodeInput

logger = logging.getLogger(__name__)

CollectionStatus = Literal["ok", "no_aws_node_pods", "error"]
DEFAULT_BUDGET_SECONDS = 60.0


@dataclass(slots=True)
class CollectionHealth:
    """How the collection itself went; ``bytes_scraped`` counts bytes received (compressed if gzip)."""

    nodes_total: int = 0
    nodes_scraped: int = 0
    nodes_failed: int = 0
    nodes_skipped: int = 0
    failed_by_reason: dict[str, int] = field(default_factory=dict)
    scrape_duration_ms: float = 0.0
    bytes_scraped: int = 0
    failed: bool = False
    """The cluster could not be collected at all (status ``error``)."""

    def to_metrics(self) -> list[MetricValue]:
        """The health numbers under their published names and units."""
        return [
            datum("nodesTotal", float(self.nodes_total)),
            datum("nodesScraped", float(self.nodes_scraped)),
            datum("nodesFailed", float(self.nodes_failed)),
            datum("nodesSkipped", float(self.nodes_skipped)),
            datum("scrapeDurationMs", round(self.scrape_duration_ms, 3)),
            datum("bytesScraped", float(self.bytes_scraped)),
            datum("collectionFailed", 1.0 if self.failed else 0.0),
        ]

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view (published names, plus failures by reason)."""
        doc: dict[str, Any] = {
            m.name: m.value if m.unit == "Milliseconds" else int(m.value) for m in self.to_metrics()
        }
        doc["nodesFailedByReason"] = dict(self.failed_by_reason)
        return doc


@dataclass(frozen=True, slots=True)
class NodeError:
    """One node that failed: its pod, the failure class and a short, secret-free message."""

    pod: str
    reason: str
    message: str


@dataclass(slots=True)
class ClusterCollection:
    """The result of collecting one cluster (see docs/ARCHITECTURE.md, collection contract).

    ``nodes``: the nodes scraped and parsed. ``failed_keys``: pod UIDs that exist but failed this time;
    ``failed_started_at``: their start times as listed (a key absent or None: unknown), which decide
    whether a failed pod the stored state does not know gets a zero baseline (the aggregator's
    ``failed``). ``collected_at``: wall-clock time the collection started. ``capacity``: node zones,
    ENIConfig and subnet headroom (None when no pod was found).
    """

    cluster: str
    status: CollectionStatus
    error: str | None
    nodes: list[NodeInput]
    failed_keys: set[str]
    health: CollectionHealth
    node_errors: list[NodeError]
    collected_at: datetime
    capacity: CapacitySources | None = None
    failed_started_at: Mapping[str, datetime | None] = field(default_factory=dict)


def collect_cluster(
    target: ClusterTarget,
    *,
    session: boto3.Session | None = None,
    tokens: BearerTokens | None = None,
    scrape: ScrapeSettings = DEFAULT_SCRAPE,
    deadline: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    progress: Progress | None = None,
) -> ClusterCollection:
    """Collect one cluster by ``deadline`` (a ``clock``/monotonic time; default 60 s from now).

    ``session``: the AWS configuration to sign in with (default: a new standard session in the target's
    region). ``tokens``: a bearer token source (default: ``TokenProvider`` for the target and session).
    ``scrape``: concurrency, timeouts and payload cap of the scrapes (and of the pod listing's timeouts).
    ``progress``: told (pods done, pods to scrape) as the scrapes finish.
    """
    started = clock()
    collected_at = datetime.now(UTC)
    deadline = started + DEFAULT_BUDGET_SECONDS if deadline is None else deadline
    health = CollectionHealth()
    try:
        session = session or boto3.Session(region_name=target.region)
        tokens = tokens or TokenProvider(target, session)
        result = _collect(target, session, tokens, health, deadline, clock, collected_at, scrape, progress)
    except (ClusterAccessError, DiscoveryError) as exc:
        forget_endpoint(target)  # a recreated cluster has a new endpoint and CA: describe it again next time
        result = _failed(target, health, redact(str(exc)), collected_at)
    except Exception as exc:  # a cluster must never crash the job
        extra = {"cluster": target.name}
        logger.exception("collection of cluster %s failed unexpectedly", target.name, extra=extra)
        result = _failed(target, health, redact(f"unexpected {type(exc).__name__}: {exc}"), collected_at)
    health.scrape_duration_ms = (clock() - started) * 1000.0
    _log(result)
    return result


def _failed(target: ClusterTarget, health: CollectionHealth, error: str, at: datetime) -> ClusterCollection:
    health.failed = True
    return ClusterCollection(target.name, "error", error, [], set(), health, [], at)


def _collect(
    target: ClusterTarget,
    session: boto3.Session,
    tokens: BearerTokens,
    health: CollectionHealth,
    deadline: float,
    clock: Callable[[], float],
    collected_at: datetime,
    settings: ScrapeSettings,
    progress: Progress | None,
) -> ClusterCollection:
    endpoint = resolve_endpoint(target, session)
    try:
        context = ssl.create_default_context(cadata=endpoint.ca_pem.decode("ascii"))
    except (ssl.SSLError, ValueError) as exc:
        raise ClusterAccessError(f"CA of cluster {target.name} is not a usable certificate: {exc}") from None
    remaining = deadline - clock()
    if remaining <= 0:
        raise ClusterAccessError(f"deadline passed before discovering aws-node pods in cluster {target.name}")
    api = api_client(endpoint.url, endpoint.ca_pem, tokens)
    try:
        pods = list_aws_node_pods(
            api, tokens, target.name,
            timeout=(min(settings.connect_timeout, remaining), min(settings.read_timeout, remaining)),
            deadline=deadline,
        )
    finally:
        api.rest_client.pool_manager.clear()
    health.nodes_total = len(pods)
    if not pods:
        return ClusterCollection(target.name, "no_aws_node_pods", None, [], set(), health, [], collected_at)

    remaining = max(0.05, deadline - clock())
    reading = start_reading(
        lambda: api_client(endpoint.url, endpoint.ca_pem, tokens, pool_size=1), target, session,
        (min(settings.connect_timeout, remaining), min(settings.read_timeout, remaining)), deadline, clock,
    )
    scrapable = [pod for pod in pods if pod.scrapable]
    health.nodes_skipped = len(pods) - len(scrapable)
    scraper = open_scraper(endpoint.url, context, tokens, settings, clock=clock)
    try:
        results = scraper.scrape_all([PodRef(pod.uid, pod.name) for pod in scrapable], deadline, progress)
    finally:
        scraper.close()
    sources = reading()

    by_key = {pod.uid: pod for pod in scrapable}
    nodes: list[NodeInput] = []
    failed: list[ScrapeResult] = []
    for result in results:
        health.bytes_scraped += result.bytes_read
        if result.metrics is None:
            failed.append(result)
            continue
        pod = by_key[result.key]
        info = sources.nodes.get(pod.node_name or "")
        nodes.append(NodeInput(
            key=pod.uid, name=pod.name, metrics=result.metrics, started_at=pod.started_at,
            restart_count=pod.restart_count, node_name=pod.node_name,
            zone=info.zone if info else None, instance_type=info.instance_type if info else None,
        ))
    reasons = Counter(str(result.reason) for result in failed)
    health.nodes_scraped = len(nodes)
    health.nodes_failed = len(failed)
    health.failed_by_reason = {reason: reasons[reason] for reason in FAILURE_REASONS if reasons[reason]}
    node_errors = [NodeError(r.pod, str(r.reason), redact(r.message)) for r in failed]
    status: CollectionStatus = "ok"
    error = None
    if failed and not nodes and set(reasons) <= {"forbidden", "unauthorized"}:
        status, health.failed = "error", True
        first = node_errors[0]
        what = "RBAC denies pods/proxy" if first.reason == "forbidden" else "the API server refuses the token"
        error = f"{what} in cluster {target.name}: {first.message}"
    return ClusterCollection(
        target.name, status, error, nodes, {r.key for r in failed}, health, node_errors, collected_at,
        sources, failed_started_at={r.key: by_key[r.key].started_at for r in failed},
    )


def _log(result: ClusterCollection) -> None:
    health, extra = result.health, {"cluster": result.cluster}
    if result.status == "error":
        logger.warning("cluster %s: collection failed: %s", result.cluster, result.error, extra=extra)
        return
    logger.info(
        "cluster %s: %s, %d aws-node pods, %d scraped, %d failed %s, %d skipped, %.0f ms, %d bytes",
        result.cluster, result.status, health.nodes_total, health.nodes_scraped, health.nodes_failed,
        health.failed_by_reason, health.nodes_skipped, health.scrape_duration_ms, health.bytes_scraped,
        extra=extra,
    )
    for problem in result.capacity.errors if result.capacity is not None else ():
        logger.warning("cluster %s: capacity numbers incomplete: %s", result.cluster, problem, extra=extra)
    for error in result.node_errors[:20]:
        logger.debug(
            "cluster %s: pod %s failed (%s): %s", result.cluster, error.pod, error.reason, error.message,
            extra=extra,
        )
