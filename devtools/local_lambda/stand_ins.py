"""Local stand-ins for invocations: moto (S3, CloudWatch, EC2), the fake EKS and a CloudFormation receiver.

``started(scenario, state_bucket)`` yields ``StandIns``: the variables that point a function at them
(endpoints, the stand-in's credentials and region, ``AWS_CA_BUNDLE`` for the receiver's certificate), the
running fake EKS for its truth, each cluster's network in moto (VPC, subnets, ENIs holding the nodes'
addresses) for subnet headroom, and the receiver of custom-resource answers. By default every server
takes a free loopback port (``make invoke``, tests); ``Ports`` fixes them (``make stand-ins``, for
``sam local invoke --env-vars events/env.json``), and ``fixed_ports`` reads them from such a file.
"""

from __future__ import annotations

import json
import logging
import tempfile
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import boto3
from fake_eks.fleet import fleet_document
from fake_eks.network import MotoNetwork
from fake_eks.runner import ThreadedFakeEks
from fake_eks.scenario import load_scenario
from fake_eks.testing import RunningFakeEks
from moto.server import ThreadedMotoServer

from local_lambda.receiver import RECEIVER_HOSTS, RECEIVER_PORT, CfnReceiver

# The services each stand-in answers, by the endpoint variable botocore reads for them.
MOTO_SERVICES = ("S3", "CLOUDWATCH", "EC2")
EKS_SERVICES = ("EKS", "STS")
FLEET_NAME = "local"


@dataclass(frozen=True)
class Ports:
    """Loopback ports of the stand-ins (0: any free port)."""

    moto: int = 0
    eks: int = 0
    receiver: int = 0


FREE_PORTS = Ports()


@dataclass(frozen=True)
class StandIns:
    """Running stand-ins: the function's variables, the fake EKS, its network, moto's URL, the receiver."""

    variables: dict[str, str]
    eks: RunningFakeEks
    network: MotoNetwork
    moto_url: str
    receiver: CfnReceiver

    def client(self, service: str) -> Any:
        """A boto3 client of moto with the stand-in's credentials."""
        return _moto_client(service, self.moto_url, self.variables)

    def local_event(self, event: bytes) -> bytes:
        """``event`` with a custom-resource ResponseURL of the fixed local receiver pointed at this one."""
        document = json.loads(event)
        if not (isinstance(document, dict) and isinstance(document.get("ResponseURL"), str)):
            return event
        url = urlsplit(document["ResponseURL"])
        if url.scheme != "https" or url.hostname not in RECEIVER_HOSTS or url.port != RECEIVER_PORT:
            return event
        document["ResponseURL"] = urlunsplit(url._replace(netloc=self.receiver.netloc))
        return json.dumps(document).encode()


def fixed_ports(variables: Mapping[str, str]) -> Ports:
    """The ports an env-vars file's endpoints name (moto's services agree on one, the fake EKS's on one)."""

    def port_of(services: tuple[str, ...]) -> int:
        urls = {variables.get(f"AWS_ENDPOINT_URL_{service}", "") for service in services}
        ports = {urlsplit(url).port for url in urls}
        if len(ports) != 1 or None in ports:
            names = ", ".join(f"AWS_ENDPOINT_URL_{service}" for service in services)
            raise ValueError(f"{names} must all name one port (found {sorted(urls)})")
        (port,) = ports
        assert port is not None
        return port

    return Ports(moto=port_of(MOTO_SERVICES), eks=port_of(EKS_SERVICES), receiver=RECEIVER_PORT)


def put_fleet_document(running: StandIns, location: str) -> None:
    """A fleet document at ``location`` (``s3://bucket/key``) naming each of the stand-in's clusters."""
    bucket, _, key = location.removeprefix("s3://").partition("/")
    document = fleet_document(running.eks.connection, entries=running.eks.clusters, discover=False,
                              name=FLEET_NAME)
    s3 = running.client("s3")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(document).encode())


def _moto_client(service: str, url: str, variables: dict[str, str]) -> Any:
    make: Any = boto3.client  # any service name (the stubs only type literal ones)
    return make(service, endpoint_url=url, region_name=variables["AWS_REGION"],
                aws_access_key_id=variables["AWS_ACCESS_KEY_ID"],
                aws_secret_access_key=variables["AWS_SECRET_ACCESS_KEY"])


@contextmanager
def _fake_eks(scenario: str, port: int) -> Iterator[RunningFakeEks]:
    """The fake EKS ``scenario`` with its EKS/STS/truth API on ``port``, in a background thread."""
    with tempfile.TemporaryDirectory(prefix="fake-eks-") as folder:
        server = ThreadedFakeEks(load_scenario(scenario), port=port)
        try:
            connection = server.start()
            connection_file = Path(folder) / "connection.json"
            connection_file.write_text(json.dumps(connection, indent=2))
            yield RunningFakeEks(connection, connection_file)
        finally:
            server.stop()


@contextmanager
def started(scenario: str, state_bucket: str | None, *, network: bool = True,
            ports: Ports = FREE_PORTS, fleet: str | None = None) -> Iterator[StandIns]:
    """Run moto, the fake EKS ``scenario`` and the receiver for the block; create ``state_bucket`` in moto
    and, with ``network``, the clusters' VPCs, subnets and ENIs (seconds for the demo's 115 nodes); with
    ``fleet`` (``s3://bucket/key``), a fleet document there naming every cluster of the scenario."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's access log
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=ports.moto, verbose=False)
    moto.start()
    try:
        host, port = moto.get_host_and_port()
        moto_url = f"http://{host}:{port}"
        # moto's backends live in the process: a server started earlier in it left its data behind
        urllib.request.urlopen(urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST"),  # noqa: S310
                               timeout=30).close()
        with _fake_eks(scenario, ports.eks) as eks, CfnReceiver(ports.receiver) as receiver:
            endpoints = {f"AWS_ENDPOINT_URL_{service}": moto_url for service in MOTO_SERVICES}
            variables = {**eks.env(), **endpoints, "AWS_CA_BUNDLE": str(receiver.ca_file)}
            running = StandIns(variables, eks, MotoNetwork(eks, _moto_client("ec2", moto_url, variables)),
                               moto_url, receiver)
            for cluster in eks.clusters if network else ():
                running.network.provision(cluster)
            if state_bucket:
                running.client("s3").create_bucket(Bucket=state_bucket)
            if fleet:
                put_fleet_document(running, fleet)
            yield running
    finally:
        moto.stop()
