"""Local stand-ins for invocations: moto (S3, CloudWatch, EC2) and the fake EKS, on free loopback ports.

``started(scenario, state_bucket)`` yields ``StandIns``: the variables that point a function at them
(endpoints, the stand-in's credentials, region; they replace the fixed ports of ``events/env.json``),
the running fake EKS for its truth, and each cluster's network in moto (VPC, subnets, ENIs holding the
nodes' addresses) for subnet headroom.
"""

from __future__ import annotations

import logging
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
from fake_eks.network import MotoNetwork
from fake_eks.testing import RunningFakeEks, start_fake_eks
from moto.server import ThreadedMotoServer


@dataclass(frozen=True)
class StandIns:
    """Running stand-ins: the function's variables, the fake EKS, its network and moto's URL."""

    variables: dict[str, str]
    eks: RunningFakeEks
    network: MotoNetwork
    moto_url: str

    def client(self, service: str) -> Any:
        """A boto3 client of moto with the stand-in's credentials."""
        return _moto_client(service, self.moto_url, self.variables)


def _moto_client(service: str, url: str, variables: dict[str, str]) -> Any:
    make: Any = boto3.client  # any service name (the stubs only type literal ones)
    return make(service, endpoint_url=url, region_name=variables["AWS_REGION"],
                aws_access_key_id=variables["AWS_ACCESS_KEY_ID"],
                aws_secret_access_key=variables["AWS_SECRET_ACCESS_KEY"])


@contextmanager
def started(scenario: str, state_bucket: str | None, *, network: bool = True) -> Iterator[StandIns]:
    """Run moto and the fake EKS ``scenario`` for the block; create ``state_bucket`` in moto and, with
    ``network``, the clusters' VPCs, subnets and ENIs (seconds for the demo's 115 nodes)."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's access log
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    try:
        host, port = moto.get_host_and_port()
        moto_url = f"http://{host}:{port}"
        # moto's backends live in the process: a server started earlier in it left its data behind
        urllib.request.urlopen(urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST"),  # noqa: S310
                               timeout=30).close()
        with start_fake_eks(scenario) as eks:
            variables = {**eks.env(), **{f"AWS_ENDPOINT_URL_{service}": moto_url
                                         for service in ("S3", "CLOUDWATCH", "EC2")}}
            running = StandIns(variables, eks, MotoNetwork(eks, _moto_client("ec2", moto_url, variables)),
                               moto_url)
            for cluster in eks.clusters if network else ():
                running.network.provision(cluster)
            if state_bucket:
                running.client("s3").create_bucket(Bucket=state_bucket)
            yield running
    finally:
        moto.stop()
