"""EKS bearer tokens checked rule by rule (REFERENCE §4) with an independent SigV4 verifier; CA decoding."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, quote, urlsplit

import boto3
import pytest
from botocore.credentials import ReadOnlyCredentials
from cni_metrics.adapters.eks_auth import (
    ClusterAccessError,
    ClusterEndpoint,
    ClusterTarget,
    TokenProvider,
    clear_caches,
    decode_ca,
    make_token,
    redact,
)

ACCESS_KEY = "AKIAUNITTEST00000001"
SECRET_KEY = "unit-test-secret-key-000000000000000001"
SESSION_TOKEN = "unit-test-session-token-0001"
ALLOWED_KEYS = {
    "action", "version", "x-amz-algorithm", "x-amz-credential", "x-amz-date", "x-amz-expires",
    "x-amz-security-token", "x-amz-signature", "x-amz-signedheaders",
}
PEM = (
    "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUR0v2Yw==\n-----END CERTIFICATE-----\n"
)


@pytest.fixture(autouse=True)
def _fresh_caches() -> None:
    clear_caches()


def _session(token: str | None = None) -> boto3.Session:
    return boto3.Session(
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, aws_session_token=token,
        region_name="eu-west-1",
    )


def _decode(token: str) -> str:
    assert len(token) <= 4096
    assert token.startswith("k8s-aws-v1.")
    body = token[len("k8s-aws-v1."):]
    assert re.fullmatch(r"[A-Za-z0-9_-]+", body), "strict unpadded base64url"
    assert len(body) % 4 != 1
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()


def _signature_ok(url: str, cluster: str, secret: str) -> bool:
    """Recompute the SigV4 query signature as STS would, with ``x-k8s-aws-id: cluster``."""
    parts = urlsplit(url)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    query = dict(pairs)
    signed = query["X-Amz-SignedHeaders"].split(";")
    headers = {"host": parts.netloc, "x-k8s-aws-id": cluster}
    canonical_query = "&".join(
        f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(pairs) if k != "X-Amz-Signature"
    )
    canonical = "\n".join([
        "GET", parts.path, canonical_query, "".join(f"{h}:{headers[h]}\n" for h in signed), ";".join(signed),
        hashlib.sha256(b"").hexdigest(),
    ])
    date = query["X-Amz-Date"]
    scope = query["X-Amz-Credential"].split("/", 1)[1]
    to_sign = "\n".join(["AWS4-HMAC-SHA256", date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = f"AWS4{secret}".encode()
    for part in scope.split("/"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, query["X-Amz-Signature"])


def test_token_follows_every_rule_eks_checks() -> None:
    # given session credentials
    credentials = ReadOnlyCredentials(ACCESS_KEY, SECRET_KEY, SESSION_TOKEN)
    # when a token is made for cluster "prod" in eu-west-1
    before = datetime.now(UTC).replace(microsecond=0)
    url = _decode(make_token("prod", "eu-west-1", credentials))
    # then the URL is what aws-iam-authenticator accepts
    parts = urlsplit(url)
    assert parts.scheme == "https"
    assert parts.hostname == "sts.eu-west-1.amazonaws.com"
    assert parts.port is None
    assert parts.path == "/"
    pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=True)
    keys = [k.lower() for k, _ in pairs]
    assert len(keys) == len(set(keys)), "no duplicate keys"
    assert set(keys) <= ALLOWED_KEYS
    query = dict(pairs)
    assert query["Action"] == "GetCallerIdentity"
    assert query["Version"] == "2011-06-15"
    assert query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    assert "x-k8s-aws-id" in query["X-Amz-SignedHeaders"].split(";")
    assert query["X-Amz-Expires"] == "60"
    assert query["X-Amz-Security-Token"] == SESSION_TOKEN
    assert query["X-Amz-Credential"].startswith(f"{ACCESS_KEY}/")
    assert query["X-Amz-Credential"].endswith("/eu-west-1/sts/aws4_request")
    signed_at = datetime.strptime(query["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert before <= signed_at <= datetime.now(UTC) + timedelta(seconds=1)
    # and the signature replays for this cluster only
    assert _signature_ok(url, "prod", SECRET_KEY)
    assert not _signature_ok(url, "other-cluster", SECRET_KEY)
    assert not _signature_ok(url, "prod", SECRET_KEY + "x")


def test_token_host_ignores_configured_sts_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    # given an STS endpoint override in the standard AWS configuration
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    # when a token provider makes a token (long-term credentials: no security token)
    token = TokenProvider(ClusterTarget("prod", "ap-southeast-2"), _session()).token()
    # then it is still for the regional STS host
    url = _decode(token)
    assert urlsplit(url).hostname == "sts.ap-southeast-2.amazonaws.com"
    assert "X-Amz-Security-Token" not in dict(parse_qsl(urlsplit(url).query))
    assert _signature_ok(url, "prod", SECRET_KEY)


def test_token_is_cached_per_cluster_and_identity() -> None:
    # given providers for two clusters with the same identity
    session = _session()
    prod = TokenProvider(ClusterTarget("prod", "eu-west-1"), session)
    # when tokens are asked for twice
    first, second = prod.token(), TokenProvider(ClusterTarget("prod", "eu-west-1"), session).token()
    other = TokenProvider(ClusterTarget("dev", "eu-west-1"), session).token()
    # then one cluster reuses its token and the other cluster has its own
    assert first == second
    assert other != first
    assert _signature_ok(_decode(other), "dev", SECRET_KEY)


def test_refresh_replaces_a_refused_token_once() -> None:
    # given a provider whose token the API server refused
    provider = TokenProvider(ClusterTarget("prod", "eu-west-1"), _session())
    stale = "k8s-aws-v1.refused"
    # when several callers report the same refused token
    results = {provider.refresh(stale) for _ in range(5)}
    # then exactly one new token was made and everyone gets it
    assert provider.refreshes == 1
    assert len(results) == 1
    assert results == {provider.token()}


def test_no_secret_in_reprs() -> None:
    # given a provider with a token and an endpoint with its CA
    provider = TokenProvider(ClusterTarget("prod", "eu-west-1"), _session(SESSION_TOKEN))
    token = provider.token()
    endpoint = ClusterEndpoint("https://example.eks.amazonaws.com", PEM.encode())
    # then their reprs carry neither the token nor any credential
    for text in (repr(provider), repr(endpoint)):
        assert token not in text
        assert SECRET_KEY not in text
        assert SESSION_TOKEN not in text
        assert ACCESS_KEY not in text


def test_redact_hides_tokens_in_text() -> None:
    token = make_token("prod", "eu-west-1", ReadOnlyCredentials(ACCESS_KEY, SECRET_KEY, None))
    assert token not in redact(f"request failed: Authorization: Bearer {token}, retrying")
    assert redact("no token here") == "no token here"


def test_missing_credentials_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # given no credentials anywhere
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    provider = TokenProvider(ClusterTarget("prod", "eu-west-1"), boto3.Session(region_name="eu-west-1"))
    # when a token is asked for, then the error names the cluster
    with pytest.raises(ClusterAccessError, match=r"no AWS credentials.*prod"):
        provider.token()


@pytest.mark.parametrize("given", [PEM, base64.b64encode(PEM.encode()).decode()])
def test_ca_accepts_pem_or_base64(given: str) -> None:
    assert decode_ca("prod", given).strip() == PEM.strip().encode()


@pytest.mark.parametrize("given", ["not base64 !", base64.b64encode(b"hello").decode()])
def test_ca_rejects_garbage(given: str) -> None:
    with pytest.raises(ClusterAccessError, match="prod"):
        decode_ca("prod", given)


def test_explicit_endpoint_and_ca_skip_describe_cluster() -> None:
    # given a target with endpoint and CA (no AWS access needed)
    from cni_metrics.adapters.eks_auth import resolve_endpoint

    target = ClusterTarget("prod", "eu-west-1", endpoint="https://10.0.0.1/", ca_data=PEM)
    # when it is resolved, then nothing is asked of AWS
    endpoint = resolve_endpoint(target, boto3.Session(region_name="eu-west-1"))
    assert endpoint.url == "https://10.0.0.1"
    assert b"BEGIN CERTIFICATE" in endpoint.ca_pem
