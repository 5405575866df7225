"""The cluster's network as the Kubernetes and EKS APIs show it: Node objects (zone and instance-type
labels), ENIConfig objects (custom networking) and the cluster subnets DescribeCluster returns.

Subnet IDs come from outside (``network.py`` creates the subnets in moto and posts their IDs to the
truth API); until then DescribeCluster answers with made-up IDs and there is no ENIConfig.
"""

from __future__ import annotations

import hashlib
import json
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


def node_object(name: str, ip: str, zone: str, instance_type: str, created: str) -> dict[str, Any]:
    """A Node as ``GET /api/v1/nodes`` lists it (the labels and addresses that matter here)."""
    return {
        "metadata": {
            "name": name,
            "uid": f"node-{ip}",
            "creationTimestamp": created,
            "labels": {
                ZONE_LABEL: zone,
                "failure-domain.beta.kubernetes.io/zone": zone,
                INSTANCE_TYPE_LABEL: instance_type,
                "beta.kubernetes.io/instance-type": instance_type,
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
            },
        },
        "spec": {"providerID": f"aws:///{zone}/i-{hashlib.sha256(name.encode()).hexdigest()[:17]}"},
        "status": {"addresses": [{"type": "InternalIP", "address": ip}]},
    }
