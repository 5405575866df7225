"""The stand-in's Node list: EKS-shaped whole objects, metadata only on request, limit/continue paging."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fake_eks.testing import RunningFakeEks, start_fake_eks
from fake_eks_helpers import kube_get

pytestmark = pytest.mark.integration

METADATA = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
ZONES = ["us-east-1a", "us-east-1b"]
SCENARIO = {"name": "nodes", "seed": 4, "clusters": [{"name": "n1", "nodes": 7, "zones": ZONES}]}


@pytest.fixture(scope="module")
def eks() -> Iterator[RunningFakeEks]:
    with start_fake_eks(SCENARIO) as running:
        yield running


def _pages(eks: RunningFakeEks, accept: str, limit: int) -> list[dict[str, Any]]:
    pages: list[dict[str, Any]] = []
    token = ""
    while True:
        params = {"limit": str(limit), **({"continue": token} if token else {})}
        response = kube_get(eks, "n1", "/api/v1/nodes", params=params, headers={"Accept": accept})
        assert response.status_code == 200, response.text
        pages.append({"content_type": response.headers["Content-Type"], **response.json()})
        token = pages[-1]["metadata"].get("continue", "")
        if not token:
            return pages


def test_whole_node_objects_look_like_eks_nodes(eks: RunningFakeEks) -> None:
    # when the nodes are listed as JSON
    (page,) = _pages(eks, "application/json", 0)
    # then each is a whole Node: labels, managedFields, spec and a full status, about 10 KB of JSON
    assert (page["kind"], page["apiVersion"]) == ("NodeList", "v1")
    truth = {p["node"]: p for p in eks.truth("n1")["pods"]}
    assert sorted(node["metadata"]["name"] for node in page["items"]) == sorted(truth)
    for node in page["items"]:
        meta, status = node["metadata"], node["status"]
        assert meta["labels"]["topology.kubernetes.io/zone"] == truth[meta["name"]]["zone"]
        assert meta["labels"]["node.kubernetes.io/instance-type"] == truth[meta["name"]]["instanceType"]
        assert {entry["manager"] for entry in meta["managedFields"]} >= {"kubelet", "kube-controller-manager"}
        assert [c["type"] for c in status["conditions"]][-1] == "Ready"
        assert len(status["images"]) >= 20
        assert {"InternalIP", "Hostname"} <= {a["type"] for a in status["addresses"]}
        assert set(status["nodeInfo"]) >= {"kubeletVersion", "containerRuntimeVersion", "osImage"}
        assert node["spec"]["providerID"].startswith("aws:///")
        assert 8_000 < len(json.dumps(node)) < 20_000


def test_metadata_only_list_pages_every_node_once(eks: RunningFakeEks) -> None:
    # when the nodes are listed as PartialObjectMetadataList, 3 at a time
    pages = _pages(eks, f"{METADATA},application/json", 3)
    # then there are three pages holding each node once, each item its metadata only (managedFields kept)
    assert [len(page["items"]) for page in pages] == [3, 3, 1]
    assert {page["kind"] for page in pages} == {"PartialObjectMetadataList"}
    assert {page["content_type"] for page in pages} == {METADATA}
    items = [item for page in pages for item in page["items"]]
    truth = sorted(p["node"] for p in eks.truth("n1")["pods"])
    assert sorted(item["metadata"]["name"] for item in items) == truth
    for item in items:
        assert set(item) == {"kind", "apiVersion", "metadata"}
        assert item["kind"] == "PartialObjectMetadata"
        assert item["metadata"]["managedFields"]
    assert pages[0]["metadata"]["remainingItemCount"] == 4


@pytest.mark.parametrize(
    ("accept", "params", "status"),
    [
        ("application/yaml", {}, 406),
        ("application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1", {}, 406),
        ("application/json", {"limit": "\u00b2"}, 400),
        ("application/json", {"limit": "3", "continue": "not-a-token"}, 400),
    ],
)
def test_unacceptable_media_and_bad_paging_are_refused(
    eks: RunningFakeEks, accept: str, params: dict[str, str], status: int
) -> None:
    response = kube_get(eks, "n1", "/api/v1/nodes", params=params, headers={"Accept": accept})
    assert response.status_code == status
    assert response.json()["kind"] == "Status"
