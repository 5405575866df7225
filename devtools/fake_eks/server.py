"""FakeEks: EKS + STS + truth API on one plain-HTTP port and one Kubernetes API server per cluster.

Each cluster has its own TLS port, CA and server certificate, so a client reaches it exactly as
DescribeCluster says (its endpoint URL, verified by its CA). An ``unreachable`` cluster's endpoint is a
loopback port held bound without listening: a connection is refused. Measured on 2 cores for the 500
clusters (10,029 nodes) of ``fleet-500``: ready in about 3 s (3 s of CPU), 185 MiB resident.
"""

from __future__ import annotations

import socket
from typing import Any

from aiohttp import web

from fake_eks.auth import Credential, CredentialTable
from fake_eks.aws_api import AwsApi
from fake_eks.certs import make_cluster_tls
from fake_eks.kube_api import KubeCluster
from fake_eks.scenario import Scenario
from fake_eks.sim import ClusterSim
from fake_eks.truth_api import TruthApi

HOST = "127.0.0.1"


class FakeEks:
    """Every server of one scenario, on 127.0.0.1, in the running event loop."""

    def __init__(self, scenario: Scenario, *, port: int = 0) -> None:
        self.scenario = scenario
        self.port = port
        self.credentials = CredentialTable()
        self.credentials.add(
            Credential(scenario.access_key_id, scenario.secret_access_key, scenario.identity_arn)
        )
        self.clusters: dict[str, KubeCluster] = {}
        for i, spec in enumerate(scenario.clusters):
            self.clusters[spec.name] = KubeCluster(
                ClusterSim(spec, scenario, i), self.credentials, make_cluster_tls(spec.name)
            )
        self.aws = AwsApi(scenario, self.credentials, self.clusters)
        self.truth = TruthApi(self.clusters, self.connection)
        self._runners: list[web.AppRunner] = []
        self._closed_ports: list[socket.socket] = []
        self.base_url = ""

    def control_app(self) -> web.Application:
        """EKS (rest-json), STS (query) and the truth API on one plain-HTTP port."""
        app = web.Application()
        self.aws.add_routes(app.router)
        self.truth.add_routes(app.router)
        return app

    async def start(self) -> dict[str, Any]:
        """Listen on every port and return the connection document."""
        control = web.AppRunner(
            self.control_app(), access_log=None, handler_cancellation=True, shutdown_timeout=1.0
        )
        await control.setup()
        site = web.TCPSite(control, HOST, self.port)
        await site.start()
        self._runners.append(control)
        self.base_url = f"http://{HOST}:{_bound_port(control)}"
        for cluster in self.clusters.values():
            if cluster.sim.spec.unreachable:
                cluster.endpoint = f"https://{HOST}:{self._closed_port()}"
                continue
            runner = web.AppRunner(
                cluster.app(), access_log=None, handler_cancellation=True, shutdown_timeout=1.0
            )
            await runner.setup()
            await web.TCPSite(runner, HOST, 0, ssl_context=cluster.tls.server_context(), backlog=1024).start()
            self._runners.append(runner)
            cluster.endpoint = f"https://{HOST}:{_bound_port(runner)}"
            cluster.sim.warm()  # the first list is then as quick as the next ones
        return self.connection()

    async def stop(self) -> None:
        """Close every listener and connection."""
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()
        for held in self._closed_ports:
            held.close()
        self._closed_ports.clear()

    def _closed_port(self) -> int:
        """A loopback port bound (so nothing else takes it) but not listening: connections are refused."""
        held = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        held.bind((HOST, 0))
        self._closed_ports.append(held)
        return int(held.getsockname()[1])

    def connection(self) -> dict[str, Any]:
        """The connection document (see docs/ARCHITECTURE.md)."""
        sc = self.scenario
        return {
            "scenario": sc.name,
            "region": sc.region,
            "account": sc.account,
            "eks_endpoint_url": self.base_url,
            "sts_endpoint_url": self.base_url,
            "credentials": {
                "access_key_id": sc.access_key_id,
                "secret_access_key": sc.secret_access_key,
                "identity_arn": sc.identity_arn,
            },
            "truth_url": f"{self.base_url}/truth",
            "clusters": {
                n: {"endpoint": c.endpoint, "ca_pem": c.tls.ca_pem, "account": c.sim.spec.account,
                    "region": c.sim.spec.region}
                for n, c in self.clusters.items()
            },
            "accounts": {account: {"roles": list(roles)} for account, roles in sc.roles.items()},
        }


def _bound_port(runner: web.AppRunner) -> int:
    for addr in runner.addresses:
        return int(addr[1])
    raise RuntimeError("runner is not listening")
