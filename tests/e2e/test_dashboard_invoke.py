"""The built dashboard function (`make build-local`) under awslambdaric against moto: a direct invoke,
and the custom-resource lifecycle answered to a local HTTPS endpoint standing for CloudFormation."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fake_eks.certs import make_cluster_tls
from local_lambda.built import BuildError, load_function
from local_lambda.runner import InvokeResult, invoke_built
from local_lambda.stand_ins import StandIns, started

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
BUILD_DIR = REPO / ".aws-sam" / "local" / "build"
FUNCTION = "DashboardFunction"
CLUSTERS = ["demo-prod", "demo-staging"]


@dataclass
class CfnEndpoint:
    """Where the function answers CloudFormation: an HTTPS server recording each PUT body."""

    url: str
    ca_file: Path
    responses: queue.Queue[dict[str, Any]] = field(default_factory=queue.Queue)


@pytest.fixture(scope="module")
def stand_ins() -> Iterator[StandIns]:
    """moto (and the fake EKS, unused here); the local build must exist."""
    try:
        load_function(BUILD_DIR, FUNCTION)
    except BuildError as error:
        pytest.fail(f"{error} (run `make build-local`)")
    with started("demo", None, network=False) as running:
        yield running


@pytest.fixture(scope="module")
def cfn_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CfnEndpoint]:
    """An HTTPS endpoint (certificate from a throw-away CA) standing for the ResponseURL."""
    tls = make_cluster_tls("cloudformation")
    ca_file = tmp_path_factory.mktemp("tls") / "ca.pem"
    ca_file.write_text(tls.ca_pem)
    responses: queue.Queue[dict[str, Any]] = queue.Queue()

    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            responses.put(json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = tls.server_context().wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield CfnEndpoint(f"https://127.0.0.1:{server.server_address[1]}/response", ca_file, responses)
    server.shutdown()
    server.server_close()


def _invoke(stand_ins: StandIns, event: dict[str, Any], **extra: str) -> InvokeResult:
    result = invoke_built(BUILD_DIR, FUNCTION, json.dumps(event).encode(), None,
                          {**stand_ins.variables, **extra}, log_stream=None)
    assert result.ok, (result.error, result.logs[-3000:])
    return result


def _dashboards(stand_ins: StandIns) -> dict[str, str]:
    cloudwatch = stand_ins.client("cloudwatch")
    names = [entry["DashboardName"] for entry in cloudwatch.list_dashboards()["DashboardEntries"]]
    return {name: cloudwatch.get_dashboard(DashboardName=name)["DashboardBody"] for name in names}


def test_direct_invoke_puts_the_dashboard_once(stand_ins: StandIns) -> None:
    # Given the built function with the template's environment (dashboard name cni-metrics)
    # When it is invoked with two clusters, twice
    first = _invoke(stand_ins, {"clusters": CLUSTERS}).payload
    second = _invoke(stand_ins, {"clusters": CLUSTERS}).payload

    # Then the first run puts the dashboard naming both clusters, the second writes nothing
    assert first["dashboards"]["put"] == ["cni-metrics"]
    body = _dashboards(stand_ins)["cni-metrics"]
    assert all(cluster in body for cluster in CLUSTERS)
    assert second["dashboards"] == {"put": [], "unchanged": ["cni-metrics"], "deleted": []}


def test_custom_resource_create_and_delete_answer_cloudformation(stand_ins: StandIns,
                                                                 cfn_endpoint: CfnEndpoint) -> None:
    # Given a Create request as CloudFormation sends it for the template's Custom::CniDashboard
    request = {
        "RequestType": "Create", "ResponseURL": cfn_endpoint.url, "RequestId": "req-1",
        "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/cni-metrics/1",
        "ResourceType": "Custom::CniDashboard", "LogicalResourceId": "Dashboard",
        "ResourceProperties": {"ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:d",
                               "DashboardName": "fleet", "Namespace": "Kubernetes",
                               "Clusters": ",".join(CLUSTERS), "AlarmsEnabled": "false"},
    }
    ca = {"AWS_CA_BUNDLE": str(cfn_endpoint.ca_file)}

    # When the function handles it
    _invoke(stand_ins, request, **ca)
    created = cfn_endpoint.responses.get(timeout=10)

    # Then CloudFormation hears SUCCESS with the dashboard name as physical id, and the dashboard exists
    assert (created["Status"], created["PhysicalResourceId"]) == ("SUCCESS", "fleet"), created
    assert "fleet" in _dashboards(stand_ins)

    # When the stack deletes it
    delete = {**request, "RequestType": "Delete", "RequestId": "req-2", "PhysicalResourceId": "fleet"}
    _invoke(stand_ins, delete, **ca)
    deleted = cfn_endpoint.responses.get(timeout=10)

    # Then CloudFormation hears SUCCESS and the dashboard is gone
    assert deleted["Status"] == "SUCCESS", deleted
    assert "fleet" not in _dashboards(stand_ins)

