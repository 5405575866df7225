"""Local AWS for the collector's integration tests: moto in server mode, and a CloudWatch proxy that fails
chosen PutMetricData calls and measures every call (moto itself enforces no PutMetricData limit)."""

from __future__ import annotations

import gzip
import http.client
import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
import requests
from cni_metrics.adapters.eks_auth import clear_caches
from fake_eks.testing import RunningFakeEks, start_fake_eks
from moto.server import ThreadedMotoServer

REGION = "us-east-1"
STATE_BUCKET = "cni-metrics-test-state"
FAULTS = {
    "throttle": (400, {"__type": "Throttling", "message": "Rate exceeded"}, "Throttling;Sender"),
    "500": (500, {"__type": "InternalServiceError", "message": "internal"}, "InternalServiceError;Receiver"),
}


@pytest.fixture(scope="module")
def eks(request: pytest.FixtureRequest) -> Iterator[RunningFakeEks]:
    """The test module's ``SCENARIO`` stand-in for the whole module, its endpoints and keys in os.environ."""
    with start_fake_eks(request.module.SCENARIO) as running, pytest.MonkeyPatch.context() as patch:
        for key, value in running.env().items():
            patch.setenv(key, value)
        clear_caches()
        yield running
    clear_caches()


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """One moto server for the session, on a free loopback port."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A reset moto with S3 and CloudWatch pointed at it through the environment; the state bucket made."""
    requests.post(f"{moto_url}/moto-api/reset", timeout=10).raise_for_status()
    env = {
        "AWS_ENDPOINT_URL_S3": moto_url,
        "AWS_ENDPOINT_URL_CLOUDWATCH": moto_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    boto3.client("s3").create_bucket(Bucket=STATE_BUCKET)
    return moto_url


@dataclass
class PutCall:
    """One PutMetricData request seen by the proxy."""

    datums: list[dict[str, Any]]
    size: int
    failed_with: str | None


@dataclass
class CloudWatchProxy:
    """Forwards to moto; ``fail_next(kind, n)`` makes the next n PutMetricData calls fail with ``kind``
    (``kind`` None: let the call through, to fail a later one)."""

    url: str
    calls: list[PutCall] = field(default_factory=list)
    faults: list[str | None] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail_next(self, kind: str | None, count: int = 1) -> None:
        with self.lock:
            self.faults.extend([kind] * count)

    def take_fault(self) -> str | None:
        with self.lock:
            return self.faults.pop(0) if self.faults else None

    @property
    def delivered(self) -> list[PutCall]:
        return [call for call in self.calls if call.failed_with is None]


def _handler(proxy: CloudWatchProxy, upstream: str) -> type[BaseHTTPRequestHandler]:
    target = urlsplit(upstream)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

        def _forward(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.headers.get("X-Amz-Target", "").endswith(".PutMetricData"):
                fault = proxy.take_fault()
                # botocore gzips larger PutMetricData bodies; sizes are measured uncompressed
                plain = gzip.decompress(body) if self.headers.get("Content-Encoding") == "gzip" else body
                datums = json.loads(plain).get("MetricData", [])
                with proxy.lock:
                    proxy.calls.append(PutCall(datums, len(plain), fault))
                if fault is not None:
                    status, doc, query_error = FAULTS[fault]
                    payload = json.dumps(doc).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/x-amz-json-1.0")
                    self.send_header("x-amzn-query-error", query_error)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
            connection = http.client.HTTPConnection(target.hostname or "127.0.0.1", target.port, timeout=60)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
            connection.request(self.command, self.path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
            self.send_response(response.status)
            for key, value in response.getheaders():
                if key.lower() not in ("transfer-encoding", "connection", "content-length", "server", "date"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            connection.close()

        do_POST = _forward
        do_GET = _forward

    return Handler


@pytest.fixture
def cloudwatch_proxy(aws: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[CloudWatchProxy]:
    """A failing/measuring proxy in front of moto's CloudWatch, set as AWS_ENDPOINT_URL_CLOUDWATCH."""
    proxy = CloudWatchProxy("")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(proxy, aws))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    proxy.url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDWATCH", proxy.url)
    yield proxy
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def _restore_cni_metrics_loggers() -> Iterator[None]:
    """Loading a function's app.py configures every ``cni_metrics`` logger (Powertools copies its level and
    handler to them, as it should in a function's process): give them back as they were to the next test."""
    saved = {
        name: (logger.level, list(logger.handlers), logger.propagate)
        for name, logger in logging.root.manager.loggerDict.items()
        if name.startswith("cni_metrics") and isinstance(logger, logging.Logger)
    }
    yield
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if name.startswith("cni_metrics") and isinstance(logger, logging.Logger):
            level, handlers, propagate = saved.get(name, (logging.NOTSET, [], True))
            logger.setLevel(level)
            logger.handlers[:] = handlers
            logger.propagate = propagate
