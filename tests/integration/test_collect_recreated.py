"""Cached DescribeCluster answers belong to the EKS API that gave them: the same cluster name behind
another EKS API (another stand-in) is described afresh."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from cni_metrics.adapters.eks_auth import ClusterTarget, clear_caches
from cni_metrics.collector.cluster import collect_cluster
from fake_eks.testing import RunningFakeEks, start_fake_eks

pytestmark = pytest.mark.integration

SCENARIO = {"name": "recreated", "seed": 3, "clusters": [{"name": "phoenix", "nodes": 3}]}


@pytest.fixture(autouse=True)
def _fresh_caches() -> Iterator[None]:
    clear_caches()
    yield
    clear_caches()


def _collect(eks: RunningFakeEks, monkeypatch: pytest.MonkeyPatch) -> str:
    for key, value in eks.env().items():
        monkeypatch.setenv(key, value)
    target = ClusterTarget("phoenix", eks.connection["region"])
    result = collect_cluster(target, deadline=time.monotonic() + 10)
    return result.status


def test_same_name_behind_another_eks_api_is_described_afresh(monkeypatch: pytest.MonkeyPatch) -> None:
    # given a cluster collected once (its endpoint and CA cached), then deleted
    with start_fake_eks(SCENARIO) as first:
        assert _collect(first, monkeypatch) == "ok"
    # when a cluster of the same name behind another EKS API (new endpoint, new CA) is collected
    with start_fake_eks(SCENARIO) as second:
        status = _collect(second, monkeypatch)
    # then it is described again rather than reached at the stale endpoint
    assert status == "ok"
