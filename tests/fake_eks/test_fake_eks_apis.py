"""The unmodified boto3 and kubernetes clients against the stand-in: EKS, STS, pods, proxy, RBAC."""

from __future__ import annotations

import gzip
from collections.abc import Callable

import boto3
import pytest
import requests
from botocore.exceptions import ClientError
from fake_eks.testing import RunningFakeEks
from fake_eks_helpers import PODS, kube_get, metrics_path
from kubernetes import client as k8s

CLUSTER = "demo-legacy"


def _core(eks: RunningFakeEks, cluster: str) -> k8s.CoreV1Api:
    cfg = k8s.Configuration()
    cfg.host = eks.endpoint(cluster)
    cfg.ssl_ca_cert = eks.ca_file(cluster)
    cfg.api_key = {"authorization": f"Bearer {eks.token(cluster)}"}
    return k8s.CoreV1Api(k8s.ApiClient(cfg))


def test_boto3_eks_describe_and_list_with_pagination(fake_eks_env: RunningFakeEks) -> None:
    # given an unmodified boto3 EKS client pointed at the stand-in by the environment
    eks = boto3.client("eks")
    # when it pages through ListClusters one at a time and describes a cluster
    names = [
        n
        for page in eks.get_paginator("list_clusters").paginate(PaginationConfig={"PageSize": 1})
        for n in page["clusters"]
    ]
    cluster = eks.describe_cluster(name="demo-prod")["cluster"]
    # then every cluster is listed and the description has the real shape
    assert names == ["demo-legacy", "demo-prod", "demo-staging"]
    assert cluster["endpoint"] == fake_eks_env.endpoint("demo-prod")
    assert cluster["status"] == "ACTIVE"
    assert cluster["arn"] == "arn:aws:eks:us-east-1:111122223333:cluster/demo-prod"
    assert cluster["tags"]["cni-metrics"] == "enabled"
    assert len(cluster["resourcesVpcConfig"]["subnetIds"]) == 3
    import base64

    assert base64.b64decode(cluster["certificateAuthority"]["data"]).decode() == fake_eks_env.ca_pem(
        "demo-prod"
    )


def test_boto3_unknown_cluster_and_bad_credentials(fake_eks_env: RunningFakeEks) -> None:
    # given boto3 clients, one with unknown credentials
    good = boto3.client("eks")
    unknown = boto3.client("eks", aws_access_key_id="AKIAUNKNOWN", aws_secret_access_key="x")
    key = fake_eks_env.connection["credentials"]["access_key_id"]
    wrong_secret = boto3.client("eks", aws_access_key_id=key, aws_secret_access_key="not-the-secret")
    wrong_sts = boto3.client("sts", aws_access_key_id=key, aws_secret_access_key="not-the-secret")
    # when / then errors are shaped as AWS shapes them
    with pytest.raises(good.exceptions.ResourceNotFoundException):
        good.describe_cluster(name="nope")
    with pytest.raises(ClientError) as err:
        unknown.list_clusters()
    assert err.value.response["Error"]["Code"] == "UnrecognizedClientException"
    with pytest.raises(ClientError) as err:
        wrong_secret.describe_cluster(name="demo-prod")
    assert err.value.response["Error"]["Code"] == "InvalidSignatureException"
    with pytest.raises(ClientError) as err:
        wrong_sts.get_caller_identity()
    assert err.value.response["Error"]["Code"] == "SignatureDoesNotMatch"


def test_sts_caller_identity(fake_eks_env: RunningFakeEks) -> None:
    # given / when
    ident = boto3.client("sts").get_caller_identity()
    # then
    assert ident["Arn"] == fake_eks_env.connection["credentials"]["identity_arn"]
    assert ident["Account"] == "111122223333"


def test_kubernetes_client_lists_with_pagination_and_reads_proxy(fake_eks: RunningFakeEks) -> None:
    # given the unmodified kubernetes client with host, CA and bearer token
    api = _core(fake_eks, CLUSTER)
    truth_names = {p["name"] for p in fake_eks.truth(CLUSTER)["pods"]}
    # when it lists aws-node pods 7 at a time
    pages, cont = 0, None
    pods: list[k8s.V1Pod] = []
    while True:
        resp = api.list_namespaced_pod(
            "kube-system", label_selector="k8s-app=aws-node", limit=7, _continue=cont
        )
        pages += 1
        pods += resp.items
        assert resp.metadata is not None
        cont = resp.metadata._continue
        if not cont:
            break
    names: list[str] = []
    for p in pods:
        assert p.metadata is not None
        assert p.metadata.name is not None
        names.append(p.metadata.name)
    body = api.connect_get_namespaced_pod_proxy_with_path(f"{names[0]}:61678", "kube-system", "metrics")
    # then it gets every aws-node pod exactly once over several pages, and the proxy returns the payload
    assert pages == 3
    assert sorted(names) == sorted(truth_names)
    spec, status = pods[0].spec, pods[0].status
    assert spec is not None
    assert status is not None
    assert status.container_statuses is not None
    assert spec.host_network is True
    assert status.container_statuses[0].restart_count == 0
    assert "awscni_assigned_ip_addresses" in body


def test_selectors_and_resource_version_zero(fake_eks: RunningFakeEks) -> None:
    # given a cluster with aws-node, kube-proxy and coredns pods, one aws-node Pending
    # when listing with various selectors
    all_pods = kube_get(fake_eks, CLUSTER, PODS).json()["items"]
    aws = kube_get(fake_eks, CLUSTER, PODS, params={"labelSelector": "k8s-app=aws-node"}).json()["items"]
    running = kube_get(
        fake_eks,
        CLUSTER,
        PODS,
        params={"labelSelector": "k8s-app in (aws-node)", "fieldSelector": "status.phase=Running"},
    ).json()["items"]
    rv0 = kube_get(fake_eks, CLUSTER, PODS, params={"limit": "3", "resourceVersion": "0"}).json()
    # then
    assert len(aws) == 20
    assert len(all_pods) == 20 + 20 + 2
    assert len(running) == 19
    assert len(rv0["items"]) == len(all_pods)  # resourceVersion=0 ignores limit
    assert "continue" not in rv0["metadata"]


def test_stale_continue_token_gets_410_expired(fake_eks: RunningFakeEks) -> None:
    # given a first page and its continue token
    first = kube_get(fake_eks, CLUSTER, PODS, params={"limit": "5"}).json()
    # when the cluster changes before the next page is asked for
    fake_eks.advance(CLUSTER)
    resp = kube_get(fake_eks, CLUSTER, PODS, params={"limit": "5", "continue": first["metadata"]["continue"]})
    # then
    assert resp.status_code == 410
    assert resp.json()["reason"] == "Expired"


def test_discovery_endpoints(fake_eks: RunningFakeEks) -> None:
    # given / when
    version = kube_get(fake_eks, CLUSTER, "/version").json()
    api = kube_get(fake_eks, CLUSTER, "/api").json()
    healthz = requests.get(
        fake_eks.endpoint(CLUSTER) + "/healthz", verify=fake_eks.ca_file(CLUSTER), timeout=5
    )
    # then
    assert version["gitVersion"].startswith("v1.29")
    assert api["versions"] == ["v1"]
    assert healthz.text == "ok"


def test_proxy_gzip_ports_and_unknown_pod(fake_eks: RunningFakeEks) -> None:
    # given a healthy aws-node pod
    pod = next(p for p in fake_eks.truth(CLUSTER)["pods"] if p["fault"] is None)["name"]
    # when asking with gzip, on another port, and for a pod that does not exist
    gz = kube_get(fake_eks, CLUSTER, metrics_path(pod), headers={"Accept-Encoding": "gzip"}, stream=True)
    raw = gz.raw.read(decode_content=False)
    other_port = kube_get(fake_eks, CLUSTER, metrics_path(pod, port=8080))
    unknown = kube_get(fake_eks, CLUSTER, metrics_path("aws-node-zzzzz"))
    # then
    assert gz.headers["Content-Encoding"] == "gzip"
    assert b"awscni_ip_max" in gzip.decompress(raw)
    assert other_port.status_code == 503
    assert other_port.json()["message"].startswith("error trying to reach service:")
    assert unknown.status_code == 404
    assert unknown.json()["message"] == 'pods "aws-node-zzzzz" not found'


def test_rbac_denials_have_the_api_server_message(fake_eks_factory: Callable[..., RunningFakeEks]) -> None:
    # given an identity whose group may list pods but not get pods/proxy
    ident = "arn:aws:iam::111122223333:user/cni-metrics-dev"
    eks = fake_eks_factory(
        {
            "identities": {ident: ["viewers"]},
            "groups": {
                "viewers": [{"verbs": ["list"], "resources": ["pods"], "namespaces": ["kube-system"]}]
            },
            "clusters": [{"name": "c1", "nodes": 2}],
        }
    )
    pod = eks.truth("c1")["pods"][0]["name"]
    # when it lists pods, reads a proxy path, and lists another namespace
    listed = kube_get(eks, "c1", PODS)
    proxied = kube_get(eks, "c1", metrics_path(pod))
    other_ns = kube_get(eks, "c1", "/api/v1/namespaces/default/pods")
    anonymous = requests.get(eks.endpoint("c1") + PODS, verify=eks.ca_file("c1"), timeout=5)
    # then
    assert listed.status_code == 200
    assert proxied.status_code == 403
    assert proxied.json()["reason"] == "Forbidden"
    assert proxied.json()["message"] == (
        f'pods "{pod}:61678" is forbidden: User "{ident}" cannot get resource "pods/proxy" in API group "" '
        'in the namespace "kube-system"'
    )
    assert other_ns.status_code == 403
    assert other_ns.json()["message"] == (
        f'pods is forbidden: User "{ident}" cannot list resource "pods" in API group "" '
        'in the namespace "default"'
    )
    assert anonymous.status_code == 403
    assert 'User "system:anonymous"' in anonymous.json()["message"]


def test_list_throttling_is_plain_text_429(fake_eks_factory: Callable[..., RunningFakeEks]) -> None:
    # given a cluster that throttles its first two lists
    eks = fake_eks_factory(
        {"clusters": [{"name": "c1", "nodes": 2, "list_throttle": {"first": 2, "retry_after": 3}}]}
    )
    # when listing three times
    answers = [kube_get(eks, "c1", PODS) for _ in range(3)]
    # then
    assert [a.status_code for a in answers] == [429, 429, 200]
    assert answers[0].text == "Too many requests, please try again later.\n"
    assert answers[0].headers["Retry-After"] == "3"
