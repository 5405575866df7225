"""Identities and EKS bearer-token authentication, checked the way aws-iam-authenticator does it.

The STS replay is not performed over the network: the SigV4 signature is recomputed here from the
credentials table, with ``x-k8s-aws-id`` set to the API server's own cluster name.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, urlsplit

TOKEN_PREFIX = "k8s-aws-v1."
MAX_TOKEN_LENGTH = 4096
ALLOWED_QUERY_KEYS = frozenset(
    {
        "action",
        "version",
        "x-amz-algorithm",
        "x-amz-credential",
        "x-amz-date",
        "x-amz-expires",
        "x-amz-security-token",
        "x-amz-signature",
        "x-amz-signedheaders",
    }
)
_HOST_RE = re.compile(r"^sts(-fips)?\.([a-z0-9-]+)\.(amazonaws\.com|api\.aws)$")
_B64URL_RE = re.compile(r"^[A-Za-z0-9_-]*$")
_ASSUMED_ROLE_RE = re.compile(r"^arn:(aws[a-z-]*):sts::(\d{12}):assumed-role/([^/]+)/(.+)$")
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


class AuthError(Exception):
    """A token was refused; ``rule`` names the check that failed (never shown to the client)."""

    def __init__(self, rule: str, detail: str = "") -> None:
        super().__init__(f"{rule}: {detail}" if detail else rule)
        self.rule = rule


@dataclass
class Credential:
    """One access key the stand-in accepts, and whose identity it is."""

    access_key_id: str
    secret_access_key: str
    arn: str
    session_token: str | None = None
    expires_at: float | None = None  # epoch seconds, temporary credentials only


@dataclass
class CredentialTable:
    """Access keys known to the stand-in's STS (long-term ones and those AssumeRole issued)."""

    by_key: dict[str, Credential] = field(default_factory=dict)

    def add(self, cred: Credential) -> None:
        """Register an access key."""
        self.by_key[cred.access_key_id] = cred

    def assume_role(self, role_arn: str, session_name: str, duration_s: int) -> Credential:
        """Issue temporary credentials whose identity is the assumed-role session ARN."""
        m = re.match(r"^arn:(aws[a-z-]*):iam::(\d{12}):role/(?:.*/)?([^/]+)$", role_arn)
        if not m:
            raise ValueError(f"invalid role ARN {role_arn!r}")
        partition, account, role = m.groups()
        cred = Credential(
            access_key_id="ASIA" + secrets.token_hex(8).upper(),
            secret_access_key=secrets.token_urlsafe(30),
            arn=f"arn:{partition}:sts::{account}:assumed-role/{role}/{session_name}",
            session_token="FQoGZXIvYXdzE" + secrets.token_urlsafe(96),
            expires_at=time.time() + duration_s,
        )
        self.add(cred)
        return cred

    def lookup(self, access_key_id: str, session_token: str | None, now: float) -> Credential | None:
        """The credential for a key, if known, its session token matches and it has not expired."""
        cred = self.by_key.get(access_key_id)
        if cred is None or cred.session_token != session_token:
            return None
        if cred.expires_at is not None and now >= cred.expires_at:
            return None
        return cred


def canonical_arn(arn: str) -> str:
    """Canonicalise an assumed-role session ARN to its role ARN, lower-cased, as EKS looks it up."""
    m = _ASSUMED_ROLE_RE.match(arn)
    if m:
        partition, account, role, _session = m.groups()
        arn = f"arn:{partition}:iam::{account}:role/{role}"
    return arn.lower()


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def sigv4_signature(secret: str, amz_date: str, region: str, service: str, canonical_request: str) -> str:
    """The SigV4 signature (hex) of a canonical request."""
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    string_to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical_request.encode()).hexdigest()]
    )
    key = _hmac(f"AWS4{secret}".encode(), amz_date[:8])
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


def _uri_encode(value: str) -> str:
    return quote(value, safe="-_.~")


@dataclass(frozen=True)
class TokenIdentity:
    """Who a valid token belongs to, and until when it is valid."""

    arn: str
    valid_until: float


def verify_token(
    token: str,
    *,
    cluster: str,
    credentials: CredentialTable,
    now: float,
    max_age_s: float = 900.0,
) -> TokenIdentity:
    """Check an EKS token, rule by rule (REFERENCE §4), then its signature; raise AuthError on failure."""
    if len(token) > MAX_TOKEN_LENGTH:
        raise AuthError("length", f"{len(token)} > {MAX_TOKEN_LENGTH}")
    if not token.startswith(TOKEN_PREFIX):
        raise AuthError("prefix")
    body = token[len(TOKEN_PREFIX) :]
    if not _B64URL_RE.match(body) or len(body) % 4 == 1:
        raise AuthError("base64")
    try:
        url = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise AuthError("base64", str(exc)) from exc
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError as exc:
        raise AuthError("url", str(exc)) from exc
    if parts.scheme != "https":
        raise AuthError("scheme", parts.scheme)
    host_match = _HOST_RE.match(host)
    if host == "sts.amazonaws.com":
        host_region = "us-east-1"
    elif host_match:
        host_region = host_match.group(2)
    else:
        raise AuthError("host", host)
    if parts.path != "/":
        raise AuthError("path", parts.path)
    try:
        pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=True)
    except ValueError as exc:
        raise AuthError("query", str(exc)) from exc
    params: dict[str, str] = {}
    seen: set[str] = set()
    for key, value in pairs:
        lower = key.lower()
        if lower in seen:
            raise AuthError("duplicate_key", key)
        seen.add(lower)
        if lower not in ALLOWED_QUERY_KEYS:
            raise AuthError("unknown_key", key)
        params[key] = value
    if params.get("Action") != "GetCallerIdentity":
        raise AuthError("action", params.get("Action", ""))
    signed_headers = params.get("X-Amz-SignedHeaders", "")
    if "x-k8s-aws-id" not in signed_headers.split(";"):
        raise AuthError("signed_headers", signed_headers)
    expires = params.get("X-Amz-Expires", "")
    if not re.fullmatch(r"\d+", expires) or not 0 <= int(expires) <= 900:
        raise AuthError("expires", expires)
    amz_date = params.get("X-Amz-Date")
    if amz_date is None:
        raise AuthError("date_missing")
    try:
        signed_at = dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC).timestamp()
    except ValueError as exc:
        raise AuthError("date_format", amz_date) from exc
    if now > signed_at + max_age_s:
        raise AuthError("expired", f"signed {now - signed_at:.0f}s ago, max age {max_age_s:.0f}s")
    # The STS replay: recompute the signature with x-k8s-aws-id = our own cluster name.
    cred_parts = params.get("X-Amz-Credential", "").split("/")
    if len(cred_parts) != 5 or cred_parts[4] != "aws4_request" or cred_parts[3] != "sts":
        raise AuthError("signature", "malformed credential scope")
    access_key, scope_date, scope_region = cred_parts[0], cred_parts[1], cred_parts[2]
    if scope_date != amz_date[:8] or scope_region != host_region:
        raise AuthError("signature", "credential scope does not match date or endpoint region")
    cred = credentials.lookup(access_key, params.get("X-Amz-Security-Token"), now)
    if cred is None:
        raise AuthError("signature", "unknown or expired access key, or wrong session token")
    header_values = {"host": host if port is None else f"{host}:{port}", "x-k8s-aws-id": cluster}
    names = signed_headers.split(";")
    canonical_headers = "".join(f"{n}:{header_values.get(n, '')}\n" for n in names)
    canonical_query = "&".join(
        f"{_uri_encode(k)}={_uri_encode(v)}" for k, v in sorted(pairs) if k != "X-Amz-Signature"
    )
    canonical_request = "\n".join(
        ["GET", "/", canonical_query, canonical_headers, signed_headers, _EMPTY_SHA256]
    )
    expected = sigv4_signature(cred.secret_access_key, amz_date, scope_region, "sts", canonical_request)
    if not hmac.compare_digest(expected, params.get("X-Amz-Signature", "")):
        raise AuthError("signature", "signature does not match")
    valid_until = signed_at + max_age_s
    if cred.expires_at is not None:
        valid_until = min(valid_until, cred.expires_at)
    return TokenIdentity(arn=cred.arn, valid_until=valid_until)


_AUTH_HEADER_RE = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request,\s*"
    r"SignedHeaders=([a-z0-9;-]+),\s*Signature=([0-9a-f]{64})$"
)


def verify_request_signature(
    *,
    method: str,
    raw_path: str,
    headers: dict[str, str],
    body: bytes,
    credentials: CredentialTable,
    now: float,
) -> tuple[Credential, str]:
    """Check the SigV4 ``Authorization`` header of an AWS API call (EKS, STS): the caller and the region
    the call was signed for (which regional endpoint it was meant for).

    Raises AuthError with rule ``unknown_key`` (unknown/expired key or wrong session token) or ``signature``.
    """
    m = _AUTH_HEADER_RE.match(headers.get("authorization", ""))
    amz_date = headers.get("x-amz-date", "")
    if not m or amz_date[:8] != m.group(2):
        raise AuthError("signature", "missing or malformed Authorization / X-Amz-Date")
    access_key, _day, region, service, signed_headers, signature = m.groups()
    cred = credentials.lookup(access_key, headers.get("x-amz-security-token"), now)
    if cred is None:
        raise AuthError("unknown_key", access_key)
    path, _, query = raw_path.partition("?")
    pairs = sorted(tuple(p.partition("=")[::2]) for p in query.split("&")) if query else []
    canonical_query = "&".join(f"{k}={v}" for k, v in pairs)
    canonical_headers = "".join(
        f"{n}:{' '.join(headers.get(n, '').split())}\n" for n in signed_headers.split(";")
    )
    payload = headers.get("x-amz-content-sha256") or hashlib.sha256(body).hexdigest()
    canonical_request = "\n".join(
        [method, quote(path, safe="/~"), canonical_query, canonical_headers, signed_headers, payload]
    )
    expected = sigv4_signature(cred.secret_access_key, amz_date, region, service, canonical_request)
    if not hmac.compare_digest(expected, signature):
        raise AuthError("signature", "signature does not match")
    return cred, region
