"""Local stand-ins for one invocation: moto (S3, CloudWatch) and the fake EKS, on free loopback ports.

``started(scenario, state_bucket)`` yields the variables that point a function at them (endpoints,
the stand-in's credentials, region); they replace the fixed ports of ``events/env.json``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import boto3
from fake_eks.testing import start_fake_eks
from moto.server import ThreadedMotoServer


@contextmanager
def started(scenario: str, state_bucket: str | None) -> Iterator[dict[str, str]]:
    """Run moto and the fake EKS ``scenario`` for the block; create ``state_bucket`` in moto."""
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    try:
        host, port = moto.get_host_and_port()
        moto_url = f"http://{host}:{port}"
        with start_fake_eks(scenario) as eks:
            variables = {**eks.env(), "AWS_ENDPOINT_URL_S3": moto_url,
                         "AWS_ENDPOINT_URL_CLOUDWATCH": moto_url}
            if state_bucket:
                boto3.client(
                    "s3", endpoint_url=moto_url, region_name=variables["AWS_REGION"],
                    aws_access_key_id=variables["AWS_ACCESS_KEY_ID"],
                    aws_secret_access_key=variables["AWS_SECRET_ACCESS_KEY"],
                ).create_bucket(Bucket=state_bucket)
            yield variables
    finally:
        moto.stop()
