"""Dispatch: plan the collector's invocations for a period, and make them asynchronously.

``plan_dispatch`` decides the mode and the groups:

- ``inline``: one invocation collects every cluster (today's path). ``auto`` chooses it for at most
  ``AUTO_INLINE_MAX_CLUSTERS`` clusters (4, the collector's default CLUSTER_CONCURRENCY): up to there
  every cluster of the run is collected at once, none waits behind another, so one invocation isolates
  them as well as fan-out would, at one invocation instead of one more for the dispatcher and one per
  group. Above it, clusters would queue behind a slow one.
- ``fanout``: one invocation per cluster, except that clusters last seen with at most
  ``SMALL_CLUSTER_NODES`` nodes share one, up to ``GROUP_MAX_CLUSTERS`` clusters (so with the collector's
  CLUSTER_CONCURRENCY of 4 all of a group run at once: a slow one delays no other) and
  ``GROUP_MAX_NODES`` nodes (first-fit, largest first). A cluster whose size is unknown (no state yet)
  gets its own invocation.

Node counts come from ``health.estimate_nodes``: the state object's size, from the listing the fleet
health reads anyway (no request per cluster), an estimate that errs high (20 nodes -> 28, 35 -> 46).
Reading each state document for its exact pod count would cost one GetObject per cluster and period.

``invoke_groups`` makes one ``Invoke(InvocationType="Event")`` per group, at most ``concurrency`` at a
time, each bounded by the ``Deadline``; it never waits for a worker (Lambda answers 202 once the event is
queued). An event names clusters only (ids: an entry's alias or name), with the dispatch time and the
period, so a worker that starts after its period can skip: ``{"clusters": [...], "dispatched_at":
"<ISO 8601>", "period_seconds": N}``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from cni_metrics.adapters.aws_clients import Deadline, error_text

Mode = Literal["auto", "inline", "fanout"]
AUTO_INLINE_MAX_CLUSTERS = 4
SMALL_CLUSTER_NODES = 50
GROUP_MAX_NODES = 100
GROUP_MAX_CLUSTERS = 4
INVOKE_CONCURRENCY = 32
MAX_INVOKE_CONCURRENCY = 64
# What one event may name (the collector's direct-invoke event takes at most 1,000 clusters).
MAX_EVENT_CLUSTERS = 1000
NO_TIME = "no time left before the dispatcher's deadline"
# Invoke Event answers once the event is queued (tens of ms): short timeouts, 3 attempts in all.
_LAMBDA_CONNECT_SECONDS = 2
_LAMBDA_READ_SECONDS = 5
_LAMBDA_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class Group:
    """The clusters one invocation collects, and their estimated nodes (None: some are unknown)."""

    clusters: tuple[str, ...]
    nodes: int | None


@dataclass(frozen=True, slots=True)
class Plan:
    """How a period's collection is made: inline (one invocation) or fanned out, and its invocations."""

    mode: Literal["inline", "fanout"]
    groups: tuple[Group, ...]

    @property
    def clusters(self) -> int:
        """How many clusters the plan covers."""
        return sum(len(group.clusters) for group in self.groups)


def plan_dispatch(
    clusters: Sequence[str],
    nodes: Mapping[str, int | None],
    *,
    mode: Mode = "auto",
    inline_max_clusters: int = AUTO_INLINE_MAX_CLUSTERS,
    small_nodes: int = SMALL_CLUSTER_NODES,
    group_max_nodes: int = GROUP_MAX_NODES,
    group_max_clusters: int = GROUP_MAX_CLUSTERS,
) -> Plan:
    """The period's invocations for ``clusters`` (ids, once each), given their estimated ``nodes``."""
    ids = list(dict.fromkeys(clusters))
    if mode == "inline" or (mode == "auto" and len(ids) <= inline_max_clusters):
        chunks = [ids[i:i + MAX_EVENT_CLUSTERS] for i in range(0, len(ids), MAX_EVENT_CLUSTERS)]
        return Plan("inline", tuple(Group(tuple(chunk), _total(chunk, nodes)) for chunk in chunks))
    alone: list[Group] = []
    small: list[tuple[int, str]] = []
    for cluster in ids:
        count = nodes.get(cluster)
        if count is not None and count <= small_nodes and group_max_clusters > 1:
            small.append((count, cluster))
        else:
            alone.append(Group((cluster,), count))
    bins: list[list[tuple[int, str]]] = []  # first-fit decreasing: each group's (nodes, cluster)
    for count, cluster in sorted(small, key=lambda pair: (-pair[0], pair[1])):
        for members in bins:
            if len(members) < group_max_clusters and _load(members) + count <= group_max_nodes:
                members.append((count, cluster))
                break
        else:
            bins.append([(count, cluster)])
    groups = (Group(tuple(cluster for _, cluster in members), _load(members)) for members in bins)
    return Plan("fanout", (*alone, *groups))


def _load(members: Sequence[tuple[int, str]]) -> int:
    return sum(count for count, _ in members)


def _total(chunk: Sequence[str], nodes: Mapping[str, int | None]) -> int | None:
    counts = [nodes.get(cluster) for cluster in chunk]
    return None if any(count is None for count in counts) else sum(count or 0 for count in counts)


def dispatch_event(group: Group, *, dispatched_at: datetime, period_seconds: int) -> dict[str, Any]:
    """The collector's event for ``group``: cluster ids only, the dispatch time and the period."""
    return {
        "clusters": list(group.clusters),
        "dispatched_at": dispatched_at.isoformat(),
        "period_seconds": period_seconds,
    }


@dataclass(frozen=True, slots=True)
class Invocation:
    """One Invoke call: accepted (202) or why not, and how long the call took."""

    group: Group
    accepted: bool
    error: str | None
    seconds: float


@dataclass(frozen=True, slots=True)
class DispatchReport:
    """Every invocation of a dispatch, and the wall time of all of them."""

    invocations: tuple[Invocation, ...]
    seconds: float

    @property
    def dispatched(self) -> int:
        """Clusters whose invocation Lambda accepted."""
        return sum(len(call.group.clusters) for call in self.invocations if call.accepted)

    @property
    def failed(self) -> list[str]:
        """Clusters whose invocation failed (error, throttled after retries, no time left)."""
        return [cluster for call in self.invocations if not call.accepted for cluster in call.group.clusters]


def lambda_client(
    session: boto3.Session, deadline: Deadline, *, concurrency: int = INVOKE_CONCURRENCY
) -> Any:
    """A Lambda client for ``invoke_groups``: a connection per concurrent call, every call and retry
    bounded by ``deadline`` (``AWS_ENDPOINT_URL_LAMBDA`` points it at a local Invoke API)."""
    config = Config(
        connect_timeout=_LAMBDA_CONNECT_SECONDS, read_timeout=_LAMBDA_READ_SECONDS,
        retries={"mode": "standard", "total_max_attempts": _LAMBDA_ATTEMPTS},
        max_pool_connections=concurrency,
    )
    client = session.client("lambda", config=config)
    deadline.bind(client.meta.events, services=("lambda",))
    return client


def invoke_groups(
    client: Any,
    function_name: str,
    plan: Plan,
    *,
    dispatched_at: datetime,
    period_seconds: int,
    deadline: Deadline | None = None,
    concurrency: int = INVOKE_CONCURRENCY,
    clock: Callable[[], float] = time.monotonic,
) -> DispatchReport:
    """Invoke ``function_name`` asynchronously once per group, ``concurrency`` calls at a time."""
    if not 1 <= concurrency <= MAX_INVOKE_CONCURRENCY:
        raise ValueError(f"concurrency: 1 to {MAX_INVOKE_CONCURRENCY}")
    deadline = deadline or Deadline()
    start = clock()
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="fleet-invoke")
    try:
        calls: list[tuple[Group, Future[Invocation]]] = []
        for group in plan.groups:
            event = dispatch_event(group, dispatched_at=dispatched_at, period_seconds=period_seconds)
            calls.append((group, pool.submit(_invoke, client, function_name, group, event, deadline, clock)))
        remaining = deadline.remaining()
        wait([future for _, future in calls], timeout=None if remaining is None else max(0.0, remaining))
        invocations = tuple(
            future.result() if future.done() else Invocation(group, False, NO_TIME, clock() - start)
            for group, future in calls
        )
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return DispatchReport(invocations, clock() - start)


def _invoke(
    client: Any, function_name: str, group: Group, event: dict[str, Any], deadline: Deadline,
    clock: Callable[[], float],
) -> Invocation:
    start = clock()
    remaining = deadline.remaining()
    if remaining is not None and remaining <= 0:
        return Invocation(group, False, NO_TIME, 0.0)
    try:
        response = client.invoke(
            FunctionName=function_name, InvocationType="Event", Payload=json.dumps(event).encode()
        )
    except (ClientError, BotoCoreError) as exc:
        return Invocation(group, False, error_text(exc), clock() - start)
    status = response.get("StatusCode")
    if status != 202:
        return Invocation(group, False, f"Invoke answered {status}, not 202", clock() - start)
    return Invocation(group, True, None, clock() - start)
