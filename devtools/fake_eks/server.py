"""The stand-in's servers: EKS + STS + truth API (plain HTTP) and one Kubernetes API server per cluster."""

from __future__ import annotations

import asyncio
import base64
import bisect
import json
import logging
import random
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

from aiohttp import web

from fake_eks.auth import (
    AuthError,
    Credential,
    CredentialTable,
    canonical_arn,
    verify_request_signature,
    verify_token,
)
from fake_eks.certs import ClusterTls, make_cluster_tls
from fake_eks.faults import serve_fault
from fake_eks.nodes import node_object
from fake_eks.responses import reach_error, serve_payload, status_response
from fake_eks.scenario import Scenario
from fake_eks.sim import AwsNodePod, ClusterSim, rfc3339

LOG = logging.getLogger("fake_eks")
HOST = "127.0.0.1"
METRICS_PORT = 61678
STS_NS = "https://sts.amazonaws.com/doc/2011-06-15/"
USER = web.RequestKey("user", str)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


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
        """GET nodes (cluster-scoped; one Node per aws-node pod, zone and instance-type labels; no paging)."""
        user = request[USER]
        if not self.allowed(user, "list", "nodes", ""):
            return self.forbidden(user, "list", "nodes", "", None)
        items = [
            node_object(pod.node_name, pod.node_ip, pod.zone, pod.state.instance_type, rfc3339(pod.created))
            for pod in sorted(self.sim.pods.values(), key=lambda p: p.node_name)
        ]
        meta = {"resourceVersion": str(self.sim.resource_version)}
        return web.json_response({"kind": "NodeList", "apiVersion": "v1", "metadata": meta, "items": items})

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
        limit = int(q.get("limit", "0") or 0)
        if q.get("resourceVersion") == "0" and not q.get("continue"):
            limit = 0
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
        pod = self.sim.pods.get(name) if ns == "kube-system" else None
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
        pod = self.sim.pods.get(name) if ns == "kube-system" else None
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


SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your AWS Secret "
    "Access Key and signing method. Consult the service documentation for details."
)
EXPIRED_MESSAGE = (
    "The provided continue parameter is too old to display a consistent list result. You can start a new "
    "list without the continue parameter, or use the continue token in this response to retrieve the "
    "remainder of the results. Continuing with the provided token results in an inconsistent list - "
    "objects that were created, modified, or deleted between the time the first chunk was returned and now "
    "may show up in the list."
)


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


class FakeEks:
    """Every server of one scenario, on 127.0.0.1, in the running event loop."""

    def __init__(self, scenario: Scenario, *, port: int = 0) -> None:
        self.scenario = scenario
        self.port = port
        self.credentials = CredentialTable()
        self.credentials.add(
            Credential(scenario.access_key_id, scenario.secret_access_key, scenario.identity_arn)
        )
        self.clusters: dict[str, KubeCluster] = {}
        for i, spec in enumerate(scenario.clusters):
            self.clusters[spec.name] = KubeCluster(
                ClusterSim(spec, scenario, i), self.credentials, make_cluster_tls(spec.name)
            )
        self._runners: list[web.AppRunner] = []
        self.base_url = ""

    async def start(self) -> dict[str, Any]:
        """Listen on every port and return the connection document."""
        control = web.AppRunner(
            self.control_app(), access_log=None, handler_cancellation=True, shutdown_timeout=1.0
        )
        await control.setup()
        site = web.TCPSite(control, HOST, self.port)
        await site.start()
        self._runners.append(control)
        self.base_url = f"http://{HOST}:{_bound_port(control)}"
        for cluster in self.clusters.values():
            runner = web.AppRunner(
                cluster.app(), access_log=None, handler_cancellation=True, shutdown_timeout=1.0
            )
            await runner.setup()
            await web.TCPSite(runner, HOST, 0, ssl_context=cluster.tls.server_context(), backlog=1024).start()
            self._runners.append(runner)
            cluster.endpoint = f"https://{HOST}:{_bound_port(runner)}"
            cluster.sim.warm()  # the first list is then as quick as the next ones
        return self.connection()

    async def stop(self) -> None:
        """Close every listener and connection."""
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()

    def connection(self) -> dict[str, Any]:
        """The connection document (see docs/ARCHITECTURE.md)."""
        sc = self.scenario
        return {
            "scenario": sc.name,
            "region": sc.region,
            "account": sc.account,
            "eks_endpoint_url": self.base_url,
            "sts_endpoint_url": self.base_url,
            "credentials": {
                "access_key_id": sc.access_key_id,
                "secret_access_key": sc.secret_access_key,
                "identity_arn": sc.identity_arn,
            },
            "truth_url": f"{self.base_url}/truth",
            "clusters": {
                n: {"endpoint": c.endpoint, "ca_pem": c.tls.ca_pem} for n, c in self.clusters.items()
            },
        }

    # -- EKS, STS and truth -----------------------------------------------------------------------
    def control_app(self) -> web.Application:
        """EKS (rest-json), STS (query) and the truth API on one plain-HTTP port."""
        app = web.Application()
        app.router.add_get("/clusters", self.list_clusters)
        app.router.add_get("/clusters/{name}", self.describe_cluster)
        app.router.add_route("*", "/", self.sts)
        app.router.add_get("/truth", self.truth_index)
        app.router.add_get("/truth/clusters/{name}", self.truth)
        app.router.add_post("/truth/clusters/{name}/advance", self.advance)
        app.router.add_get("/truth/clusters/{name}/auth-failures", self.auth_failures)
        app.router.add_post("/truth/clusters/{name}/pods/{pod}/fault", self.set_fault)
        app.router.add_post("/truth/clusters/{name}/network", self.attach_network)
        return app

    async def attach_network(self, request: web.Request) -> web.Response:
        """POST {"subnetIds": [...], "eniconfigs": {name: subnetId}}: DescribeCluster's and ENIConfigs."""
        cluster = self._cluster(request)
        cluster.sim.network.attach(await request.json())
        return web.json_response(cluster.sim.network.truth())

    async def _caller(self, request: web.Request) -> Credential | AuthError:
        try:
            return verify_request_signature(
                method=request.method,
                raw_path=request.raw_path,
                headers={k.lower(): v for k, v in request.headers.items()},
                body=await request.read(),
                credentials=self.credentials,
                now=time.time(),
            )
        except AuthError as exc:
            return exc

    @staticmethod
    def _eks_error(status: int, code: str, message: str, **extra: str) -> web.Response:
        return web.json_response(
            {"message": message, **extra},
            status=status,
            headers={"x-amzn-ErrorType": code, "x-amzn-RequestId": str(uuid.uuid4())},
        )

    def _eks_denied(self, exc: AuthError) -> web.Response:
        if exc.rule == "unknown_key":
            return self._eks_error(
                403, "UnrecognizedClientException", "The security token included in the request is invalid."
            )
        return self._eks_error(403, "InvalidSignatureException", SIGNATURE_MISMATCH)

    async def list_clusters(self, request: web.Request) -> web.Response:
        """EKS ListClusters (maxResults 1..100, nextToken)."""
        caller = await self._caller(request)
        if isinstance(caller, AuthError):
            return self._eks_denied(caller)
        names = sorted(self.clusters)
        try:
            limit = int(request.query.get("maxResults", "100"))
            start = (
                int(base64.b64decode(request.query["nextToken"]).decode())
                if "nextToken" in request.query
                else 0
            )
        except ValueError:
            return self._eks_error(400, "InvalidParameterException", "Invalid nextToken or maxResults")
        if not 1 <= limit <= 100:
            return self._eks_error(400, "InvalidParameterException", "maxResults must be between 1 and 100")
        page = names[start : start + limit]
        body: dict[str, Any] = {"clusters": page}
        if start + limit < len(names):
            body["nextToken"] = base64.b64encode(str(start + limit).encode()).decode()
        return web.json_response(body)

    async def describe_cluster(self, request: web.Request) -> web.Response:
        """EKS DescribeCluster."""
        caller = await self._caller(request)
        if isinstance(caller, AuthError):
            return self._eks_denied(caller)
        name = request.match_info["name"]
        cluster = self.clusters.get(name)
        if cluster is None:
            return self._eks_error(
                404, "ResourceNotFoundException", f"No cluster found for name: {name}.", clusterName=name
            )
        sc, spec, sim = self.scenario, cluster.sim.spec, cluster.sim
        r = random.Random(sim.uid)
        subnets = sim.network.subnet_ids or [f"subnet-{r.getrandbits(68):017x}" for _ in range(3)]
        return web.json_response(
            {
                "cluster": {
                    "name": name,
                    "arn": f"arn:aws:eks:{sc.region}:{sc.account}:cluster/{name}",
                    "createdAt": sim.created,
                    "version": spec.version,
                    "endpoint": cluster.endpoint,
                    "roleArn": f"arn:aws:iam::{sc.account}:role/eks-cluster-role",
                    "resourcesVpcConfig": {
                        "subnetIds": subnets,
                        "securityGroupIds": [],
                        "clusterSecurityGroupId": f"sg-{r.getrandbits(68):017x}",
                        "vpcId": f"vpc-{r.getrandbits(68):017x}",
                        "endpointPublicAccess": True,
                        "endpointPrivateAccess": True,
                        "publicAccessCidrs": ["0.0.0.0/0"],
                    },
                    "kubernetesNetworkConfig": {"serviceIpv4Cidr": "172.20.0.0/16", "ipFamily": "ipv4"},
                    "identity": {
                        "oidc": {"issuer": f"https://oidc.eks.{sc.region}.amazonaws.com/id/{sim.uid[:32]}"}
                    },
                    "status": "ACTIVE",
                    "certificateAuthority": {"data": base64.b64encode(cluster.tls.ca_pem.encode()).decode()},
                    "platformVersion": "eks.12",
                    "tags": spec.tags,
                    "accessConfig": {"authenticationMode": "API_AND_CONFIG_MAP"},
                }
            }
        )

    @staticmethod
    def _sts_xml(action: str, inner: str, status: int = 200) -> web.Response:
        body = (
            f'<{action}Response xmlns="{STS_NS}"><{action}Result>{inner}</{action}Result>'
            f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata></{action}Response>"
        )
        return web.Response(text=body, status=status, content_type="text/xml")

    @staticmethod
    def _sts_error(status: int, code: str, message: str) -> web.Response:
        body = (
            f'<ErrorResponse xmlns="{STS_NS}"><Error><Type>Sender</Type><Code>{code}</Code>'
            f"<Message>{escape(message)}</Message></Error><RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
        )
        return web.Response(text=body, status=status, content_type="text/xml")

    async def sts(self, request: web.Request) -> web.Response:
        """STS query API: GetCallerIdentity and AssumeRole."""
        form: dict[str, str] = dict(request.query.items())
        if request.method == "POST":
            form.update({k: v[0] for k, v in parse_qs(await request.text()).items()})
        caller = await self._caller(request)
        if isinstance(caller, AuthError) and caller.rule == "unknown_key":
            return self._sts_error(
                403, "InvalidClientTokenId", "The security token included in the request is invalid."
            )
        if isinstance(caller, AuthError):
            return self._sts_error(403, "SignatureDoesNotMatch", SIGNATURE_MISMATCH)
        action = form.get("Action", "")
        account = caller.arn.split(":")[4]
        if action == "GetCallerIdentity":
            return self._sts_xml(
                action,
                f"<Arn>{escape(caller.arn)}</Arn><UserId>{caller.access_key_id}"
                f"</UserId><Account>{account}</Account>",
            )
        if action == "AssumeRole":
            role, session = form.get("RoleArn", ""), form.get("RoleSessionName", "")
            duration = int(form.get("DurationSeconds", "3600"))
            if not re.fullmatch(r"[\w+=,.@-]{2,64}", session) or not 900 <= duration <= 43200:
                return self._sts_error(400, "ValidationError", "invalid RoleSessionName or DurationSeconds")
            try:
                cred = self.credentials.assume_role(role, session, duration)
            except ValueError as exc:
                return self._sts_error(400, "ValidationError", str(exc))
            expiry = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(cred.expires_at))
            role_id = "AROA" + uuid.uuid5(uuid.NAMESPACE_URL, role).hex[:17].upper()
            return self._sts_xml(
                action,
                (
                    f"<AssumedRoleUser><AssumedRoleId>{role_id}:{escape(session)}</AssumedRoleId>"
                    f"<Arn>{escape(cred.arn)}</Arn></AssumedRoleUser><Credentials>"
                    f"<AccessKeyId>{cred.access_key_id}</AccessKeyId><SecretAccessKey>{cred.secret_access_key}"
                    f"</SecretAccessKey><SessionToken>{cred.session_token}</SessionToken>"
                    f"<Expiration>{expiry}</Expiration></Credentials>"
                ),
            )
        return self._sts_error(
            400, "InvalidAction", f"Could not find operation {action} for version 2011-06-15"
        )

    def _cluster(self, request: web.Request) -> KubeCluster:
        cluster = self.clusters.get(request.match_info["name"])
        if cluster is None:
            raise web.HTTPNotFound(
                text=json.dumps({"error": "no such cluster"}), content_type="application/json"
            )
        return cluster

    async def truth_index(self, request: web.Request) -> web.Response:
        """The connection document and cluster names."""
        return web.json_response(self.connection())

    async def truth(self, request: web.Request) -> web.Response:
        """GET truth of one cluster."""
        return web.json_response(self._cluster(request).sim.truth())

    async def advance(self, request: web.Request) -> web.Response:
        """POST advance {"steps": n}."""
        cluster = self._cluster(request)
        raw = await request.read()
        steps = int(json.loads(raw).get("steps", 1)) if raw else 1
        events = cluster.sim.advance(steps)
        return web.json_response(
            {"cluster": cluster.name, "resourceVersion": str(cluster.sim.resource_version), **events}
        )

    async def auth_failures(self, request: web.Request) -> web.Response:
        """Why tokens were refused (the API server only ever says 401 Unauthorized)."""
        return web.json_response(self._cluster(request).auth_failures)

    async def set_fault(self, request: web.Request) -> web.Response:
        """POST {"kind": <fault kind> | null, ...params}: change one pod's fault from now on."""
        cluster = self._cluster(request)
        doc = await request.json()
        kind = doc.pop("kind", None)
        try:
            cluster.sim.set_fault(request.match_info["pod"], kind, doc)
        except KeyError:
            raise web.HTTPNotFound(text='{"error": "no such pod"}', content_type="application/json") from None
        except ValueError as exc:
            raise web.HTTPBadRequest(
                text=json.dumps({"error": str(exc)}), content_type="application/json"
            ) from exc
        return web.json_response({"pod": request.match_info["pod"], "fault": kind})


def _bound_port(runner: web.AppRunner) -> int:
    for addr in runner.addresses:
        return int(addr[1])
    raise RuntimeError("runner is not listening")
