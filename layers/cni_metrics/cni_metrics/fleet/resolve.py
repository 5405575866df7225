"""The fleet's clusters: its entries, and every cluster its discovery rules find across accounts and regions.

``resolve`` (the dispatcher): each rule's account is reached through its role (AssumeRole, the collector's
``eks_auth`` credentials and cache), ListClusters in each of its regions, then DescribeCluster of each
cluster for its tags; all of it at most ``concurrency`` calls at a time and bounded by a ``Deadline``.
What cannot be read (a role that cannot be assumed, a region that fails, a cluster that cannot be
described, no time left) is reported as a ``Problem`` and skipped; the rest of the fleet stands.

Precedence, the same in ``resolve`` and ``resolve_name``: the entries first (in document order), then
discovered clusters by rule (document order), region (the rule's order) and name. A discovered cluster
that is an entry's physical cluster (account, region, name) is that entry; one whose name is an id
already taken is reported as a duplicate and skipped (give the entry an alias).

``lookup`` / ``resolve_name`` (a worker given a name by an event): the name must be a fleet id; an entry
needs no AWS call, a discovered cluster is checked again against the rules (DescribeCluster, cached).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from cachetools import TTLCache

from cni_metrics.adapters.aws_clients import Deadline, DeadlineExceeded, error_text
from cni_metrics.adapters.eks_auth import ClusterAccessError, ClusterTarget, client_for
from cni_metrics.fleet.document import DiscoveryRule, Fleet, FleetCluster, Problem

DISCOVERY_CONCURRENCY = 16
# A rule's tagged clusters are listed again after this long: DescribeCluster of every cluster of every
# account and region each minute would be 500 calls a minute for a fleet of 500 (EKS throttles them).
DISCOVERY_TTL_SECONDS = 300.0
_EKS_CONFIG = Config(
    connect_timeout=3, read_timeout=10, retries={"max_attempts": 3, "mode": "standard"},
    max_pool_connections=DISCOVERY_CONCURRENCY,
)
# An EKS client (made with an assumed role's credentials, used until 15 minutes before they expire) is
# kept this long: a warm worker looks names up without new sessions, clients or AssumeRole calls.
CLIENT_TTL_SECONDS = 600.0
NO_TIME = "no time left before the run's deadline"

Place = tuple[str, str, str]
_Task = tuple[int, DiscoveryRule, str]


class FleetLookupError(Exception):
    """Whether a name is a discovered cluster of the fleet could not be told (a rule could not be read)."""


@dataclass(frozen=True, slots=True)
class Resolution:
    """The fleet's clusters (unique ids and physical clusters), and every problem met on the way."""

    fleet: Fleet
    clusters: tuple[FleetCluster, ...]
    problems: tuple[Problem, ...]
    discovered: int
    """How many of ``clusters`` discovery found (the others are entries)."""

    @property
    def ids(self) -> list[str]:
        """The clusters' ids, in order."""
        return [cluster.id for cluster in self.clusters]


def lookup(fleet: Fleet, cluster_id: str) -> FleetCluster | None:
    """The fleet entry ``cluster_id`` names (its alias, else its name); None if no entry does."""
    return fleet.index.get(cluster_id)


# ---------------------------------------------------------------------------------------------------
# Discovery

_DISCOVERED: TTLCache[tuple[Any, ...], tuple[str, ...]] = TTLCache(maxsize=256, ttl=DISCOVERY_TTL_SECONDS)
_LOOKUPS: TTLCache[tuple[Any, ...], FleetCluster] = TTLCache(maxsize=4096, ttl=DISCOVERY_TTL_SECONDS)
_CLIENTS: TTLCache[tuple[Any, ...], Any] = TTLCache(maxsize=256, ttl=CLIENT_TTL_SECONDS)
_LOCK = threading.Lock()


def clear_caches() -> None:
    """Forget discovered clusters, looked-up names and EKS clients (tests)."""
    with _LOCK:
        _DISCOVERED.clear()
        _LOOKUPS.clear()
        _CLIENTS.clear()


def resolve(
    fleet: Fleet, *, deadline: Deadline | None = None, concurrency: int = DISCOVERY_CONCURRENCY
) -> Resolution:
    """The fleet's entries plus what its rules discover, at most ``concurrency`` AWS calls at a time."""
    deadline = deadline or Deadline()
    problems = list(fleet.problems)
    tasks = [(i, rule, region) for i, rule in enumerate(fleet.discovery) for region in rule.regions]
    found = _discover(tasks, deadline, concurrency, problems) if tasks else {}
    clusters = list(fleet.clusters)
    owners: dict[str, str] = {cluster.id: f"clusters[{n}]" for n, cluster in enumerate(fleet.clusters)}
    places: set[Place] = {cluster.place for cluster in fleet.clusters}
    for task in tasks:
        i, rule, region = task
        where = f"discovery[{i}] {region}"
        for name in found.get(task, ()):
            place = (rule.account or "", region, name)
            if place in places:
                continue  # an entry, or found by an earlier rule too: the same cluster
            if name in owners:
                problems.append(Problem(where, name, None, f"the id is already {owners[name]}'s (another "
                                        "account or region): skipped; give one an alias in clusters"))
                continue
            owners[name] = where
            places.add(place)
            clusters.append(FleetCluster(name=name, region=region, role_arn=rule.role_arn))
    return Resolution(fleet, tuple(clusters), tuple(problems), len(clusters) - len(fleet.clusters))


def _discover(
    tasks: list[_Task], deadline: Deadline, concurrency: int, problems: list[Problem]
) -> dict[_Task, tuple[str, ...]]:
    """The tagged cluster names of each (rule, region): listed, then described, each phase in the pool."""
    found: dict[_Task, tuple[str, ...]] = {}
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="fleet-discovery")
    try:
        listing: dict[_Task, Future[tuple[Any, list[str]]]] = {}
        for task in tasks:
            cached = _cached(task)
            if cached is not None:
                found[task] = cached
            else:
                listing[task] = pool.submit(_list_clusters, task, deadline)
        _wait(listing.values(), deadline)
        describing: dict[_Task, list[tuple[str, Future[dict[str, str] | None]]]] = {}
        for task, listed in listing.items():
            i, _, region = task
            try:
                eks, names = _result(listed)
            except _Failed as exc:
                problems.append(Problem(f"discovery[{i}] {region}", None, None, str(exc), "discovery"))
                continue
            describing[task] = [(name, pool.submit(_tags, eks, name)) for name in names]
        _wait([future for pairs in describing.values() for _, future in pairs], deadline)
        for task, pairs in describing.items():
            tagged, complete = _tagged(task, pairs, problems)
            found[task] = tagged
            if complete:
                with _LOCK:
                    _DISCOVERED[_cache_key(task)] = tagged
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return found


def _tagged(
    task: _Task, pairs: list[tuple[str, Future[dict[str, str] | None]]], problems: list[Problem]
) -> tuple[tuple[str, ...], bool]:
    """The names carrying the rule's tag, and whether every cluster could be described (a failure is
    reported per cluster; those left undescribed when time ran out, in one problem)."""
    i, rule, region = task
    where = f"discovery[{i}] {region}"
    key, value = rule.tag or ("", "")
    tagged: list[str] = []
    failed = undescribed = 0
    for name, described in pairs:
        try:
            tags = _result(described)
        except _NoTime:
            undescribed += 1
            continue
        except _Failed as exc:
            problems.append(Problem(where, name, None, str(exc), "discovery"))
            failed += 1
            continue
        if tags is not None and tags.get(key) == value:
            tagged.append(name)
    if undescribed:
        reason = f"{NO_TIME}: {undescribed} of {len(pairs)} clusters not described"
        problems.append(Problem(where, None, None, reason, "discovery"))
    return tuple(sorted(tagged)), not (failed or undescribed)


class _Failed(Exception):
    """One discovery call failed or had no time; the message is safe to report."""


class _NoTime(_Failed):
    """One discovery call was not made, or not finished, before the deadline."""


def _result[T](future: Future[T]) -> T:
    if not future.done():
        raise _NoTime(NO_TIME)
    try:
        return future.result()
    except DeadlineExceeded:
        raise _NoTime(NO_TIME) from None
    except _AWS_ERRORS as exc:
        raise _Failed(_message(exc)) from None


_AWS_ERRORS = (ClusterAccessError, ClientError, BotoCoreError)


def _message(exc: Exception) -> str:
    """A short, secret-free description of a failed AWS call."""
    if isinstance(exc, ClientError):
        return f"{exc.operation_name} failed: {error_text(exc)}"
    if isinstance(exc, BotoCoreError):
        return error_text(exc)
    return str(exc)


def _wait(futures: Iterable[Future[Any]], deadline: Deadline) -> None:
    remaining = deadline.remaining()
    wait(list(futures), timeout=None if remaining is None else max(0.0, remaining))


def _eks(rule: DiscoveryRule, region: str, where: str, deadline: Deadline) -> Any:
    """An EKS client in ``region`` of the rule's account (AssumeRole through eks_auth's cache), bounded by
    ``deadline``; kept ``CLIENT_TTL_SECONDS`` per deadline (a warm process keeps its one ``Deadline``)."""
    key = (deadline, rule.role_arn, region, _eks_api())
    with _LOCK:
        client = _CLIENTS.get(key)
    if client is None:
        session = deadline.session(region_name=region)  # a session per client: sessions are not thread-safe
        client = client_for(ClusterTarget(where, region, rule.role_arn), session, "eks", _EKS_CONFIG)
        with _LOCK:
            _CLIENTS[key] = client
    return client


def _list_clusters(task: _Task, deadline: Deadline) -> tuple[Any, list[str]]:
    i, rule, region = task
    eks = _eks(rule, region, f"discovery[{i}]", deadline)
    pages = eks.get_paginator("list_clusters").paginate()
    names = [name for page in pages for name in page.get("clusters", [])]
    return eks, names


def _tags(eks: Any, name: str) -> dict[str, str] | None:
    """The cluster's tags; None when it no longer exists."""
    try:
        cluster = eks.describe_cluster(name=name)["cluster"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return None
        raise
    return dict(cluster.get("tags") or {})


def _eks_api() -> str:
    """Which EKS API is asked (part of every cache key: tests and tools point at stand-ins)."""
    return os.environ.get("AWS_ENDPOINT_URL_EKS") or os.environ.get("AWS_ENDPOINT_URL") or ""


def _cache_key(task: _Task) -> tuple[Any, ...]:
    _, rule, region = task
    return (rule.role_arn, region, rule.tag, _eks_api())


def _cached(task: _Task) -> tuple[str, ...] | None:
    with _LOCK:
        return _DISCOVERED.get(_cache_key(task))


# ---------------------------------------------------------------------------------------------------
# A worker's lookup


def resolve_name(fleet: Fleet, cluster_id: str, *, deadline: Deadline | None = None) -> FleetCluster | None:
    """The fleet cluster ``cluster_id`` names, by ``resolve``'s precedence; None if it names none.

    An entry's id needs no AWS call. Any other name is looked for with the rules, in order: the first
    region where DescribeCluster finds it carrying the rule's tag (cached ``DISCOVERY_TTL_SECONDS``),
    unless that is an entry's physical cluster (it is collected under the entry's id). A rule that cannot
    be read before a match raises ``FleetLookupError``: the name is then refused, not guessed.
    """
    entry = lookup(fleet, cluster_id)
    if entry is not None or not fleet.discovery:
        return entry
    places = frozenset(cluster.place for cluster in fleet.clusters)
    key = (cluster_id, fleet.discovery, places, _eks_api())
    with _LOCK:
        cached = _LOOKUPS.get(key)
    if cached is not None:
        return cached
    found = _find(fleet, cluster_id, deadline or Deadline())
    if found is None or found.place in places:
        return None
    with _LOCK:
        _LOOKUPS[key] = found
    return found


def _find(fleet: Fleet, name: str, deadline: Deadline) -> FleetCluster | None:
    for i, rule in enumerate(fleet.discovery):
        key, value = rule.tag or ("", "")
        for region in rule.regions:
            try:
                tags = _tags(_eks(rule, region, f"discovery[{i}]", deadline), name)
            except _AWS_ERRORS as exc:
                raise FleetLookupError(f"discovery[{i}] {region}: {_message(exc)}") from None
            if tags is not None and tags.get(key) == value:
                return FleetCluster(name=name, region=region, role_arn=rule.role_arn)
    return None
