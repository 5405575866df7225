"""The collector handler refuses a publish margin that leaves no time to collect (issue 14, item 7).

The invocation's remaining time at its start is the function's timeout: with PUBLISH_MARGIN_SECONDS at
or above it, the collection deadline would already have passed. The handler must refuse before reading,
scraping, storing or publishing anything (checked against the EKS stand-in's truth and moto).
"""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from cni_metrics.adapters import eks_auth
from cni_metrics.collector.settings import ConfigError
from fake_eks.testing import RunningFakeEks
from lambda_app import LambdaContext, load_app

pytestmark = pytest.mark.integration

STATE_BUCKET = "cni-metrics-test-state"
SCENARIO: dict[str, Any] = {"name": "sec-margin", "seed": 7, "clusters": [{"name": "sec-margin", "nodes": 3}]}


def test_a_margin_at_or_above_the_timeout_is_refused_before_anything_is_done(
    aws: str, eks: RunningFakeEks, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given the stand-in's cluster configured, moto, and PUBLISH_MARGIN_SECONDS=20
    for key, value in {**eks.env(), "CLUSTER_NAMES": "sec-margin", "STATE_BUCKET": STATE_BUCKET,
                       "PUBLISH_MODE": "putmetricdata", "PUBLISH_MARGIN_SECONDS": "20"}.items():
        monkeypatch.setenv(key, value)
    eks_auth.clear_caches()
    app = load_app("collector")
    # when it is invoked with 15 s left (a 15 s function timeout)
    with pytest.raises(ConfigError) as raised:
        app.lambda_handler({"clusters": ["sec-margin"]}, LambdaContext(seconds=15.0))
    # then the invocation is refused naming the variable
    assert str(raised.value).startswith("invalid configuration: PUBLISH_MARGIN_SECONDS: 20 s is not below")
    # and the stand-in served nothing, nothing was stored or published
    assert [pod["scrapes"] for pod in eks.truth("sec-margin")["pods"]] == [0, 0, 0]
    assert "Contents" not in boto3.client("s3").list_objects_v2(Bucket=STATE_BUCKET)
    assert boto3.client("cloudwatch").list_metrics(Namespace="Kubernetes")["Metrics"] == []
