"""Local AWS for the collector's integration tests: moto in server mode, and a CloudWatch proxy that fails
chosen PutMetricData calls and measures every call (moto itself enforces no PutMetricData limit)."""

from __future__ import annotations

import gzip
import json
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any, TypeVar

import boto3
import pytest
import requests
from cni_metrics.adapters.eks_auth import clear_caches
from cni_metrics.adapters.scrape import TRANSPORTS, Transport
from fake_eks.testing import RunningFakeEks, start_fake_eks
from harness import STATE_BUCKET as STATE_BUCKET  # the name test modules import from here
from harness import ProxyHandler, proxying
from moto.server import ThreadedMotoServer
from tls_server import LoopbackServer

Server = TypeVar("Server", bound=LoopbackServer)
REGION = "us-east-1"
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


def _handler(proxy: CloudWatchProxy, upstream: str) -> type[ProxyHandler]:
    class Handler(ProxyHandler):
        def _forward(self) -> None:
            body = self.read_body()
            if self.headers.get("X-Amz-Target", "").endswith(".PutMetricData"):
                fault = proxy.take_fault()
                # botocore gzips larger PutMetricData bodies; sizes are measured uncompressed
                plain = gzip.decompress(body) if self.headers.get("Content-Encoding") == "gzip" else body
                datums = json.loads(plain).get("MetricData", [])
                with proxy.lock:
                    proxy.calls.append(PutCall(datums, len(plain), fault))
                if fault is not None:
                    status, doc, query_error = FAULTS[fault]
                    headers = [
                        ("Content-Type", "application/x-amz-json-1.0"), ("x-amzn-query-error", query_error)
                    ]
                    self.answer(status, headers, json.dumps(doc).encode())
                    return
            self.answer(*self.fetch(body))

        do_POST = _forward
        do_GET = _forward

    Handler.upstream = upstream
    return Handler


@pytest.fixture
def cloudwatch_proxy(aws: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[CloudWatchProxy]:
    """A failing/measuring proxy in front of moto's CloudWatch, set as AWS_ENDPOINT_URL_CLOUDWATCH."""
    proxy = CloudWatchProxy("")
    with proxying(monkeypatch, "AWS_ENDPOINT_URL_CLOUDWATCH", _handler(proxy, aws)) as proxy.url:
        yield proxy


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> Transport:
    """Each test taking it runs on both scrape transports."""
    value: Transport = request.param
    return value


@pytest.fixture
def loopback() -> Iterator[Callable[[Server], Server]]:
    """Start a loopback server (tls_server) for the rest of the test: ``loopback(KeepAliveServer(...))``."""
    with ExitStack() as servers:

        def start(server: Server) -> Server:
            servers.enter_context(server)
            return server

        yield start


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
