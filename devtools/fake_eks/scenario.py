"""Scenario format: what clusters exist, their nodes, faults, identities and RBAC (see SCENARIOS.md)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FAULT_KINDS = frozenset(
    {
        "latency",
        "hang",
        "port_blocked",
        "throttle_429",
        "error_500",
        "reset",
        "truncated",
        "garbage",
        "huge",
        "slow_drip",
        "invalid_utf8",
        "html_error",
        "pending",
        "not_ready",
    }
)
# Faults whose scrape still counts as a successful serve (the payload is served whole).
SERVING_FAULTS = frozenset({"latency", "not_ready"})
SHAPES = frozenset({"modern", "old"})
# Found from this file (not importlib.resources): under pytest, tests/fake_eks can shadow the package name.
SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"
DEFAULT_ACCOUNT = "111122223333"
DEFAULT_ACCESS_KEY = "AKIAFAKEEKS000000001"
DEFAULT_SECRET = "fake-eks-secret-access-key-0000000000001"
DEFAULT_IDENTITY = f"arn:aws:iam::{DEFAULT_ACCOUNT}:user/cni-metrics-dev"
DEFAULT_GROUP = "cni-metrics"
DEFAULT_RULES: list[dict[str, Any]] = [
    {"verbs": ["list"], "resources": ["pods"], "namespaces": ["kube-system"]},
    {"verbs": ["get"], "resources": ["pods/proxy"], "namespaces": ["kube-system"]},
    {"verbs": ["list"], "resources": ["nodes", "eniconfigs"], "namespaces": ["*"]},  # cluster-scoped
]


# instance type -> (ENIs, IPv4 addresses per ENI), from the EC2 limits the VPC CNI uses.
INSTANCE_TYPES: dict[str, tuple[int, int]] = {
    "t3.medium": (3, 6),
    "m5.large": (3, 10),
    "m5.xlarge": (4, 15),
    "m5.2xlarge": (4, 15),
    "c5.4xlarge": (8, 30),
    "m5.24xlarge": (15, 50),
}


class ScenarioError(ValueError):
    """The scenario document is invalid."""


@dataclass(frozen=True)
class FaultSpec:
    """One fault kind: which nodes (fraction and/or explicit initial-node indices) and its parameters."""

    kind: str
    fraction: float = 0.0
    nodes: tuple[int, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RbacRule:
    """verbs on resources in namespaces (``*`` matches anything)."""

    verbs: frozenset[str]
    resources: frozenset[str]
    namespaces: frozenset[str]

    def allows(self, verb: str, resource: str, namespace: str) -> bool:
        """Whether this rule grants the request."""
        return (
            (verb in self.verbs or "*" in self.verbs)
            and (resource in self.resources or "*" in self.resources)
            and (namespace in self.namespaces or "*" in self.namespaces)
        )


@dataclass(frozen=True)
class Churn:
    """Per-advance-step probabilities per node: aws-node restart, node leaving, node joining."""

    restart: float = 0.05
    leave: float = 0.02
    join: float = 0.02


@dataclass(frozen=True)
class ClusterSpec:
    """One cluster of a scenario."""

    name: str
    nodes: int
    version: str
    tags: dict[str, str]
    instance_types: dict[str, float]
    prefix_delegation: float
    cni_shapes: dict[str, float]
    faults: tuple[FaultSpec, ...]
    latency_ms: float
    jitter_ms: float
    token_max_age_s: float
    churn: Churn
    list_throttle: dict[str, Any] | None
    identities: dict[str, tuple[str, ...]]
    groups: dict[str, tuple[RbacRule, ...]]
    system_pods: bool
    zones: tuple[str, ...] = ()
    network: dict[str, Any] | None = None
    drain: float = 0.0


@dataclass(frozen=True)
class Scenario:
    """A whole scenario."""

    name: str
    region: str
    account: str
    seed: int
    access_key_id: str
    secret_access_key: str
    identity_arn: str
    clusters: tuple[ClusterSpec, ...]


def _weights(value: Any, what: str, allowed: frozenset[str] | None = None) -> dict[str, float]:
    if isinstance(value, str):
        value = {value: 1.0}
    if not isinstance(value, dict) or not value:
        raise ScenarioError(f"{what}: expected a non-empty object of weights")
    out = {str(k): float(v) for k, v in value.items()}
    if allowed is not None and not set(out) <= allowed:
        raise ScenarioError(f"{what}: unknown {sorted(set(out) - allowed)}, allowed {sorted(allowed)}")
    if any(v < 0 for v in out.values()) or sum(out.values()) <= 0:
        raise ScenarioError(f"{what}: weights must be >= 0 with a positive sum")
    return out


def _faults(raw: Any, cluster: str) -> tuple[FaultSpec, ...]:
    if not isinstance(raw, dict):
        raise ScenarioError(f"cluster {cluster}: faults must be an object kind -> spec")
    out = []
    for kind, spec in raw.items():
        if kind not in FAULT_KINDS:
            raise ScenarioError(f"cluster {cluster}: unknown fault {kind!r}, known {sorted(FAULT_KINDS)}")
        if isinstance(spec, bool) or not isinstance(spec, int | float | list | dict):
            raise ScenarioError(f"cluster {cluster}: fault {kind}: fraction, node list or object expected")
        if isinstance(spec, int | float):
            out.append(FaultSpec(kind, fraction=float(spec)))
        elif isinstance(spec, list):
            out.append(FaultSpec(kind, nodes=tuple(int(i) for i in spec)))
        else:
            params = {k: v for k, v in spec.items() if k not in ("fraction", "nodes")}
            out.append(
                FaultSpec(
                    kind,
                    fraction=float(spec.get("fraction", 0.0)),
                    nodes=tuple(int(i) for i in spec.get("nodes", ())),
                    params=params,
                )
            )
    return tuple(out)


def _groups(raw: Any) -> dict[str, tuple[RbacRule, ...]]:
    out: dict[str, tuple[RbacRule, ...]] = {}
    for group, rules in raw.items():
        if group.startswith(("system:", "eks:", "aws:", "amazon:", "iam:")):
            raise ScenarioError(f"group name {group!r} uses a reserved prefix")
        out[group] = tuple(
            RbacRule(
                verbs=frozenset(r["verbs"]),
                resources=frozenset(r["resources"]),
                namespaces=frozenset(r.get("namespaces", ["*"])),
            )
            for r in rules
        )
    return out


def _identities(raw: Any) -> dict[str, tuple[str, ...]]:
    return {str(arn).lower(): tuple(groups) for arn, groups in raw.items()}


def parse_scenario(doc: dict[str, Any]) -> Scenario:
    """Validate a scenario document and fill in defaults."""
    try:
        identity = str(doc.get("identity_arn", DEFAULT_IDENTITY))
        identities = _identities(doc.get("identities", {identity: [DEFAULT_GROUP]}))
        groups = _groups(doc.get("groups", {DEFAULT_GROUP: DEFAULT_RULES}))
        clusters = []
        region = str(doc.get("region", "us-east-1"))
        for c in doc["clusters"]:
            name = str(c["name"])
            churn_raw = {**doc.get("churn", {}), **c.get("churn", {})}
            clusters.append(
                ClusterSpec(
                    name=name,
                    nodes=int(c.get("nodes", 3)),
                    version=str(c.get("version", "1.31")),
                    tags={str(k): str(v) for k, v in c.get("tags", {}).items()},
                    instance_types=_weights(
                        c.get("instance_types", {"m5.large": 1}), f"{name}.instance_types"
                    ),
                    prefix_delegation=float(c.get("prefix_delegation", 0.0)),
                    cni_shapes=_weights(c.get("cni_shapes", {"modern": 1}), f"{name}.cni_shapes", SHAPES),
                    faults=_faults(c.get("faults", {}), name),
                    latency_ms=float(c.get("latency_ms", doc.get("latency_ms", 0.0))),
                    jitter_ms=float(c.get("jitter_ms", doc.get("jitter_ms", 0.0))),
                    token_max_age_s=float(
                        c.get("token_max_age_seconds", doc.get("token_max_age_seconds", 900))
                    ),
                    churn=Churn(**{k: float(v) for k, v in churn_raw.items()}),
                    list_throttle=c.get("list_throttle"),
                    identities=_identities(c["identities"]) if "identities" in c else identities,
                    groups=_groups(c["groups"]) if "groups" in c else groups,
                    system_pods=bool(c.get("system_pods", True)),
                    zones=tuple(str(z) for z in c.get("zones", [f"{region}{x}" for x in "abc"])),
                    network=dict(c["network"]) if "network" in c else None,
                    drain=float(c.get("drain", 0.0)),
                )
            )
        if len({c.name for c in clusters}) != len(clusters) or not clusters:
            raise ScenarioError("cluster names must be unique and at least one cluster is needed")
        for cl in clusters:
            if not cl.zones:
                raise ScenarioError(f"{cl.name}: zones must not be empty")
            unknown = set(cl.instance_types) - set(INSTANCE_TYPES)
            if unknown:
                raise ScenarioError(f"{cl.name}: unknown instance types {sorted(unknown)}")
        return Scenario(
            name=str(doc.get("name", "custom")),
            region=str(doc.get("region", "us-east-1")),
            account=str(doc.get("account", DEFAULT_ACCOUNT)),
            seed=int(doc.get("seed", 1)),
            access_key_id=str(doc.get("access_key_id", DEFAULT_ACCESS_KEY)),
            secret_access_key=str(doc.get("secret_access_key", DEFAULT_SECRET)),
            identity_arn=identity,
            clusters=tuple(clusters),
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise ScenarioError(f"invalid scenario: {exc!r}") from exc


def shipped_scenarios() -> list[str]:
    """Names of the scenarios shipped with the package."""
    folder = SCENARIO_DIR
    return sorted(p.name.removesuffix(".json") for p in folder.iterdir() if p.name.endswith(".json"))


def load_scenario(scenario: str | dict[str, Any], *, seed: int | None = None) -> Scenario:
    """A shipped scenario name, a path to a JSON file, or a document; ``seed`` overrides the scenario's."""
    if isinstance(scenario, dict):
        doc = dict(scenario)
    elif scenario in shipped_scenarios():
        doc = json.loads((SCENARIO_DIR / f"{scenario}.json").read_text())
    elif Path(scenario).is_file():
        doc = json.loads(Path(scenario).read_text())
    else:
        raise ScenarioError(f"no scenario {scenario!r}: not shipped ({shipped_scenarios()}) and not a file")
    if seed is not None:
        doc["seed"] = seed
    return parse_scenario(doc)
