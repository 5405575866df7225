"""Signing in to EKS clusters: endpoint and CA, bearer tokens, cross-account roles.

- The cluster endpoint and CA come from the target itself or from ``eks:DescribeCluster`` (cached across
  warm invocations). An endpoint that is not ``https://`` is refused wherever it comes from: a bearer
  token never goes over plain HTTP.
- A bearer token is a presigned STS ``GetCallerIdentity`` URL (``x-k8s-aws-id`` signed in), always for the
  regional host ``https://sts.<region>.amazonaws.com/``: signing is offline, so the STS endpoint the AWS
  configuration points at (``AWS_ENDPOINT_URL_STS``) never changes the token.
- An optional role ARN is assumed through the configured STS endpoint; its credentials are used until
  15 minutes before they expire, so a token made from them (reused at most 14 minutes) never outlives them.

AWS calls go through clients of the session given (an assumed role's credentials are passed to
``session.client``), so the handlers registered on it (the run's deadline, ``aws_clients``) bound them.
Tokens and credentials never appear in reprs, logs or error messages.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.auth import SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import ReadOnlyCredentials
from botocore.exceptions import BotoCoreError, ClientError
from cachetools import TTLCache

from cni_metrics.adapters.aws_clients import error_text

TOKEN_PREFIX = "k8s-aws-v1."  # noqa: S105 (a prefix, not a secret)
CLUSTER_ID_HEADER = "x-k8s-aws-id"
TOKEN_EXPIRES_SECONDS = 60
TOKEN_REUSE_SECONDS = 14 * 60
ASSUMED_CREDENTIALS_MARGIN_SECONDS = 15 * 60
CLUSTER_INFO_TTL_SECONDS = 15 * 60
ROLE_SESSION_NAME = "cni-metrics"

_REDACTED = "<redacted>"
# DescribeCluster and AssumeRole must not eat the run's time budget (botocore defaults: 60 s, 5 attempts).
_AUTH_CLIENT_CONFIG = Config(
    connect_timeout=3, read_timeout=10, retries={"max_attempts": 3, "mode": "standard"}
)


class ClusterAccessError(Exception):
    """Signing in to a cluster failed; the message is safe to log (no token, no credentials)."""


@dataclass(frozen=True, slots=True)
class ClusterTarget:
    """One cluster to collect from.

    ``endpoint`` and ``ca_data`` (base64 of the PEM, as DescribeCluster and kubeconfig give it, or the PEM
    itself) skip DescribeCluster when both are given. ``role_arn`` is assumed first (other accounts).
    """

    name: str
    region: str
    role_arn: str | None = None
    endpoint: str | None = None
    ca_data: str | None = None


@dataclass(frozen=True, slots=True)
class ClusterEndpoint:
    """Where a cluster's API server is and the CA that signs its certificate (PEM bytes)."""

    url: str
    ca_pem: bytes = field(repr=False)


def decode_ca(cluster: str, ca_data: str) -> bytes:
    """The PEM bytes of a CA given as PEM text or base64 of PEM."""
    text = ca_data.strip()
    if text.startswith("-----BEGIN"):
        pem = text.encode()
    else:
        try:
            pem = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise ClusterAccessError(f"CA data for cluster {cluster} is neither PEM nor base64") from None
    if b"-----BEGIN CERTIFICATE-----" not in pem:
        raise ClusterAccessError(f"CA data for cluster {cluster} holds no PEM certificate")
    return pem


# ---------------------------------------------------------------------------------------------------
# Credentials (optionally through AssumeRole)


@dataclass(frozen=True, slots=True)
class _AssumedCredentials:
    credentials: ReadOnlyCredentials = field(repr=False)
    use_until: float  # time.time()


_ASSUMED: dict[tuple[str, str], _AssumedCredentials] = {}
_ASSUMED_LOCK = threading.Lock()


def credentials_for(
    target: ClusterTarget, session: boto3.Session, *, clock: Callable[[], float] = time.time
) -> ReadOnlyCredentials:
    """Frozen credentials to sign in to ``target`` with: the session's own, or the target's role's."""
    if target.role_arn is None:
        creds = session.get_credentials()
        if creds is None:
            raise ClusterAccessError(f"no AWS credentials found to sign in to cluster {target.name}")
        frozen: ReadOnlyCredentials = creds.get_frozen_credentials()
        return frozen
    key = (target.role_arn, target.region)
    with _ASSUMED_LOCK:
        cached = _ASSUMED.get(key)
        if cached is not None and clock() < cached.use_until:
            return cached.credentials
        assumed = _assume_role(target, session, clock)
        _ASSUMED[key] = assumed
        return assumed.credentials


def _assume_role(
    target: ClusterTarget, session: boto3.Session, clock: Callable[[], float]
) -> _AssumedCredentials:
    """AssumeRole through the configured STS endpoint (standard settings, AWS_ENDPOINT_URL_STS included)."""
    sts: Any = session.client("sts", region_name=target.region, config=_AUTH_CLIENT_CONFIG)
    try:
        answer = sts.assume_role(RoleArn=target.role_arn, RoleSessionName=ROLE_SESSION_NAME)
    except (ClientError, BotoCoreError) as exc:
        raise ClusterAccessError(
            f"AssumeRole {target.role_arn} for cluster {target.name} failed: {error_text(exc)}"
        ) from None
    raw = answer["Credentials"]
    expiration: datetime = raw["Expiration"]
    if expiration.tzinfo is None:
        expiration = expiration.replace(tzinfo=UTC)
    lifetime = (expiration - datetime.now(UTC)).total_seconds()
    use_until = clock() + lifetime - ASSUMED_CREDENTIALS_MARGIN_SECONDS
    creds = ReadOnlyCredentials(raw["AccessKeyId"], raw["SecretAccessKey"], raw["SessionToken"])
    return _AssumedCredentials(creds, use_until)


# ---------------------------------------------------------------------------------------------------
# Endpoint and CA


_CLUSTER_INFO: TTLCache[tuple[str, str, str | None, str], ClusterEndpoint] = TTLCache(
    maxsize=512, ttl=CLUSTER_INFO_TTL_SECONDS
)
_CLUSTER_INFO_LOCK = threading.Lock()


def resolve_endpoint(target: ClusterTarget, session: boto3.Session) -> ClusterEndpoint:
    """The target's API server URL and CA: from the target when given, else DescribeCluster (cached)."""
    if target.endpoint:
        https_only(target.name, target.endpoint)
    if target.endpoint and target.ca_data:
        return ClusterEndpoint(target.endpoint.rstrip("/"), decode_ca(target.name, target.ca_data))
    key = _info_key(target)
    with _CLUSTER_INFO_LOCK:
        cached = _CLUSTER_INFO.get(key)
    if cached is None:
        cached = _describe_cluster(target, session)
        with _CLUSTER_INFO_LOCK:
            _CLUSTER_INFO[key] = cached
    if target.endpoint:
        return ClusterEndpoint(target.endpoint.rstrip("/"), cached.ca_pem)
    if target.ca_data:
        return ClusterEndpoint(cached.url, decode_ca(target.name, target.ca_data))
    return cached


def https_only(cluster: str, endpoint: str) -> None:
    """Refuse an API server endpoint a bearer token must not be sent to: anything but ``https://host``."""
    parts = urllib.parse.urlsplit(endpoint)
    if parts.scheme != "https" or not parts.hostname:
        shown = f"{parts.scheme}://{parts.hostname}" if parts.scheme else "(no scheme)"
        raise ClusterAccessError(
            f"endpoint of cluster {cluster} is not an https:// URL ({shown}): no bearer token is sent to it"
        )


def forget_endpoint(target: ClusterTarget) -> None:
    """Drop the cached DescribeCluster answer of ``target`` (after a failure: the cluster may be new)."""
    with _CLUSTER_INFO_LOCK:
        _CLUSTER_INFO.pop(_info_key(target), None)


def _info_key(target: ClusterTarget) -> tuple[str, str, str | None, str]:
    """Cache identity of a DescribeCluster answer: the target, and which EKS API was asked."""
    eks_api = os.environ.get("AWS_ENDPOINT_URL_EKS") or os.environ.get("AWS_ENDPOINT_URL") or ""
    return (target.region, target.name, target.role_arn, eks_api)


def client_for(target: ClusterTarget, session: boto3.Session, service: str, config: Config) -> Any:
    """A client of ``service`` in the target's region and account (through its role when it has one),
    made by ``session`` so that it carries the session's event handlers."""
    keys: dict[str, str | None] = {}
    if target.role_arn is not None:
        creds = credentials_for(target, session)
        keys = {"aws_access_key_id": creds.access_key, "aws_secret_access_key": creds.secret_key,
                "aws_session_token": creds.token}
    return session.client(service, region_name=target.region, config=config, **keys)  # type: ignore[call-overload]


def _describe_cluster(target: ClusterTarget, session: boto3.Session) -> ClusterEndpoint:
    eks = client_for(target, session, "eks", _AUTH_CLIENT_CONFIG)
    try:
        cluster = eks.describe_cluster(name=target.name)["cluster"]
    except (ClientError, BotoCoreError) as exc:
        raise ClusterAccessError(f"DescribeCluster {target.name} failed: {error_text(exc)}") from None
    endpoint = cluster.get("endpoint")
    ca_data = cluster.get("certificateAuthority", {}).get("data")
    if not endpoint or not ca_data:
        raise ClusterAccessError(
            f"cluster {target.name} has no endpoint or CA yet (status {cluster.get('status', '?')})"
        )
    https_only(target.name, str(endpoint))
    return ClusterEndpoint(str(endpoint).rstrip("/"), decode_ca(target.name, str(ca_data)))


def clear_caches() -> None:
    """Forget cached cluster endpoints, assumed credentials and tokens (tests, credential rotation)."""
    with _CLUSTER_INFO_LOCK:
        _CLUSTER_INFO.clear()
    with _ASSUMED_LOCK:
        _ASSUMED.clear()
    with _TOKENS_LOCK:
        _TOKENS.clear()


# ---------------------------------------------------------------------------------------------------
# Bearer tokens


def make_token(cluster: str, region: str, credentials: ReadOnlyCredentials) -> str:
    """A fresh EKS bearer token: presigned regional STS GetCallerIdentity, signed offline by botocore."""
    url = f"https://sts.{region}.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15"
    request = AWSRequest(method="GET", url=url, headers={CLUSTER_ID_HEADER: cluster})
    SigV4QueryAuth(credentials, "sts", region, expires=TOKEN_EXPIRES_SECONDS).add_auth(request)
    encoded = base64.urlsafe_b64encode(str(request.url).encode()).decode().rstrip("=")
    return TOKEN_PREFIX + encoded


_TOKENS: TTLCache[tuple[str, str, str], str] = TTLCache(maxsize=1024, ttl=TOKEN_REUSE_SECONDS)
_TOKENS_LOCK = threading.Lock()


class TokenProvider:
    """Bearer tokens for one cluster, cached up to 14 minutes per (cluster, identity), shared by threads.

    ``token()`` gives the current token; ``refresh(stale)`` replaces ``stale`` by a new one (once: callers
    that saw the same stale token after a 401 all get the one replacement).
    """

    def __init__(self, target: ClusterTarget, session: boto3.Session) -> None:
        self._target = target
        self._session = session
        self.refreshes = 0

    def __repr__(self) -> str:
        return f"TokenProvider(cluster={self._target.name!r}, region={self._target.region!r})"

    def _key(self, credentials: ReadOnlyCredentials) -> tuple[str, str, str]:
        identity = hashlib.sha256((credentials.access_key or "").encode()).hexdigest()[:16]
        return (self._target.name, self._target.region, identity)

    def token(self) -> str:
        """The cached token for this cluster and identity, or a new one."""
        credentials = credentials_for(self._target, self._session)
        key = self._key(credentials)
        with _TOKENS_LOCK:
            token = _TOKENS.get(key)
            if token is None:
                token = make_token(self._target.name, self._target.region, credentials)
                _TOKENS[key] = token
            return token

    def refresh(self, stale: str) -> str:
        """A new token in place of ``stale`` (which the API server refused), made at most once."""
        credentials = credentials_for(self._target, self._session)
        key = self._key(credentials)
        with _TOKENS_LOCK:
            current = _TOKENS.get(key)
            if current is not None and current != stale:
                return current
            token = make_token(self._target.name, self._target.region, credentials)
            _TOKENS[key] = token
            self.refreshes += 1
            return token


_TOKEN_PATTERN = re.compile(re.escape(TOKEN_PREFIX) + r"[A-Za-z0-9_=-]*")


def redact(text: str) -> str:
    """``text`` with anything that looks like an EKS bearer token replaced by a marker."""
    return _TOKEN_PATTERN.sub(_REDACTED, text)
