"""aws-node pod discovery with the kubernetes client.

Lists ``k8s-app=aws-node`` pods in kube-system page by page (``limit``/``continue``; an expired continue
token restarts the listing once). TLS is verified with the cluster CA, the bearer token comes from a
refresh hook on every request, and a 401 makes one new token and one retry. Requests go through the
client's generic ``ApiClient`` (serialisation, auth settings, TLS, REST layer) and the pod list is read as
raw JSON: importing ``CoreV1Api`` alone costs seconds of cold start (its pydantic models), and
deserialising thousands of pods into models costs more. Failures become ``DiscoveryError`` with a clear,
secret-free message.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from kubernetes.client.api_client import ApiClient
from kubernetes.client.configuration import Configuration
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from cni_metrics.adapters.scrape.policy import exception_text, one_line, parse_retry_after, status_message
from cni_metrics.adapters.tokens import BearerTokens

NAMESPACE = "kube-system"
LABEL_SELECTOR = "k8s-app=aws-node"
CONTAINER = "aws-node"
PAGE_SIZE = 500
LIST_THROTTLE_RETRIES = 3
MIN_REQUEST_SECONDS = 0.05  # no Kubernetes request starts with less time than this left


class OutOfTime(TimeoutError):
    """The deadline passed before a Kubernetes request could start."""


@dataclass(frozen=True, slots=True)
class Budget:
    """Per-request Kubernetes timeouts, cut to the time left before ``deadline`` (on ``clock``)."""

    timeout: tuple[float, float]
    deadline: float | None = None
    clock: Callable[[], float] = time.monotonic

    def next(self) -> tuple[float, float]:
        """The (connect, read) timeouts of the next request; ``OutOfTime`` when none is left."""
        if self.deadline is None:
            return self.timeout
        remaining = self.deadline - self.clock()
        if remaining <= MIN_REQUEST_SECONDS:
            raise OutOfTime("the collection's deadline passed")
        return (min(self.timeout[0], remaining), min(self.timeout[1], remaining))


class DiscoveryError(Exception):
    """Listing aws-node pods failed; the message is safe to log."""


@dataclass(frozen=True, slots=True)
class AwsNodePod:
    """What collection needs of one aws-node pod."""

    uid: str
    name: str
    node_name: str | None
    pod_ip: str | None
    phase: str | None
    started_at: datetime | None
    restart_count: int | None

    @property
    def scrapable(self) -> bool:
        """Running and with an IP: worth a scrape."""
        return self.phase == "Running" and bool(self.pod_ip)


def ca_file(ca_pem: bytes) -> str:
    """A file holding ``ca_pem`` (the kubernetes client wants a path), written once per CA content."""
    digest = hashlib.sha256(ca_pem).hexdigest()[:24]
    path = Path(tempfile.gettempdir()) / f"cni-metrics-ca-{digest}.pem"
    if not path.exists() or path.read_bytes() != ca_pem:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".cni-metrics-ca-")
        with os.fdopen(fd, "wb") as handle:
            handle.write(ca_pem)
        os.replace(tmp, path)
    return str(path)


def api_client(endpoint_url: str, ca_pem: bytes, tokens: BearerTokens, *, pool_size: int = 4) -> ApiClient:
    """A kubernetes ApiClient for one cluster: CA-verified TLS, the bearer token of ``tokens`` per request."""
    config = Configuration(host=endpoint_url)
    config.verify_ssl = True
    config.ssl_ca_cert = ca_file(ca_pem)
    config.api_key = {"authorization": tokens.token()}
    config.api_key_prefix = {"authorization": "Bearer"}
    config.retries = False
    config.connection_pool_maxsize = pool_size

    def hook(cfg: Any) -> None:
        cfg.api_key["authorization"] = tokens.token()

    config.refresh_api_key_hook = hook  # type: ignore[assignment]
    return ApiClient(config)


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _count(value: object) -> int | None:
    """A JSON count as the API server writes it (a non-negative integer), None for anything else."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def pod_from_json(item: Mapping[str, Any]) -> AwsNodePod:
    """An ``AwsNodePod`` from one pod object of a list response."""
    metadata = item.get("metadata") or {}
    spec = item.get("spec") or {}
    status = item.get("status") or {}
    restarts: int | None = None
    for container in status.get("containerStatuses") or ():
        if container.get("name") == CONTAINER:
            restarts = _count(container.get("restartCount", 0))
    return AwsNodePod(
        uid=str(metadata.get("uid") or metadata.get("name")),
        name=str(metadata.get("name")),
        node_name=spec.get("nodeName"),
        pod_ip=status.get("podIP"),
        phase=status.get("phase"),
        started_at=_parse_time(status.get("startTime")),
        restart_count=restarts,
    )


def list_aws_node_pods(
    api: ApiClient,
    tokens: BearerTokens,
    cluster: str,
    *,
    timeout: tuple[float, float] = (3.0, 10.0),
    page_size: int = PAGE_SIZE,
    deadline: float | None = None,
) -> list[AwsNodePod]:
    """Every aws-node pod of the cluster (all pages); raises ``DiscoveryError``.

    ``deadline`` (monotonic) bounds each page's timeouts and waiting for APF throttling (429).
    """
    for attempt in range(2):
        try:
            return list(_pages(api, tokens, timeout, page_size, deadline))
        except ApiException as exc:
            if exc.status == 410 and attempt == 0:
                continue  # continue token expired: list again from the start
            raise DiscoveryError(_api_error(cluster, api, exc)) from None
        except (HTTPError, OSError) as exc:
            raise DiscoveryError(_connection_error(cluster, api, exc)) from None
        except DiscoveryError as exc:
            raise DiscoveryError(f"cluster {cluster}: {exc}") from None
    raise DiscoveryError(f"listing aws-node pods in cluster {cluster}: continue token expired twice")


def _pages(
    api: ApiClient, tokens: BearerTokens, timeout: tuple[float, float], page_size: int,
    deadline: float | None,
) -> Iterator[AwsNodePod]:
    for item in page_items(lambda token: _page(api, tokens, token, timeout, page_size, deadline)):
        yield pod_from_json(item)


def page_items(fetch: Callable[[str | None], dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """The items of a Kubernetes list, page by page: ``fetch(continue_token)`` reads one page (None: the
    first). A page is released before the next is asked for, so at most one is in memory."""
    token: str | None = None
    while True:
        page = fetch(token)
        token = (page.get("metadata") or {}).get("continue") or None
        items = page.get("items") or []
        del page
        yield from items
        del items
        if token is None:
            return


def _page(
    api: ApiClient,
    tokens: BearerTokens,
    token: str | None,
    timeout: tuple[float, float],
    page_size: int,
    deadline: float | None,
) -> dict[str, Any]:
    """One page; a 401 makes one new token and retries, a 429 (APF) waits Retry-After, up to 3 times."""
    refreshed = False
    throttled = 0
    while True:
        try:
            document = _get_json(api, token, timeout, page_size, deadline)
        except ApiException as exc:
            if exc.status == 401 and not refreshed:
                refreshed = True
                tokens.refresh(tokens.token())
                continue
            if exc.status == 429 and throttled < LIST_THROTTLE_RETRIES:
                headers = exc.headers or {}
                hint = parse_retry_after(headers.get("Retry-After")) or 1.0
                delay = min(hint, 5.0) + random.uniform(0, 0.2)
                if deadline is None or time.monotonic() + delay < deadline:
                    throttled += 1
                    time.sleep(delay)
                    continue
            raise
        return document


def _get_json(
    api: ApiClient, token: str | None, timeout: tuple[float, float], page_size: int, deadline: float | None
) -> dict[str, Any]:
    """GET one page of aws-node pods as JSON; non-2xx raises the client's ``ApiException``."""
    query: list[tuple[str, str | int]] = [("labelSelector", LABEL_SELECTOR), ("limit", page_size)]
    if token:
        query.append(("continue", token))
    try:
        timeout = Budget(timeout, deadline).next()
    except OutOfTime:
        raise DiscoveryError("the deadline passed while listing aws-node pods") from None
    return get_json(api, f"/api/v1/namespaces/{NAMESPACE}/pods", query, timeout)


def get_json(
    api: ApiClient,
    path: str,
    query: list[tuple[str, str | int]],
    timeout: tuple[float, float],
    accept: str = "application/json",
) -> dict[str, Any]:
    """GET ``path`` as JSON through the client's REST layer (auth, TLS, refresh hook); non-2xx raises."""
    request = api.param_serialize(
        method="GET", resource_path=path, query_params=query,
        header_params={"Accept": accept}, auth_settings=["BearerToken"],
    )
    response: Any = api.call_api(*request, _request_timeout=timeout)
    response.read()
    if not 200 <= response.status <= 299:
        raise ApiException.from_response(http_resp=response, body=None, data=None)
    document: dict[str, Any] = json.loads(response.data)
    return document


def _api_error(cluster: str, api: ApiClient, exc: ApiException) -> str:
    body = exc.body if isinstance(exc.body, (str, bytes)) else ""
    message = status_message(body.encode() if isinstance(body, str) else body) or str(exc.reason or "")
    if exc.status == 0 and "SSL" in str(exc.reason):
        host = api.configuration.host
        return f"TLS verification failed for cluster {cluster} endpoint {host}: {one_line(str(exc.reason))}"
    if exc.status == 401:
        return (
            f"the API server of cluster {cluster} refused the bearer token (401 Unauthorized) even after a "
            "new token: map this identity with an EKS access entry or aws-auth"
        )
    if exc.status == 403:
        return f"RBAC denies listing aws-node pods in cluster {cluster}: {message}"
    return f"listing aws-node pods in cluster {cluster} failed: HTTP {exc.status}: {message}"


def _connection_error(cluster: str, api: ApiClient, exc: BaseException) -> str:
    host = api.configuration.host
    text = exception_text(exc, named=False)
    if "CERTIFICATE_VERIFY_FAILED" in text or "SSL" in type(exc).__name__:
        return f"TLS verification failed for cluster {cluster} endpoint {host}: {text}"
    return f"cannot reach the API server of cluster {cluster} at {host}: {text}"
