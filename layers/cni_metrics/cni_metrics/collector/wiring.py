"""The collector's production wiring: S3 state store, the configured publisher, collection, discovery."""

from __future__ import annotations

import logging
from typing import Any

import boto3
from botocore.config import Config

from cni_metrics.adapters.eks_auth import ClusterTarget
from cni_metrics.adapters.eks_clusters import tagged_clusters
from cni_metrics.adapters.publishers import EmfPublisher, Publisher, PutMetricDataPublisher
from cni_metrics.adapters.state_store import S3StateStore
from cni_metrics.collector.cluster import ClusterCollection, CollectionHealth, collect_cluster
from cni_metrics.collector.job import Collector, Deps, Discoverer, utc_now
from cni_metrics.collector.settings import ClusterSpec, Settings

logger = logging.getLogger(__name__)


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
        return collect_cluster(target, scrape=settings.scrape, deadline=deadline)

    return collect


def _no_region(spec: ClusterSpec) -> ClusterCollection:
    error = f"no region for cluster {spec.name}: set AWS_REGION or the cluster's region in CLUSTERS_JSON"
    return ClusterCollection(spec.name, "error", error, [], set(), CollectionHealth(), [], utc_now())


def _discoverer(session: boto3.Session, region: str | None) -> Discoverer:
    def discover(tag: tuple[str, str]) -> list[ClusterSpec]:
        eks: Any = session.client("eks", region_name=region)
        found = [ClusterSpec(name=name, region=region) for name in tagged_clusters(eks, tag)]
        logger.info("discovered %d clusters tagged %s=%s", len(found), *tag)
        return found

    return discover
