"""The truth/control API (plain JSON under /truth): what each cluster served, and time, faults and network."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from fake_eks.kube_api import KubeCluster


class TruthApi:
    """Read and steer the clusters' simulations; ``connection`` gives the document GET /truth answers."""

    def __init__(self, clusters: Mapping[str, KubeCluster], connection: Callable[[], dict[str, Any]]) -> None:
        self.clusters = clusters
        self.connection = connection

    def add_routes(self, router: web.UrlDispatcher) -> None:
        """Everything under /truth."""
        router.add_get("/truth", self.truth_index)
        router.add_get("/truth/clusters/{name}", self.truth)
        router.add_post("/truth/clusters/{name}/advance", self.advance)
        router.add_get("/truth/clusters/{name}/auth-failures", self.auth_failures)
        router.add_post("/truth/clusters/{name}/pods/{pod}/fault", self.set_fault)
        router.add_post("/truth/clusters/{name}/network", self.attach_network)

    def _cluster(self, request: web.Request) -> KubeCluster:
        cluster = self.clusters.get(request.match_info["name"])
        if cluster is None:
            raise web.HTTPNotFound(
                text=json.dumps({"error": "no such cluster"}), content_type="application/json"
            )
        return cluster

    async def truth_index(self, request: web.Request) -> web.Response:
        """The connection document and cluster names."""
        return web.json_response(self.connection())

    async def truth(self, request: web.Request) -> web.Response:
        """GET truth of one cluster."""
        return web.json_response(self._cluster(request).sim.truth())

    async def advance(self, request: web.Request) -> web.Response:
        """POST advance {"steps": n}."""
        cluster = self._cluster(request)
        raw = await request.read()
        steps = int(json.loads(raw).get("steps", 1)) if raw else 1
        events = cluster.sim.advance(steps)
        return web.json_response(
            {"cluster": cluster.name, "resourceVersion": str(cluster.sim.resource_version), **events}
        )

    async def auth_failures(self, request: web.Request) -> web.Response:
        """Why tokens were refused (the API server only ever says 401 Unauthorized)."""
        return web.json_response(self._cluster(request).auth_failures)

    async def set_fault(self, request: web.Request) -> web.Response:
        """POST {"kind": <fault kind> | null, ...params}: change one pod's fault from now on."""
        cluster = self._cluster(request)
        doc = await request.json()
        kind = doc.pop("kind", None)
        try:
            cluster.sim.set_fault(request.match_info["pod"], kind, doc)
        except KeyError:
            raise web.HTTPNotFound(text='{"error": "no such pod"}', content_type="application/json") from None
        except ValueError as exc:
            raise web.HTTPBadRequest(
                text=json.dumps({"error": str(exc)}), content_type="application/json"
            ) from exc
        return web.json_response({"pod": request.match_info["pod"], "fault": kind})

    async def attach_network(self, request: web.Request) -> web.Response:
        """POST {"subnetIds": [...], "eniconfigs": {name: subnetId}}: DescribeCluster's and ENIConfigs."""
        cluster = self._cluster(request)
        cluster.sim.network.attach(await request.json())
        return web.json_response(cluster.sim.network.truth())
