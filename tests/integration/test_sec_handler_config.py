"""The collector handler refuses a publish margin that leaves no time to collect (issue 14, item 7).

The invocation's remaining time at its start is the function's timeout: with PUBLISH_MARGIN_SECONDS at
or above it, the collection deadline would already have passed. The handler must refuse before reading,
scraping, storing or publishing anything (checked against the EKS stand-in's truth and moto).
"""

from __future__ import annotations

import importlib.util
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest
from cni_metrics.adapters import eks_auth
from cni_metrics.collector.settings import ConfigError
from fake_eks.testing import RunningFakeEks

pytestmark = pytest.mark.integration

APP = Path(__file__).resolve().parents[2] / "functions" / "collector" / "app.py"
STATE_BUCKET = "cni-metrics-test-state"
SCENARIO: dict[str, Any] = {"name": "sec-margin", "seed": 7, "clusters": [{"name": "sec-margin", "nodes": 3}]}


class Context:
    """A Lambda context whose invocation has ``seconds`` left."""

    function_name = "collector"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:collector"

    def __init__(self, seconds: float) -> None:
        self.aws_request_id = str(uuid.uuid4())
        self.deadline = time.monotonic() + seconds

    def get_remaining_time_in_millis(self) -> int:
        return int((self.deadline - time.monotonic()) * 1000)


def test_a_margin_at_or_above_the_timeout_is_refused_before_anything_is_done(
    aws: str, eks: RunningFakeEks, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given the stand-in's cluster configured, moto, and PUBLISH_MARGIN_SECONDS=20
    for key, value in {**eks.env(), "CLUSTER_NAMES": "sec-margin", "STATE_BUCKET": STATE_BUCKET,
                       "PUBLISH_MODE": "putmetricdata", "PUBLISH_MARGIN_SECONDS": "20"}.items():
        monkeypatch.setenv(key, value)
    eks_auth.clear_caches()
    spec = importlib.util.spec_from_file_location(f"collector_app_{uuid.uuid4().hex}", APP)
    assert spec is not None
    assert spec.loader is not None
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    # when it is invoked with 15 s left (a 15 s function timeout)
    with pytest.raises(ConfigError) as raised:
        app.lambda_handler({"clusters": ["sec-margin"]}, Context(15.0))
    # then the invocation is refused naming the variable
    assert str(raised.value).startswith("invalid configuration: PUBLISH_MARGIN_SECONDS: 20 s is not below")
    # and the stand-in served nothing, nothing was stored or published
    assert [pod["scrapes"] for pod in eks.truth("sec-margin")["pods"]] == [0, 0, 0]
    assert "Contents" not in boto3.client("s3").list_objects_v2(Bucket=STATE_BUCKET)
    assert boto3.client("cloudwatch").list_metrics(Namespace="Kubernetes")["Metrics"] == []
