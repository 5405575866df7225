"""Small HTTP helpers for the stand-in's own tests (plain requests against its endpoints)."""

from __future__ import annotations

from typing import Any

import requests
from fake_eks.testing import RunningFakeEks

PODS = "/api/v1/namespaces/kube-system/pods"


def kube_get(
    eks: RunningFakeEks,
    cluster: str,
    path: str,
    *,
    token: str | None = None,
    timeout: float | tuple[float, float] = 10,
    **kwargs: Any,
) -> requests.Response:
    """GET a Kubernetes API path of a cluster, with a botocore-made token unless one is given."""
    headers = kwargs.pop("headers", {})
    headers.setdefault("Authorization", f"Bearer {token if token is not None else eks.token(cluster)}")
    return requests.get(
        eks.endpoint(cluster) + path, headers=headers, verify=eks.ca_file(cluster), timeout=timeout, **kwargs
    )


def metrics_path(pod: str, port: int = 61678) -> str:
    """The proxy path of a pod's metrics."""
    return f"{PODS}/{pod}:{port}/proxy/metrics"


def pod_by_fault(eks: RunningFakeEks, cluster: str, fault: str) -> dict[str, Any]:
    """The truth record of the (first) pod with that fault."""
    return next(p for p in eks.truth(cluster)["pods"] if p["fault"] == fault)
