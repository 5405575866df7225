"""Scenario format: what clusters exist, their nodes, faults, identities and RBAC (see SCENARIOS.md)."""

from __future__ import annotations

import json
import random
import re
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
_ACCOUNT_RE = re.compile(r"^\d{12}$")
_REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")
_ROLE_RE = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}):role/(?:.*/)?[^/]+$")
# Keys a generated cluster takes from its ``generate`` block as they are (see SCENARIOS.md).
_GENERATED_KEYS = frozenset({
    "version", "tags", "instance_types", "prefix_delegation", "cni_shapes", "faults", "latency_ms",
    "jitter_ms", "token_max_age_seconds", "churn", "list_throttle", "system_pods", "drain",
})
_GENERATE_KEYS = frozenset({"count", "name", "nodes", "accounts", "regions", "overrides"})
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
    account: str = DEFAULT_ACCOUNT
    region: str = "us-east-1"
    auto_mode: bool = False  # EKS Auto Mode: nodes, but no aws-node (nor kube-proxy, coredns) pods
    unreachable: bool = False  # DescribeCluster's endpoint is a loopback port nothing listens on


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
    roles: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """account -> the only role ARNs AssumeRole may assume in it (accounts not listed: any role)."""


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


def _accounts(raw: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(raw, dict):
        raise ScenarioError("accounts: expected an object account -> {roles, identities, groups}")
    for account, spec in raw.items():
        if not _ACCOUNT_RE.match(str(account)) or not isinstance(spec, dict):
            raise ScenarioError(f"accounts: {account!r} is not a 12-digit account with an object")
        for role in spec.get("roles", []):
            m = _ROLE_RE.match(str(role))
            if not m or m.group(1) != account:
                raise ScenarioError(f"accounts.{account}.roles: {role!r} is not a role ARN of that account")
    return {str(k): dict(v) for k, v in raw.items()}


def _generated(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The clusters of each ``generate`` block: nodes drawn from the seed, accounts and regions in turn."""
    out: list[dict[str, Any]] = []
    for g, block in enumerate(doc.get("generate", [])):
        rng = random.Random(f"{doc.get('seed', 1)}/generate/{g}")
        low, high = (int(n) for n in block.get("nodes", [3, 3]))
        accounts = [str(a) for a in block.get("accounts", [doc.get("account", DEFAULT_ACCOUNT)])]
        regions = [str(r) for r in block.get("regions", [doc.get("region", "us-east-1")])]
        overrides = dict(block.get("overrides", {}))
        unknown = set(block) - _GENERATED_KEYS - _GENERATE_KEYS
        if unknown:
            raise ScenarioError(f"generate[{g}]: unknown keys {sorted(unknown)}")
        for i in range(int(block["count"])):
            name = str(block.get("name", "cluster-{index:03d}")).format(index=i)
            cluster = {k: v for k, v in block.items() if k in _GENERATED_KEYS}
            cluster.update(name=name, nodes=rng.randint(low, high), account=accounts[i % len(accounts)],
                           region=regions[(i // len(accounts)) % len(regions)])
            cluster.update(overrides.pop(name, {}))
            out.append(cluster)
        if overrides:
            raise ScenarioError(f"generate[{g}].overrides: no generated cluster {sorted(overrides)}")
    return out


def parse_scenario(doc: dict[str, Any]) -> Scenario:
    """Validate a scenario document and fill in defaults."""
    try:
        identity = str(doc.get("identity_arn", DEFAULT_IDENTITY))
        identities = _identities(doc.get("identities", {identity: [DEFAULT_GROUP]}))
        groups = _groups(doc.get("groups", {DEFAULT_GROUP: DEFAULT_RULES}))
        accounts = _accounts(doc.get("accounts", {}))
        clusters = []
        default_account = str(doc.get("account", DEFAULT_ACCOUNT))
        default_region = str(doc.get("region", "us-east-1"))
        for c in [*doc.get("clusters", []), *_generated(doc)]:
            name = str(c["name"])
            account = str(c.get("account", default_account))
            region = str(c.get("region", default_region))
            if not _ACCOUNT_RE.match(account) or not _REGION_RE.match(region):
                raise ScenarioError(f"cluster {name}: account {account!r} or region {region!r} is invalid")
            # identity mappings and RBAC groups: the cluster's, else its account's, else the scenario's
            in_account = accounts.get(account, {})
            cluster_identities = c.get("identities", in_account.get("identities"))
            cluster_groups = c.get("groups", in_account.get("groups"))
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
                    identities=identities if cluster_identities is None else _identities(cluster_identities),
                    groups=groups if cluster_groups is None else _groups(cluster_groups),
                    system_pods=bool(c.get("system_pods", True)) and not c.get("auto_mode", False),
                    zones=tuple(str(z) for z in c.get("zones", [f"{region}{x}" for x in "abc"])),
                    network=dict(c["network"]) if "network" in c else None,
                    drain=float(c.get("drain", 0.0)),
                    account=account,
                    region=region,
                    auto_mode=bool(c.get("auto_mode", False)),
                    unreachable=bool(c.get("unreachable", False)),
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
            region=default_region,
            account=default_account,
            seed=int(doc.get("seed", 1)),
            access_key_id=str(doc.get("access_key_id", DEFAULT_ACCESS_KEY)),
            secret_access_key=str(doc.get("secret_access_key", DEFAULT_SECRET)),
            identity_arn=identity,
            clusters=tuple(clusters),
            roles={a: tuple(map(str, spec["roles"])) for a, spec in accounts.items() if "roles" in spec},
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
