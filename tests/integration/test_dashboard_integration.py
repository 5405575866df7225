"""The dashboard function over real HTTP: moto (behind a counting loopback proxy) for CloudWatch and EKS,
and an HTTPS loopback server standing for CloudFormation's pre-signed response URL."""

from __future__ import annotations

import datetime as dt
import importlib
import ipaddress
import json
import logging
import queue
import ssl
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.client import HTTPConnection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import matplotlib.image
import numpy as np
import pytest
from cni_metrics.cli import main as cli_main
from cni_metrics.dashboard import handler
from cni_metrics.dashboard.body import DashboardOptions, build_dashboards
from cni_metrics.dashboard.validate import check_body
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from dashboard_preview.__main__ import main as preview_main
from dashboard_preview.render import fetch_page_series, render_dashboard, top_by_max
from lambda_app import LambdaContext
from moto.server import ThreadedMotoServer

pytestmark = pytest.mark.integration
REGION = "us-east-1"
TOPIC = "arn:aws:sns:us-east-1:123456789012:cni-alerts"
WRITES = {"PutDashboard", "DeleteDashboards", "PutMetricAlarm", "DeleteAlarms"}
HOP_HEADERS = {"content-length", "transfer-encoding", "connection", "server", "date"}


# ----------------------------------------------------------------------------- loopback servers
class CountingProxy:
    """Forwards every request to moto and records the CloudWatch/EKS operation it carried."""

    def __init__(self, upstream: str) -> None:
        self.operations: list[str] = []
        target = urllib.parse.urlsplit(upstream)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                proxy.operations.append(_operation(self.path, self.headers.get("X-Amz-Target", ""), body))
                connection = HTTPConnection(target.hostname or "127.0.0.1", target.port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                connection.request(self.command, self.path, body, headers)
                response = connection.getresponse()
                data = response.read()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in HOP_HEADERS:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _forward

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def writes(self) -> list[str]:
        return [op for op in self.operations if op in WRITES]


def _operation(path: str, target: str, body: bytes) -> str:
    if "/operation/" in path:  # smithy-rpc-v2-cbor
        return path.rsplit("/", 1)[-1]
    if target:  # JSON protocol
        return target.rsplit(".", 1)[-1]
    action = urllib.parse.parse_qs(body.decode("utf-8", "replace")).get("Action")  # query protocol
    return action[0] if action else path


@dataclass
class CfnEndpoint:
    """HTTPS server standing for CloudFormation's pre-signed response URL."""

    url: str
    ca_file: Path
    responses: queue.Queue[dict[str, Any]] = field(default_factory=queue.Queue)

    def next(self, timeout: float = 30.0) -> dict[str, Any]:
        return self.responses.get(timeout=timeout)


def _tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it (what Python 3.13's strict checks want)."""
    now = dt.datetime.now(dt.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CloudFormation CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False, key_agreement=False,
                                       key_cert_sign=True, crl_sign=True, encipher_only=False,
                                       decipher_only=False), critical=True)
          .add_extension(ca_ski, critical=False)
          .sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    ca_file, cert_file, key_file = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return ca_file, cert_file, key_file


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="module")
def proxy(moto_url: str) -> Iterator[CountingProxy]:
    counting = CountingProxy(moto_url)
    yield counting
    counting.server.shutdown()


@pytest.fixture(scope="module")
def cfn_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CfnEndpoint]:
    ca_file, cert_file, key_file = _tls_files(tmp_path_factory.mktemp("tls"))
    endpoint = CfnEndpoint(url="", ca_file=ca_file)

    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            endpoint.responses.put({"path": self.path, "body": json.loads(body)})
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    endpoint.url = f"https://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield endpoint
    server.shutdown()


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, moto_url: str, proxy: CountingProxy,
        cfn_endpoint: CfnEndpoint) -> Any:
    """A fresh moto; the function's CloudWatch calls go through the counting proxy. Returns a
    CloudWatch client talking to moto directly (for looking, uncounted)."""
    urllib.request.urlopen(urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST")).read()
    proxy.operations.clear()
    env = {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION, "AWS_ENDPOINT_URL_CLOUDWATCH": proxy.url,
        "AWS_ENDPOINT_URL_EKS": moto_url, "AWS_MAX_ATTEMPTS": "1", "AWS_CA_BUNDLE": str(cfn_endpoint.ca_file),
        "DASHBOARD_NAME": "cni", "CLUSTER_NAMES": "", "CLUSTER_DISCOVERY_TAG": "", "CLUSTERS_JSON": "",
        "ALARMS_ENABLED": "true", "ALARM_TOPIC_ARN": TOPIC, "IP_UTILIZATION_ALARM_PCT": "80",
        "METRICS_NAMESPACE": "Kubernetes",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    # crhelper sets the root and boto loggers' levels: put them back after the test
    for name in ("", "boto", "boto3", "botocore", "urllib3", "crhelper"):
        monkeypatch.setattr(logging.getLogger(name), "level", logging.getLogger(name).level)
    handler._helper.cache_clear()
    return boto3.client("cloudwatch", region_name=REGION, endpoint_url=moto_url)


def dashboards(cloudwatch: Any) -> dict[str, dict[str, Any]]:
    entries = cloudwatch.list_dashboards()["DashboardEntries"]
    return {e["DashboardName"]: json.loads(cloudwatch.get_dashboard(DashboardName=e["DashboardName"])
                                           ["DashboardBody"]) for e in entries}


def alarm_names(cloudwatch: Any) -> list[str]:
    return sorted(a["AlarmName"] for a in cloudwatch.describe_alarms()["MetricAlarms"])


def clusters_on(bodies: dict[str, dict[str, Any]]) -> list[str]:
    """Clusters with a section (header widget) on any of the dashboards."""
    return sorted(w["properties"]["markdown"].split("`")[1] for b in bodies.values() for w in b["widgets"]
                  if w["type"] == "text" and w["properties"]["markdown"].startswith("## Cluster"))


# ----------------------------------------------------------------------------- direct invoke / schedule
def test_direct_invoke_creates_then_changes_nothing_when_nothing_changed(aws: Any, proxy: CountingProxy
                                                                         ) -> None:
    # given two clusters, alarms on
    # when the function is invoked with them
    summary = handler.handle({"clusters": ["beta", "alpha"]}, None)
    # then one dashboard (valid) and five alarms per cluster exist, alarms notify the topic
    assert summary is not None
    assert summary["dashboards"]["put"] == ["cni"]
    bodies = dashboards(aws)
    assert list(bodies) == ["cni"]
    assert check_body(bodies["cni"]) == []
    assert clusters_on(bodies) == ["alpha", "beta"]
    names = alarm_names(aws)
    assert len(names) == 12  # 6 alarms per cluster
    assert all(n.startswith(("cni/alpha/", "cni/beta/")) for n in names)
    assert {a["AlarmActions"][0] for a in aws.describe_alarms()["MetricAlarms"]} == {TOPIC}
    # when it runs again with the same clusters
    proxy.operations.clear()
    again = handler.handle({"clusters": ["alpha", "beta"]}, None)
    # then nothing is written: only reads went out
    assert proxy.writes() == []
    assert "GetDashboard" in proxy.operations
    assert again is not None
    assert again["dashboards"] == {"put": [], "unchanged": ["cni"], "deleted": []}
    assert len(again["alarms"]["unchanged"]) == 12


def test_cluster_list_changes_split_update_and_shrink(aws: Any, proxy: CountingProxy,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # given 25 clusters (20 per dashboard): two pages
    many = [f"c{i:02d}" for i in range(25)]
    handler.handle({"clusters": many}, None)
    bodies = dashboards(aws)
    assert sorted(bodies) == ["cni", "cni-2"]
    assert all(check_body(b) == [] for b in bodies.values())
    assert clusters_on(bodies) == many
    assert len(alarm_names(aws)) == 150
    # when a cluster is added on page 2 only
    proxy.operations.clear()
    handler.handle({"clusters": [*many, "c99"]}, None)
    # then both pages are rewritten (page 1's fleet row lists every cluster) and only the new
    # cluster's six alarms are put
    assert proxy.writes().count("PutDashboard") == 2
    assert proxy.writes().count("PutMetricAlarm") == 6
    # when the fleet shrinks to one cluster and alarms are switched off
    monkeypatch.setenv("ALARMS_ENABLED", "false")
    summary = handler.handle({"clusters": ["c03"]}, None)
    # then page 2 and every alarm are gone
    assert summary is not None
    assert summary["dashboards"]["deleted"] == ["cni-2"]
    assert list(dashboards(aws)) == ["cni"]
    assert clusters_on(dashboards(aws)) == ["c03"]
    assert alarm_names(aws) == []


def test_other_dashboards_and_alarms_are_never_touched(aws: Any) -> None:
    # given dashboards and alarms that are not this set's (similar names, no marker)
    aws.put_dashboard(DashboardName="cni-2", DashboardBody='{"widgets": []}')
    aws.put_dashboard(DashboardName="cni-prod", DashboardBody='{"widgets": []}')
    aws.put_metric_alarm(AlarmName="cni-prod/x/ip-utilization", Namespace="Kubernetes",
                         MetricName="ipUtilization", Statistic="Maximum", Period=300, EvaluationPeriods=1,
                         Threshold=1.0, ComparisonOperator="GreaterThanThreshold")
    # when the set is applied and then emptied
    handler.handle({"clusters": ["a"]}, None)
    handler.handle({"clusters": []}, None)
    # then the foreign ones are still there
    assert sorted(dashboards(aws)) == ["cni", "cni-2", "cni-prod"]
    assert alarm_names(aws) == ["cni-prod/x/ip-utilization"]


def test_schedule_finds_clusters_by_tag(aws: Any, moto_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # given three EKS clusters, two tagged team=net, and CLUSTER_NAMES naming another
    eks = boto3.client("eks", region_name=REGION, endpoint_url=moto_url)
    for name, tags in (("net-a", {"team": "net"}), ("net-b", {"team": "net"}), ("web", {"team": "web"})):
        eks.create_cluster(name=name, roleArn="arn:aws:iam::123456789012:role/eks",
                           resourcesVpcConfig={"subnetIds": ["subnet-1"]}, tags=tags)
    monkeypatch.setenv("CLUSTER_DISCOVERY_TAG", "team=net")
    monkeypatch.setenv("CLUSTER_NAMES", "named")
    # when the EventBridge schedule fires
    summary = handler.handle({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}, None)
    # then the dashboard shows the tagged clusters and the named one
    assert summary is not None
    assert summary["clusters"] == ["named", "net-a", "net-b"]
    assert clusters_on(dashboards(aws)) == ["named", "net-a", "net-b"]


def test_alarms_left_when_time_runs_out_are_finished_by_the_next_run(aws: Any, proxy: CountingProxy) -> None:
    # given an invocation with less than the safety margin left
    short = dashboard_context(handler.MARGIN_SECONDS - 0.001)
    # when it runs for two clusters
    first = handler.handle({"clusters": ["a", "b"]}, short)
    # then the dashboard is put, and the ten alarm puts are left pending
    assert first is not None
    assert first["dashboards"]["put"] == ["cni"]
    assert (len(first["alarms"]["pending"]), first["alarms"]["put"]) == (12, [])
    assert alarm_names(aws) == []
    # when the next run has time
    second = handler.handle({"clusters": ["a", "b"]}, dashboard_context())
    # then it puts them and leaves the unchanged dashboard alone
    assert second is not None
    assert (len(second["alarms"]["put"]), second["alarms"]["pending"]) == (12, [])
    assert second["dashboards"]["unchanged"] == ["cni"]
    assert len(alarm_names(aws)) == 12


def test_direct_invoke_with_bad_clusters_is_refused(aws: Any, proxy: CountingProxy) -> None:
    with pytest.raises(ValueError, match="invalid cluster name"):
        handler.handle({"clusters": ["ok", "not ok"]}, None)
    with pytest.raises(ValueError, match="must be a list"):
        handler.handle({"clusters": "ok"}, None)
    assert proxy.writes() == []


# ----------------------------------------------------------------------------- custom resource
def dashboard_context(seconds: float = 60.0) -> LambdaContext:
    """The dashboard function's Lambda context with ``seconds`` left."""
    return LambdaContext("cni-dashboard", seconds, request_id="req")


def cfn_event(kind: str, endpoint: CfnEndpoint, properties: dict[str, Any], physical_id: str | None = None,
              old: dict[str, Any] | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {
        "RequestType": kind, "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:cni-dashboard",
        "ResponseURL": f"{endpoint.url}/cfn-response/{uuid.uuid4()}?X-Amz-Signature=abc",
        "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/cni/0b0e5cd0-0000-0000-0000-0000",
        "RequestId": str(uuid.uuid4()), "ResourceType": "Custom::CniDashboard",
        "LogicalResourceId": "Dashboard",
        "ResourceProperties": {"ServiceToken": "arn:x", **properties},
    }
    if physical_id is not None:
        event["PhysicalResourceId"] = physical_id
    if old is not None:
        event["OldResourceProperties"] = {"ServiceToken": "arn:x", **old}
    return event


PROPS = {"DashboardName": "cni-stack", "Namespace": "Kubernetes", "Clusters": "alpha,beta",
         "ClusterDiscoveryTag": "", "AlarmsEnabled": "true", "AlarmTopicArn": TOPIC,
         "IpUtilizationAlarmPct": "85"}


def test_custom_resource_lifecycle(aws: Any, proxy: CountingProxy, cfn_endpoint: CfnEndpoint) -> None:
    # given a Create request
    create = cfn_event("Create", cfn_endpoint, PROPS)
    # when the function handles it
    assert handler.handle(create, dashboard_context()) is None
    # then CloudFormation hears SUCCESS with the set name as physical id, and the set exists
    answer = cfn_endpoint.next()
    assert answer["path"] == urllib.parse.urlsplit(create["ResponseURL"]).path + "?X-Amz-Signature=abc"
    assert answer["body"]["Status"] == "SUCCESS", answer
    assert answer["body"]["PhysicalResourceId"] == "cni-stack"
    assert answer["body"]["RequestId"] == create["RequestId"]
    assert answer["body"]["Data"] == {"DashboardNames": "cni-stack", "Clusters": "alpha,beta"}
    assert clusters_on(dashboards(aws)) == ["alpha", "beta"]
    assert len(alarm_names(aws)) == 12
    utilisation = aws.describe_alarms(AlarmNames=["cni-stack/alpha/ip-utilization"])["MetricAlarms"][0]
    assert utilisation["Threshold"] == 85.0
    # when an Update changes the clusters
    update = cfn_event("Update", cfn_endpoint, {**PROPS, "Clusters": "beta,gamma"}, "cni-stack", PROPS)
    handler.handle(update, dashboard_context())
    # then the dashboard and alarms follow
    answer = cfn_endpoint.next()
    assert (answer["body"]["Status"], answer["body"]["PhysicalResourceId"]) == ("SUCCESS", "cni-stack")
    assert clusters_on(dashboards(aws)) == ["beta", "gamma"]
    assert sorted({n.split("/")[1] for n in alarm_names(aws)}) == ["beta", "gamma"]
    # when an Update changes nothing the function manages
    proxy.operations.clear()
    handler.handle(cfn_event("Update", cfn_endpoint, {**PROPS, "Clusters": "gamma,beta"}, "cni-stack"),
                   dashboard_context())
    # then it answers SUCCESS and writes nothing
    assert cfn_endpoint.next()["body"]["Status"] == "SUCCESS"
    assert proxy.writes() == []
    # when the stack is deleted
    handler.handle(cfn_event("Delete", cfn_endpoint, {**PROPS, "Clusters": "beta,gamma"}, "cni-stack"),
                   dashboard_context())
    # then everything it made is gone
    answer = cfn_endpoint.next()
    assert (answer["body"]["Status"], answer["body"]["PhysicalResourceId"]) == ("SUCCESS", "cni-stack")
    assert dashboards(aws) == {}
    assert alarm_names(aws) == []


def test_changing_the_threshold_updates_alarms_and_annotations(aws: Any, proxy: CountingProxy,
                                                               cfn_endpoint: CfnEndpoint) -> None:
    # given a set created with an 85% threshold
    handler.handle(cfn_event("Create", cfn_endpoint, PROPS), dashboard_context())
    assert cfn_endpoint.next()["body"]["Status"] == "SUCCESS"
    proxy.operations.clear()
    # when an Update lowers it to 70%
    lowered = {**PROPS, "IpUtilizationAlarmPct": "70"}
    handler.handle(cfn_event("Update", cfn_endpoint, lowered, "cni-stack", PROPS), dashboard_context())
    assert cfn_endpoint.next()["body"]["Status"] == "SUCCESS"
    # then exactly the two utilisation alarms and the dashboard are rewritten
    assert sorted(proxy.writes()) == ["PutDashboard", "PutMetricAlarm", "PutMetricAlarm"]
    alarms = aws.describe_alarms(AlarmNamePrefix="cni-stack/")["MetricAlarms"]
    assert {a["AlarmName"]: a["Threshold"] for a in alarms if a["AlarmName"].endswith("ip-utilization")} == {
        "cni-stack/alpha/ip-utilization": 70.0, "cni-stack/beta/ip-utilization": 70.0}
    body = dashboards(aws)["cni-stack"]
    warning = body["widgets"][1]["properties"]["annotations"]["horizontal"][0]
    assert warning["value"] == 70.0


def test_renaming_the_set_replaces_it(aws: Any, cfn_endpoint: CfnEndpoint) -> None:
    # given a set created as cni-stack
    handler.handle(cfn_event("Create", cfn_endpoint, PROPS), dashboard_context())
    assert cfn_endpoint.next()["body"]["Status"] == "SUCCESS"
    # when an Update renames it, a new physical id comes back and CloudFormation deletes the old one
    renamed = {**PROPS, "DashboardName": "renamed"}
    handler.handle(cfn_event("Update", cfn_endpoint, renamed, "cni-stack", PROPS), dashboard_context())
    assert cfn_endpoint.next()["body"]["PhysicalResourceId"] == "renamed"
    # (the cleanup Delete is routed by its physical id, whichever properties it carries)
    handler.handle(cfn_event("Delete", cfn_endpoint, renamed, "cni-stack"), dashboard_context())
    assert cfn_endpoint.next()["body"]["Status"] == "SUCCESS"
    # then only the renamed set remains
    assert list(dashboards(aws)) == ["renamed"]
    assert {n.split("/")[0] for n in alarm_names(aws)} == {"renamed"}


def test_failed_create_answers_failed_and_its_rollback_delete_succeeds(
        aws: Any, proxy: CountingProxy, cfn_endpoint: CfnEndpoint) -> None:
    # given a dashboard of the same name made by someone else, and a Create with a bad cluster name
    aws.put_dashboard(DashboardName="cni-stack", DashboardBody='{"widgets": []}')
    bad = {**PROPS, "Clusters": "alpha,not ok"}
    handler.handle(cfn_event("Create", cfn_endpoint, bad), dashboard_context())
    # then CloudFormation hears FAILED with the reason, and nothing was written
    answer = cfn_endpoint.next()["body"]
    assert answer["Status"] == "FAILED"
    assert "invalid cluster name 'not ok'" in answer["Reason"]
    assert proxy.writes() == []
    # when CloudFormation rolls back with a Delete of the physical id it was given
    handler.handle(cfn_event("Delete", cfn_endpoint, bad, answer["PhysicalResourceId"]), dashboard_context())
    # then the Delete succeeds and removes nothing
    assert cfn_endpoint.next()["body"]["Status"] == "SUCCESS"
    assert list(dashboards(aws)) == ["cni-stack"]


def test_cloudwatch_unreachable_answers_failed(aws: Any, cfn_endpoint: CfnEndpoint,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # given a CloudWatch endpoint nobody listens on
    closed = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = closed.server_address[1]
    closed.server_close()
    monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDWATCH", f"http://127.0.0.1:{port}")
    # when a Create comes
    handler.handle(cfn_event("Create", cfn_endpoint, PROPS), dashboard_context())
    # then CloudFormation hears FAILED with the connection error, and the set name as physical id
    answer = cfn_endpoint.next()["body"]
    assert answer["Status"] == "FAILED"
    assert "Could not connect" in answer["Reason"]
    assert answer["PhysicalResourceId"] == "cni-stack"


def test_answers_failed_before_the_lambda_timeout(aws: Any, cfn_endpoint: CfnEndpoint,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # given a CloudWatch that takes 4 s to answer, and 2 s left before the Lambda timeout
    class Slow(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            time.sleep(4)
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    slow = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=slow.serve_forever, daemon=True).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDWATCH", f"http://127.0.0.1:{slow.server_address[1]}")
    started = time.monotonic()
    worker = threading.Thread(target=handler.handle,
                              args=(cfn_event("Create", cfn_endpoint, PROPS), dashboard_context(2.0)))
    worker.start()
    # then CloudFormation hears FAILED "Execution timed out" before the 2 s are up
    answer = cfn_endpoint.next(timeout=10)["body"]
    assert time.monotonic() - started < 2.0
    assert (answer["Status"], answer["Reason"]) == ("FAILED", "Execution timed out")
    worker.join(timeout=30)
    cfn_endpoint.next(timeout=10)  # the late failure answer once CloudWatch gave up
    slow.shutdown()


def test_debug_logging_never_shows_the_presigned_response_url(
        aws: Any, cfn_endpoint: CfnEndpoint, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
    # given LogLevel=DEBUG (the template passes it as POWERTOOLS_LOG_LEVEL) and every record captured
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "DEBUG")
    caplog.set_level(logging.DEBUG)
    signature = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=" + "5e" * 32
    events = [cfn_event("Create", cfn_endpoint, PROPS),
              cfn_event("Create", cfn_endpoint, {**PROPS, "Clusters": "not ok"}),  # fails: crhelper logs it
              cfn_event("Delete", cfn_endpoint, PROPS, "cni-stack")]
    for event in events:
        event["ResponseURL"] = event["ResponseURL"].split("?")[0] + "?" + signature
    # when a Create, a failing Create and a Delete are handled
    for event in events:
        handler.handle(event, dashboard_context())
    # then each was answered at its pre-signed URL
    answers = [cfn_endpoint.next() for _ in events]
    assert [a["body"]["Status"] for a in answers] == ["SUCCESS", "FAILED", "SUCCESS"]
    assert [a["path"] for a in answers] == [urllib.parse.urlsplit(e["ResponseURL"]).path + "?" + signature
                                            for e in events]
    # and the function's own code logged at DEBUG, yet no record nor any output holds the URL or a signature
    assert logging.getLogger("cni_metrics.dashboard.handler").isEnabledFor(logging.DEBUG)
    out, err = capfd.readouterr()
    logged = "\n".join([caplog.text, *(r.getMessage() for r in caplog.records), out, err])
    for event in events:
        assert urllib.parse.urlsplit(event["ResponseURL"]).path not in logged
    assert "X-Amz-Signature" not in logged
    assert "5e" * 32 not in logged


def test_delete_removes_only_the_alarms_carrying_the_sets_marker(aws: Any, cfn_endpoint: CfnEndpoint) -> None:
    # given a set with alarms, and two alarms of somebody else under the same name prefix (no marker)
    handler.handle(cfn_event("Create", cfn_endpoint, PROPS), dashboard_context())
    assert cfn_endpoint.next()["body"]["Status"] == "SUCCESS"
    foreign = {"Namespace": "Kubernetes", "MetricName": "ipUtilization", "Statistic": "Maximum",
               "Period": 300, "EvaluationPeriods": 1, "Threshold": 50.0,
               "ComparisonOperator": "GreaterThanThreshold"}
    aws.put_metric_alarm(AlarmName="cni-stack/alpha/team-watch", AlarmDescription="the team's own", **foreign)
    aws.put_metric_alarm(AlarmName="cni-stack/other/ip-utilization", **foreign)
    assert len(alarm_names(aws)) == 14
    # when an Update drops a cluster, then the stack is deleted
    handler.handle(cfn_event("Update", cfn_endpoint, {**PROPS, "Clusters": "alpha"}, "cni-stack", PROPS),
                   dashboard_context())
    assert cfn_endpoint.next()["body"]["Status"] == "SUCCESS"
    assert len(alarm_names(aws)) == 8
    handler.handle(cfn_event("Delete", cfn_endpoint, PROPS, "cni-stack"), dashboard_context())
    assert cfn_endpoint.next()["body"]["Status"] == "SUCCESS"
    # then the set's alarms are gone and the foreign ones survived both
    assert alarm_names(aws) == ["cni-stack/alpha/team-watch", "cni-stack/other/ip-utilization"]


# ----------------------------------------------------------------------------- CLI and rendering
def publish(cloudwatch: Any, series: dict[str, list[float]], metric: str, start: dt.datetime) -> None:
    for cluster, values in series.items():
        data = [{"MetricName": metric, "Dimensions": [{"Name": "CLUSTER_ID", "Value": cluster}],
                 "Timestamp": start + dt.timedelta(minutes=i), "Value": v, "Unit": "Percent"}
                for i, v in enumerate(values)]
        cloudwatch.put_metric_data(Namespace="Kubernetes", MetricData=data)


def test_cli_dry_run_prints_valid_bodies_and_writes_nothing(aws: Any, proxy: CountingProxy,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    # when the CLI runs with --dry-run
    assert cli_main(["dashboard", "--cluster", "b", "--cluster", "a", "--dry-run"]) == 0
    # then it prints {name: body}, valid, and writes nothing
    printed = json.loads(capsys.readouterr().out)
    assert list(printed) == ["cni"]
    assert check_body(printed["cni"]) == []
    assert proxy.operations == []
    # when it runs without --dry-run, twice
    assert cli_main(["dashboard", "--cluster", "a", "--cluster", "b"]) == 0
    assert cli_main(["dashboard", "--cluster", "a", "--cluster", "b"]) == 0
    # then the dashboard is put once
    assert proxy.writes().count("PutDashboard") == 1
    assert json.loads(aws.get_dashboard(DashboardName="cni")["DashboardBody"]) == printed["cni"]
    # and without any cluster it refuses to empty the set
    assert cli_main(["dashboard"]) == 2
    assert "refusing" in capsys.readouterr().err
    assert proxy.writes().count("PutDashboard") == 1


def test_rendered_picture_shows_the_published_data(aws: Any, tmp_path: Path) -> None:
    # given utilisation published for two clusters over 30 minutes
    start = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0) - dt.timedelta(minutes=40)
    alpha = [20.0 + i for i in range(30)]
    beta = [90.0 - i / 2 for i in range(30)]
    publish(aws, {"alpha": alpha, "beta": beta}, "ipUtilization", start)
    end = start + dt.timedelta(minutes=45)
    # when the series of the first page are fetched the way the renderer does
    (page,) = build_dashboards(["alpha", "beta"], DashboardOptions(region=REGION))
    series = fetch_page_series(page, aws, start, end)
    # then the fleet graph holds exactly what was put, per minute
    fleet = {s.label: s for s in series[1]}
    assert list(fleet["alpha"].values) == alpha
    assert list(fleet["beta"].values) == beta
    assert fleet["alpha"].timestamps[0] == start
    assert top_by_max(series[2]) == [("beta", 90.0), ("alpha", 49.0)]
    # when the picture is drawn
    (png,) = render_dashboard(tmp_path / "dash.png", ["alpha", "beta"], cloudwatch=aws,
                              options=DashboardOptions(region=REGION), start=start, end=end)
    # then it is a real picture with the first two line colours in it (the two clusters)
    pixels = matplotlib.image.imread(png)[:, :, :3]
    assert pixels.shape[0] > 500
    assert pixels.shape[1] > 1000
    assert float(pixels.std()) > 0.05
    for colour in ((0x1F, 0x77, 0xB4), (0xFF, 0x7F, 0x0E)):
        match = np.all(np.abs(pixels * 255 - np.array(colour)) < 3, axis=-1)
        assert int(match.sum()) > 50, colour
    # and an HTML target embeds the PNG
    (html,) = render_dashboard(tmp_path / "dash.html", ["alpha", "beta"], cloudwatch=aws,
                               options=DashboardOptions(region=REGION), start=start, end=end)
    assert "data:image/png;base64," in html.read_text()


def test_a_short_period_shows_every_collection_of_a_fast_demo(aws: Any) -> None:
    # given five collections two seconds apart (one minute holds them all)
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=5)
    values = [10.0, 30.0, 20.0, 50.0, 40.0]
    aws.put_metric_data(Namespace="Kubernetes", MetricData=[
        {"MetricName": "ipUtilization", "Dimensions": [{"Name": "CLUSTER_ID", "Value": "fast"}],
         "Timestamp": start + dt.timedelta(seconds=2 * i), "Value": v} for i, v in enumerate(values)])
    (page,) = build_dashboards(["fast"], DashboardOptions(region=REGION))
    end = start + dt.timedelta(minutes=2)
    # when read with the widgets' 60 s period, then with 1 s
    coarse = fetch_page_series(page, aws, start, end)[1][0]
    fine = fetch_page_series(page, aws, start, end, period=1)[1][0]
    # then the first has at most two points (minute boundaries) and the second has all five
    assert len(coarse.values) <= 2
    assert max(coarse.values) == 50.0
    assert list(fine.values) == values


def test_preview_writes_one_png_per_page(aws: Any, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # given one cluster per dashboard, so two clusters make two pages
    monkeypatch.setenv("CLUSTERS_PER_DASHBOARD", "1")
    # when the preview renders them
    args = ["--render", str(tmp_path / "out.png"), "--hours", "1", "--cluster", "a", "--cluster", "b"]
    assert preview_main(args) == 0
    # then there is one PNG per page
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out-2.png", "out.png"]
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in tmp_path.iterdir())


def test_the_demo_picture_shows_the_demo_cycles(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # given the demo's collector cycles against moto and the EKS stand-in
    demo = importlib.import_module("cni_demo.__main__")
    monkeypatch.setattr(demo, "ROOT", tmp_path)
    with demo.demo_session(3) as run:
        assert run.ok
        # when the demo draws its picture
        picture = demo.render_demo_dashboard(run)
        # then each cluster's "assigned" line has one point per cycle, the last one the stand-in's truth
        clusters = [report.name for report in run.clusters]
        (page,) = build_dashboards(clusters, DashboardOptions(region=run.cloudwatch.meta.region_name))
        end = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
        series = fetch_page_series(page, run.cloudwatch, run.started, end, period=1)
        for report in run.clusters:
            (index,) = [i for i, w in enumerate(page.body["widgets"]) if w["type"] == "metric"
                        and w["properties"]["title"].startswith("IP addresses")
                        and w["properties"]["metrics"][0][3] == report.name]
            assigned = next(s for s in series[index] if s.label == "assigned")
            truth = next(row[3] for row in report.rows if row[0] == "assignIPAddresses")
            assert len(assigned.values) == 3
            assert assigned.values[-1] == truth
    # and the picture has the three clusters' line colours in it
    assert picture == tmp_path / ".demo" / "dashboard.png"
    pixels = matplotlib.image.imread(picture)[:, :, :3]
    for colour in ((0x1F, 0x77, 0xB4), (0xFF, 0x7F, 0x0E), (0x2C, 0xA0, 0x2C)):
        assert int(np.all(np.abs(pixels * 255 - np.array(colour)) < 3, axis=-1).sum()) > 50, colour
