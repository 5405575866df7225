"""EKS token authentication: every rule of REFERENCE §4 refuses a token that breaks it; valid tokens pass."""

from __future__ import annotations

import base64
import datetime as dt
import time
from collections.abc import Callable
from unittest import mock
from urllib.parse import urlsplit, urlunsplit

import boto3
import pytest
from fake_eks.testing import RunningFakeEks, make_token
from fake_eks_helpers import PODS, kube_get

CLUSTER = "demo-prod"


def _url(token: str) -> str:
    body = token.removeprefix("k8s-aws-v1.")
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()


def _token(url: str) -> str:
    return "k8s-aws-v1." + base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")


def _with_query(token: str, edit: Callable[[str], str]) -> str:
    parts = urlsplit(_url(token))
    return _token(urlunsplit(parts._replace(query=edit(parts.query))))


def _assert_refused(eks: RunningFakeEks, token: str, rule: str) -> None:
    resp = kube_get(eks, CLUSTER, PODS, token=token)
    assert resp.status_code == 401
    assert resp.json() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "Unauthorized",
        "reason": "Unauthorized",
        "code": 401,
    }
    assert eks.auth_failures(CLUSTER)[-1]["rule"] == rule


def test_botocore_token_passes(fake_eks: RunningFakeEks) -> None:
    # given a token made by botocore as `aws eks get-token` makes it
    token = fake_eks.token(CLUSTER)
    # when it is used to list pods
    resp = kube_get(fake_eks, CLUSTER, PODS, token=token)
    # then the API server accepts it
    assert resp.status_code == 200
    assert resp.json()["kind"] == "PodList"


BROKEN: dict[str, Callable[[str], str]] = {
    "length": lambda t: t + "A" * 4100,
    "prefix": lambda t: t.replace("k8s-aws-v1.", "k8s-aws-v2.", 1),
    "base64": lambda t: t + "==",
    "url": lambda t: _token(_url(t).replace("https://sts.us-east-1.amazonaws.com", "https://[sts")),
    "scheme": lambda t: _token(_url(t).replace("https://", "http://", 1)),
    "host": lambda t: _token(
        _url(t).replace("sts.us-east-1.amazonaws.com", "vpce-0abc.sts.us-east-1.vpce.amazonaws.com", 1)
    ),
    "path": lambda t: _token(_url(t).replace("amazonaws.com/?", "amazonaws.com/sts/?", 1)),
    "query": lambda t: _with_query(t, lambda q: q + "&X-Amz-Expires"),
    "duplicate_key": lambda t: _with_query(t, lambda q: q + "&action=GetCallerIdentity"),
    "unknown_key": lambda t: _with_query(t, lambda q: q + "&X-Amz-Foo=1"),
    "action": lambda t: _with_query(
        t, lambda q: q.replace("Action=GetCallerIdentity", "Action=GetSessionToken")
    ),
    "expires": lambda t: _with_query(t, lambda q: q.replace("X-Amz-Expires=60", "X-Amz-Expires=901")),
    "date_missing": lambda t: _with_query(
        t, lambda q: "&".join(p for p in q.split("&") if not p.startswith("X-Amz-Date="))
    ),
    "signature": lambda t: _with_query(t, lambda q: q.replace("Version=2011-06-15", "Version=2011-06-16")),
}


@pytest.mark.parametrize("rule", sorted(BROKEN))
def test_each_broken_rule_is_refused(fake_eks: RunningFakeEks, rule: str) -> None:
    # given a valid token broken in exactly one way
    token = BROKEN[rule](fake_eks.token(CLUSTER))
    # when / then it is refused with 401, for that rule
    _assert_refused(fake_eks, token, rule)


def test_token_without_cluster_header_is_refused(fake_eks: RunningFakeEks) -> None:
    # given a token presigned without the x-k8s-aws-id header
    url = _url(fake_eks.token(CLUSTER)).replace("host%3Bx-k8s-aws-id", "host")
    # when / then
    _assert_refused(fake_eks, _token(url), "signed_headers")


def test_token_for_another_cluster_fails_the_signature(fake_eks: RunningFakeEks) -> None:
    # given a valid token signed for demo-staging
    token = fake_eks.token(CLUSTER, for_cluster="demo-staging")
    # when / then demo-prod recomputes the signature with its own name and refuses it
    _assert_refused(fake_eks, token, "signature")


def test_wrong_secret_fails_the_signature(fake_eks: RunningFakeEks) -> None:
    # given a token signed with the right key id and a wrong secret
    token = make_token(
        CLUSTER,
        access_key_id=fake_eks.connection["credentials"]["access_key_id"],
        secret_access_key="not-the-secret",
    )
    # when / then
    _assert_refused(fake_eks, token, "signature")


def test_token_older_than_15_minutes_is_expired(fake_eks: RunningFakeEks) -> None:
    # given a token botocore signed 16 minutes ago
    past = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=16)
    with mock.patch("botocore.auth.get_current_datetime", return_value=past):
        token = fake_eks.token(CLUSTER)
    # when / then
    _assert_refused(fake_eks, token, "expired")


def test_token_for_another_region_passes_with_its_own_scope(fake_eks: RunningFakeEks) -> None:
    # given a token presigned on the eu-west-1 regional STS endpoint
    cred = fake_eks.connection["credentials"]
    token = make_token(
        CLUSTER,
        access_key_id=cred["access_key_id"],
        secret_access_key=cred["secret_access_key"],
        region="eu-west-1",
    )
    # when / then it is accepted (the host is a valid regional STS host)
    assert kube_get(fake_eks, CLUSTER, PODS, token=token).status_code == 200


def test_token_max_age_is_configurable(fake_eks_factory: Callable[..., RunningFakeEks]) -> None:
    # given a cluster whose tokens live 2 seconds
    eks = fake_eks_factory({"token_max_age_seconds": 2, "clusters": [{"name": CLUSTER, "nodes": 2}]})
    token = eks.token(CLUSTER)
    assert kube_get(eks, CLUSTER, PODS, token=token).status_code == 200
    # when the token gets older than that
    time.sleep(3.5)
    # then the same token is refused
    _assert_refused(eks, token, "expired")


def test_assumed_role_session_is_canonicalised_to_its_role(
    fake_eks_factory: Callable[..., RunningFakeEks],
) -> None:
    # given a scenario mapping a role (mixed case ARN) to the collector group
    role = "arn:aws:iam::111122223333:role/CNI-Metrics-Collector"
    eks = fake_eks_factory(
        {"identities": {role: ["cni-metrics"]}, "clusters": [{"name": CLUSTER, "nodes": 2}]}
    )
    sts = boto3.client(
        "sts",
        endpoint_url=eks.connection["sts_endpoint_url"],
        region_name="us-east-1",
        aws_access_key_id=eks.connection["credentials"]["access_key_id"],
        aws_secret_access_key=eks.connection["credentials"]["secret_access_key"],
    )
    creds = sts.assume_role(RoleArn=role, RoleSessionName="collector-1")["Credentials"]
    token = make_token(
        CLUSTER,
        access_key_id=creds["AccessKeyId"],
        secret_access_key=creds["SecretAccessKey"],
        session_token=creds["SessionToken"],
    )
    # when the assumed-role session lists pods, and the long-term (unmapped) identity too
    as_role = kube_get(eks, CLUSTER, PODS, token=token)
    as_user = kube_get(eks, CLUSTER, PODS)
    # then the role session is authorised and the unmapped user is not authenticated
    assert as_role.status_code == 200
    assert as_user.status_code == 401
    assert eks.auth_failures(CLUSTER)[-1]["rule"] == "unmapped"


def test_session_token_is_required_for_temporary_credentials(
    fake_eks_factory: Callable[..., RunningFakeEks],
) -> None:
    # given temporary credentials used without their session token
    role = "arn:aws:iam::111122223333:role/collector"
    eks = fake_eks_factory(
        {"identities": {role: ["cni-metrics"]}, "clusters": [{"name": CLUSTER, "nodes": 1}]}
    )
    sts = boto3.client(
        "sts",
        endpoint_url=eks.connection["sts_endpoint_url"],
        region_name="us-east-1",
        aws_access_key_id=eks.connection["credentials"]["access_key_id"],
        aws_secret_access_key=eks.connection["credentials"]["secret_access_key"],
    )
    creds = sts.assume_role(RoleArn=role, RoleSessionName="s1")["Credentials"]
    token = make_token(
        CLUSTER, access_key_id=creds["AccessKeyId"], secret_access_key=creds["SecretAccessKey"]
    )
    # when / then
    resp = kube_get(eks, CLUSTER, PODS, token=token)
    assert resp.status_code == 401
    assert eks.auth_failures(CLUSTER)[-1]["rule"] == "signature"
