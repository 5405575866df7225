"""The capacity reader (``capacity.sources.start_reading``): its memory does not grow with the cluster
(metadata only, one page at a time) and its thread ends by the collection's deadline when the Kubernetes,
EKS and EC2 APIs never answer."""

from __future__ import annotations

import socket
import ssl
import threading
import time
import tracemalloc
from collections.abc import Iterator

import boto3
import pytest
from cni_metrics.adapters.eks_auth import ClusterTarget, TokenProvider, clear_caches, resolve_endpoint
from cni_metrics.adapters.kube import api_client
from cni_metrics.capacity.sources import start_reading
from fake_eks.certs import make_cluster_tls
from fake_eks.testing import RunningFakeEks, start_fake_eks

pytestmark = pytest.mark.integration

SCENARIO = {
    "name": "reader-nodes",
    "seed": 12,
    "clusters": [{"name": "small", "nodes": 500, "system_pods": False},
                 {"name": "large", "nodes": 2000, "system_pods": False}],
}
TIMEOUT = (3.0, 30.0)


@pytest.fixture(scope="module")
def stand_in() -> Iterator[RunningFakeEks]:
    """The stand-in in its own process, so that only the reader's allocations are traced here."""
    with start_fake_eks(SCENARIO, subprocess_mode=True) as running, pytest.MonkeyPatch.context() as patch:
        for key, value in running.env().items():
            patch.setenv(key, value)
        patch.setenv("AWS_ENDPOINT_URL_EC2", "http://127.0.0.1:9")  # refused at once: no subnet numbers
        clear_caches()
        yield running
    clear_caches()


def _read_nodes(eks: RunningFakeEks, cluster: str, session: boto3.Session) -> tuple[int, float]:
    """(nodes read, peak traced MiB) of one capacity read of ``cluster`` (``session`` reused, so that its
    service models are loaded before)."""
    target = ClusterTarget(cluster, eks.connection["region"])
    tokens = TokenProvider(target, session)
    endpoint = resolve_endpoint(target, session)
    tracemalloc.start()
    reading = start_reading(lambda: api_client(endpoint.url, endpoint.ca_pem, tokens, pool_size=1), target,
                            session, TIMEOUT, time.monotonic() + 60, time.monotonic)
    sources = reading()
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return len(sources.nodes), peak


def test_node_listing_memory_does_not_grow_with_the_cluster(stand_in: RunningFakeEks) -> None:
    # given clusters of 500 and 2,000 nodes (whole Node objects of about 11 KB each), each listed once
    # before, so that the stand-in has built them
    session = boto3.Session(region_name=stand_in.connection["region"])
    for cluster in ("small", "large"):
        _read_nodes(stand_in, cluster, session)
    # when each cluster's capacity sources are read
    small, small_peak = _read_nodes(stand_in, "small", session)
    large, large_peak = _read_nodes(stand_in, "large", session)
    # then every node was read, and four times the nodes cost less than 1.5 times the memory: one page
    # of 500 at a time, not the whole list
    assert (small, large) == (500, 2000)
    assert large_peak < 1.5 * small_peak, (small_peak, large_peak)


@pytest.fixture
def silent_api() -> Iterator[tuple[str, str]]:
    """(https URL, CA PEM) of a TLS server that completes handshakes and never answers a request."""
    tls = make_cluster_tls("silent")
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[ssl.SSLSocket] = []

    def serve() -> None:
        while True:
            try:
                raw, _ = listener.accept()
                held.append(tls.server_context().wrap_socket(raw, server_side=True))
            except OSError:
                return

    threading.Thread(target=serve, daemon=True).start()
    yield f"https://127.0.0.1:{listener.getsockname()[1]}", tls.ca_pem
    listener.close()
    for conn in held:
        conn.close()


@pytest.fixture
def black_hole() -> Iterator[str]:
    """http URL of a plain server that accepts and never answers (the EKS and EC2 APIs here)."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                held.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=serve, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()
    for conn in held:
        conn.close()


class _Tokens:
    def token(self) -> str:
        return "k8s-aws-v1.silent"

    def refresh(self, stale: str) -> str:
        return "k8s-aws-v1.silent"


def test_reader_thread_ends_by_the_deadline_when_nothing_answers(
    silent_api: tuple[str, str], black_hole: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a Kubernetes API, an EKS API and an EC2 API that accept connections and never answer, and
    # read timeouts (30 s Kubernetes, botocore's 5 s x 2 attempts) far beyond the deadline
    url, ca = silent_api
    for key, value in {"AWS_ENDPOINT_URL_EKS": black_hole, "AWS_ENDPOINT_URL_EC2": black_hole,
                       "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(key, value)
    target = ClusterTarget("silent", "us-east-1")
    deadline = time.monotonic() + 1.5
    # when the capacity sources are read with a deadline 1.5 s away
    reading = start_reading(lambda: api_client(url, ca.encode(), _Tokens(), pool_size=1), target,
                            boto3.Session(region_name="us-east-1"), TIMEOUT, deadline, time.monotonic)
    sources = reading()
    # then the result comes by the deadline, and the reading thread has ended a second later
    assert time.monotonic() <= deadline + 0.5
    assert sources.errors
    time.sleep(max(0.0, deadline + 1.0 - time.monotonic()))
    alive = [t.name for t in threading.enumerate() if t.name.startswith("capacity-silent")]
    assert alive == []
