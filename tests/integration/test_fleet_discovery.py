"""Fleet resolution against the EKS stand-in: discovery across two accounts and two regions through
assumed roles, entries beside it, what cannot be read reported and skipped, a worker's lookup of a name,
and the Deadline bounding it all. The truth is the scenario: which cluster is in which account and
region, with which tags."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cni_metrics.adapters import eks_auth
from cni_metrics.adapters.aws_clients import Deadline
from cni_metrics.adapters.eks_auth import ClusterTarget
from cni_metrics.collector.cluster import collect_cluster
from cni_metrics.fleet import resolve as fleet_resolve
from cni_metrics.fleet.document import FleetCluster, parse_fleet
from cni_metrics.fleet.resolve import FleetLookupError, resolve, resolve_name
from fake_eks.testing import RunningFakeEks

pytestmark = pytest.mark.integration

OWN, B, C = "111122223333", "222233334444", "333344445555"
ROLE_B = f"arn:aws:iam::{B}:role/cni-metrics-reader"
ROLE_C = f"arn:aws:iam::{C}:role/cni-metrics-reader"
DENIED = f"arn:aws:iam::{B}:role/not-declared"
TAG = {"cni-metrics": "enabled"}
SCENARIO: dict[str, Any] = {
    "name": "fleet-discovery",
    "seed": 16,
    "accounts": {
        B: {"roles": [ROLE_B], "identities": {ROLE_B: ["cni-metrics"]}},
        C: {"roles": [ROLE_C], "identities": {ROLE_C: ["cni-metrics"]}},
    },
    "clusters": [
        {"name": "a-east", "nodes": 3, "tags": TAG},
        {"name": "a-west", "nodes": 2, "tags": TAG, "region": "eu-west-1"},
        {"name": "a-untagged", "nodes": 2},
        {"name": "b-east", "nodes": 4, "tags": TAG, "account": B},
        {"name": "b-west", "nodes": 5, "tags": TAG, "account": B, "region": "eu-west-1"},
        {"name": "b-disabled", "nodes": 2, "tags": {"cni-metrics": "disabled"}, "account": B,
         "region": "eu-west-1"},
        {"name": "c-east", "nodes": 3, "tags": TAG, "account": C},
    ],
}
REGIONS = ["us-east-1", "eu-west-1"]
DOCUMENT: dict[str, Any] = {
    "version": 1,
    "name": "it",
    "clusters": [
        {"name": "a-east", "region": "us-east-1", "alias": "a-prod"},
        {"name": "c-east", "region": "us-east-1", "role_arn": ROLE_C, "alias": "c-prod"},
        {"name": "broken", "region": "us-east-1", "endpoint": "http://10.0.0.1"},
    ],
    "discovery": [
        {"regions": REGIONS, "tag": "cni-metrics=enabled"},
        {"role_arn": ROLE_B, "regions": REGIONS, "tag": "cni-metrics=enabled"},
        {"role_arn": DENIED, "regions": REGIONS, "tag": "cni-metrics=enabled"},
    ],
}


@pytest.fixture(autouse=True)
def _fresh_caches() -> Iterator[None]:
    eks_auth.clear_caches()
    fleet_resolve.clear_caches()
    yield
    eks_auth.clear_caches()
    fleet_resolve.clear_caches()


def _fleet(doc: dict[str, Any]) -> Any:
    return parse_fleet(json.dumps(doc).encode())


def _truth_place(eks: RunningFakeEks, cluster: str) -> tuple[str, str]:
    spec = next(c for c in SCENARIO["clusters"] if c["name"] == cluster)
    return spec.get("account", OWN), spec.get("region", "us-east-1")


def test_discovery_across_two_accounts_and_two_regions_through_roles(eks: RunningFakeEks) -> None:
    # given the fleet document: two entries (one through account C's role), a bad entry, discovery in the
    # own account and in account B through its role, both regions, and a rule whose role is not assumable
    fleet = _fleet(DOCUMENT)
    # when it is resolved, two discovery calls at a time
    resolution = resolve(fleet, deadline=Deadline(time.monotonic() + 30), concurrency=2)
    # then the entries come first, then the tagged clusters of each rule's account and region, as the
    # scenario places them; the own account's a-east is the entry a-prod, the untagged ones are left out
    assert resolution.ids == ["a-prod", "c-prod", "a-west", "b-east", "b-west"]
    assert resolution.discovered == 3
    by_id = {cluster.id: cluster for cluster in resolution.clusters}
    assert by_id["b-west"] == FleetCluster(name="b-west", region="eu-west-1", role_arn=ROLE_B)
    for cluster in resolution.clusters:
        account, region = _truth_place(eks, cluster.name)
        assert (cluster.account or OWN, cluster.region) == (account, region)
    # and the bad entry and the role that cannot be assumed (each region) are reported, nothing else
    assert [(p.where, p.kind, p.field) for p in resolution.problems] == [
        ("clusters[2]", "entry", "endpoint"),
        ("discovery[2] us-east-1", "discovery", None),
        ("discovery[2] eu-west-1", "discovery", None),
    ]
    assert "AssumeRole" in resolution.problems[1].reason
    assert "AccessDenied" in resolution.problems[1].reason


def test_a_discovered_cluster_in_another_account_is_collected_through_its_role(eks: RunningFakeEks) -> None:
    # given the fleet's clusters reached through account B's and C's roles
    by_id = {c.id: c for c in resolve(_fleet(DOCUMENT)).clusters}
    # when a worker collects them as the fleet says (name, region, role; no endpoint: DescribeCluster)
    results = {
        cluster_id: collect_cluster(
            ClusterTarget(spec.name, spec.region, spec.role_arn, spec.endpoint, spec.ca_data),
            deadline=time.monotonic() + 20,
        )
        for cluster_id, spec in by_id.items() if cluster_id in ("b-west", "c-prod")
    }
    # then each signed in to its own account's cluster and scraped every aws-node pod the truth has
    for cluster_id, collection in results.items():
        truth = eks.truth(by_id[cluster_id].name)
        assert collection.status == "ok", collection.error
        assert sorted(node.key for node in collection.nodes) == sorted(p["uid"] for p in truth["pods"])


def test_a_worker_resolves_only_names_the_fleet_gives(eks: RunningFakeEks) -> None:
    # given the fleet document without its rule that cannot be read
    fleet = _fleet({**DOCUMENT, "discovery": DOCUMENT["discovery"][:2]})
    # when a worker (its one deadline per warm process) is given names
    deadline = Deadline(time.monotonic() + 30)
    found = {name: resolve_name(fleet, name, deadline=deadline) for name in
             ("a-prod", "b-west", "a-west", "a-east", "c-east", "a-untagged", "b-disabled", "not-anywhere")}
    # then ids the fleet resolves to are found, with their account and region; a cluster's own name behind an
    # alias, an untagged cluster, a cluster of an account no rule covers, or a name no one has, are refused
    assert found["a-prod"] is fleet.clusters[0]
    assert found["b-west"] == FleetCluster(name="b-west", region="eu-west-1", role_arn=ROLE_B)
    assert found["a-west"] == FleetCluster(name="a-west", region="eu-west-1")
    assert {name for name, spec in found.items() if spec is None} == {
        "a-east", "c-east", "a-untagged", "b-disabled", "not-anywhere"
    }


def test_a_rule_that_cannot_be_read_before_a_match_refuses_the_name(eks: RunningFakeEks) -> None:
    # given a fleet whose first rule's role cannot be assumed
    fleet = _fleet({"version": 1, "discovery": [DOCUMENT["discovery"][2], DOCUMENT["discovery"][1]]})
    # when a worker is given a name the second rule would find
    # then it cannot tell which account's cluster the name is: refused, not guessed
    with pytest.raises(FleetLookupError, match=r"discovery\[0\] us-east-1: .*AccessDenied"):
        resolve_name(fleet, "b-west")


@pytest.fixture
def black_hole() -> Iterator[str]:
    """An endpoint that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


@pytest.mark.timeout(60)
def test_discovery_never_outlives_its_deadline(
    eks: RunningFakeEks, black_hole: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given an EKS API that never answers, and 6 s left (a call may wait 3 s to connect, then the rest)
    monkeypatch.setenv("AWS_ENDPOINT_URL_EKS", black_hole)
    fleet = _fleet(DOCUMENT)
    started = time.monotonic()
    # when the fleet is resolved
    resolution = resolve(fleet, deadline=Deadline(started + 6))
    elapsed = time.monotonic() - started
    # then it returns by the deadline (plus a second) with the entries, each rule and region reported
    assert 2 < elapsed < 7
    assert resolution.ids == ["a-prod", "c-prod"]
    assert {p.where for p in resolution.problems if p.kind == "discovery"} == {
        f"discovery[{i}] {region}" for i in range(3) for region in REGIONS
    }


@pytest.fixture
def slow_describe() -> Iterator[str]:
    """An EKS API listing 40 clusters at once and answering DescribeCluster never (within 30 s)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] != "/clusters":
                time.sleep(30)
                return
            body = json.dumps({"clusters": [f"slow-{i:02d}" for i in range(40)]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.timeout(60)
def test_clusters_left_undescribed_at_the_deadline_are_one_problem(
    eks: RunningFakeEks, slow_describe: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given an account whose 40 clusters are listed at once and never described, and 5 s left
    monkeypatch.setenv("AWS_ENDPOINT_URL_EKS", slow_describe)
    fleet = _fleet({"version": 1, "discovery": [{"regions": ["us-east-1"], "tag": "cni-metrics=enabled"}]})
    started = time.monotonic()
    # when resolved 4 calls at a time
    resolution = resolve(fleet, deadline=Deadline(started + 5), concurrency=4)
    elapsed = time.monotonic() - started
    # then by the deadline: the calls that timed out are reported each (at most two rounds of 4; none when a
    # loaded machine spent the time before the first call could fit), those never made in one problem
    assert elapsed < 6
    assert resolution.clusters == ()
    timed_out = [p for p in resolution.problems if p.cluster is not None]
    (rest,) = [p for p in resolution.problems if p.cluster is None]
    assert len(timed_out) <= 8
    assert all("Timeout" in p.reason for p in timed_out)
    left = 40 - len(timed_out)
    assert rest.reason == f"no time left before the run's deadline: {left} of 40 clusters not described"
