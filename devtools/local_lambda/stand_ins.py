"""Local stand-ins for invocations: moto (S3, CloudWatch) and the fake EKS, on free loopback ports.

``started(scenario, state_bucket)`` yields ``StandIns``: the variables that point a function at them
(endpoints, the stand-in's credentials, region; they replace the fixed ports of ``events/env.json``),
and the running fake EKS for its truth.
"""

from __future__ import annotations

import logging
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import boto3
from fake_eks.testing import RunningFakeEks, start_fake_eks
from moto.server import ThreadedMotoServer


@dataclass(frozen=True)
class StandIns:
    """Running stand-ins: the function's variables, the fake EKS and moto's URL."""

    variables: dict[str, str]
    eks: RunningFakeEks
    moto_url: str


@contextmanager
def started(scenario: str, state_bucket: str | None) -> Iterator[StandIns]:
    """Run moto and the fake EKS ``scenario`` for the block; create ``state_bucket`` in moto."""
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
            variables = {**eks.env(), "AWS_ENDPOINT_URL_S3": moto_url,
                         "AWS_ENDPOINT_URL_CLOUDWATCH": moto_url}
            if state_bucket:
                boto3.client(
                    "s3", endpoint_url=moto_url, region_name=variables["AWS_REGION"],
                    aws_access_key_id=variables["AWS_ACCESS_KEY_ID"],
                    aws_secret_access_key=variables["AWS_SECRET_ACCESS_KEY"],
                ).create_bucket(Bucket=state_bucket)
            yield StandIns(variables, eks, moto_url)
    finally:
        moto.stop()
