"""Clusters in motion: aws-node pods on nodes, their faults, advance steps, and the truth record."""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from fake_eks.nodes import ClusterNetwork
from fake_eks.payload import NodeState
from fake_eks.scenario import FAULT_KINDS, SERVING_FAULTS, ClusterSpec, FaultSpec, Scenario

_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"


def rfc3339(epoch: float) -> str:
    """Kubernetes timestamp (whole seconds, UTC)."""
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _pick(rng: random.Random, weights: dict[str, float]) -> str:
    keys = sorted(weights)
    return rng.choices(keys, weights=[weights[k] for k in keys])[0]


@dataclass
class AwsNodePod:
    """One node and its aws-node pod."""

    name: str
    uid: str
    node_name: str
    node_ip: str
    created: float
    state: NodeState
    fault: FaultSpec | None
    restart_count: int = 0
    container_started: float = 0.0
    scrapes: int = 0
    attempts: int = 0
    served: dict[str, Any] | None = None
    served_increments: dict[str, float] = field(default_factory=dict)
    zone: str = ""
    drain: float = 0.0
    _json: bytes | None = None
    _pending: tuple[dict[str, Any], dict[str, float]] | None = None

    @property
    def phase(self) -> str:
        """Pod phase."""
        return "Pending" if self.fault is not None and self.fault.kind == "pending" else "Running"

    @property
    def ready(self) -> bool:
        """Ready condition."""
        return self.phase == "Running" and not (self.fault is not None and self.fault.kind == "not_ready")

    @property
    def serves(self) -> bool:
        """Whether a scrape of this pod is a successful serve."""
        return self.fault is None or self.fault.kind in SERVING_FAULTS

    def serve(self) -> bytes:
        """Move one step and render; the truth is recorded by ``record`` once the body was sent.

        A draining node keeps its assigned IPs on a scrape: they only grow when time advances.
        """
        assigned = self.state.assigned
        self.state.step()
        if self.drain:
            self.state.assigned = assigned
        body, served = self.state.render()
        self._pending = (served, dict(self.state.increments))
        return body

    def record(self) -> None:
        """The last rendered payload was sent whole."""
        if self._pending is not None:
            self.served, self.served_increments = self._pending
            self._pending = None
            self.scrapes += 1

    def pod_json(self, cluster_uid: str) -> bytes:
        """The Pod object as the API server lists it (cached until the pod changes)."""
        if self._json is None:
            self._json = json.dumps(self._pod_dict(cluster_uid), separators=(",", ":")).encode()
        return self._json

    def invalidate(self) -> None:
        """Forget the cached Pod object."""
        self._json = None

    def _pod_dict(self, ds_uid: str) -> dict[str, Any]:
        running = self.phase == "Running"
        image = "602401143452.dkr.ecr.us-west-2.amazonaws.com/amazon-k8s-cni:v1.23.1"
        if self.state.shape == "old":
            image = image.replace("v1.23.1", "v1.5.3")
        status: dict[str, Any] = {
            "phase": self.phase,
            "qosClass": "Burstable",
            "conditions": [
                {
                    "type": t,
                    "status": "True" if (t != "Ready" and t != "ContainersReady") or self.ready else "False",
                    "lastProbeTime": None,
                    "lastTransitionTime": rfc3339(self.container_started),
                }
                for t in (
                    ("PodScheduled",)
                    if not running
                    else ("Initialized", "Ready", "ContainersReady", "PodScheduled")
                )
            ],
        }
        if running:
            status.update(
                hostIP=self.node_ip,
                hostIPs=[{"ip": self.node_ip}],
                podIP=self.node_ip,
                podIPs=[{"ip": self.node_ip}],
                startTime=rfc3339(self.created),
                containerStatuses=[
                    {
                        "name": "aws-node",
                        "image": image,
                        "imageID": image + "@sha256:" + "0" * 64,
                        "containerID": "containerd://" + self.uid.replace("-", "") * 2,
                        "ready": self.ready,
                        "started": True,
                        "restartCount": self.restart_count,
                        "state": {"running": {"startedAt": rfc3339(self.container_started)}},
                        "lastState": {
                            "terminated": {
                                "exitCode": 137,
                                "reason": "Error",
                                "startedAt": rfc3339(self.created),
                                "finishedAt": rfc3339(self.container_started),
                            }
                        }
                        if self.restart_count
                        else {},
                    }
                ],
            )
        return {
            "metadata": {
                "name": self.name,
                "generateName": "aws-node-",
                "namespace": "kube-system",
                "uid": self.uid,
                "resourceVersion": str(int(self.uid[:6], 16) + self.restart_count),
                "creationTimestamp": rfc3339(self.created),
                "labels": {
                    "app.kubernetes.io/instance": "aws-vpc-cni",
                    "app.kubernetes.io/name": "aws-node",
                    "controller-revision-hash": "6b9d7c9f5d",
                    "k8s-app": "aws-node",
                    "pod-template-generation": "1",
                },
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "DaemonSet",
                        "name": "aws-node",
                        "uid": ds_uid,
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": {
                "nodeName": self.node_name,
                "hostNetwork": True,
                "serviceAccountName": "aws-node",
                "priorityClassName": "system-node-critical",
                "restartPolicy": "Always",
                "containers": [
                    {
                        "name": "aws-node",
                        "image": image,
                        "ports": [
                            {"containerPort": 61678, "hostPort": 61678, "name": "metrics", "protocol": "TCP"}
                        ],
                    }
                ],
            },
            "status": status,
        }


def _system_pod(app: str, name: str, node_name: str, node_ip: str, created: float, uid: str) -> bytes:
    pod = {
        "metadata": {
            "name": name,
            "namespace": "kube-system",
            "uid": uid,
            "resourceVersion": "1",
            "creationTimestamp": rfc3339(created),
            "labels": {"k8s-app": app},
        },
        "spec": {
            "nodeName": node_name,
            "hostNetwork": app == "kube-proxy",
            "containers": [{"name": app, "image": f"registry.k8s.io/{app}:v1.31.0"}],
        },
        "status": {
            "phase": "Running",
            "hostIP": node_ip,
            "podIP": node_ip,
            "startTime": rfc3339(created),
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [
                {
                    "name": app,
                    "image": app,
                    "imageID": app,
                    "ready": True,
                    "restartCount": 0,
                    "state": {"running": {}},
                }
            ],
        },
    }
    return json.dumps(pod, separators=(",", ":")).encode()


class ClusterSim:
    """One simulated cluster, deterministic from its seed."""

    def __init__(self, spec: ClusterSpec, scenario: Scenario, index: int) -> None:
        self.spec = spec
        self.index = index
        self.region = spec.region
        self.rng = random.Random(f"{scenario.seed}/{spec.name}")
        self.uid = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        self.created = time.time() - 86400 * 30
        self.resource_version = self.rng.randint(100_000, 900_000)
        self.pods: dict[str, AwsNodePod] = {}
        self.system: dict[str, bytes] = {}
        self.list_requests = 0
        self.network = ClusterNetwork(spec)
        self._listing: tuple[int, list[tuple[str, dict[str, str], str, str, bytes | AwsNodePod]]] = (-1, [])
        self._serial = 0
        explicit: dict[int, FaultSpec] = {}
        for f in spec.faults:
            for i in f.nodes:
                explicit.setdefault(i, f)
        now = time.time()
        for i in range(spec.nodes):
            fault = explicit.get(i) or self._draw_fault()
            self._join(now - self.rng.uniform(3600, 86400 * 20), fault, age_steps=self.rng.randint(5, 40))
        for i in range(2 if spec.system_pods and self.pods else 0):
            pod = next(iter(self.pods.values()))
            name = f"coredns-5d78c9869d-{self._suffix()}"
            self.system[name] = _system_pod(
                "kube-dns", name, pod.node_name, pod.node_ip, self.created + i, self._uid()
            )

    def _suffix(self) -> str:
        return "".join(self.rng.choice(_NAME_CHARS) for _ in range(5))

    def _uid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _draw_fault(self) -> FaultSpec | None:
        for f in self.spec.faults:
            if f.fraction and self.rng.random() < f.fraction:
                return f
        return None

    def _join(self, created: float, fault: FaultSpec | None, age_steps: int) -> AwsNodePod:
        self._serial += 1
        n = self._serial
        ip = f"10.{(self.index * 16 + (n >> 16)) % 256}.{(n >> 8) & 255}.{n & 255}"
        domain = "ec2.internal" if self.region == "us-east-1" else f"{self.region}.compute.internal"
        node_name = f"ip-{ip.replace('.', '-')}.{domain}"
        state = NodeState(
            rng=random.Random(self.rng.getrandbits(64)),
            index=n & 255,
            subnet=(self.index * 256 + (n >> 8)),
            instance_type=_pick(self.rng, self.spec.instance_types),
            prefix_delegation=self.rng.random() < self.spec.prefix_delegation,
            shape=_pick(self.rng, self.spec.cni_shapes),
        )
        state.age(age_steps)
        if self.spec.drain:
            state.assigned = 0  # a draining cluster starts empty and fills at a known rate
        name = f"aws-node-{self._suffix()}"
        while name in self.pods:
            name = f"aws-node-{self._suffix()}"
        pod = AwsNodePod(
            name=name,
            uid=self._uid(),
            node_name=node_name,
            node_ip=ip,
            created=created,
            container_started=created,
            state=state,
            fault=fault,
            zone=self.spec.zones[(n - 1) % len(self.spec.zones)],
            drain=self.spec.drain,
        )
        self.pods[name] = pod
        if self.spec.system_pods:
            proxy = f"kube-proxy-{self._suffix()}"
            self.system[proxy] = _system_pod("kube-proxy", proxy, node_name, ip, created, self._uid())
        return pod

    def advance(self, steps: int) -> dict[str, list[str]]:
        """Time moves on: aws-node restarts, nodes leave, nodes join (startTime = now, rounded up)."""
        events: dict[str, list[str]] = {"restarted": [], "left": [], "joined": []}
        churn = self.spec.churn
        for _ in range(steps):
            now = time.time()
            for pod in list(self.pods.values()):
                if pod.drain:
                    pod.state.assigned = int(min(pod.state.ip_max, pod.state.assigned + pod.drain))
                r = self.rng.random()
                if r < churn.restart:
                    pod.state.restart()
                    pod.restart_count += 1
                    pod.container_started = now
                    pod.invalidate()
                    events["restarted"].append(pod.name)
                elif r < churn.restart + churn.leave:
                    del self.pods[pod.name]
                    for k in [
                        k
                        for k, v in self.system.items()
                        if pod.node_name.encode() in v and k.startswith("kube-proxy")
                    ]:
                        del self.system[k]
                    events["left"].append(pod.name)
            for _ in range(self.spec.nodes):
                if self.rng.random() < churn.join:
                    pod = self._join(float(math.ceil(now)), self._draw_fault(), age_steps=0)
                    events["joined"].append(pod.name)
            self.resource_version += 1
        return events

    def set_fault(self, pod_name: str, kind: str | None, params: dict[str, Any]) -> None:
        """Give a pod another fault (or none); a change of its Pod object bumps the resourceVersion."""
        if kind is not None and kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}")
        pod = self.pods[pod_name]
        before = (pod.phase, pod.ready)
        pod.fault = FaultSpec(kind, params=params) if kind is not None else None
        if (pod.phase, pod.ready) != before:
            pod.invalidate()
            self.resource_version += 1

    # -- the Kubernetes view --------------------------------------------------------------------
    @property
    def aws_node_pods(self) -> dict[str, AwsNodePod]:
        """The aws-node pods the API server shows: none in Auto Mode (``pods`` are then its nodes only)."""
        return {} if self.spec.auto_mode else self.pods

    def warm(self) -> None:
        """Build the pod listing and every Pod object now, as an API server's watch cache holds them."""
        for *_, obj in self.all_pods():
            if isinstance(obj, AwsNodePod):
                obj.pod_json(self.uid)

    def all_pods(self) -> list[tuple[str, dict[str, str], str, str, bytes | AwsNodePod]]:
        """(name, labels, phase, nodeName, object) of every kube-system pod by name (cached per RV)."""
        if self._listing[0] == self.resource_version:
            return self._listing[1]
        out: list[tuple[str, dict[str, str], str, str, bytes | AwsNodePod]] = []
        for name, pod in self.aws_node_pods.items():
            out.append(
                (
                    name,
                    {
                        "k8s-app": "aws-node",
                        "app.kubernetes.io/name": "aws-node",
                        "app.kubernetes.io/instance": "aws-vpc-cni",
                        "controller-revision-hash": "6b9d7c9f5d",
                        "pod-template-generation": "1",
                    },
                    pod.phase,
                    pod.node_name,
                    pod,
                )
            )
        for name, raw in self.system.items():
            app = "kube-proxy" if name.startswith("kube-proxy") else "kube-dns"
            out.append((name, {"k8s-app": app}, "Running", "", raw))
        out.sort(key=lambda t: t[0])
        self._listing = (self.resource_version, out)
        return out

    def continue_token(self, last_name: str) -> str:
        """A continue token like the API server's (resource version + start key)."""
        doc = {"v": "meta.k8s.io/v1", "rv": self.resource_version, "start": f"{last_name}\u0000"}
        return base64.urlsafe_b64encode(json.dumps(doc, separators=(",", ":")).encode()).decode().rstrip("=")

    # -- truth ----------------------------------------------------------------------------------
    def truth(self) -> dict[str, Any]:
        """What every current aws-node pod last served, its increments, and cluster sums."""
        pods = []
        gauges: dict[str, float] = {}
        counters: dict[str, float] = {}
        for pod in sorted(self.aws_node_pods.values(), key=lambda p: p.name):
            served = pod.served
            pods.append(
                {
                    "name": pod.name,
                    "uid": pod.uid,
                    "node": pod.node_name,
                    "phase": pod.phase,
                    "ready": pod.ready,
                    "restartCount": pod.restart_count,
                    "fault": pod.fault.kind if pod.fault else None,
                    "scrapes": pod.scrapes,
                    "attempts": pod.attempts,
                    "served": served,
                    "increments": dict(pod.served_increments),
                    "startTime": rfc3339(pod.created),
                    "shape": pod.state.shape,
                    "instanceType": pod.state.instance_type,
                    "prefixDelegation": pod.state.prefix_delegation,
                    "zone": pod.zone,
                    "pool": {
                        "assigned": pod.state.assigned, "held": pod.state.total, "max": pod.state.ip_max
                    },
                }
            )
            if served is not None:
                for fam, v in served["gauges"].items():
                    gauges[fam] = gauges.get(fam, 0.0) + v
                for fam, v in served["counters"].items():
                    counters[fam] = counters.get(fam, 0.0) + v
        return {
            "cluster": self.spec.name,
            "account": self.spec.account,
            "region": self.spec.region,
            "autoMode": self.spec.auto_mode,
            "unreachable": self.spec.unreachable,
            "network": self.network.truth(),
            "resourceVersion": str(self.resource_version),
            "pods": pods,
            "sums": {"gauges": gauges, "counters": counters},
        }
