"""Pieces of the integration tests' harness shared by several modules.

``set_env`` sets a test's environment through its monkeypatch, ``collector_settings`` gives the
collector's settings the tests share; ``fleet_caches_cleared`` clears the caches a fleet run keeps (EKS
endpoints and tokens, resolved fleets, the fleet document) around a test;
``put_document`` stores a JSON document in moto's S3; ``metric_sums`` reads datums back from moto's
CloudWatch. ``ProxyHandler``, ``serving`` and ``proxying`` are the plumbing of the loopback HTTP proxies
put in front of moto (forward a request, answer one, serve on a free port and name it as an endpoint).
(tests/integration is on sys.path under pytest, and on mypy's path in pyproject.toml.)
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from cni_metrics.adapters import eks_auth
from cni_metrics.fleet import document as fleet_document
from cni_metrics.fleet import resolve as fleet_resolve

STATE_BUCKET = "cni-metrics-test-state"  # made in moto by conftest's ``aws``
# response headers a proxy does not pass on (it sets its own Content-Length)
DROPPED_HEADERS = ("transfer-encoding", "connection", "content-length", "server", "date")


def set_env(monkeypatch: pytest.MonkeyPatch, env: Mapping[str, str]) -> None:
    """Set every variable of ``env`` for the test."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)


def collector_settings(**more: str) -> dict[str, str]:
    """The collector's environment the tests share (the state bucket, PutMetricData with a 5 s margin,
    warnings only), with ``more``."""
    return {
        "STATE_BUCKET": STATE_BUCKET,
        "PUBLISH_MODE": "putmetricdata",
        "PUBLISH_MARGIN_SECONDS": "5",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        **more,
    }


def clear_fleet_caches() -> None:
    """Forget cached EKS endpoints and tokens, resolved fleets and the fleet document."""
    for clear in (eks_auth.clear_caches, fleet_resolve.clear_caches, fleet_document.clear_cache):
        clear()


@contextmanager
def fleet_caches_cleared() -> Iterator[None]:
    """The fleet caches cleared on entry and on exit."""
    clear_fleet_caches()
    try:
        yield
    finally:
        clear_fleet_caches()


def put_document(bucket: str, key: str, document: Any) -> None:
    """Make ``bucket`` in moto's S3 and store ``document`` there as JSON under ``key``."""
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(document).encode())


def metric_sums(
    cluster_id: str, names: Iterable[str], start: datetime, end: datetime, *, period: int = 86400
) -> dict[str, float]:
    """Sum of the datums of each metric named, under the one dimension CLUSTER_ID = ``cluster_id`` in
    [start, end), read back from moto's CloudWatch."""
    cloudwatch = boto3.client("cloudwatch")
    dimensions: Any = [{"Name": "CLUSTER_ID", "Value": cluster_id}]
    out = {}
    for name in names:
        points = cloudwatch.get_metric_statistics(
            Namespace="Kubernetes", MetricName=name, Dimensions=dimensions, StartTime=start, EndTime=end,
            Period=period, Statistics=["Sum"],
        )["Datapoints"]
        out[name] = sum(point["Sum"] for point in points)
    return out


class ProxyHandler(BaseHTTPRequestHandler):
    """A quiet HTTP/1.1 handler that can forward a request to ``upstream`` and answer its client."""

    protocol_version = "HTTP/1.1"
    upstream = ""  # the URL forwarded to; a subclass sets it

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def read_body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def fetch(self, body: bytes, timeout: float = 60) -> tuple[int, list[tuple[str, str]], bytes]:
        """This request, with ``body``, sent to ``upstream``: its status, the headers to pass on, its body."""
        target = urlsplit(self.upstream)
        connection = http.client.HTTPConnection(target.hostname or "127.0.0.1", target.port, timeout=timeout)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
            connection.request(self.command, self.path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
        finally:
            connection.close()
        kept = [(key, value) for key, value in response.getheaders() if key.lower() not in DROPPED_HEADERS]
        return response.status, kept, data

    def answer(self, status: int, headers: Iterable[tuple[str, str]], body: bytes) -> None:
        """Answer the client with ``status``, ``headers`` and ``body`` (its Content-Length added)."""
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """``handler`` served on a free loopback port while the block lasts; its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def proxying(
    monkeypatch: pytest.MonkeyPatch, variable: str, handler: type[BaseHTTPRequestHandler]
) -> Iterator[str]:
    """``serving(handler)``, its URL set as the endpoint variable ``variable`` (AWS_ENDPOINT_URL_S3, ...)."""
    with serving(handler) as url:
        monkeypatch.setenv(variable, url)
        yield url
