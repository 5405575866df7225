"""A cluster recreated under the same name: the cached endpoint fails once, is forgotten, and the next
collection describes the cluster again."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from cni_metrics.adapters.eks_auth import ClusterTarget, clear_caches
from cni_metrics.collect import collect_cluster
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


def test_stale_endpoint_is_forgotten_after_one_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    # given a cluster collected once (its endpoint and CA cached), then deleted
    with start_fake_eks(SCENARIO) as first:
        assert _collect(first, monkeypatch) == "ok"
    # when a new cluster of the same name (new endpoint, new CA) is collected twice
    with start_fake_eks(SCENARIO) as second:
        statuses = [_collect(second, monkeypatch), _collect(second, monkeypatch)]
    # then the first try fails on the stale endpoint and the second describes the cluster again
    assert statuses == ["error", "ok"]
