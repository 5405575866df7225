"""The collector handler end to end: EKS stand-in + moto over HTTP, checked against the stand-in's truth.

Each cycle is one scheduled invocation as Lambda makes it. The stand-in's truth says what every aws-node
pod served; gauges must equal the sum over the pods served in that cycle, and over all cycles the
published counter increases must equal the pods' true increments, through aws-node restarts, node churn,
cold starts, PutMetricData failures and overlapping invocations.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from cni_demo.truth import COUNTERS, TruthTracker
from cni_metrics.adapters import eks_auth
from cni_metrics.collector.settings import ConfigError
from cni_metrics.core import catalogue
from harness import STATE_BUCKET, collector_settings, metric_sums, set_env
from lambda_app import LambdaContext, load_app

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCHEDULED = json.loads((ROOT / "events" / "scheduled.json").read_text())
SCENARIO: dict[str, Any] = {
    "name": "collector-it",
    "seed": 11,
    "churn": {"restart": 0.08, "leave": 0.04, "join": 0.04},
    "clusters": [
        {
            "name": "it-alpha",
            "nodes": 8,
            "prefix_delegation": 0.5,
            "faults": {"error_500": [1], "garbage": [2]},
        },
        {"name": "it-beta", "nodes": 5, "cni_shapes": {"modern": 1, "old": 1}},
    ],
}
CLUSTERS = ["it-alpha", "it-beta"]
# A subprocess invocation (a real cold start: a fresh interpreter imports the handler).
CHILD = """
import json, sys
sys.path.insert(0, sys.argv[1])
from lambda_app import LambdaContext, load_app
app = load_app("collector")
context = LambdaContext(request_id="cold-start")
print("RESULT " + json.dumps(app.lambda_handler(json.loads(sys.argv[2]), context)))
"""


def load_handler() -> ModuleType:
    """A freshly imported handler module (no cached clients) and no cached EKS endpoints or tokens."""
    eks_auth.clear_caches()
    return load_app("collector")


@pytest.fixture
def stand_in(aws: str, fake_eks_factory: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> Any:
    """The scenario's stand-in; the collector's environment points at it and at moto."""
    eks = fake_eks_factory(SCENARIO)
    set_env(monkeypatch, eks.env())
    set_env(monkeypatch, collector_settings(
        CLUSTER_NAMES=",".join(CLUSTERS),
        PUBLISH_MAX_ATTEMPTS="2",
        # the default: the stand-in shares this process (and its GIL) with moto and the handler, and its
        # TLS handshakes have been seen to stall past 1 s here
        CONNECT_TIMEOUT_SECONDS="3",
        READ_TIMEOUT_SECONDS="5",
    ))
    return eks


def delivered_by_cycle(proxy: Any) -> dict[tuple[str, int], dict[str, list[float]]]:
    """Cluster-level datums CloudWatch accepted, by (cluster, timestamp second) -> name -> values."""
    out: dict[tuple[str, int], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for call in proxy.delivered:
        for datum in call.datums:
            if len(datum["Dimensions"]) != 1:  # per-zone/per-subnet series: not the cluster total
                continue
            cluster = datum["Dimensions"][0]["Value"]
            out[(cluster, math.floor(float(datum["Timestamp"])))][datum["MetricName"]].append(datum["Value"])
    return out


def next_second(outcomes: list[dict[str, Any]]) -> None:
    """Wait until the next collection's timestamps fall in a later second than these (cycles are told
    apart by the whole second of their timestamp)."""
    latest = max(datetime.fromisoformat(o["collected_at"]).timestamp() for o in outcomes if o["collected_at"])
    time.sleep(max(0.0, math.floor(latest) + 1.02 - time.time()))


def second(iso: str) -> int:
    return math.floor(datetime.fromisoformat(iso).timestamp())


def test_thirty_cycles_with_churn_failures_cold_starts_and_overlap_publish_the_true_increases(
    stand_in: Any, cloudwatch_proxy: Any
) -> None:
    # given the stand-in, a handler as Lambda loads it, and the truth
    truth = TruthTracker(stand_in, CLUSTERS)
    handler = load_handler()
    started = datetime.now(UTC) - timedelta(minutes=1)
    expected_gauges: dict[tuple[str, int], dict[str, float]] = {}
    statuses: list[str] = []
    for cycle in range(30):
        if cycle in (6, 7):
            cloudwatch_proxy.fail_next("throttle", 2)  # every attempt of one call fails
        if cycle == 13:
            cloudwatch_proxy.fail_next("500", 4)  # both clusters' calls fail
        # when the invocation runs: normally, in a fresh process, freshly loaded, or two at once
        if cycle == 10:
            results = [run_in_fresh_process()]
        elif cycle == 20:
            handler = load_handler()
            results = [handler.lambda_handler(SCHEDULED, LambdaContext())]
        elif cycle == 16:
            results = run_overlapping(handler)
        else:
            results = [handler.lambda_handler(SCHEDULED, LambdaContext())]
        outcomes = [c for result in results for c in result["clusters"]]
        statuses += [c["status"] for c in outcomes]
        for cluster in CLUSTERS:
            gauges = truth.observe(cluster)
            mine = [c for c in outcomes if c["cluster"] == cluster and c["collected_at"]]
            if cycle != 16:
                (outcome,) = mine
                expected_gauges[(cluster, second(outcome["collected_at"]))] = gauges
        if cycle == 0:
            truth.start_counting()
            # the error_500 and the garbage-serving (bad payload) nodes fail; nothing else does
            assert {c["cluster"]: c["failures"] for c in outcomes} == {"it-alpha": 2, "it-beta": 0}
        for cluster in CLUSTERS:
            stand_in.advance(cluster)
        next_second(outcomes)

    # then the failures happened and were recovered, and of the two overlapping runs one collected
    # while the other skipped the leased clusters (the next cycle counted their interval)
    assert "publish_failed" in statuses
    assert set(statuses) <= {"ok", "publish_failed", "skipped_busy"}
    assert "skipped_busy" in statuses
    # and every cycle's gauges equal the truth of the pods served in that cycle
    delivered = delivered_by_cycle(cloudwatch_proxy)
    for key, gauges in expected_gauges.items():
        published: dict[str, Any] = {name: delivered[key].get(name) for name in gauges}
        assert published == {name: [pytest.approx(value)] for name, value in gauges.items()}, key
    # and over 30 cycles the increases read back from CloudWatch equal the true increments
    for cluster in CLUSTERS:
        expected = truth.increases(cluster)
        assert sum(expected.values()) > 0
        published = metric_sums(cluster, sorted(expected), started, datetime.now(UTC) + timedelta(minutes=5))
        assert published == pytest.approx(expected), cluster
    # and no PutMetricData call broke the API limits
    assert all(len(call.datums) <= 1000 and call.size <= 1_000_000 for call in cloudwatch_proxy.calls)


def emf_datums(doc: dict[str, Any]) -> list[tuple[str, int, str, float]]:
    """(cluster, timestamp ms, name, value) of an EMF document's cluster-level metrics (dimension set
    exactly ``CLUSTER_ID``), checking the specification's structure on the way."""
    meta = doc["_aws"]
    assert isinstance(meta["Timestamp"], int)
    assert "service" not in doc
    out = []
    for directive in meta["CloudWatchMetrics"]:
        assert directive["Namespace"] == "Kubernetes"
        assert all(dims[0] == "CLUSTER_ID" for dims in directive["Dimensions"])
        for dims in directive["Dimensions"]:
            assert all(isinstance(doc[name], str) for name in dims)
        for metric in directive["Metrics"]:
            value = doc[metric["Name"]]  # a number, or an array (Powertools writes one-item arrays)
            (number,) = value if isinstance(value, list) else [value]
            assert isinstance(number, float | int)
            assert metric["Unit"] in ("Count", "Percent", "Milliseconds", "Bytes")
            if directive["Dimensions"] == [["CLUSTER_ID"]]:
                assert metric["Unit"] == catalogue.unit_of(metric["Name"])
                out.append((doc["CLUSTER_ID"], meta["Timestamp"], metric["Name"], float(number)))
    return out


def run_in_fresh_process() -> dict[str, Any]:
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(Path(__file__).parent), json.dumps(SCHEDULED)],
        capture_output=True, text=True, timeout=120, check=True,
    )
    line = next(line for line in child.stdout.splitlines() if line.startswith("RESULT "))
    result: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
    return result


def run_overlapping(handler: ModuleType) -> list[dict[str, Any]]:
    """Two invocations at once (a slow run meeting the next schedule)."""
    results: list[dict[str, Any]] = []
    threads = [
        threading.Thread(target=lambda: results.append(handler.lambda_handler(SCHEDULED, LambdaContext())))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(results) == 2
    return results


def test_emf_mode_prints_valid_documents_with_exact_gauges_and_increases(
    stand_in: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # given EMF mode
    monkeypatch.setenv("PUBLISH_MODE", "emf")
    truth = TruthTracker(stand_in, CLUSTERS)
    handler = load_handler()
    expected_gauges: dict[tuple[str, int], dict[str, float]] = {}
    # when four scheduled cycles run
    for cycle in range(4):
        result = handler.lambda_handler(SCHEDULED, LambdaContext())
        for outcome in result["clusters"]:
            gauges = truth.observe(outcome["cluster"])
            expected_gauges[(outcome["cluster"], second(outcome["collected_at"]))] = gauges
        if cycle == 0:
            truth.start_counting()
        for cluster in CLUSTERS:
            stand_in.advance(cluster)
        next_second(result["clusters"])
    # then stdout holds valid EMF documents, one per cluster and cycle, with exact numbers
    published: dict[tuple[str, int], dict[str, float]] = defaultdict(dict)
    for line in capsys.readouterr().out.splitlines():
        if line.startswith('{"_aws"'):
            for cluster, at, name, value in emf_datums(json.loads(line)):
                published[(cluster, at // 1000)][name] = value
    assert set(published) == set(expected_gauges)
    for key, gauges in expected_gauges.items():
        assert {name: published[key].get(name) for name in gauges} == pytest.approx(gauges)
    for cluster in CLUSTERS:
        expected = truth.increases(cluster)
        mine = [values for (c, _), values in published.items() if c == cluster]
        sums = {name: sum(values.get(name, 0.0) for values in mine) for name in expected}
        assert sums == pytest.approx(expected)


def test_bad_event_or_configuration_changes_nothing(stand_in: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    handler = load_handler()
    # when the event is not a valid one, then the invocation fails clearly
    with pytest.raises(ConfigError, match=r"invalid event: clusters\.0\.name"):
        handler.lambda_handler({"clusters": ["no spaces allowed"]}, LambdaContext())
    # when the configuration is wrong, then too
    monkeypatch.setenv("PUBLISH_MODE", "statsd")
    with pytest.raises(ConfigError, match="PUBLISH_MODE"):
        handler.lambda_handler(SCHEDULED, LambdaContext())
    # and nothing was stored or published
    assert "Contents" not in boto3.client("s3").list_objects_v2(Bucket=STATE_BUCKET)
    assert boto3.client("cloudwatch").list_metrics(Namespace="Kubernetes")["Metrics"] == []


def test_corrupt_or_missing_state_is_reported_and_publishes_no_increase(
    stand_in: Any, cloudwatch_proxy: Any
) -> None:
    # given a first run, then a corrupted state object for one cluster
    handler = load_handler()
    handler.lambda_handler(SCHEDULED, LambdaContext())
    key = "cni-metrics/state/it-alpha.json"
    boto3.client("s3").put_object(Bucket=STATE_BUCKET, Key=key, Body=b'{"format": "cni-metrics-state", "vers')
    boto3.client("s3").delete_object(Bucket=STATE_BUCKET, Key="cni-metrics/state/it-beta.json")
    for cluster in CLUSTERS:
        stand_in.advance(cluster)
    calls_before = len(cloudwatch_proxy.delivered)
    # when the next run comes
    result = handler.lambda_handler(SCHEDULED, LambdaContext())
    # then the corrupt one is rebaselined with a clear error, the missing one starts again as a first
    # run; both publish gauges and no counter increase
    alpha, beta = sorted(result["clusters"], key=lambda c: c["cluster"])
    assert alpha["status"] == "rebaselined"
    assert f"corrupt state object s3://{STATE_BUCKET}/{key}" in alpha["error"]
    assert (beta["status"], beta["state"]) == ("ok", "created")
    for cluster in CLUSTERS:
        names = {
            d["MetricName"]
            for call in cloudwatch_proxy.delivered[calls_before:]
            for d in call.datums
            if d["Dimensions"][0]["Value"] == cluster
        }
        assert "assignIPAddresses" in names
        assert not names & set(COUNTERS.values())


def test_clusters_discovered_by_tag_are_collected(
    aws: str, fake_eks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given the demo stand-in (its clusters tagged cni-metrics=enabled) and discovery by that tag only
    for key, value in fake_eks.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("STATE_BUCKET", STATE_BUCKET)
    monkeypatch.setenv("CLUSTER_DISCOVERY_TAG", "cni-metrics=enabled")
    monkeypatch.setenv("READ_TIMEOUT_SECONDS", "2")
    monkeypatch.setenv("PUBLISH_MARGIN_SECONDS", "5")
    # when the scheduled run comes
    result = load_handler().lambda_handler(SCHEDULED, LambdaContext())
    # then every tagged cluster was found and collected
    assert sorted(c["cluster"] for c in result["clusters"]) == fake_eks.clusters
    assert {c["status"] for c in result["clusters"]} == {"ok"}


def test_a_run_where_no_cluster_can_be_collected_fails_the_invocation(
    stand_in: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given one cluster the stand-in knows and one it does not
    monkeypatch.setenv("CLUSTER_NAMES", "it-alpha,it-missing")
    handler = load_handler()
    # when the scheduled run comes, then the invocation succeeds with the failure in its summary
    result = handler.lambda_handler(SCHEDULED, LambdaContext())
    statuses = {c["cluster"]: c["status"] for c in result["clusters"]}
    assert statuses == {"it-alpha": "ok", "it-missing": "error"}
    assert result["ok"] is False
    # given only clusters that cannot be reached
    monkeypatch.setenv("CLUSTER_NAMES", "it-missing,it-gone")
    # when the scheduled run comes, then the invocation fails (Lambda Errors, on-failure queue)
    with pytest.raises(handler.CollectionFailed) as failure:
        handler.lambda_handler(SCHEDULED, LambdaContext())
    # and the error names each cluster and the cause the stand-in gave
    for cluster in ("it-missing", "it-gone"):
        assert f"{cluster}: error: DescribeCluster {cluster} failed: ResourceNotFoundException" in str(
            failure.value
        )
