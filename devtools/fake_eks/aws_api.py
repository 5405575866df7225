"""The stand-in's AWS APIs: EKS (rest-json ListClusters, DescribeCluster) and STS (query, XML answers).

One endpoint serves every account and region, as AWS_ENDPOINT_URL_EKS points every regional client at it:
an EKS call sees the clusters of the caller's account (its credentials' identity: an assumed role's
credentials are that role's account) in the region the call was signed for.
"""

from __future__ import annotations

import base64
import random
import re
import time
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

from aiohttp import web

from fake_eks.auth import AuthError, Credential, CredentialTable, verify_request_signature
from fake_eks.kube_api import KubeCluster
from fake_eks.scenario import Scenario

STS_NS = "https://sts.amazonaws.com/doc/2011-06-15/"
SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your AWS Secret "
    "Access Key and signing method. Consult the service documentation for details."
)


async def _caller(request: web.Request, credentials: CredentialTable) -> tuple[Credential, str] | AuthError:
    """The caller and the region its call was signed for, or why the signature is refused."""
    try:
        return verify_request_signature(
            method=request.method,
            raw_path=request.raw_path,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=await request.read(),
            credentials=credentials,
            now=time.time(),
        )
    except AuthError as exc:
        return exc


def _eks_error(status: int, code: str, message: str, **extra: str) -> web.Response:
    return web.json_response(
        {"message": message, **extra},
        status=status,
        headers={"x-amzn-ErrorType": code, "x-amzn-RequestId": str(uuid.uuid4())},
    )


def _eks_denied(exc: AuthError) -> web.Response:
    if exc.rule == "unknown_key":
        return _eks_error(
            403, "UnrecognizedClientException", "The security token included in the request is invalid."
        )
    return _eks_error(403, "InvalidSignatureException", SIGNATURE_MISMATCH)


def _sts_xml(action: str, inner: str) -> web.Response:
    body = (
        f'<{action}Response xmlns="{STS_NS}"><{action}Result>{inner}</{action}Result>'
        f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata></{action}Response>"
    )
    return web.Response(text=body, content_type="text/xml")


def _sts_error(status: int, code: str, message: str) -> web.Response:
    body = (
        f'<ErrorResponse xmlns="{STS_NS}"><Error><Type>Sender</Type><Code>{code}</Code>'
        f"<Message>{escape(message)}</Message></Error><RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
    )
    return web.Response(text=body, status=status, content_type="text/xml")


class AwsApi:
    """EKS and STS of one scenario: SigV4-verified calls against its credentials and clusters."""

    def __init__(
        self, scenario: Scenario, credentials: CredentialTable, clusters: Mapping[str, KubeCluster]
    ) -> None:
        self.scenario = scenario
        self.credentials = credentials
        self.clusters = clusters

    def add_routes(self, router: web.UrlDispatcher) -> None:
        """EKS under /clusters, STS at /."""
        router.add_get("/clusters", self.list_clusters)
        router.add_get("/clusters/{name}", self.describe_cluster)
        router.add_route("*", "/", self.sts)

    def _visible(self, caller: tuple[Credential, str]) -> dict[str, KubeCluster]:
        """The clusters of the caller's account in the region its call was signed for."""
        credential, region = caller
        account = credential.arn.split(":")[4]
        return {
            name: cluster for name, cluster in self.clusters.items()
            if cluster.sim.spec.account == account and cluster.sim.spec.region == region
        }

    async def list_clusters(self, request: web.Request) -> web.Response:
        """EKS ListClusters (maxResults 1..100, nextToken)."""
        caller = await _caller(request, self.credentials)
        if isinstance(caller, AuthError):
            return _eks_denied(caller)
        names = sorted(self._visible(caller))
        try:
            limit = int(request.query.get("maxResults", "100"))
            start = (
                int(base64.b64decode(request.query["nextToken"]).decode())
                if "nextToken" in request.query
                else 0
            )
        except ValueError:
            return _eks_error(400, "InvalidParameterException", "Invalid nextToken or maxResults")
        if not 1 <= limit <= 100:
            return _eks_error(400, "InvalidParameterException", "maxResults must be between 1 and 100")
        page = names[start : start + limit]
        body: dict[str, Any] = {"clusters": page}
        if start + limit < len(names):
            body["nextToken"] = base64.b64encode(str(start + limit).encode()).decode()
        return web.json_response(body)

    async def describe_cluster(self, request: web.Request) -> web.Response:
        """EKS DescribeCluster."""
        caller = await _caller(request, self.credentials)
        if isinstance(caller, AuthError):
            return _eks_denied(caller)
        name = request.match_info["name"]
        cluster = self._visible(caller).get(name)
        if cluster is None:
            return _eks_error(
                404, "ResourceNotFoundException", f"No cluster found for name: {name}.", clusterName=name
            )
        spec, sim = cluster.sim.spec, cluster.sim
        r = random.Random(sim.uid)
        subnets = sim.network.subnet_ids or [f"subnet-{r.getrandbits(68):017x}" for _ in range(3)]
        return web.json_response(
            {
                "cluster": {
                    "name": name,
                    "arn": f"arn:aws:eks:{spec.region}:{spec.account}:cluster/{name}",
                    "createdAt": sim.created,
                    "version": spec.version,
                    "endpoint": cluster.endpoint,
                    "roleArn": f"arn:aws:iam::{spec.account}:role/eks-cluster-role",
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
                        "oidc": {"issuer": f"https://oidc.eks.{spec.region}.amazonaws.com/id/{sim.uid[:32]}"}
                    },
                    "status": "ACTIVE",
                    "certificateAuthority": {"data": base64.b64encode(cluster.tls.ca_pem.encode()).decode()},
                    "platformVersion": "eks.12",
                    "tags": spec.tags,
                    "accessConfig": {"authenticationMode": "API_AND_CONFIG_MAP"},
                }
            }
        )

    def _assumable(self, role: str) -> bool:
        """Whether the role exists: any role, unless the scenario lists its account's roles."""
        parts = role.split(":")
        roles = self.scenario.roles.get(parts[4]) if len(parts) > 4 else None
        return roles is None or role in roles

    async def sts(self, request: web.Request) -> web.Response:
        """STS query API: GetCallerIdentity and AssumeRole."""
        form: dict[str, str] = dict(request.query.items())
        if request.method == "POST":
            form.update({k: v[0] for k, v in parse_qs(await request.text()).items()})
        caller = await _caller(request, self.credentials)
        if isinstance(caller, AuthError) and caller.rule == "unknown_key":
            return _sts_error(
                403, "InvalidClientTokenId", "The security token included in the request is invalid."
            )
        if isinstance(caller, AuthError):
            return _sts_error(403, "SignatureDoesNotMatch", SIGNATURE_MISMATCH)
        credential = caller[0]
        action = form.get("Action", "")
        account = credential.arn.split(":")[4]
        if action == "GetCallerIdentity":
            return _sts_xml(
                action,
                f"<Arn>{escape(credential.arn)}</Arn><UserId>{credential.access_key_id}"
                f"</UserId><Account>{account}</Account>",
            )
        if action == "AssumeRole":
            role, session = form.get("RoleArn", ""), form.get("RoleSessionName", "")
            duration = int(form.get("DurationSeconds", "3600"))
            if not re.fullmatch(r"[\w+=,.@-]{2,64}", session) or not 900 <= duration <= 43200:
                return _sts_error(400, "ValidationError", "invalid RoleSessionName or DurationSeconds")
            if not self._assumable(role):
                denied = f"User: {credential.arn} is not authorized to perform: sts:AssumeRole on resource: "
                return _sts_error(403, "AccessDenied", denied + role)
            try:
                cred = self.credentials.assume_role(role, session, duration)
            except ValueError as exc:
                return _sts_error(400, "ValidationError", str(exc))
            expiry = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(cred.expires_at))
            role_id = "AROA" + uuid.uuid5(uuid.NAMESPACE_URL, role).hex[:17].upper()
            return _sts_xml(
                action,
                (
                    f"<AssumedRoleUser><AssumedRoleId>{role_id}:{escape(session)}</AssumedRoleId>"
                    f"<Arn>{escape(cred.arn)}</Arn></AssumedRoleUser><Credentials>"
                    f"<AccessKeyId>{cred.access_key_id}</AccessKeyId><SecretAccessKey>{cred.secret_access_key}"
                    f"</SecretAccessKey><SessionToken>{cred.session_token}</SessionToken>"
                    f"<Expiration>{expiry}</Expiration></Credentials>"
                ),
            )
        return _sts_error(400, "InvalidAction", f"Could not find operation {action} for version 2011-06-15")
