"""How the stand-in frames aws-node payloads: like promhttp behind the API server proxy."""

from __future__ import annotations

import gzip
from collections.abc import Iterator

import pytest
from fake_eks.testing import RunningFakeEks, start_fake_eks
from fake_eks_helpers import kube_get, metrics_path


@pytest.fixture(scope="module")
def demo() -> Iterator[RunningFakeEks]:
    with start_fake_eks("demo") as eks:
        yield eks


def test_gzip_payloads_are_chunked_and_plain_ones_carry_their_length(demo: RunningFakeEks) -> None:
    # given a serving aws-node pod
    cluster = demo.clusters[0]
    pod = next(p for p in demo.truth(cluster)["pods"] if p["phase"] == "Running" and not p["fault"])
    # when it is scraped asking for gzip, then without it
    zipped = kube_get(
        demo, cluster, metrics_path(pod["name"]), headers={"Accept-Encoding": "gzip"}, stream=True
    )
    wire = zipped.raw.read(decode_content=False)
    plain = kube_get(demo, cluster, metrics_path(pod["name"]), headers={"Accept-Encoding": "identity"})
    # then the gzip answer has no length and is chunked, and it inflates to a Prometheus payload
    assert zipped.status_code == plain.status_code == 200
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert zipped.headers["Transfer-Encoding"] == "chunked"
    assert "Content-Length" not in zipped.headers
    assert b"awscni_" in gzip.decompress(wire)
    # and the plain answer carries a Content-Length equal to what was received
    assert "Content-Encoding" not in plain.headers
    assert int(plain.headers["Content-Length"]) == len(plain.content)
    assert b"awscni_" in plain.content
