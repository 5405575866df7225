"""Every collector log line about a cluster carries a ``cluster`` key (issue 15), so Logs Insights can
filter one cluster's lines: a collection with failing nodes, a cluster that cannot be reached, and a run
that replaces a corrupt state object."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

import pytest
from cni_metrics.adapters.eks_auth import ClusterTarget
from cni_metrics.adapters.publishers import MetricBatch, PublishResult
from cni_metrics.adapters.scrape import DEFAULT_SCRAPE
from cni_metrics.adapters.state_store import InMemoryStateStore
from cni_metrics.collector.cluster import ClusterCollection, collect_cluster
from cni_metrics.collector.job import Deps, run_collection
from cni_metrics.collector.settings import ClusterSpec, load_settings
from fake_eks.testing import RunningFakeEks

pytestmark = pytest.mark.integration

SCENARIO = {
    "name": "log-keys", "seed": 5,
    "clusters": [{"name": "logs-faulty", "nodes": 6, "faults": {"error_500": [0, 1], "garbage": [2]}}],
}
class _NoPublisher:
    """Publishes everything at once (this test reads logs, not metrics)."""

    def publish(self, cluster: str, batches: Sequence[MetricBatch]) -> PublishResult:
        return PublishResult(published=sum(len(batch.metrics) for batch in batches))


NAMED = re.compile(r"\bcluster (?P<name>[0-9A-Za-z][A-Za-z0-9_-]*)")


def _unkeyed(records: list[logging.LogRecord]) -> list[str]:
    """Messages of ``cni_metrics`` records that name a cluster without carrying it as ``cluster``."""
    wrong = []
    for record in records:
        match = NAMED.search(record.getMessage())
        keyed = getattr(record, "cluster", None)
        if record.name.startswith("cni_metrics") and match and keyed != match["name"]:
            wrong.append(f"{record.name}: {record.getMessage()}")
    return wrong


def test_collection_lines_carry_the_cluster(
    fake_eks_factory: Callable[..., RunningFakeEks], monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # given a stand-in cluster with failing nodes, and one whose API server nobody answers
    caplog.set_level(logging.DEBUG, logger="cni_metrics")
    eks = fake_eks_factory(SCENARIO)
    for key, value in eks.env().items():
        monkeypatch.setenv(key, value)
    region = eks.connection["region"]
    ca = eks.connection["clusters"]["logs-faulty"]["ca_pem"]
    faulty = ClusterTarget("logs-faulty", region)
    gone = ClusterTarget("logs-gone", region, endpoint="https://127.0.0.1:9", ca_data=ca)
    # when both are collected
    scrape = replace(DEFAULT_SCRAPE, connect_timeout=1.0, read_timeout=1.0)
    results = [collect_cluster(t, scrape=scrape, deadline=time.monotonic() + 15) for t in (faulty, gone)]
    # then the collections logged lines about both, and every such line carries its cluster
    assert [r.status for r in results] == ["ok", "error"]
    named = {m["name"] for r in caplog.records if (m := NAMED.search(r.getMessage()))}
    assert {"logs-faulty", "logs-gone"} <= named
    assert _unkeyed(caplog.records) == []


def test_run_lines_carry_the_cluster(caplog: pytest.LogCaptureFixture) -> None:
    # given a corrupt state object for one cluster and a collector that cannot reach any
    caplog.set_level(logging.DEBUG, logger="cni_metrics")
    store = InMemoryStateStore()
    store.save("logs-corrupt", b"{not json", if_match=None)
    settings = load_settings({"CLUSTER_NAMES": "logs-corrupt", "STATE_BUCKET": "logs-state"})

    def collect(spec: ClusterSpec, deadline: float) -> ClusterCollection:
        raise RuntimeError("unreachable on purpose")

    # when a run goes through it
    deps = Deps(store, publisher=_NoPublisher(), collect=collect)
    summary = run_collection(settings, deps=deps, remaining_seconds=30)
    # then every line of the run is about that one cluster and carries it (the corrupt object's too)
    assert [c.cluster for c in summary.clusters] == ["logs-corrupt"]
    lines = [r for r in caplog.records if r.name.startswith("cni_metrics.collector")]
    assert any("corrupt state object" in r.getMessage() for r in lines)
    assert [r.getMessage() for r in lines if getattr(r, "cluster", None) != "logs-corrupt"] == []
