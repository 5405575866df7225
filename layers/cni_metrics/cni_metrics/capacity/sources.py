"""Where capacity numbers come from besides the scrape: node zones, ENIConfigs and subnets.

- Nodes (``GET /api/v1/nodes``, RBAC ``list nodes``): zone (``topology.kubernetes.io/zone``) and instance
  type (``node.kubernetes.io/instance-type``) per node name, asked as metadata only
  (``PartialObjectMetadataList``: a whole Node object, images, conditions and managedFields included, is
  about 10 KB of JSON and 40 KB of Python objects) in pages of 500, each reduced to those two labels
  before the next is read: memory stays at one page, whatever the cluster's size (``make bench``, nodes).
- ENIConfigs (``GET /apis/crd.k8s.amazonaws.com/v1alpha1/eniconfigs``, RBAC ``list eniconfigs``): the
  subnets of custom networking; a cluster without the CRD (404) has none.
- Subnets: the cluster's (``eks:DescribeCluster`` ``resourcesVpcConfig.subnetIds``) and the ENIConfigs',
  read with ``ec2:DescribeSubnets`` (AvailableIpAddressCount, zone, CIDR). Pods draw from the ENIConfig
  subnets when there are any (custom networking), else from the cluster's.

``read_sources`` never raises: each part that fails is reported in ``errors`` and left empty (None for
subnets), so a missing permission costs only the numbers that need it. ``start_reading`` runs it in a
thread while the nodes are scraped (the AWS clients are made first, in the caller's thread: boto3
sessions are not thread-safe) and gives the result by the collection's deadline. The thread itself ends
by that deadline too: each Kubernetes request's timeouts are cut to the time left and no request starts
after it, and the EKS and EC2 clients carry the deadline (``aws_clients.Deadline``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from kubernetes.client.api_client import ApiClient
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from cni_metrics.adapters.aws_clients import Deadline
from cni_metrics.adapters.eks_auth import ClusterAccessError, ClusterTarget, client_for
from cni_metrics.adapters.kube import Budget, get_json, page_items
from cni_metrics.capacity.core import Subnet

ZONE_LABELS = ("topology.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/zone")
INSTANCE_TYPE_LABELS = ("node.kubernetes.io/instance-type", "beta.kubernetes.io/instance-type")
ENICONFIG_PATH = "/apis/crd.k8s.amazonaws.com/v1alpha1/eniconfigs"
PAGE_SIZE = 500
_SOURCE_CLIENT_CONFIG = Config(
    connect_timeout=3, read_timeout=5, retries={"max_attempts": 2, "mode": "standard"}
)


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """What the Node object says about a node."""

    zone: str | None
    instance_type: str | None


@dataclass(slots=True)
class CapacitySources:
    """Node zones by node name, the subnets read (None: unknown), and what could not be read."""

    nodes: dict[str, NodeInfo] = field(default_factory=dict)
    subnets: list[Subnet] | None = None
    pod_subnet_ids: frozenset[str] = frozenset()
    errors: list[str] = field(default_factory=list)


METADATA_ONLY = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"


def _items(api: ApiClient, path: str, budget: Budget, accept: str = "application/json"
           ) -> Iterator[dict[str, Any]]:
    """The items of a list, read page by page (``limit``/``continue``, one page in memory at a time)."""

    def page(token: str | None) -> dict[str, Any]:
        query: list[tuple[str, str | int]] = [("limit", PAGE_SIZE)]
        if token:
            query.append(("continue", token))
        return get_json(api, path, query, budget.next(), accept)

    return page_items(page)


def _label(labels: dict[str, str], keys: tuple[str, ...]) -> str | None:
    return next((labels[key] for key in keys if labels.get(key)), None)


def list_nodes(api: ApiClient, budget: Budget) -> dict[str, NodeInfo]:
    """Zone and instance type of every node, by node name (metadata only, one page in memory at a time)."""
    out = {}
    for item in _items(api, "/api/v1/nodes", budget, METADATA_ONLY):
        metadata = item.get("metadata") or {}
        labels = metadata.get("labels") or {}
        info = NodeInfo(_label(labels, ZONE_LABELS), _label(labels, INSTANCE_TYPE_LABELS))
        out[str(metadata.get("name"))] = info
    return out


def eniconfig_subnets(api: ApiClient, budget: Budget) -> set[str]:
    """Subnet IDs named by ENIConfig objects (none when the CRD is not installed)."""
    try:
        return {str(i["spec"]["subnet"]) for i in _items(api, ENICONFIG_PATH, budget)
                if (i.get("spec") or {}).get("subnet")}
    except ApiException as exc:
        if exc.status == 404:
            return set()
        raise


def aws_clients(target: ClusterTarget, session: boto3.Session, deadline: Deadline) -> tuple[Any, Any]:
    """EKS and EC2 clients in the cluster's account (through its role when it has one), bounded by the
    session's handlers and by ``deadline``."""
    clients = (client_for(target, session, "eks", _SOURCE_CLIENT_CONFIG),
               client_for(target, session, "ec2", _SOURCE_CLIENT_CONFIG))
    for client in clients:
        deadline.bind(client.meta.events, (client.meta.service_model.service_id.hyphenize(),))
    return clients


def cluster_subnet_ids(eks: Any, cluster: str) -> set[str]:
    """``resourcesVpcConfig.subnetIds`` of the cluster (eks:DescribeCluster)."""
    described = eks.describe_cluster(name=cluster)["cluster"]
    return set(described.get("resourcesVpcConfig", {}).get("subnetIds") or ())


def describe_subnets(ec2: Any, ids: set[str]) -> list[Subnet]:
    """Free addresses, zone and CIDR of each subnet (ec2:DescribeSubnets)."""
    if not ids:
        return []
    subnets = []
    for page in ec2.get_paginator("describe_subnets").paginate(SubnetIds=sorted(ids)):
        for raw in page.get("Subnets", []):
            subnets.append(Subnet(str(raw["SubnetId"]), str(raw.get("AvailabilityZone", "")),
                                  int(raw.get("AvailableIpAddressCount", 0)), str(raw.get("CidrBlock", ""))))
    return subnets


def read_sources(api: ApiClient, clients: tuple[Any, Any] | None, cluster: str,
                 budget: Budget, into: CapacitySources | None = None) -> CapacitySources:
    """Nodes, ENIConfig subnets and subnet headroom; failures are reported in ``errors``, never raised.

    ``clients``: EKS and EC2 clients (None when they could not be made: no subnet numbers). ``into``: the
    object to fill (its ``nodes`` are set in one assignment, so a caller that stops waiting can use them).
    """
    sources = into if into is not None else CapacitySources()
    try:
        sources.nodes = list_nodes(api, budget)
    except (ApiException, HTTPError, OSError, ValueError) as exc:
        sources.errors.append(f"listing nodes: {_error_text(exc)}")
    custom: set[str] = set()
    try:
        custom = eniconfig_subnets(api, budget)
    except (ApiException, HTTPError, OSError, ValueError, KeyError, TypeError) as exc:
        sources.errors.append(f"listing ENIConfigs: {_error_text(exc)}")
    if clients is None:
        return sources
    eks, ec2 = clients
    try:
        own = cluster_subnet_ids(eks, cluster)
        sources.subnets = describe_subnets(ec2, own | custom)
        sources.pod_subnet_ids = frozenset(custom or own)
    except (ClientError, BotoCoreError) as exc:
        sources.errors.append(f"reading subnets: {_error_text(exc)}")
    return sources


def start_reading(
    make_api: Callable[[], ApiClient], target: ClusterTarget, session: boto3.Session,
    timeout: tuple[float, float], deadline: float, clock: Callable[[], float],
) -> Callable[[], CapacitySources]:
    """Read the sources in a thread from now on.

    The returned call waits for them at most ``timeout``'s read time more (never past ``deadline``): a slow
    EC2 or Kubernetes API delays the collection by that much at worst, and then only the node zones
    already read are used.
    """
    errors: list[str] = []
    clients: tuple[Any, Any] | None = None
    try:
        clients = aws_clients(target, session, Deadline(deadline, clock=clock))
    except (ClusterAccessError, ClientError, BotoCoreError) as exc:
        errors.append(f"reading subnets: {_error_text(exc)}")
    api = make_api()
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"capacity-{target.name}")
    partial = CapacitySources()
    future = pool.submit(read_sources, api, clients, target.name, Budget(timeout, deadline, clock), partial)
    pool.shutdown(wait=False)

    def result() -> CapacitySources:
        try:
            sources = future.result(timeout=max(0.0, min(deadline, clock() + timeout[1]) - clock()))
        except FutureTimeout:
            sources = CapacitySources(nodes=partial.nodes, errors=["not all read in time (slow API)"])
        except Exception as exc:  # read_sources reports what it expects; nothing else may cost the run
            sources = CapacitySources(errors=[f"unexpected {_error_text(exc)}"])
        else:
            api.rest_client.pool_manager.clear()
        sources.errors[:0] = errors
        return sources

    return result


def _error_text(exc: Exception) -> str:
    if isinstance(exc, ApiException):
        return f"HTTP {exc.status} {exc.reason}"
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'Error')}: {error.get('Message', '')}"
    return f"{type(exc).__name__}: {exc}"
