"""The collector job's outbox protocol against an in-memory store, a simulated cluster and a fake publisher.

Every test checks the same invariant: the sum of published counter increases equals the increments the
simulated aws-node pods really made (as of their last successful scrape), whatever fails or overlaps.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pytest
from cni_metrics.adapters.publishers import MetricBatch, PublishResult
from cni_metrics.adapters.state_store import (
    InMemoryStateStore,
    StateStoreError,
    StoredObject,
    decode_document,
)
from cni_metrics.collector.cluster import ClusterCollection, CollectionHealth
from cni_metrics.collector.job import ClusterOutcome, Deps, RunSummary, run_collection
from cni_metrics.collector.settings import ClusterSpec, Settings, load_settings
from cni_metrics.core.model import MetricValue, NodeInput, NodeMetrics

COUNTER = "awscni_add_ip_req_count"
T0 = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)


class Clock:
    """A settable wall clock and the matching monotonic clock."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def monotonic(self) -> float:
        return (self.now - T0).total_seconds()

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Pod:
    key: str
    started_at: datetime
    restart_count: int = 0
    value: float = 0.0
    increments: float = 0.0  # since creation, across restarts
    served: float = 0.0  # ``increments`` as of the last successful scrape
    failing: bool = False


@dataclass
class SimCluster:
    """aws-node pods whose counter grows; knows the true increments as of each pod's last scrape."""

    name: str
    clock: Clock
    rng: random.Random
    pods: dict[str, Pod] = field(default_factory=dict)
    gone_served: float = 0.0
    baseline: float | None = None
    serial: int = 0

    def add_pod(self) -> None:
        self.serial += 1
        key = f"{self.name}-uid-{self.serial}"
        self.pods[key] = Pod(key, self.clock())

    def step(self) -> None:
        """Time moves on: restarts, churn, counters grow; some pods will fail their next scrape."""
        for pod in list(self.pods.values()):
            if self.rng.random() < 0.1 and not pod.failing:
                pod.restart_count += 1
                pod.value = 0.0
            if self.rng.random() < 0.05 and len(self.pods) > 1:
                self.gone_served += pod.served
                del self.pods[pod.key]
                continue
            grow = float(self.rng.randint(0, 9))
            pod.value += grow
            pod.increments += grow
        if self.rng.random() < 0.3:
            self.add_pod()
        for pod in self.pods.values():
            pod.failing = self.baseline is not None and self.rng.random() < 0.1

    def grow(self, amount: float) -> float:
        """Every pod's counter grows by ``amount`` (no restart, churn or failure); the true increase."""
        for pod in self.pods.values():
            pod.value += amount
            pod.increments += amount
        return amount * len(self.pods)

    def served_total(self) -> float:
        return self.gone_served + sum(pod.served for pod in self.pods.values())

    def true_increase(self) -> float:
        """True increments since the first successful collection (which only records baselines)."""
        assert self.baseline is not None
        return self.served_total() - self.baseline

    def collect(self, spec: ClusterSpec, deadline: float) -> ClusterCollection:
        nodes, failed = [], set()
        for pod in self.pods.values():
            if pod.failing:
                failed.add(pod.key)
                continue
            pod.served = pod.increments
            metrics = NodeMetrics(gauges={"awscni_assigned_ip_addresses": 3.0}, counters={COUNTER: pod.value})
            nodes.append(NodeInput(pod.key, pod.key, metrics, pod.started_at, pod.restart_count))
        if self.baseline is None and nodes:
            self.baseline = self.served_total()
        health = CollectionHealth(len(self.pods), len(nodes), len(failed))
        started = {key: self.pods[key].started_at for key in failed}
        return ClusterCollection(
            self.name, "ok", None, nodes, failed, health, [], self.clock(), None, started
        )


@dataclass
class FakePublisher:
    """Records what it publishes; ``fail`` decides per (cluster, metric) whether a datum fails."""

    published: list[tuple[str, datetime, MetricValue]] = field(default_factory=list)
    fail: Callable[[str, MetricValue], bool] = lambda cluster, metric: False
    before: Callable[[], None] | None = None

    def publish(self, cluster: str, batches: Sequence[MetricBatch]) -> PublishResult:
        if self.before is not None:
            before, self.before = self.before, None
            before()
        result = PublishResult()
        for batch in batches:
            failed = tuple(m for m in batch.metrics if self.fail(cluster, m))
            for metric in batch.metrics:
                if metric not in failed:
                    self.published.append((cluster, batch.collected_at, metric))
                    result.published += 1
            if failed:
                result.unpublished.append(MetricBatch(batch.id, batch.collected_at, failed))
                result.error = "PutMetricData failed: Throttling (HTTP 400)"
        return result

    def total(self, cluster: str, name: str = "addReqCount") -> float:
        return sum(m.value for c, _, m in self.published if c == cluster and m.name == name)

    def values(self, cluster: str, name: str) -> list[float]:
        return [m.value for c, _, m in self.published if c == cluster and m.name == name]


def settings(*clusters: str, **env: str) -> Settings:
    return load_settings({"CLUSTER_NAMES": ",".join(clusters), "STATE_BUCKET": "state-bucket", **env})


class World:
    """A store, a publisher, a clock and simulated clusters wired into ``Deps``."""

    def __init__(self, *names: str, seed: int = 1) -> None:
        self.clock = Clock()
        self.rng = random.Random(seed)
        self.store = InMemoryStateStore()
        self.publisher = FakePublisher()
        self.clusters = {name: SimCluster(name, self.clock, self.rng) for name in names}
        for cluster in self.clusters.values():
            for _ in range(4):
                cluster.add_pod()
        self.settings = settings(*names)

    def collect(self, spec: ClusterSpec, deadline: float) -> ClusterCollection:
        return self.clusters[spec.name].collect(spec, deadline)

    def deps(self, collect: Callable[[ClusterSpec, float], ClusterCollection] | None = None) -> Deps:
        return Deps(
            store=self.store,
            publisher=self.publisher,
            collect=collect or self.collect,
            clock=self.clock,
            monotonic=self.clock.monotonic,
        )

    def run(self, remaining: float = 300.0, **kwargs: object) -> RunSummary:
        return run_collection(self.settings, deps=self.deps(**kwargs), remaining_seconds=remaining)  # type: ignore[arg-type]

    def outcome(self, summary: RunSummary, name: str) -> ClusterOutcome:
        return next(c for c in summary.clusters if c.cluster == name)

    def outbox(self, name: str) -> int:
        stored = self.store.load(name)
        assert stored is not None
        return sum(len(entry.batch.metrics) for entry in decode_document(stored.body).outbox)


def test_first_run_publishes_gauges_and_records_baselines() -> None:
    # given a cluster never seen before
    world = World("alpha")
    # when the job runs once
    summary = world.run()
    # then gauges and health are published, no counter increase, and the baselines are stored
    outcome = world.outcome(summary, "alpha")
    assert (outcome.status, outcome.state, outcome.nodes) == ("ok", "created", 4)
    assert world.publisher.values("alpha", "assignIPAddresses") == [12.0]
    assert world.publisher.values("alpha", "nodesScraped") == [4.0]
    assert world.publisher.values("alpha", "addReqCount") == []
    assert world.outbox("alpha") == 0
    assert summary.ok


def test_the_run_start_hook_gets_the_invocation_end_before_anything_is_read() -> None:
    # given a hook that records the end it is given and what the store held at that moment
    world = World("alpha")
    world.clock.advance(42)
    seen: list[tuple[float, int]] = []
    deps = replace(world.deps(), on_run_start=lambda end: seen.append((end, len(world.store.objects))))
    # when a run with 300 s left starts
    run_collection(world.settings, deps=deps, remaining_seconds=300)
    # then the hook was called once, first, with the monotonic time at which the invocation ends
    assert seen == [(42.0 + 300.0, 0)]
    assert world.store.objects


def test_increases_are_exact_over_many_cycles_with_churn_restarts_and_failed_scrapes() -> None:
    # given two clusters whose pods restart, come and go and sometimes fail their scrape
    world = World("alpha", "beta", seed=7)
    # when the job runs 30 times, a minute apart
    for _ in range(30):
        world.run()
        world.clock.advance(60)
        for cluster in world.clusters.values():
            cluster.step()
    # then the published increases add up to the true increments of each cluster
    for name, cluster in world.clusters.items():
        assert world.publisher.total(name) == cluster.true_increase()
        assert cluster.true_increase() > 0


def test_failed_publish_is_published_by_the_next_run_with_its_timestamp() -> None:
    # given a baseline and a cycle of growth
    world = World("alpha")
    world.run()
    world.clock.advance(60)
    world.clusters["alpha"].step()
    collected_at = world.clock()
    # when CloudWatch refuses the counter datums once
    world.publisher.fail = lambda cluster, metric: metric.name == "addReqCount"
    failed = world.outcome(world.run(), "alpha")
    # then the run reports them pending and they stay in the outbox, released
    assert (failed.status, failed.pending) == ("publish_failed", 1)
    assert world.outbox("alpha") == 1
    # when the next run succeeds
    world.publisher.fail = lambda cluster, metric: False
    world.clock.advance(60)
    world.clusters["alpha"].step()
    ok = world.outcome(world.run(), "alpha")
    # then it publishes the old datum with its original timestamp, and nothing is lost or doubled
    assert ok.status == "ok"
    stamps = [at for _, at, m in world.publisher.published if m.name == "addReqCount"]
    assert collected_at in stamps
    assert world.outbox("alpha") == 0
    assert world.publisher.total("alpha") == world.clusters["alpha"].true_increase()


@pytest.mark.parametrize(
    ("during_collection", "during_publish"),
    [(1, 0), (2, 0), (1, 1)],
    ids=["two-during-collection", "three-during-collection", "three-chained-through-the-publish"],
)
def test_overlapping_runs_skip_a_leased_cluster_and_the_next_run_counts_the_interval(
    during_collection: int, during_publish: int
) -> None:
    # given a baseline
    world = World("alpha")
    world.run()
    world.clock.advance(60)
    world.clusters["alpha"].step()
    inner: list[RunSummary] = []

    def next_runs(count: int) -> None:
        for _ in range(count):
            world.clock.advance(20)
            world.clusters["alpha"].step()
            inner.append(world.run())

    def slow_collect(spec: ClusterSpec, deadline: float) -> ClusterCollection:
        # while this run collects, the next scheduled runs start (before and after its scrape)
        next_runs(1)
        collection = world.collect(spec, deadline)
        next_runs(during_collection - 1)
        return collection

    world.publisher.before = lambda: next_runs(during_publish)
    # when the slow run finishes
    outer = world.outcome(world.run(collect=slow_collect), "alpha")
    # then the runs that started while it collected skipped the cluster, one that started while it
    # published collected normally, and every run that collected published its own gauges
    statuses = [world.outcome(summary, "alpha").status for summary in inner]
    assert outer.status == "ok"
    assert statuses == ["skipped_busy"] * during_collection + ["ok"] * during_publish
    assert len(world.publisher.values("alpha", "assignIPAddresses")) == 2 + during_publish
    # and a later run counts the skipped intervals: the totals are exact
    world.clock.advance(60)
    world.clusters["alpha"].step()
    assert world.outcome(world.run(), "alpha").status == "ok"
    assert world.outbox("alpha") == 0
    assert world.publisher.total("alpha") == world.clusters["alpha"].true_increase()


def test_run_overlapping_a_publish_keeps_the_other_runs_entries_and_both_settle() -> None:
    # given a baseline
    world = World("alpha")
    world.run()
    world.clock.advance(60)
    world.clusters["alpha"].step()
    inner: list[RunSummary] = []

    def next_run() -> None:
        # while the first run publishes, the next one runs from start to end
        world.clock.advance(30)
        world.clusters["alpha"].step()
        inner.append(world.run())

    world.publisher.before = next_run
    # when the first run finishes publishing
    outer = world.outcome(world.run(), "alpha")
    # then both published their own interval and both cleared their outbox entries
    assert (outer.status, outer.state) == ("ok", "updated")
    assert world.outcome(inner[0], "alpha").status == "ok"
    assert world.outbox("alpha") == 0
    assert world.publisher.total("alpha") == world.clusters["alpha"].true_increase()


def test_run_that_died_after_claiming_is_published_once_its_lease_expires() -> None:
    # given a baseline
    world = World("alpha")
    world.run()
    world.clock.advance(60)
    world.clusters["alpha"].step()

    def crash() -> None:
        raise RuntimeError("function timed out")

    # when a run dies between its claim and its publish
    world.publisher.before = crash
    died = world.outcome(world.run(remaining=120), "alpha")
    assert died.status == "error"
    # then a run inside the lease leaves those datums alone
    world.clock.advance(60)
    world.clusters["alpha"].step()
    assert world.outcome(world.run(), "alpha").status == "ok"
    assert world.outbox("alpha") >= 1
    # and a run after the lease publishes them, so nothing is lost
    world.clock.advance(120)
    world.clusters["alpha"].step()
    world.run()
    assert world.outbox("alpha") == 0
    assert world.publisher.total("alpha") == world.clusters["alpha"].true_increase()


def test_corrupt_state_is_reported_and_rebaselined_without_publishing_increases() -> None:
    # given a cluster with stored baselines, whose state object then gets corrupted
    world = World("alpha")
    world.run()
    stored = world.store.load("alpha")
    assert stored is not None
    truncated = b'{"format": "cni-metrics-state", "version": 1, "state": {"v": 1'
    world.store.objects["alpha"] = type(stored)(truncated, stored.etag)
    world.clock.advance(60)
    world.clusters["alpha"].step()
    # when the job runs
    outcome = world.outcome(world.run(), "alpha")
    # then it says so clearly, publishes gauges but no counter increase, and stores fresh baselines
    assert outcome.status == "rebaselined"
    assert outcome.error is not None
    assert "corrupt state object memory://alpha" in outcome.error
    assert world.publisher.values("alpha", "addReqCount") == []
    assert world.publisher.values("alpha", "assignIPAddresses")
    # and the run after that publishes increases again
    world.clock.advance(60)
    world.clusters["alpha"].step()
    assert world.outcome(world.run(), "alpha").status == "ok"
    assert world.publisher.values("alpha", "addReqCount")


def test_one_failing_cluster_does_not_stop_the_others() -> None:
    # given two clusters, the collection of one of which blows up
    world = World("alpha", "beta")

    def collect(spec: ClusterSpec, deadline: float) -> ClusterCollection:
        if spec.name == "alpha":
            raise RuntimeError("boom")
        return world.collect(spec, deadline)

    # when the job runs
    summary = world.run(collect=collect)
    # then alpha is an error and beta is published
    assert world.outcome(summary, "alpha").status == "error"
    assert world.outcome(summary, "beta").status == "ok"
    assert world.publisher.values("beta", "assignIPAddresses")
    assert not summary.ok


def test_failed_collection_publishes_health_only_and_keeps_the_baselines() -> None:
    # given a baseline
    world = World("alpha")
    world.run()
    before = world.store.load("alpha")
    assert before is not None

    def unreachable(spec: ClusterSpec, deadline: float) -> ClusterCollection:
        error = "cannot reach the API server"
        return ClusterCollection(spec.name, "error", error, [], set(), CollectionHealth(), [], world.clock())

    # when the cluster cannot be reached
    world.clock.advance(60)
    outcome = world.outcome(world.run(collect=unreachable), "alpha")
    # then only health numbers are published (no gauge of zero) and the baselines are unchanged
    assert (outcome.status, outcome.error) == ("error", "cannot reach the API server")
    assert world.publisher.values("alpha", "assignIPAddresses") == [12.0]
    assert world.publisher.values("alpha", "nodesScraped") == [4.0, 0.0]
    after = world.store.load("alpha")
    assert after is not None
    assert decode_document(after.body).state == decode_document(before.body).state


def test_no_time_left_changes_nothing() -> None:
    # given less time left than the publish margin
    world = World("alpha")
    # when the job runs
    outcome = world.outcome(world.run(remaining=10), "alpha")
    # then the cluster times out: nothing stored, nothing published
    assert outcome.status == "timeout"
    assert world.store.load("alpha") is None
    assert world.publisher.published == []


@pytest.mark.parametrize("concurrency", ["1", "3"])
def test_clusters_are_processed_within_the_concurrency_bound(concurrency: str) -> None:
    # given five clusters and a bound
    names = [f"c{i}" for i in range(5)]
    world = World(*names)
    world.settings = settings(*names, CLUSTER_CONCURRENCY=concurrency)
    # when the job runs
    summary = world.run()
    # then every cluster has an outcome, in the configured order
    assert [c.cluster for c in summary.clusters] == names
    assert summary.to_dict()["ok"] is True


class FailingSettleStore(InMemoryStateStore):
    """Accepts claims but refuses every later write of the same run (a settle that never lands)."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_settle = False
        self.claimed: set[tuple[str, str]] = set()

    def save(self, cluster: str, body: bytes, *, if_match: str | None) -> str:
        document = json.loads(body)
        writer = document["writer"]
        if self.fail_settle and (cluster, writer) in self.claimed:
            raise StateStoreError("s3 unavailable")
        if any(entry["owner"] == writer for entry in document["outbox"]):  # the claim
            self.claimed.add((cluster, writer))
        return super().save(cluster, body, if_match=if_match)


def test_settle_that_never_lands_is_the_documented_at_least_once_window() -> None:
    # given a baseline, and a store that will refuse this run's settle writes
    world = World("alpha")
    world.store = FailingSettleStore()
    world.run()
    world.clock.advance(60)
    world.clusters["alpha"].step()
    world.store.fail_settle = True
    # when a run publishes but cannot settle
    outcome = world.outcome(world.run(remaining=120), "alpha")
    assert (outcome.status, outcome.state) == ("ok", "unsettled")
    published = world.publisher.total("alpha")
    # then after its lease a later run publishes those datums again: counted twice, never lost
    world.store.fail_settle = False
    world.clock.advance(200)
    world.run()
    assert world.publisher.total("alpha") == 2 * published == 2 * world.clusters["alpha"].true_increase()


def test_failed_discovery_is_reported_and_configured_clusters_still_run() -> None:
    # given a configured cluster and discovery by tag that fails
    world = World("alpha")
    world.settings = settings("alpha", CLUSTER_DISCOVERY_TAG="team=net")

    def discover(tag: tuple[str, str]) -> list[ClusterSpec]:
        raise RuntimeError(f"AccessDenied listing clusters tagged {tag[0]}={tag[1]}")

    deps = world.deps()
    summary = run_collection(world.settings, deps=replace(deps, discover=discover), remaining_seconds=300)
    # then discovery is an error outcome and the configured cluster is collected
    assert [(c.cluster, c.status) for c in summary.clusters] == [("(discovery)", "error"), ("alpha", "ok")]
    assert "AccessDenied listing clusters tagged team=net" in (summary.clusters[0].error or "")


class SlowStore(InMemoryStateStore):
    """Each read and write takes a little real time, so that concurrent runs interleave."""

    def load(self, cluster: str) -> StoredObject | None:
        time.sleep(0.002)
        return super().load(cluster)

    def save(self, cluster: str, body: bytes, *, if_match: str | None) -> str:
        time.sleep(0.002)
        return super().save(cluster, body, if_match=if_match)


@pytest.mark.parametrize("width", [2, 3, 4])
def test_concurrent_runs_count_every_increase_exactly(width: int) -> None:
    # given a cluster (restarts, churn, failed scrapes) and runs overlapping ``width`` at a time
    world = World("alpha", seed=3)
    world.store = SlowStore()
    lock = threading.Lock()

    start = threading.Barrier(width)

    def collect(spec: ClusterSpec, deadline: float) -> ClusterCollection:
        time.sleep(0.02)  # a scrape takes time: the other runs of the round meet the lease meanwhile
        with lock:  # one scrape at a time (the simulated cluster is not thread-safe)
            world.clock.advance(1)
            world.clusters["alpha"].step()
            return world.collect(spec, deadline)

    outcomes: list[ClusterOutcome] = []

    def invoke() -> None:
        start.wait(timeout=10)  # the round's runs start together
        outcomes.extend(world.run(collect=collect).clusters)

    for _ in range(20):
        threads = [threading.Thread(target=invoke) for _ in range(width)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    # when a last quiet run settles everything
    world.clock.advance(600)
    world.run(collect=collect)
    # then the published increases equal the true ones exactly
    assert world.outbox("alpha") == 0
    assert world.publisher.total("alpha") == world.clusters["alpha"].true_increase()
    # and runs did overlap: some skipped the leased cluster, none failed
    statuses = {o.status for o in outcomes}
    assert "skipped_busy" in statuses
    assert statuses <= {"ok", "skipped_busy"}
