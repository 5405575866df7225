"""``make demo`` = ``python -m cni_demo``: the collector on an emulated EKS fleet and local AWS endpoints.

1. start moto in server mode (S3, CloudWatch) and the local EKS stand-in with its ``demo`` scenario;
2. point the collector at them: events/env.json's variables with the real local endpoints;
3. invoke the collector handler (functions/collector/app.py) once per scheduled cycle, as Lambda would,
   advancing the stand-in between cycles (aws-node restarts, nodes joining and leaving);
4. read the metrics back from CloudWatch and print them beside the stand-in's truth, per cluster;
5. exit 1 if any number disagrees. Everything started is stopped on the way out.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import math
import os
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
from fake_eks.network import MotoNetwork
from local_lambda.runner import read_env_file

from cni_demo.capacity import capacity_rows, published_value
from cni_demo.truth import TruthTracker

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "functions" / "collector" / "app.py"
EVENTS = ROOT / "events"
SCENARIO = "demo"
TIMEOUT_SECONDS = 55.0
TOLERANCE = 1e-6


@dataclass
class ClusterReport:
    """One cluster: rows of (metric, what, CloudWatch, truth) and the outcomes of every cycle."""

    name: str
    statuses: list[str] = field(default_factory=list)
    rows: list[tuple[str, str, float | None, float]] = field(default_factory=list)
    estimate: float | None = None

    @property
    def mismatches(self) -> list[str]:
        """Metrics whose CloudWatch value is missing or differs from the truth."""
        return [name for name, _, published, expected in self.rows if not _agree(published, expected)]


@dataclass
class DemoRun:
    """What the demo did: per-cluster reports, the time it took, the endpoints it used."""

    clusters: list[ClusterReport]
    cycles: int
    seconds: float
    moto_url: str
    cloudwatch: Any = field(repr=False)
    started: datetime

    @property
    def ok(self) -> bool:
        """Whether every number agreed."""
        return not any(report.mismatches for report in self.clusters)


def _agree(published: float | None, expected: float) -> bool:
    return published is not None and math.isclose(published, expected, rel_tol=TOLERANCE, abs_tol=TOLERANCE)


class Context:
    """The parts of a Lambda context the handler uses."""

    function_name = "cni-metrics-collector"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:cni-metrics-collector"

    def __init__(self) -> None:
        self.aws_request_id = str(uuid.uuid4())
        self._deadline = time.monotonic() + TIMEOUT_SECONDS

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the (emulated) timeout."""
        return int((self._deadline - time.monotonic()) * 1000)


@contextmanager
def moto_server() -> Iterator[str]:
    """moto in server mode on a free loopback port."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def collector_environment(moto_url: str, eks_env: dict[str, str]) -> dict[str, str]:
    """events/env.json's variables for the collector (as `sam local invoke` reads them), with the endpoints
    actually started; every metric set's numbers are compared, so the demo publishes the full set."""
    env = read_env_file(EVENTS / "env.json", "CollectorFunction")
    env.update(eks_env)
    env.update(
        METRIC_SET="full",
        AWS_ENDPOINT_URL_S3=moto_url,
        AWS_ENDPOINT_URL_CLOUDWATCH=moto_url,
        AWS_ENDPOINT_URL_EC2=moto_url,
        PUBLISH_MODE="putmetricdata",
        POWERTOOLS_LOG_LEVEL=os.environ.get("POWERTOOLS_LOG_LEVEL", "WARNING"),
    )
    return env


def load_handler() -> ModuleType:
    """functions/collector/app.py, imported as Lambda imports it."""
    spec = importlib.util.spec_from_file_location("collector_app", APP)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load the collector handler from {APP}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def scheduled_event() -> dict[str, Any]:
    """events/scheduled.json with a fresh id and time, as EventBridge would send it."""
    event: dict[str, Any] = json.loads((EVENTS / "scheduled.json").read_text())
    event.update(id=str(uuid.uuid4()), time=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    return event


@contextmanager
def demo_session(cycles: int) -> Iterator[DemoRun]:
    """Start everything, run ``cycles`` scheduled invocations, compare; stop everything on exit.

    The local endpoints stay up inside the block (``run.cloudwatch`` reads moto's CloudWatch).
    """
    from fake_eks.testing import start_fake_eks

    began = time.monotonic()
    started = datetime.now(UTC) - timedelta(minutes=1)
    with ExitStack() as stack:
        moto_url = stack.enter_context(moto_server())
        eks = stack.enter_context(start_fake_eks(SCENARIO, subprocess_mode=True))
        env = collector_environment(moto_url, eks.env())
        saved = {key: os.environ.get(key) for key in env}
        stack.callback(_restore, saved)
        os.environ.update(env)
        boto3.client("s3").create_bucket(Bucket=env["STATE_BUCKET"])
        clusters = env["CLUSTER_NAMES"].split(",")
        network = MotoNetwork(eks, boto3.client("ec2"))
        for name in clusters:
            network.provision(name)  # VPC, subnets per zone and ENIs in moto; the stand-in names them
        print(f"moto at {moto_url}; EKS stand-in '{SCENARIO}' with {', '.join(clusters)}", flush=True)

        handler = load_handler()
        truth = TruthTracker(eks, clusters)
        reports = {name: ClusterReport(name) for name in clusters}
        last: dict[str, tuple[str, dict[str, float]]] = {}
        for cycle in range(cycles):
            tick = time.monotonic()
            result = handler.lambda_handler(scheduled_event(), Context())
            for outcome in result["clusters"]:
                name = outcome["cluster"]
                reports[name].statuses.append(outcome["status"])
                last[name] = (outcome["collected_at"], truth.observe(name))
            if cycle == 0:
                truth.start_counting()
            summary = ", ".join(f"{c['cluster']} {c['status']}" for c in result["clusters"])
            print(f"cycle {cycle + 1}/{cycles} ({time.monotonic() - tick:.1f} s): {summary}", flush=True)
            if cycle < cycles - 1:
                for name in clusters:
                    eks.advance(name)
                    network.sync(name)

        cloudwatch = boto3.client("cloudwatch")
        for name, report in reports.items():
            collected_at, gauges = last[name]
            increases = truth.increases(name)
            _compare(report, cloudwatch, collected_at, gauges, truth.served[name], increases, started)
            at = datetime.fromisoformat(collected_at).replace(microsecond=0)
            report.rows += capacity_rows(cloudwatch, boto3.client("ec2"), eks.truth(name), at)
            report.estimate = published_value(cloudwatch, name, "hoursToIPExhaustion", {}, at)
        yield DemoRun(list(reports.values()), cycles, time.monotonic() - began, moto_url, cloudwatch, started)


def _restore(saved: dict[str, str | None]) -> None:
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _compare(
    report: ClusterReport,
    cloudwatch: Any,
    collected_at: str,
    gauges: dict[str, float],
    served: int,
    increases: dict[str, float],
    started: datetime,
) -> None:
    """Rows: last cycle's gauges and nodesScraped, and each counter's Σ of increases, read from CloudWatch."""
    at = datetime.fromisoformat(collected_at).replace(microsecond=0)
    last_cycle = _read(cloudwatch, report.name, [*gauges, "nodesScraped"], at, at + timedelta(seconds=1), 1)
    for name, value in sorted(gauges.items()):
        report.rows.append((name, "last cycle", last_cycle.get(name), value))
    report.rows.append(("nodesScraped", "last cycle", last_cycle.get("nodesScraped"), float(served)))
    total = _read(cloudwatch, report.name, list(increases), started, started + timedelta(hours=1), 3600)
    for name, value in sorted(increases.items()):
        report.rows.append((name, "Σ increases", total.get(name, 0.0), value))


def _read(
    cloudwatch: Any, cluster: str, names: Sequence[str], start: datetime, end: datetime, period: int
) -> dict[str, float]:
    """GetMetricData: the Sum of each metric over [start, end); metrics without data are left out."""
    queries = [
        {
            "Id": f"m{index}",
            "Label": name,
            "MetricStat": {
                "Metric": {
                    "Namespace": os.environ.get("METRICS_NAMESPACE", "Kubernetes"),
                    "MetricName": name,
                    "Dimensions": [{"Name": "CLUSTER_ID", "Value": cluster}],
                },
                "Period": period,
                "Stat": "Sum",
            },
        }
        for index, name in enumerate(names)
    ]
    response = cloudwatch.get_metric_data(MetricDataQueries=queries, StartTime=start, EndTime=end)
    return {r["Label"]: sum(r["Values"]) for r in response["MetricDataResults"] if r["Values"]}


def print_report(run: DemoRun) -> None:
    """Per cluster: CloudWatch beside the truth."""
    for report in run.clusters:
        print(f"\n== {report.name}: {' '.join(report.statuses)}")
        print(f"   {'metric':<28}{'':<14}{'CloudWatch':>14}{'truth':>14}")
        for name, what, published, expected in report.rows:
            shown = "missing" if published is None else f"{published:,.2f}"
            verdict = "ok" if _agree(published, expected) else "MISMATCH"
            print(f"   {name:<28}{what:<14}{shown:>14}{expected:>14,.2f}  {verdict}")
        estimate = report.estimate
        hours = "no estimate (trend flat or falling)" if estimate is None else (
            f"{estimate:,.4f} h = {estimate * 3600:,.0f} s (the demo's cycles are seconds apart)")
        print(f"   hoursToIPExhaustion (last cycle): {hours}")
    verdict = "every number agrees" if run.ok else "MISMATCHES: " + ", ".join(
        f"{r.name}: {', '.join(r.mismatches)}" for r in run.clusters if r.mismatches
    )
    print(f"\n{run.cycles} cycles, {len(run.clusters)} clusters, {run.seconds:.1f} s: {verdict}")


def render_demo_dashboard(run: DemoRun) -> Path:
    """The dashboard function's page for the demo clusters, drawn from moto's CloudWatch (1 s periods:
    the cycles are seconds apart)."""
    from cni_metrics.dashboard.body import DashboardOptions
    from dashboard_preview.render import render_dashboard

    options = DashboardOptions(region=run.cloudwatch.meta.region_name,
                               namespace=os.environ.get("METRICS_NAMESPACE", "Kubernetes"))
    clusters = [report.name for report in run.clusters]
    return render_dashboard(ROOT / ".demo" / "dashboard.png", clusters, cloudwatch=run.cloudwatch,
                            options=options, start=run.started, period=1)[0]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; 0 when CloudWatch agrees with the stand-in's truth."""
    parser = argparse.ArgumentParser(prog="python -m cni_demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=5, help="scheduled invocations to run (default 5)")
    args = parser.parse_args(argv)
    if args.cycles < 2:
        parser.error("--cycles must be at least 2 (the first run only records counter baselines)")
    with demo_session(args.cycles) as run:
        print_report(run)
        # Further views of the same CloudWatch data belong here, while the local endpoints still run.
        print(f"dashboard picture: {render_demo_dashboard(run)}")
        return 0 if run.ok else 1


if __name__ == "__main__":
    sys.exit(main())
