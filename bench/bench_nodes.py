"""Node listing for capacity numbers: peak Python memory of listing 10,000 realistic Node objects.

The stand-in (``fake-eks`` child process, scenario ``scale-10k``) serves EKS-shaped Node objects (labels,
annotations, managedFields, conditions, addresses, capacity, 24 images, nodeInfo: about 11 KB of JSON
each) and honours ``Accept: ...;as=PartialObjectMetadataList;...`` and limit/continue, as the API server
does. Side by side, in this process, after one warm-up list (the stand-in builds its objects once):

- ``whole objects, kept``: pages of 500 with ``Accept: application/json``, every item kept, as the
  collector did against an API server ignoring the metadata-only header (the stand-in before issue 14);
- ``metadata only, kept``: the same with the metadata-only header, every item kept (the collector before
  issue 14 against a real API server);
- ``metadata only, per page``: ``capacity.sources.list_nodes``, each page reduced to zone and instance
  type before the next is read (the collector now).

Reported per way: peak traced Python memory (``tracemalloc``) during the listing, what stays allocated
after it, wall time, and the nodes listed (they must agree). Target: the collector's way at least 10x
below whole objects kept, and under 64 MiB at 10,000 nodes (Lambda's default memory is 128 MB to 512 MB).
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from cni_metrics.adapters.kube import Budget, api_client, get_json
from cni_metrics.capacity.sources import METADATA_ONLY, PAGE_SIZE, list_nodes
from fake_eks.testing import RunningFakeEks, start_fake_eks
from kubernetes.client.api_client import ApiClient

SCENARIO = "scale-10k"
NODES = 10_000
TIMEOUT = (5.0, 60.0)
TARGET_RATIO, TARGET_MIB = 10.0, 64.0


class _Tokens:
    def __init__(self, eks: RunningFakeEks, cluster: str) -> None:
        self._eks, self._cluster = eks, cluster

    def token(self) -> str:
        return self._eks.token(self._cluster)

    def refresh(self, stale: str) -> str:
        return self._eks.token(self._cluster)


def _kept(api: ApiClient, accept: str) -> list[dict[str, Any]]:
    """Every Node item of every page, kept (the way the collector listed nodes before issue 14)."""
    items: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        query: list[tuple[str, str | int]] = [("limit", PAGE_SIZE)] + ([("continue", token)] if token else [])
        page = get_json(api, "/api/v1/nodes", query, TIMEOUT, accept)
        items.extend(page.get("items") or ())
        token = (page.get("metadata") or {}).get("continue") or None
        if token is None:
            return items


def _measure(listing: Callable[[], Any]) -> tuple[int, float, float, float]:
    """(items, peak MiB, MiB still held by the result, seconds) of one listing."""
    tracemalloc.start()
    started = time.perf_counter()
    result = listing()
    elapsed = time.perf_counter() - started
    held, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return len(result), peak / 2**20, held / 2**20, elapsed


def main() -> None:
    """List the nodes three ways and print the figures."""
    started = time.perf_counter()
    with start_fake_eks(SCENARIO, subprocess_mode=True) as eks:
        cluster = eks.clusters[0]
        tokens = _Tokens(eks, cluster)
        api = api_client(eks.endpoint(cluster), eks.ca_pem(cluster).encode(), tokens, pool_size=1)
        warm = time.perf_counter()
        warm_nodes = len(list_nodes(api, Budget(TIMEOUT)))
        print(f"scenario {SCENARIO}: {warm_nodes} nodes; stand-in ready and warm in "
              f"{time.perf_counter() - started:.1f} s (first list {time.perf_counter() - warm:.1f} s)")
        ways: list[tuple[str, Callable[[], Any]]] = [
            ("whole objects, kept", lambda: _kept(api, "application/json")),
            ("metadata only, kept", lambda: _kept(api, METADATA_ONLY)),
            ("metadata only, per page", lambda: list_nodes(api, Budget(TIMEOUT))),
        ]
        figures = {}
        for label, listing in ways:
            count, peak, held, seconds = _measure(listing)
            figures[label] = peak
            print(f"{label:>24}: {count} nodes, peak {peak:7.1f} MiB, held after {held:7.1f} MiB, "
                  f"{seconds:5.1f} s")
            if count != NODES:
                raise RuntimeError(f"{label}: listed {count} nodes, expected {NODES}")
        api.rest_client.pool_manager.clear()
    ratio = figures["whole objects, kept"] / figures["metadata only, per page"]
    now = figures["metadata only, per page"]
    print(f"peak memory: {ratio:.1f}x lower than whole objects kept (target >= {TARGET_RATIO:.0f}x), "
          f"{now:.1f} MiB at {NODES} nodes (target <= {TARGET_MIB:.0f} MiB)")
    if ratio < TARGET_RATIO or now > TARGET_MIB:
        raise RuntimeError("node listing memory target missed")


if __name__ == "__main__":
    main()
