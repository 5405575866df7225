"""Shared fixtures: the local EKS stand-in (devtools/fake_eks); no test ever reaches real AWS."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import boto3
import pytest
from fake_eks.testing import RunningFakeEks, start_fake_eks

FakeEksFactory = Callable[..., RunningFakeEks]
# Every AWS service a test does not point at moto or the stand-in (AWS_ENDPOINT_URL_<SERVICE>) goes to
# this closed loopback port instead of the real endpoint: tests never send traffic off the machine.
CLOSED_AWS_ENDPOINT = "http://127.0.0.1:9"


def pytest_configure(config: pytest.Config) -> None:
    """Fence AWS endpoints and the instance metadata service off for the whole run (subprocesses too)."""
    os.environ["AWS_ENDPOINT_URL"] = CLOSED_AWS_ENDPOINT
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"


@pytest.fixture
def fake_eks_factory() -> Iterator[FakeEksFactory]:
    """Start stand-ins on demand: ``fake_eks_factory(scenario, seed=None, subprocess_mode=False)``.

    ``scenario`` is a shipped name (demo, faults, scale-5k, scale-10k), a JSON file path or a dict.
    Every stand-in started is stopped when the test ends.
    """
    with ExitStack() as stack:

        def factory(scenario: str | dict[str, Any], **kwargs: Any) -> RunningFakeEks:
            return stack.enter_context(start_fake_eks(scenario, **kwargs))

        yield factory


@pytest.fixture
def fake_eks(fake_eks_factory: FakeEksFactory) -> RunningFakeEks:
    """A fresh ``demo`` stand-in (3 clusters, 20-60 nodes, a few faulty nodes) for one test."""
    return fake_eks_factory("demo")


@pytest.fixture
def fake_eks_env(fake_eks: RunningFakeEks, monkeypatch: pytest.MonkeyPatch) -> RunningFakeEks:
    """The ``demo`` stand-in with AWS_ENDPOINT_URL_EKS/STS, credentials and region set in os.environ."""
    for key in ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    for key, value in fake_eks.env().items():
        monkeypatch.setenv(key, value)
    # boto3's default session keeps the credentials it first resolved (an earlier test's): start afresh
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    return fake_eks
