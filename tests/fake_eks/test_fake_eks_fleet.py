"""Accounts, roles and regions in the stand-in, the generated ``fleet-500`` scenario, and its broken clusters.

EKS answers each caller with the clusters of its own account (an assumed role's credentials: that role's
account) in the region its call was signed for; AssumeRole issues credentials whose tokens sign in to
that account's clusters, as each cluster maps the account's role.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import boto3
import pytest
import requests
from botocore.exceptions import ClientError
from fake_eks.scenario import ScenarioError, load_scenario
from fake_eks.testing import RunningFakeEks, make_token, start_fake_eks
from fake_eks_helpers import PODS, kube_get

OWN = "111122223333"
OTHER = "222233334444"
USER = f"arn:aws:iam::{OWN}:user/cni-metrics-dev"
ROLE = f"arn:aws:iam::{OTHER}:role/cni-metrics-reader"
SCENARIO: dict[str, Any] = {
    "name": "accounts",
    "seed": 3,
    "identity_arn": USER,
    "accounts": {OTHER: {"roles": [ROLE], "identities": {ROLE: ["cni-metrics"]}}},
    "clusters": [
        {"name": "own-east", "nodes": 2},
        {"name": "own-west", "nodes": 2, "region": "eu-west-1"},
        {"name": "other-east", "nodes": 3, "account": OTHER},
        {"name": "other-west", "nodes": 2, "account": OTHER, "region": "eu-west-1"},
        {"name": "other-auto", "nodes": 4, "account": OTHER, "auto_mode": True},
        {"name": "other-gone", "nodes": 2, "account": OTHER, "unreachable": True},
    ],
}


def _session(eks: RunningFakeEks, **credentials: str) -> boto3.Session:
    """A session with the given credentials, else the connection's."""
    own = eks.connection["credentials"]
    return boto3.Session(
        aws_access_key_id=credentials.get("aws_access_key_id", own["access_key_id"]),
        aws_secret_access_key=credentials.get("aws_secret_access_key", own["secret_access_key"]),
        aws_session_token=credentials.get("aws_session_token"),
    )


def _eks(eks: RunningFakeEks, session: boto3.Session, region: str) -> Any:
    return session.client("eks", region_name=region, endpoint_url=eks.connection["eks_endpoint_url"])


def _assume(eks: RunningFakeEks, role: str) -> dict[str, str]:
    url = eks.connection["sts_endpoint_url"]
    sts = _session(eks).client("sts", region_name="us-east-1", endpoint_url=url)
    creds = sts.assume_role(RoleArn=role, RoleSessionName="test")["Credentials"]
    return {"aws_access_key_id": creds["AccessKeyId"], "aws_secret_access_key": creds["SecretAccessKey"],
            "aws_session_token": creds["SessionToken"]}


def _token(creds: dict[str, str], cluster: str) -> str:
    return make_token(
        cluster, access_key_id=creds["aws_access_key_id"], secret_access_key=creds["aws_secret_access_key"],
        session_token=creds["aws_session_token"],
    )


def _listed(eks: RunningFakeEks, session: boto3.Session, region: str) -> list[str]:
    return list(_eks(eks, session, region).list_clusters()["clusters"])


def test_eks_answers_with_the_callers_account_in_the_signed_region(
    fake_eks_factory: Callable[..., RunningFakeEks],
) -> None:
    # given clusters in two accounts and two regions, and the other account's role assumed
    eks = fake_eks_factory(SCENARIO)
    own, other = _session(eks), _session(eks, **_assume(eks, ROLE))
    # when each identity lists and describes in each region
    listed = {(who, region): _listed(eks, session, region)
              for who, session in (("own", own), ("other", other)) for region in ("us-east-1", "eu-west-1")}
    described = _eks(eks, other, "us-east-1").describe_cluster(name="other-east")["cluster"]
    # then each sees its own account's clusters of that region only, with ARNs of their account and region
    assert listed == {
        ("own", "us-east-1"): ["own-east"], ("own", "eu-west-1"): ["own-west"],
        ("other", "us-east-1"): ["other-auto", "other-east", "other-gone"],
        ("other", "eu-west-1"): ["other-west"],
    }
    assert described["arn"] == f"arn:aws:eks:us-east-1:{OTHER}:cluster/other-east"
    assert described["endpoint"] == eks.endpoint("other-east")
    with pytest.raises(ClientError, match="ResourceNotFoundException"):
        _eks(eks, own, "us-east-1").describe_cluster(name="other-east")
    with pytest.raises(ClientError, match="ResourceNotFoundException"):
        _eks(eks, other, "eu-west-1").describe_cluster(name="other-east")
    assert (eks.account("other-west"), eks.region("other-west")) == (OTHER, "eu-west-1")
    assert eks.roles(OTHER) == [ROLE]


def test_an_assumed_roles_token_signs_in_to_its_accounts_clusters_only(
    fake_eks_factory: Callable[..., RunningFakeEks],
) -> None:
    # given the other account's role assumed, and a token made from its credentials and one from the user's
    eks = fake_eks_factory(SCENARIO)
    creds = _assume(eks, ROLE)
    role_token, own_token = _token(creds, "other-east"), _token(creds, "own-east")
    # when they list aws-node pods
    as_role = kube_get(eks, "other-east", PODS, token=role_token)
    as_user = kube_get(eks, "other-east", PODS)
    role_elsewhere = kube_get(eks, "own-east", PODS, token=own_token)
    # then the account maps its role (its pods, as the truth has them), not the other account's user, and
    # the role is not mapped in the user's account
    assert as_role.status_code == 200
    assert sorted(p["metadata"]["name"] for p in as_role.json()["items"] if p["metadata"]["name"].startswith(
        "aws-node")) == sorted(p["name"] for p in eks.truth("other-east")["pods"])
    assert (as_user.status_code, role_elsewhere.status_code) == (401, 401)
    assert [f["rule"] for f in eks.auth_failures("other-east")] == ["unmapped"]


def test_assume_role_refuses_a_role_its_account_does_not_declare(
    fake_eks_factory: Callable[..., RunningFakeEks],
) -> None:
    # given an account that declares its roles
    eks = fake_eks_factory(SCENARIO)
    # when another role of that account is assumed, and a role of an account that declares none
    with pytest.raises(ClientError, match="AccessDenied") as denied:
        _assume(eks, f"arn:aws:iam::{OTHER}:role/admin")
    anywhere = _assume(eks, "arn:aws:iam::444455556666:role/any")
    # then the first is refused naming the caller and the role, the second is issued (any role exists there)
    assert USER in str(denied.value)
    assert anywhere["aws_access_key_id"].startswith("ASIA")


def test_auto_mode_has_nodes_but_no_aws_node_pods_and_unreachable_refuses(
    fake_eks_factory: Callable[..., RunningFakeEks],
) -> None:
    # given an Auto Mode cluster and an unreachable one, reached through the role
    eks = fake_eks_factory(SCENARIO)
    token = _token(_assume(eks, ROLE), "other-auto")
    # when its pods and nodes are listed, and the unreachable cluster's endpoint is called
    pods = kube_get(eks, "other-auto", PODS, token=token).json()["items"]
    nodes = kube_get(eks, "other-auto", "/api/v1/nodes", token=token).json()["items"]
    truth = eks.truth("other-auto")
    with pytest.raises(requests.ConnectionError):
        kube_get(eks, "other-gone", PODS, timeout=5)
    # then Auto Mode lists its 4 nodes and no pod at all in kube-system; its truth says so
    assert (pods, len(nodes)) == ([], 4)
    assert (truth["pods"], truth["autoMode"], truth["account"]) == ([], True, OTHER)
    assert eks.truth("other-gone")["unreachable"] is True


def test_the_fleet_500_scenario() -> None:
    # given / when the shipped scenario
    scenario = load_scenario("fleet-500")
    clusters = scenario.clusters
    # then 500 clusters of 5-35 nodes, about 10,000 in all, in 3 accounts reached through roles and 2 regions
    assert len(clusters) == 500
    assert all(5 <= c.nodes <= 35 for c in clusters)
    assert 9_500 <= sum(c.nodes for c in clusters) <= 10_500
    places = Counter((c.account, c.region) for c in clusters)
    assert len(places) == 6
    assert min(places.values()) >= 80
    assert all(len(roles) == 1 and roles[0].split(":")[4] == acct for acct, roles in scenario.roles.items())
    assert set(scenario.roles) == {c.account for c in clusters}
    assert all(c.identities.get(scenario.roles[c.account][0].lower()) == ("cni-metrics",) for c in clusters)
    # and a few broken clusters: unreachable, RBAC denied (no rule), Auto Mode; the rest tagged for discovery
    assert sorted(c.name for c in clusters if c.unreachable) == ["fleet-007", "fleet-311"]
    assert sorted(c.name for c in clusters if c.groups.get("cni-metrics") == ()) == ["fleet-042", "fleet-428"]
    assert sorted(c.name for c in clusters if c.auto_mode) == ["fleet-123", "fleet-400"]
    assert all(c.tags.get("cni-metrics") == "enabled" for c in clusters)
    assert sum(1 for c in clusters for f in c.faults if f.fraction) == 4 * 500


@pytest.mark.parametrize(
    ("generate", "message"),
    [
        ({"count": 2, "colour": "red"}, "unknown keys"),
        ({"count": 2, "overrides": {"cluster-009": {"nodes": 1}}}, "no generated cluster"),
        ({"count": 2, "accounts": ["12345"]}, "account"),
        ({"count": 2, "regions": ["nowhere"]}, "region"),
    ],
)
def test_a_bad_generate_block_is_refused(generate: dict[str, Any], message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        load_scenario({"generate": [generate]})


@pytest.mark.timeout(300)
def test_fleet_500_serves_every_cluster_at_its_own_endpoint() -> None:
    # given the fleet-500 stand-in started as its console script (a process of its own, as make demo runs it)
    scenario = load_scenario("fleet-500")
    with start_fake_eks("fleet-500", subprocess_mode=True) as eks:
        # when each account's role lists each region's clusters and describes one of them
        seen: dict[tuple[str, str], list[str]] = {}
        for account, (role,) in scenario.roles.items():
            session = _session(eks, **_assume(eks, role))
            for region in ("us-east-1", "eu-west-1"):
                client = _eks(eks, session, region)
                pages = client.get_paginator("list_clusters").paginate()
                seen[(account, region)] = [name for page in pages for name in page["clusters"]]
        first = seen[(scenario.account, "eu-west-1")][0]
        session = _session(eks, **_assume(eks, scenario.roles[scenario.account][0]))
        described = _eks(eks, session, "eu-west-1").describe_cluster(name=first)["cluster"]
        endpoints = {eks.endpoint(name) for name in eks.clusters}
        faulty = sum(1 for name in eks.clusters[::10] for pod in eks.truth(name)["pods"] if pod["fault"])
    # then every account and region lists its own clusters, as the scenario places them (its start-up time
    # and memory are measured in SCENARIOS.md, not claimed here)
    expected: dict[tuple[str, str], list[str]] = {}
    for cluster in scenario.clusters:
        expected.setdefault((cluster.account, cluster.region), []).append(cluster.name)
    assert seen == {place: sorted(names) for place, names in expected.items()}
    # and each cluster has its own endpoint, the one DescribeCluster gives
    assert len(endpoints) == 500
    assert described["endpoint"] == eks.endpoint(first)
    assert faulty > 0
