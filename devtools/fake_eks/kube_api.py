"""The Kubernetes API of one cluster: authentication, RBAC, selectors, pods, nodes, ENIConfigs, pods/proxy."""

from __future__ import annotations

import asyncio
import base64
import bisect
import json
import random
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from fake_eks.auth import AuthError, CredentialTable, canonical_arn, verify_token
from fake_eks.certs import ClusterTls
from fake_eks.faults import serve_fault
from fake_eks.nodes import METADATA_LIST, list_media, node_object, partial_metadata
from fake_eks.responses import reach_error, serve_payload, status_response
from fake_eks.sim import AwsNodePod, ClusterSim, rfc3339

METRICS_PORT = 61678
USER = web.RequestKey("user", str)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

EXPIRED_MESSAGE = (
    "The provided continue parameter is too old to display a consistent list result. You can start a new "
    "list without the continue parameter, or use the continue token in this response to retrieve the "
    "remainder of the results. Continuing with the provided token results in an inconsistent list - "
    "objects that were created, modified, or deleted between the time the first chunk was returned and now "
    "may show up in the list."
)


class KubeCluster:
    """One cluster: its simulation, TLS material, token cache and Kubernetes API application."""

    def __init__(self, sim: ClusterSim, credentials: CredentialTable, tls: ClusterTls) -> None:
        self.sim = sim
        self.name = sim.spec.name
        self.credentials = credentials
        self.tls = tls
        self.tokens: dict[str, tuple[str, float]] = {}
        self.auth_failures: list[dict[str, Any]] = []
        self.endpoint = ""
        self._nodes: dict[str, tuple[bytes, bytes]] = {}  # node name -> (Node, PartialObjectMetadata) JSON

    # -- authentication and authorisation ------------------------------------------------------
    def _fail(self, rule: str, detail: str) -> web.Response:
        self.auth_failures.append({"rule": rule, "detail": detail, "time": time.time()})
        del self.auth_failures[:-1000]
        return status_response(401, "Unauthorized", "Unauthorized")

    def authenticate(self, request: web.Request) -> str | web.Response:
        """The user name of the request's bearer token (``system:anonymous`` without one), or a 401."""
        header = request.headers.get("Authorization")
        if header is None:
            return "system:anonymous"
        if not header.startswith("Bearer "):
            return self._fail("scheme", "not a bearer token")
        token = header[len("Bearer ") :].strip()
        now = time.time()
        cached = self.tokens.get(token)
        if cached is None:
            try:
                ident = verify_token(
                    token,
                    cluster=self.name,
                    credentials=self.credentials,
                    now=now,
                    max_age_s=self.sim.spec.token_max_age_s,
                )
            except AuthError as exc:
                return self._fail(exc.rule, str(exc))
            if canonical_arn(ident.arn) not in self.sim.spec.identities:
                return self._fail("unmapped", f"ARN is not mapped: {ident.arn}")
            if len(self.tokens) > 50_000:
                self.tokens.clear()
            cached = self.tokens[token] = (ident.arn, ident.valid_until)
        if now > cached[1]:
            return self._fail("expired", "token or its session credentials expired")
        return cached[0]

    def allowed(self, user: str, verb: str, resource: str, namespace: str) -> bool:
        """RBAC: does any rule of any of the user's groups grant the request?"""
        groups = self.sim.spec.identities.get(canonical_arn(user), ())
        return any(
            rule.allows(verb, resource, namespace) for g in groups for rule in self.sim.spec.groups.get(g, ())
        )

    @staticmethod
    def forbidden(user: str, verb: str, resource: str, namespace: str, name: str | None) -> web.Response:
        """403 with the API server's message."""
        res, _, _sub = resource.partition("/")
        subject = f'{res} "{name}"' if name is not None else res
        where = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
        msg = (
            f'{subject} is forbidden: User "{user}" cannot {verb} resource "{resource}" '
            f'in API group ""{where}'
        )
        details: dict[str, Any] = {"kind": res}
        if name is not None:
            details["name"] = name
        return status_response(403, "Forbidden", msg, details)

    # -- the application ----------------------------------------------------------------------------
    def app(self) -> web.Application:
        """The Kubernetes API server application of this cluster."""
        app = web.Application(middlewares=[self._authn])
        app.router.add_get("/version", self.version)
        for path in ("/healthz", "/livez", "/readyz"):
            app.router.add_get(path, self.healthz)
        app.router.add_get("/api", self.api)
        app.router.add_get("/api/v1/pods", self.list_pods)
        app.router.add_get("/api/v1/namespaces/{ns}/pods", self.list_pods)
        app.router.add_get("/api/v1/namespaces/{ns}/pods/{name}", self.get_pod)
        app.router.add_route("*", "/api/v1/namespaces/{ns}/pods/{name}/proxy{path:.*}", self.proxy)
        app.router.add_get("/api/v1/nodes", self.list_nodes)
        app.router.add_get("/apis/crd.k8s.amazonaws.com/v1alpha1/eniconfigs", self.list_eniconfigs)
        return app

    async def list_nodes(self, request: web.Request) -> web.Response:
        """GET nodes (cluster-scoped; one Node per aws-node pod): whole Node objects as EKS serves them, or
        their metadata only (``Accept: ...;as=PartialObjectMetadataList;...``), paged by limit/continue."""
        user = request[USER]
        if not self.allowed(user, "list", "nodes", ""):
            return self.forbidden(user, "list", "nodes", "", None)
        media = list_media(request.headers.get("Accept", ""))
        if media is None:
            return status_response(406, "NotAcceptable", "only the following media types are accepted: "
                                   "application/json, application/yaml, application/vnd.kubernetes.protobuf")
        paging = self._paging(request)
        if isinstance(paging, web.Response):
            return paging
        start, limit = paging
        pods = sorted(self.sim.pods.values(), key=lambda p: p.node_name)
        first = bisect.bisect_right([p.node_name for p in pods], start) if start else 0
        page = pods[first:first + limit] if limit else pods[first:]
        items = [self._node_json(pod, media != METADATA_LIST) for pod in page]
        meta: dict[str, Any] = {"resourceVersion": str(self.sim.resource_version)}
        if first + len(page) < len(pods):
            meta["continue"] = self.sim.continue_token(page[-1].node_name)
            meta["remainingItemCount"] = len(pods) - first - len(page)
        kind, version = ("NodeList", "v1") if media != METADATA_LIST else ("PartialObjectMetadataList",
                                                                           "meta.k8s.io/v1")
        head = json.dumps({"kind": kind, "apiVersion": version, "metadata": meta})[:-1]
        body = head.encode() + b',"items":[' + b",".join(items) + b"]}"
        return web.Response(body=body, headers={"Content-Type": media})

    def _node_json(self, pod: AwsNodePod, whole: bool) -> bytes:
        """The Node object of ``pod``'s node (or its PartialObjectMetadata), serialised once per node."""
        cached = self._nodes.get(pod.node_name)
        if cached is None:
            node = node_object(pod.node_name, pod.node_ip, pod.zone, pod.state.instance_type,
                               rfc3339(pod.created), rfc3339(time.time()))
            compact = (",", ":")
            cached = (json.dumps(node, separators=compact).encode(),
                      json.dumps(partial_metadata(node), separators=compact).encode())
            self._nodes[pod.node_name] = cached
        return cached[0] if whole else cached[1]

    def _paging(self, request: web.Request) -> tuple[str, int] | web.Response:
        """(start after this name, limit; 0: all) of a list request, or the API server's error answer."""
        q = request.query
        start = ""
        if q.get("continue"):
            try:
                tok = json.loads(base64.urlsafe_b64decode(q["continue"] + "=" * (-len(q["continue"]) % 4)))
                tok_rv, start = int(tok["rv"]), str(tok["start"]).rstrip("\u0000")
            except (ValueError, KeyError, TypeError):
                return status_response(
                    400,
                    "BadRequest",
                    "continue key is not valid: incorrect encoded start "
                    "resourceVersion (version meta.k8s.io/v1)",
                )
            if tok_rv != self.sim.resource_version:
                return status_response(410, "Expired", EXPIRED_MESSAGE)
        raw_limit = q.get("limit", "") or "0"
        if not (raw_limit.isascii() and raw_limit.isdigit()):
            return status_response(400, "BadRequest", f"limit: invalid value {raw_limit!r}")
        limit = int(raw_limit)
        if q.get("resourceVersion") == "0" and not q.get("continue"):
            limit = 0  # served from the watch cache, which ignores limit
        return start, limit

    async def list_eniconfigs(self, request: web.Request) -> web.Response:
        """GET ENIConfigs (cluster-scoped custom resources of the VPC CNI)."""
        user = request[USER]
        if not self.allowed(user, "list", "eniconfigs", ""):
            return self.forbidden(user, "list", "eniconfigs", "", None)
        return web.Response(body=self.sim.network.eniconfig_list(), content_type="application/json")

    @web.middleware
    async def _authn(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        user = self.authenticate(request)
        if isinstance(user, web.Response):
            return user
        request[USER] = user
        try:
            return await handler(request)
        except web.HTTPNotFound:
            return status_response(404, "NotFound", "the server could not find the requested resource", {})

    async def version(self, request: web.Request) -> web.Response:
        """/version."""
        major, _, minor = self.sim.spec.version.partition(".")
        return web.json_response(
            {
                "major": major,
                "minor": f"{minor}+",
                "gitVersion": f"v{self.sim.spec.version}.2-eks-7f9249a",
                "gitCommit": "7f9249a4f1e2f7a7cca5ff1c8a0fdcabcdef0123",
                "gitTreeState": "clean",
                "buildDate": "2026-10-01T00:00:00Z",
                "goVersion": "go1.24.8",
                "compiler": "gc",
                "platform": "linux/amd64",
            }
        )

    async def healthz(self, request: web.Request) -> web.Response:
        """/healthz, /livez, /readyz."""
        return web.Response(text="ok", content_type="text/plain")

    async def api(self, request: web.Request) -> web.Response:
        """/api (core group discovery)."""
        return web.json_response(
            {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [
                    {"clientCIDR": "0.0.0.0/0", "serverAddress": "ip-172-16-0-10.ec2.internal:443"}
                ],
            }
        )

    def _throttled(self) -> web.Response | None:
        spec = self.sim.spec.list_throttle
        self.sim.list_requests += 1
        if not spec:
            return None
        first = int(spec.get("first", 0))
        hit = self.sim.list_requests <= first or self.sim.rng.random() < float(spec.get("fraction", 0.0))
        if not hit:
            return None
        return web.Response(
            status=429,
            text="Too many requests, please try again later.\n",
            headers={"Retry-After": str(spec.get("retry_after", 1))},
        )

    async def list_pods(self, request: web.Request) -> web.StreamResponse:
        """GET pods: labelSelector, fieldSelector, limit/continue, resourceVersion=0."""
        user = request[USER]
        ns = request.match_info.get("ns", "")
        if (throttled := self._throttled()) is not None:
            return throttled
        if not self.allowed(user, "list", "pods", ns):
            return self.forbidden(user, "list", "pods", ns, None)
        q = request.query
        try:
            label_ok = parse_label_selector(q.get("labelSelector", ""))
            field_ok = parse_field_selector(q.get("fieldSelector", ""))
        except ValueError as exc:
            return status_response(400, "BadRequest", str(exc))
        rv = str(self.sim.resource_version)
        paging = self._paging(request)
        if isinstance(paging, web.Response):
            return paging
        start, limit = paging
        items: list[bytes] = []
        more = False
        remaining = 0
        names: list[str] = []
        if ns in ("", "kube-system"):
            entries = self.sim.all_pods()
            first = bisect.bisect_right([e[0] for e in entries], start) if start else 0
            for idx in range(first, len(entries)):
                name, labels, phase, node, obj = entries[idx]
                fields = {
                    "status.phase": phase,
                    "spec.nodeName": node,
                    "metadata.name": name,
                    "metadata.namespace": "kube-system",
                }
                if not label_ok(labels) or not field_ok(fields):
                    continue
                if limit and len(items) >= limit:
                    more = True
                    remaining = len(entries) - idx
                    break
                items.append(obj.pod_json(self.sim.uid) if isinstance(obj, AwsNodePod) else obj)
                names.append(name)
        meta: dict[str, Any] = {"resourceVersion": rv}
        if more:
            meta["continue"] = self.sim.continue_token(names[-1])
            if not q.get("labelSelector") and not q.get("fieldSelector"):
                meta["remainingItemCount"] = remaining
        head = json.dumps({"kind": "PodList", "apiVersion": "v1", "metadata": meta})[:-1]
        body = head.encode() + b',"items":[' + b",".join(items) + b"]}"
        return web.Response(body=body, content_type="application/json")

    async def get_pod(self, request: web.Request) -> web.Response:
        """GET one pod."""
        user, ns, name = request[USER], request.match_info["ns"], request.match_info["name"]
        if not self.allowed(user, "get", "pods", ns):
            return self.forbidden(user, "get", "pods", ns, name)
        pod = self.sim.aws_node_pods.get(name) if ns == "kube-system" else None
        if pod is None:
            return status_response(
                404, "NotFound", f'pods "{name}" not found', {"name": name, "kind": "pods"}
            )
        return web.Response(body=pod.pod_json(self.sim.uid), content_type="application/json")

    async def proxy(self, request: web.Request) -> web.StreamResponse:
        """The pods/proxy subresource: the node's aws-node answer, faults included."""
        user, ns, target = request[USER], request.match_info["ns"], request.match_info["name"]
        verb = {
            "GET": "get",
            "HEAD": "get",
            "POST": "create",
            "PUT": "update",
            "DELETE": "delete",
            "PATCH": "patch",
        }.get(request.method, "get")
        if not self.allowed(user, verb, "pods/proxy", ns):
            return self.forbidden(user, verb, "pods/proxy", ns, target)
        parts = target.split(":")
        scheme, name, port = (
            ("http", parts[0], "")
            if len(parts) == 1
            else (("http", parts[0], parts[1]) if len(parts) == 2 else (parts[0], parts[1], parts[2]))
        )
        pod = self.sim.aws_node_pods.get(name) if ns == "kube-system" else None
        if pod is None:
            if ns == "kube-system" and name in self.sim.system:
                return reach_error(f"dial tcp 10.0.0.1:{port or 80}: connect: connection refused")
            return status_response(
                404, "NotFound", f'pods "{name}" not found', {"name": name, "kind": "pods"}
            )
        pod.attempts += 1
        if pod.phase != "Running":
            return reach_error(f"dial tcp :{port or 80}: connect: no route to host")
        if port != str(METRICS_PORT):
            return reach_error(f"dial tcp {pod.node_ip}:{port or 80}: connect: connection refused")
        if scheme != "http":
            return reach_error("tls: first record does not look like a TLS handshake")
        spec = self.sim.spec
        if spec.latency_ms or spec.jitter_ms:
            await asyncio.sleep(
                max(0.0, spec.latency_ms + random.uniform(-spec.jitter_ms, spec.jitter_ms)) / 1e3
            )
        if request.match_info["path"] != "/metrics":
            return web.Response(status=404, text="404 page not found\n")
        fault = pod.fault
        if fault is not None and fault.kind not in ("not_ready",):
            answered = await serve_fault(request, pod, fault)
            if answered is not None:
                return answered
        return await serve_payload(request, pod)


_SELECTOR_RE = re.compile(
    r"^\s*(!?)\s*([A-Za-z0-9._/-]+)\s*(?:(==|=|!=)\s*([A-Za-z0-9._-]*)|"
    r"\s+(in|notin)\s*\(([^)]*)\))?\s*$"
)


def _split_selector(text: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p for p in parts if p.strip()]


def _requirement(
    neg: str, key: str, op: str | None, val: str | None, setop: str | None, setvals: str | None
) -> Callable[[dict[str, str]], bool]:
    values = {v.strip() for v in (setvals or "").split(",")} if setop else {val or ""}
    if op in ("=", "==") or setop == "in":
        return lambda lb: lb.get(key) in values
    if op == "!=" or setop == "notin":
        return lambda lb: lb.get(key) not in values
    if neg:
        return lambda lb: key not in lb
    return lambda lb: key in lb


def parse_label_selector(text: str) -> Callable[[dict[str, str]], bool]:
    """A label selector (=, ==, !=, in, notin, exists, !exists) as a predicate."""
    tests: list[Callable[[dict[str, str]], bool]] = []
    for term in _split_selector(text):
        m = _SELECTOR_RE.match(term)
        if not m:
            raise ValueError(f"unable to parse requirement: {term!r}")
        tests.append(_requirement(*m.groups()))
    return lambda labels: all(t(labels) for t in tests)


_FIELDS = frozenset({"status.phase", "spec.nodeName", "metadata.name", "metadata.namespace"})


def parse_field_selector(text: str) -> Callable[[dict[str, str]], bool]:
    """A pod field selector (=, ==, != on the fields the API server supports for pods)."""
    tests: list[tuple[str, bool, str]] = []
    for term in _split_selector(text):
        m = re.match(r"^\s*([A-Za-z.]+)\s*(==|=|!=)\s*(.*?)\s*$", term)
        if not m:
            raise ValueError(f"invalid selector: {term!r}")
        key, op, val = m.groups()
        if key not in _FIELDS:
            raise ValueError(f"field label not supported: {key}")
        tests.append((key, op != "!=", val))
    return lambda fields: all((fields.get(k) == v) == eq for k, eq, v in tests)
