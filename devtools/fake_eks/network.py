"""The stand-in's network in moto: a VPC, subnets per zone and ENIs whose addresses follow the nodes.

``MotoNetwork(eks, ec2).provision(cluster)`` creates, from the cluster's ``network`` settings (scenario,
see SCENARIOS.md): a VPC, one cluster subnet per zone and, with ``custom_networking``, one pod subnet per
zone named by an ENIConfig; then tells the stand-in (DescribeCluster's ``subnetIds``, the ENIConfigs).
``sync(cluster)`` makes moto's addresses follow the nodes: per node one ENI in its zone's cluster subnet
(the node's primary address) and its held IPs as secondary addresses, on that ENI or, with custom
networking, on an ENI in the zone's pod subnet. A subnet never goes below 0 free addresses (EC2 refuses
with InsufficientFreeAddressesInSubnet): the held IPs that do not fit are left out.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Protocol

DEFAULTS: dict[str, Any] = {
    "cidr": "10.0.0.0/16", "subnet_prefix": 20, "custom_networking": False, "pod_subnet_prefix": 20,
}


class StandIn(Protocol):
    """What this module needs of ``fake_eks.testing.RunningFakeEks``."""

    def truth(self, cluster: str) -> dict[str, Any]:
        """The cluster's truth."""
        ...

    def attach_network(self, cluster: str, doc: dict[str, Any]) -> dict[str, Any]:
        """POST the subnet IDs and ENIConfigs."""
        ...


@dataclass
class _Eni:
    eni_id: str
    subnet_id: str
    secondary: list[str] = field(default_factory=list)


@dataclass
class _Cluster:
    cluster_subnets: dict[str, str]  # zone -> subnet id
    pod_subnets: dict[str, str]
    primaries: dict[str, _Eni] = field(default_factory=dict)  # node -> ENI
    pods: dict[str, _Eni] = field(default_factory=dict)  # node -> ENI holding its pod IPs


class MotoNetwork:
    """Subnets and ENIs in moto (through an EC2 client) for clusters of a running stand-in."""

    def __init__(self, eks: StandIn, ec2: Any) -> None:
        self.eks = eks
        self.ec2 = ec2
        self.clusters: dict[str, _Cluster] = {}

    def provision(self, cluster: str) -> dict[str, Any]:
        """Create the cluster's VPC and subnets, attach them to the stand-in, then ``sync``."""
        network = self.eks.truth(cluster)["network"]
        spec = {**DEFAULTS, **network["spec"]}
        zones: list[str] = network["zones"]
        vpc = self.ec2.create_vpc(CidrBlock=spec["cidr"])["Vpc"]["VpcId"]
        self.ec2.create_tags(Resources=[vpc], Tags=[{"Key": "Name", "Value": f"{cluster}-vpc"}])
        blocks = iter(ipaddress.ip_network(spec["cidr"]).subnets(new_prefix=int(spec["subnet_prefix"])))
        own = {zone: self._subnet(vpc, str(next(blocks)), zone) for zone in zones}
        pods: dict[str, str] = {}
        if spec["custom_networking"]:
            rest = ipaddress.ip_network(spec["cidr"]).subnets(new_prefix=int(spec["pod_subnet_prefix"]))
            used = [ipaddress.ip_network(self._cidr(s)) for s in own.values()]
            free = (b for b in rest if not any(b.overlaps(u) for u in used))
            pods = {zone: self._subnet(vpc, str(next(free)), zone) for zone in zones}
        self.clusters[cluster] = _Cluster(own, pods)
        attached = self.eks.attach_network(cluster, {"subnetIds": sorted(own.values()), "eniconfigs": pods})
        self.sync(cluster)
        return attached

    def _subnet(self, vpc: str, cidr: str, zone: str) -> str:
        subnet_id: str = self.ec2.create_subnet(VpcId=vpc, CidrBlock=cidr, AvailabilityZone=zone)["Subnet"][
            "SubnetId"
        ]
        return subnet_id

    def _cidr(self, subnet_id: str) -> str:
        cidr: str = self.ec2.describe_subnets(SubnetIds=[subnet_id])["Subnets"][0]["CidrBlock"]
        return cidr

    def available(self, subnet_id: str) -> int:
        """moto's AvailableIpAddressCount of a subnet."""
        count: int = self.ec2.describe_subnets(SubnetIds=[subnet_id])["Subnets"][0]["AvailableIpAddressCount"]
        return count

    def sync(self, cluster: str) -> None:
        """Per node: its primary ENI, and as many secondary addresses as IPs it holds now."""
        state = self.clusters[cluster]
        pods = self.eks.truth(cluster)["pods"]
        nodes = {pod["node"]: pod for pod in pods}
        for node in [n for n in state.primaries if n not in nodes]:
            gone = {state.primaries.pop(node).eni_id, state.pods.pop(node).eni_id}
            for eni_id in sorted(gone):
                self.ec2.delete_network_interface(NetworkInterfaceId=eni_id)
        for node, pod in sorted(nodes.items()):
            zone = pod["zone"]
            primary = state.primaries.get(node)
            if primary is None:
                primary = state.primaries[node] = self._eni(state.cluster_subnets[zone], node)
            target = state.pods.get(node)
            if target is None:
                subnet = state.pod_subnets.get(zone)
                target = state.pods[node] = self._eni(subnet, node) if subnet else primary
            self._hold(target, int(pod["pool"]["held"]))

    def _eni(self, subnet_id: str, node: str) -> _Eni:
        eni = self.ec2.create_network_interface(SubnetId=subnet_id, Description=f"aws-K8S {node}")
        return _Eni(eni["NetworkInterface"]["NetworkInterfaceId"], subnet_id)

    def _hold(self, eni: _Eni, wanted: int) -> None:
        if wanted > len(eni.secondary):
            add = min(wanted - len(eni.secondary), max(0, self.available(eni.subnet_id)))
            if add:
                self.ec2.assign_private_ip_addresses(
                    NetworkInterfaceId=eni.eni_id, SecondaryPrivateIpAddressCount=add
                )
                described = self.ec2.describe_network_interfaces(NetworkInterfaceIds=[eni.eni_id])
                addresses = described["NetworkInterfaces"][0]["PrivateIpAddresses"]
                eni.secondary = [a["PrivateIpAddress"] for a in addresses if not a.get("Primary")]
        elif wanted < len(eni.secondary):
            drop, eni.secondary = eni.secondary[wanted:], eni.secondary[:wanted]
            self.ec2.unassign_private_ip_addresses(NetworkInterfaceId=eni.eni_id, PrivateIpAddresses=drop)
