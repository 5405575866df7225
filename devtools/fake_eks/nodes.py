"""The cluster's network as the Kubernetes and EKS APIs show it: Node objects (zone and instance-type
labels), ENIConfig objects (custom networking) and the cluster subnets DescribeCluster returns.

Subnet IDs come from outside (``network.py`` creates the subnets in moto and posts their IDs to the
truth API); until then DescribeCluster answers with made-up IDs and there is no ENIConfig.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from fake_eks.scenario import ClusterSpec

ZONE_LABEL = "topology.kubernetes.io/zone"
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"


class ClusterNetwork:
    """Zones, cluster subnet IDs and ENIConfigs (name -> subnet ID) of one cluster."""

    def __init__(self, spec: ClusterSpec) -> None:
        self.spec = spec
        self.subnet_ids: list[str] = []
        self.eniconfigs: dict[str, str] = {}

    def attach(self, doc: dict[str, Any]) -> None:
        """Set ``{"subnetIds": [...], "eniconfigs": {name: subnetId}}`` (either may be left out)."""
        if "subnetIds" in doc:
            self.subnet_ids = [str(s) for s in doc["subnetIds"]]
        if "eniconfigs" in doc:
            self.eniconfigs = {str(k): str(v) for k, v in doc["eniconfigs"].items()}

    def truth(self) -> dict[str, Any]:
        """The scenario's network settings and what was attached."""
        return {
            "zones": list(self.spec.zones),
            "spec": self.spec.network or {},
            "subnetIds": list(self.subnet_ids),
            "eniconfigs": dict(self.eniconfigs),
        }

    def eniconfig_list(self) -> bytes:
        """``ENIConfigList`` (crd.k8s.amazonaws.com/v1alpha1), one object per zone as the docs suggest."""
        items = [
            {
                "apiVersion": "crd.k8s.amazonaws.com/v1alpha1",
                "kind": "ENIConfig",
                "metadata": {"name": name, "uid": f"eniconfig-{name}", "resourceVersion": "1"},
                "spec": {"subnet": subnet, "securityGroups": ["sg-0123456789abcdef0"]},
            }
            for name, subnet in sorted(self.eniconfigs.items())
        ]
        doc = {"apiVersion": "crd.k8s.amazonaws.com/v1alpha1", "kind": "ENIConfigList",
               "metadata": {"resourceVersion": "1"}, "items": items}
        return json.dumps(doc, separators=(",", ":")).encode()


# Images an EKS node typically holds: the add-ons of every node, then workload images (repository, tag, MB).
_IMAGES = (
    ("602401143452.dkr.ecr.us-east-1.amazonaws.com/amazon-k8s-cni", "v1.23.0-eksbuild.1", 48),
    ("602401143452.dkr.ecr.us-east-1.amazonaws.com/amazon-k8s-cni-init", "v1.23.0-eksbuild.1", 62),
    ("602401143452.dkr.ecr.us-east-1.amazonaws.com/amazon/aws-network-policy-agent", "v1.2.1-eksbuild.1", 39),
    ("602401143452.dkr.ecr.us-east-1.amazonaws.com/eks/kube-proxy", "v1.31.3-minimal-eksbuild.2", 37),
    ("602401143452.dkr.ecr.us-east-1.amazonaws.com/eks/coredns", "v1.11.3-eksbuild.2", 24),
    ("602401143452.dkr.ecr.us-east-1.amazonaws.com/eks/pause", "3.10", 1),
    ("602401143452.dkr.ecr.us-east-1.amazonaws.com/eks/aws-ebs-csi-driver", "v1.37.0", 82),
    ("602401143452.dkr.ecr.us-east-1.amazonaws.com/eks/livenessprobe", "v2.14.0-eks-1-31-7", 13),
    ("602401143452.dkr.ecr.us-east-1.amazonaws.com/eks/csi-node-driver-registrar", "v2.12.0-eks-1-31-7", 14),
    ("602401143452.dkr.ecr.us-east-1.amazonaws.com/eks/eks-pod-identity-agent", "0.1.10", 29),
    ("public.ecr.aws/aws-observability/aws-for-fluent-bit", "2.32.4", 127),
    ("public.ecr.aws/cloudwatch-agent/cloudwatch-agent", "1.300049.1b929", 66),
    ("public.ecr.aws/karpenter/controller", "1.1.1", 52),
    ("registry.k8s.io/metrics-server/metrics-server", "v0.7.2", 19),
    ("quay.io/prometheus/node-exporter", "v1.8.2", 11),
    ("docker.io/grafana/promtail", "3.3.1", 81),
    ("docker.io/library/nginx", "1.27.3", 72),
    ("docker.io/library/redis", "7.4.1", 45),
    ("ghcr.io/open-telemetry/opentelemetry-collector-releases/otel-collector-contrib", "0.116.0", 98),
    ("111122223333.dkr.ecr.us-east-1.amazonaws.com/payments/api", "2026.11.27-1a2b3c4", 143),
    ("111122223333.dkr.ecr.us-east-1.amazonaws.com/payments/worker", "2026.11.27-1a2b3c4", 151),
    ("111122223333.dkr.ecr.us-east-1.amazonaws.com/catalog/web", "2026.11.20-9f8e7d6", 118),
    ("111122223333.dkr.ecr.us-east-1.amazonaws.com/catalog/indexer", "2026.11.20-9f8e7d6", 207),
    ("111122223333.dkr.ecr.us-east-1.amazonaws.com/platform/envoy", "v1.32.2", 63),
)
_CAPACITY = {  # instance type: (vCPU, memory KiB, max pods)
    "t3.medium": (2, 3_943_380, 17), "m5.large": (2, 7_834_204, 29), "m5.xlarge": (4, 15_896_152, 58),
    "c5.4xlarge": (16, 31_880_300, 234), "m5.24xlarge": (96, 392_936_284, 737),
}


def _digest(seed: str) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()


def _managed(manager: str, operation: str, time: str, fields: dict[str, Any], sub: str | None = None
             ) -> dict[str, Any]:
    entry: dict[str, Any] = {"manager": manager, "operation": operation, "apiVersion": "v1", "time": time,
                             "fieldsType": "FieldsV1", "fieldsV1": fields}
    if sub:
        entry["subresource"] = sub
    return entry


def node_object(name: str, ip: str, zone: str, instance_type: str, created: str, now: str) -> dict[str, Any]:
    """A Node as ``GET /api/v1/nodes`` lists it on EKS: labels, annotations, managedFields, spec and a full
    status (conditions, addresses, capacity, images, nodeInfo): about 10 KB of JSON, as real nodes are."""
    region = zone[:-1]
    instance = f"i-{_digest(name)[:17]}"
    cpu, memory, pods = _CAPACITY.get(instance_type, (2, 7_834_204, 29))
    labels = {
        "beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/instance-type": instance_type,
        "beta.kubernetes.io/os": "linux", "eks.amazonaws.com/capacityType": "ON_DEMAND",
        "eks.amazonaws.com/nodegroup": f"ng-{instance_type.replace('.', '-')}",
        "eks.amazonaws.com/nodegroup-image": f"ami-{_digest(instance_type)[:17]}",
        "eks.amazonaws.com/sourceLaunchTemplateId": f"lt-{_digest(zone)[:17]}",
        "eks.amazonaws.com/sourceLaunchTemplateVersion": "3",
        "failure-domain.beta.kubernetes.io/region": region, "failure-domain.beta.kubernetes.io/zone": zone,
        "k8s.io/cloud-provider-aws": _digest(region)[:32], "kubernetes.io/arch": "amd64",
        "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", INSTANCE_TYPE_LABEL: instance_type,
        "topology.ebs.csi.aws.com/zone": zone, "topology.k8s.aws/zone-id": f"use1-az{ord(zone[-1]) - 96}",
        "topology.kubernetes.io/region": region, ZONE_LABEL: zone,
    }
    annotations = {
        "alpha.kubernetes.io/provided-node-ip": ip,
        "csi.volume.kubernetes.io/nodeid": json.dumps({"ebs.csi.aws.com": instance}, separators=(",", ":")),
        "node.alpha.kubernetes.io/ttl": "0", "volumes.kubernetes.io/controller-managed-attach-detach": "true",
    }
    condition_types = ("MemoryPressure", "DiskPressure", "PIDPressure", "Ready")
    conditions = [
        {"type": kind, "status": "False", "lastHeartbeatTime": now, "lastTransitionTime": created,
         "reason": f"KubeletHasNo{kind}", "message": f"kubelet has no {kind.lower()}"}
        for kind in condition_types[:-1]
    ] + [{"type": "Ready", "status": "True", "lastHeartbeatTime": now, "lastTransitionTime": created,
          "reason": "KubeletReady", "message": "kubelet is posting ready status"}]
    images = [
        {"names": [f"{repo}@sha256:{_digest(repo + tag)}", f"{repo}:{tag}"], "sizeBytes": mb << 20}
        for repo, tag, mb in _IMAGES
    ]
    fields: dict[str, Any] = {f"f:{key}": {} for key in labels}
    managed = [
        _managed("kubelet", "Update", created, {
            "f:metadata": {"f:annotations": {".": {}, **{f"f:{k}": {} for k in annotations}},
                           "f:labels": {".": {}, **fields}},
            "f:spec": {"f:providerID": {}}}),
        _managed("kube-controller-manager", "Update", created, {
            "f:metadata": {"f:annotations": {"f:node.alpha.kubernetes.io/ttl": {}}}}),
        _managed("aws-cloud-controller-manager", "Update", created, {
            "f:metadata": {"f:labels": {"f:k8s.io/cloud-provider-aws": {},
                                        "f:topology.k8s.aws/zone-id": {}}}}),
        _managed("kubelet", "Update", now, {
            "f:status": {"f:allocatable": {f"f:{k}": {} for k in ("cpu", "memory", "pods")},
                         "f:conditions": {f'k:{{"type":"{kind}"}}': {
                             ".": {}, "f:lastHeartbeatTime": {}, "f:lastTransitionTime": {}, "f:message": {},
                             "f:reason": {}, "f:status": {}, "f:type": {}} for kind in condition_types},
                         "f:images": {}, "f:nodeInfo": {"f:bootID": {}, "f:kubeletVersion": {}}}}, "status"),
    ]
    resources = {"cpu": str(cpu), "ephemeral-storage": "83873772Ki", "hugepages-1Gi": "0",
                 "hugepages-2Mi": "0", "memory": f"{memory}Ki", "pods": str(pods)}
    return {
        "metadata": {
            "name": name, "uid": str(uuid.UUID(_digest("uid" + name)[:32])),
            "resourceVersion": str(int(_digest(now + name)[:6], 16)), "creationTimestamp": created,
            "labels": labels, "annotations": annotations, "managedFields": managed,
        },
        "spec": {"providerID": f"aws:///{zone}/{instance}"},
        "status": {
            "capacity": resources,
            "allocatable": {**resources, "cpu": f"{cpu * 1000 - 70}m", "memory": f"{memory - 560_000}Ki"},
            "conditions": conditions,
            "addresses": [
                {"type": "InternalIP", "address": ip}, {"type": "InternalDNS", "address": name},
                {"type": "Hostname", "address": name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": _digest("machine" + name)[:32], "systemUUID": f"ec2{_digest('sys' + name)[:29]}",
                "bootID": str(uuid.UUID(_digest("boot" + name)[:32])),
                "kernelVersion": "6.1.119-129.201.amzn2023.x86_64",
                "osImage": "Amazon Linux 2023.6.20241212", "containerRuntimeVersion": "containerd://1.7.23",
                "kubeletVersion": "v1.31.3-eks-59bf375", "kubeProxyVersion": "v1.31.3-eks-59bf375",
                "operatingSystem": "linux", "architecture": "amd64",
            },
            "images": images,
        },
    }


METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"


def list_media(accept: str) -> str | None:
    """What the API server answers a list request's ``Accept`` with: ``METADATA_LIST`` (metadata only),
    ``application/json`` (whole objects), or None (406: nothing acceptable), first acceptable range first."""
    for media_range in (accept or "application/json").split(","):
        kind, *parameters = (part.strip() for part in media_range.split(";"))
        params = dict(p.partition("=")[::2] for p in parameters if p and not p.startswith("q="))
        if kind == "application/json" and params == {"as": "PartialObjectMetadataList", "g": "meta.k8s.io",
                                                       "v": "v1"}:
            return METADATA_LIST
        if kind in ("application/json", "application/*", "*/*") and not params:
            return "application/json"
    return None


def partial_metadata(node: dict[str, Any]) -> dict[str, Any]:
    """The ``PartialObjectMetadata`` of an object: all of its metadata (managedFields too), nothing else."""
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": node["metadata"]}
