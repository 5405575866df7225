"""The collector's production wiring: S3 state store, the configured publisher, collection, discovery, and
in fleet mode the fleet document's clusters (``fleet.worker.FleetWorker``).

Every AWS call a run makes (S3 state, CloudWatch, tag discovery, and through the per-collection session
DescribeCluster, AssumeRole, DescribeCluster/DescribeSubnets for capacity) is bounded by the run's end:
``Deps.on_run_start`` sets one ``Deadline`` that all their clients carry (``adapters.aws_clients``).
"""

from __future__ import annotations

import logging
from typing import Any

import boto3
import botocore.loaders
import botocore.session
from botocore.config import Config

from cni_metrics.adapters.aws_clients import Deadline
from cni_metrics.adapters.eks_auth import ClusterTarget
from cni_metrics.adapters.eks_clusters import tagged_clusters
from cni_metrics.adapters.publishers import EmfPublisher, Publisher, PutMetricDataPublisher
from cni_metrics.adapters.state_store import S3StateStore
from cni_metrics.collector.cluster import ClusterCollection, CollectionHealth, collect_cluster
from cni_metrics.collector.job import Collector, Deps, Discoverer, utc_now
from cni_metrics.collector.settings import ClusterSpec, Settings
from cni_metrics.fleet.worker import FleetWorker

logger = logging.getLogger(__name__)

# AWS calls end this long before the invocation does: the handler logs and returns its summary meanwhile.
CALLS_END_BEFORE_SECONDS = 1.0
# botocore's defaults are 60 s each: far more than a run keeps back for publishing.
CONNECT_TIMEOUT_SECONDS = 2.0
READ_TIMEOUT_SECONDS = 10.0
# One loader for every collection's session: a new session's loader would parse the EKS, STS and EC2
# models (about 5 MB of JSON, ~0.1 s of CPU) again for each cluster. Loaded models are only read.
_LOADER = botocore.loaders.create_loader()


def build_deps(settings: Settings, *, session: boto3.Session | None = None) -> Deps:
    """The production wiring: S3 state store, the configured publisher, ``collect_cluster``, tag discovery.

    Endpoints and credentials come from the usual AWS configuration (``AWS_ENDPOINT_URL_<SERVICE>``
    included), which is how the demo and the tests point the job at local stand-ins. A given ``session``
    gets the run deadline's handlers registered on its events.
    """
    deadline = Deadline()
    session = session or boto3.Session(region_name=settings.region)
    deadline.bind(session.events)
    region = settings.region or session.region_name
    s3 = session.client("s3", config=_config({"mode": "standard"}))
    store = S3StateStore(s3, settings.state_bucket, settings.state_prefix)
    publisher: Publisher
    if settings.publish_mode == "emf":
        publisher = EmfPublisher(settings.namespace)
    else:
        # total_max_attempts counts the first attempt too (max_attempts would count retries only).
        retries = {"mode": settings.publish_retry_mode, "total_max_attempts": settings.publish_max_attempts}
        cloudwatch = session.client("cloudwatch", config=_config(retries))
        publisher = PutMetricDataPublisher(cloudwatch, settings.namespace)

    def on_run_start(end: float) -> None:
        deadline.set(end - CALLS_END_BEFORE_SECONDS)

    fleet = None if settings.fleet_document is None else FleetWorker(s3, settings.fleet_document, deadline)
    return Deps(
        store, publisher, collect=_collector(settings, region, deadline),
        discover=_discoverer(session, region), on_run_start=on_run_start, fleet=fleet,
    )


def _config(retries: Any) -> Config:
    return Config(connect_timeout=CONNECT_TIMEOUT_SECONDS, read_timeout=READ_TIMEOUT_SECONDS, retries=retries)


def _collector(settings: Settings, region: str | None, deadline: Deadline) -> Collector:
    def collect(spec: ClusterSpec, until: float) -> ClusterCollection:
        target_region = spec.region or region
        if target_region is None:
            return _no_region(spec)
        target = ClusterTarget(spec.name, target_region, spec.role_arn, spec.endpoint, spec.ca_data)
        # A session per collection: boto3 sessions are not thread-safe, clusters run in threads.
        session = _session(deadline, target_region)
        return collect_cluster(target, session=session, scrape=settings.scrape, deadline=until)

    return collect


def _session(deadline: Deadline, region: str) -> boto3.Session:
    """A new session bounded by ``deadline`` sharing the process's model loader."""
    core = botocore.session.get_session()
    core.register_component("data_loader", _LOADER)
    session = boto3.Session(botocore_session=core, region_name=region)
    deadline.bind(session.events)
    return session


def _no_region(spec: ClusterSpec) -> ClusterCollection:
    error = f"no region for cluster {spec.name}: set AWS_REGION or the cluster's region in CLUSTERS_JSON"
    health = CollectionHealth(failed=True)  # published as collectionFailed 1, as any failed collection
    return ClusterCollection(spec.name, "error", error, [], set(), health, [], utc_now())


def _discoverer(session: boto3.Session, region: str | None) -> Discoverer:
    clients: list[Any] = []  # one EKS client, made by the first discovery and kept by the warm process

    def discover(tag: tuple[str, str]) -> list[ClusterSpec]:
        if not clients:
            clients.append(session.client("eks", region_name=region, config=_config({"mode": "standard"})))
        found = [ClusterSpec(name=name, region=region) for name in tagged_clusters(clients[0], tag)]
        logger.info("discovered %d clusters tagged %s=%s", len(found), *tag)
        return found

    return discover
