"""A fleet on this machine: the EKS stand-in and moto as processes of their own, the fleet document in moto's
S3, and the built dispatcher and collector behind local_lambda's Invoke API (the demo's and the bench's).

``fleet_stand_ins(scenario)`` yields ``FleetStandIns``: the functions' variables (the stand-in's EKS/STS
and keys; moto's S3, CloudWatch and EC2: the clusters' subnets are not made in moto, so DescribeSubnets
answers at once that it does not know them and subnet headroom is left out), the fleet document
(``fake_eks.fleet.fleet_document``: a discovery rule per account through its role, both regions; plus the
entry ``fleet-000`` published under the alias ``fleet-000-prod`` and one invalid entry, reported), and the
processes' pids (their CPU is measured apart).
``dispatch(api)`` is one period: the dispatcher invoked synchronously through the Invoke API (it invokes the
collector asynchronously through the same API), then the collector's pool drained; ``Cycle`` holds the
timings and every cluster's outcome.
"""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import boto3
from botocore.config import Config
from fake_eks.fleet import fleet_document
from fake_eks.testing import RunningFakeEks, start_fake_eks
from local_lambda.invoke_api import InvokeApi, Record

STATE_BUCKET = "cni-metrics-fleet-state"
FLEET_BUCKET = "cni-metrics-fleet-config"
FLEET_KEY = "fleets/fake-eks.json"
ALIAS = ("fleet-000", "fleet-000-prod")
BAD_ENTRY = {"name": "not a cluster name", "region": "us-east-1"}
COLLECTOR, DISPATCHER = "CollectorFunction", "DispatcherFunction"


@dataclass(frozen=True)
class FleetStandIns:
    """Running stand-ins and what points the functions at them."""

    eks: RunningFakeEks
    moto_url: str
    moto_pid: int
    variables: dict[str, str]
    aliases: dict[str, str]
    """Published id -> the stand-in's cluster name, where they differ."""

    @property
    def eks_pid(self) -> int:
        """The stand-in's process."""
        return int(self.eks.connection["pid"])

    def name_of(self, cluster_id: str) -> str:
        """The stand-in's cluster a published id names."""
        return self.aliases.get(cluster_id, cluster_id)

    def client(self, service: str) -> Any:
        """A boto3 client of moto."""
        make: Any = boto3.client
        return make(service, endpoint_url=self.moto_url, region_name="us-east-1",
                    aws_access_key_id="fleet", aws_secret_access_key="fleet")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def _moto() -> Iterator[tuple[str, int]]:
    """moto's server as a process of its own on a free loopback port."""
    port = _free_port()
    command = [sys.executable, "-c", "from moto.server import main; main()", "-H", "127.0.0.1", "-p",
               str(port)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=2).close()  # noqa: S310 - loopback http
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto did not start (exit code {process.returncode})") from None
                time.sleep(0.1)
        yield url, process.pid
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@contextmanager
def fleet_stand_ins(
    scenario: str = "fleet-500", *, extra: Mapping[str, str] | None = None
) -> Iterator[FleetStandIns]:
    """The stand-in (``scenario``) and moto, each a process; buckets and the fleet document made."""
    with start_fake_eks(scenario, subprocess_mode=True) as eks, _moto() as (moto_url, moto_pid):
        doc = fleet_document(eks.connection, entries=[ALIAS[0]])
        doc["clusters"][0]["alias"] = ALIAS[1]
        doc["clusters"].append(BAD_ENTRY)
        variables = {
            **eks.env(),
            "AWS_ENDPOINT_URL_S3": moto_url, "AWS_ENDPOINT_URL_CLOUDWATCH": moto_url,
            "AWS_ENDPOINT_URL_EC2": moto_url,
            "FLEET_DOCUMENT": f"s3://{FLEET_BUCKET}/{FLEET_KEY}", "STATE_BUCKET": STATE_BUCKET,
            "COLLECTOR_FUNCTION": COLLECTOR, "PUBLISH_MODE": "putmetricdata",
            "PUBLISH_MARGIN_SECONDS": "5", "POWERTOOLS_LOG_LEVEL": "WARNING",
            **(extra or {}),
        }
        stand_ins = FleetStandIns(eks, moto_url, moto_pid, variables, {ALIAS[1]: ALIAS[0]})
        s3 = stand_ins.client("s3")
        for bucket in (STATE_BUCKET, FLEET_BUCKET):
            s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=FLEET_BUCKET, Key=FLEET_KEY, Body=json.dumps(doc).encode())
        yield stand_ins


@dataclass
class Cycle:
    """One period: the dispatcher's answer, timings (monotonic seconds), the collector's invocations and
    each cluster's outcome (from the collector's summaries, or the error a failed invocation reported)."""

    dispatch: dict[str, Any]
    dispatch_seconds: float
    """The dispatcher's invocation, as its caller saw it (RequestResponse through the Invoke API)."""
    wall_seconds: float
    """From the dispatcher's invocation to the end of the last collector invocation."""
    records: list[Record]
    outcomes: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def invocation_seconds(self) -> list[float]:
        """How long each collector invocation ran."""
        return [record.seconds for record in self.records if record.seconds is not None]


def dispatch(api: InvokeApi, *, timeout: float = 300.0) -> Cycle:
    """One period: the dispatcher run synchronously, then every collector invocation it made, to the end."""
    client = boto3.client("lambda", endpoint_url=api.url, region_name="us-east-1",
                          aws_access_key_id="local", aws_secret_access_key="local",
                          config=Config(read_timeout=timeout, retries={"total_max_attempts": 1}))
    before = len(api.records(COLLECTOR))
    started = time.monotonic()
    answer = client.invoke(FunctionName=DISPATCHER, Payload=b"{}")
    dispatch_seconds = time.monotonic() - started
    document = json.loads(answer["Payload"].read())
    if "FunctionError" in answer:
        raise RuntimeError(f"the dispatcher failed: {document}")
    if not api.wait_idle(timeout):
        raise RuntimeError(f"the collector's invocations did not end within {timeout:g} s")
    records = api.records(COLLECTOR)[before:]
    ended = max((r.ended_at or r.enqueued_at for r in records), default=started + dispatch_seconds)
    cycle = Cycle(document, dispatch_seconds, max(ended, started + dispatch_seconds) - started, records)
    for record in records:
        cycle.outcomes.update(_outcomes(record))
    return cycle


def next_second(cycle: Cycle) -> None:
    """Wait until a new collection's timestamps fall in a later second than every one of ``cycle`` (the
    datums of one cluster in one second add up in CloudWatch)."""
    stamps = [datetime.fromisoformat(o["collected_at"]).timestamp() for o in cycle.outcomes.values()
              if o.get("collected_at")]
    if stamps:
        time.sleep(max(0.0, math.floor(max(stamps)) + 1.05 - time.time()))


def _outcomes(record: Record) -> dict[str, dict[str, Any]]:
    """Per cluster id: its outcome in the collector's summary; for a failed invocation, the status each
    cluster had in the error (``CollectionFailed``: ``id: status: error; ...``) or the failure itself."""
    if isinstance(record.payload, dict):
        return {outcome["cluster"]: outcome for outcome in record.payload.get("clusters", [])}
    event = json.loads(record.event)
    error = record.error or {"errorType": record.condition, "errorMessage": record.condition}
    found: dict[str, dict[str, Any]] = {}
    if error.get("errorType") == "CollectionFailed":
        for part in str(error.get("errorMessage", "")).split("; "):
            cluster, _, rest = part.partition(": ")
            status, _, detail = rest.partition(": ")
            if cluster in event.get("clusters", []):
                found[cluster] = {"cluster": cluster, "status": status, "error": detail, "collected_at": None}
    for cluster in event.get("clusters", []):
        found.setdefault(cluster, {"cluster": cluster, "status": "invocation_failed", "collected_at": None,
                                   "error": f"{error.get('errorType')}: {error.get('errorMessage')}"})
    return found
