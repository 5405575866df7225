"""Shipped scenarios, validation of scenario documents, and determinism from the seed."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fake_eks.scenario import ScenarioError, load_scenario, shipped_scenarios
from fake_eks.testing import RunningFakeEks


def test_shipped_scenarios() -> None:
    # given / when
    names = shipped_scenarios()
    scale = {n: load_scenario(n) for n in ("scale-5k", "scale-10k")}
    # then
    assert {"demo", "faults", "scale-5k", "scale-10k"} <= set(names)
    assert sum(c.nodes for c in scale["scale-5k"].clusters) == 5000
    assert sum(c.nodes for c in scale["scale-10k"].clusters) == 10000
    assert scale["scale-5k"].clusters[0].latency_ms == 20


def test_demo_has_three_mixed_clusters_with_a_few_faulty_nodes(fake_eks: RunningFakeEks) -> None:
    # given / when
    truths = [fake_eks.truth(c) for c in fake_eks.clusters]
    # then
    assert len(truths) == 3
    assert all(20 <= len(t["pods"]) <= 60 for t in truths)
    assert {p["shape"] for t in truths for p in t["pods"]} == {"modern", "old"}
    faulty = [p for t in truths for p in t["pods"] if p["fault"]]
    assert 3 <= len(faulty) <= 10


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"clusters": [{"name": "a", "faults": {"explode": 0.1}}]}, "unknown fault"),
        ({"clusters": [{"name": "a", "instance_types": {"x9.huge": 1}}]}, "unknown instance types"),
        ({"clusters": [{"name": "a", "cni_shapes": {"ancient": 1}}]}, "cni_shapes"),
        ({"groups": {"system:masters": []}, "clusters": [{"name": "a"}]}, "reserved prefix"),
        ({"clusters": [{"name": "a"}, {"name": "a"}]}, "unique"),
        ({"clusters": [{"nodes": 2}]}, "invalid scenario"),
    ],
)
def test_invalid_scenarios_are_refused(doc: dict[str, object], message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        load_scenario(doc)


def test_same_seed_same_cluster(fake_eks_factory: Callable[..., RunningFakeEks]) -> None:
    # given two stand-ins from the same scenario and seed, and a third with another seed
    doc = {"clusters": [{"name": "c", "nodes": 5, "cni_shapes": {"modern": 1, "old": 1}}]}
    a, b, c = fake_eks_factory(doc, seed=3), fake_eks_factory(doc, seed=3), fake_eks_factory(doc, seed=4)

    def identity(eks: RunningFakeEks) -> list[tuple[str, str, str, str]]:
        return [(p["name"], p["uid"], p["node"], p["shape"]) for p in eks.truth("c")["pods"]]

    # when / then
    assert identity(a) == identity(b)
    assert identity(a) != identity(c)
