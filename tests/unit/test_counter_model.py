"""Counter increases against an independent model of aws-node pods over many collections.

The model keeps a log of every increment each pod makes (when, how much, in which container lifetime)
and decides, with the documented rule (docs/design/state.md) and without any code of the package, from
when each pod's increments count: a pod the stored baselines do not know counts from its start if it
started after the previous collection, else from the collection that first sees it (scraped: its value
is the baseline; failed: no baseline at all). Failed pods the state knows keep their baselines. A
collection where every pod failed (or the cluster was unreachable) changes nothing; a corrupt state
object makes the next collection a first run. An increment is then published exactly when the pod's
next successful scrape happens in the same container lifetime (a restart loses what was not scraped
before it) and the increment came after the pod's counting start.

Invariant, after every collection: per counter, the published increases add up to the increments the
model says were published. It is checked on the pure core (``aggregate`` with the state round-tripped
through the codec) and on the whole job (``run_collection`` with an in-memory store and publisher).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

import pytest
from cni_metrics.adapters.eks_auth import ClusterTarget
from cni_metrics.adapters.publishers import MetricBatch, PublishResult
from cni_metrics.adapters.state_store import InMemoryStateStore
from cni_metrics.collector.cluster import ClusterCollection, CollectionHealth, collect_cluster
from cni_metrics.collector.job import Deps, run_collection
from cni_metrics.collector.settings import ClusterSpec, load_settings
from cni_metrics.core.aggregate import aggregate
from cni_metrics.core.model import ClusterState, NodeInput, NodeMetrics
from cni_metrics.core.state_codec import dump_state, load_state
from fake_eks.testing import RunningFakeEks
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

T0 = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
PERIOD = timedelta(minutes=1)
ADD, DEL = "awscni_add_ip_req_count", "awscni_del_ip_req_count"
PUBLISHED = {ADD: "addReqCount", DEL: "delReqCount"}
CLUSTER = "model"

Condition = Literal["ok", "failing", "skipped"]


@dataclass(frozen=True)
class Increment:
    """One increment a pod made: when, of which family, how much, in which container lifetime."""

    at: datetime
    family: str
    amount: int
    lifetime: int


@dataclass
class ModelPod:
    """An aws-node pod: its running counters, its increments not yet seen by a scrape."""

    key: str
    started_at: datetime
    start_known: bool = True
    restarts: int = 0
    values: dict[str, int] = field(default_factory=dict)
    unseen: list[Increment] = field(default_factory=list)
    condition: Condition = "ok"


@dataclass(frozen=True)
class PodStep:
    """What happens to one pod before the next collection, and how that collection finds it."""

    condition: Condition
    restart: bool
    leave: bool
    add: int
    delete: int


@dataclass(frozen=True)
class Cycle:
    """One interval and its collection: pod steps (by position), new pods, faults of the cycle."""

    steps: tuple[PodStep, ...]
    joins: tuple[tuple[bool, Condition], ...]  # (start time known, condition at the next collection)
    corrupt_state: bool = False
    outage: bool = False


@dataclass
class Model:
    """Pods, the time each one's increments count from, and what must have been published."""

    pods: dict[str, ModelPod] = field(default_factory=dict)
    counts_from: dict[str, datetime] = field(default_factory=dict)  # pods the state has a baseline of
    previous: datetime | None = None  # the stored state's collection time (None: no state)
    published: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PUBLISHED, 0))
    serial: int = 0
    cycle: int = 0

    def now(self) -> datetime:
        return T0 + self.cycle * PERIOD

    def join(self, start_known: bool, condition: Condition, at: datetime) -> None:
        self.serial += 1
        key = f"uid-{self.serial:03d}"
        self.pods[key] = ModelPod(key, at, start_known, condition=condition)

    def advance(self, plan: Cycle) -> None:
        """The interval before the next collection: restarts, increments, departures, new pods."""
        self.cycle += 1
        now = self.now()
        for pod, step in zip(sorted(self.pods.values(), key=lambda p: p.key), plan.steps, strict=False):
            if step.leave and len(self.pods) > 1:
                del self.pods[pod.key]
                self.counts_from.pop(pod.key, None)
                continue
            if step.restart:
                pod.restarts += 1
                pod.values = {}
            for family, amount in ((ADD, step.add), (DEL, step.delete)):
                if amount:
                    pod.values[family] = pod.values.get(family, 0) + amount
                    pod.unseen.append(Increment(now - timedelta(seconds=20), family, amount, pod.restarts))
            pod.condition = step.condition
        for start_known, condition in plan.joins:
            self.join(start_known, condition, now - timedelta(seconds=40))
            pod = self.pods[f"uid-{self.serial:03d}"]
            pod.values = {ADD: 1}
            pod.unseen.append(Increment(now - timedelta(seconds=30), ADD, 1, 0))
        if plan.corrupt_state:
            self.counts_from.clear()
            self.previous = None

    def collect(self, outage: bool) -> tuple[list[NodeInput], dict[str, datetime | None]]:
        """This collection: the scraped pods and the failed ones; the model's own bookkeeping of it."""
        now = self.now()
        listed = [] if outage else list(self.pods.values())
        scraped = [pod for pod in listed if pod.condition == "ok"]
        failing = [pod for pod in listed if pod.condition == "failing"]
        if not outage and (scraped or not failing):  # a collection that is not only failures
            self._settle(now, scraped, failing)
        nodes = [
            NodeInput(
                pod.key, pod.key, NodeMetrics({}, {f: float(v) for f, v in pod.values.items()}),
                pod.started_at if pod.start_known else None, pod.restarts,
            )
            for pod in scraped
        ]  # fmt: skip
        return nodes, {pod.key: pod.started_at if pod.start_known else None for pod in failing}

    def _settle(self, now: datetime, scraped: Sequence[ModelPod], failing: Sequence[ModelPod]) -> None:
        """A usable collection: which increments were published, and from when each pod now counts."""
        counts_from: dict[str, datetime] = {}
        for pod in [*scraped, *failing]:
            start = self.counts_from.get(pod.key)
            new_since = self.previous is not None and pod.started_at > self.previous
            if start is None and pod.start_known and new_since:
                start = pod.started_at  # new since the previous collection: everything it did counts
            if start is None and pod in scraped:
                start = now  # first seen now: its value is the baseline
            if start is not None:
                counts_from[pod.key] = start
        for pod in scraped:
            for inc in pod.unseen:
                if inc.lifetime == pod.restarts and inc.at >= counts_from[pod.key]:
                    self.published[inc.family] += inc.amount
            pod.unseen = []
        self.counts_from = counts_from
        self.previous = now


# -- scenarios ---------------------------------------------------------------------------------------

conditions = st.sampled_from(["ok", "ok", "ok", "failing", "failing", "skipped"])
pod_steps = st.builds(
    PodStep,
    condition=conditions,
    restart=st.integers(0, 9).map(lambda n: n == 0),
    leave=st.integers(0, 19).map(lambda n: n == 0),
    add=st.integers(0, 9),
    delete=st.integers(0, 3),
)
cycles = st.builds(
    Cycle,
    steps=st.lists(pod_steps, min_size=6, max_size=6).map(tuple),
    joins=st.lists(st.tuples(st.integers(0, 4).map(lambda n: n > 0), conditions), max_size=2).map(tuple),
    corrupt_state=st.integers(0, 24).map(lambda n: n == 0),
    outage=st.integers(0, 14).map(lambda n: n == 0),
)
scenarios = st.tuples(
    st.lists(st.tuples(st.booleans(), conditions), min_size=1, max_size=4),  # pods at the first run
    st.lists(cycles, min_size=30, max_size=40),
)
MODEL_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _model(first: Sequence[tuple[bool, Condition]]) -> Model:
    model = Model()
    for start_known, condition in first:
        model.join(start_known, condition, T0 - timedelta(hours=1))
        model.pods[f"uid-{model.serial:03d}"].values = {ADD: 5}
    return model


# -- the pure core ------------------------------------------------------------------------------------


class CoreRunner:
    """The core as the job uses it: aggregate against the stored state, which goes through the codec."""

    def __init__(self) -> None:
        self.stored: bytes | None = None
        self.published = dict.fromkeys(PUBLISHED.values(), 0.0)

    def run(self, nodes: list[NodeInput], failed: dict[str, datetime | None], now: datetime) -> None:
        if not nodes and failed:
            return  # every pod failed: nothing is aggregated, the stored state stays
        previous: ClusterState | None = None if self.stored is None else load_state(self.stored)
        result = aggregate(nodes, previous, now=now, failed=failed)
        for metric in result.metrics:
            if metric.name in self.published:
                self.published[metric.name] += metric.value
        self.stored = dump_state(result.state)


def _run_core(first: Sequence[tuple[bool, Condition]], plan: Sequence[Cycle]) -> None:
    model, core = _model(first), CoreRunner()
    core.run(*model.collect(outage=False), model.now())
    for number, cycle in enumerate(plan, 1):
        model.advance(cycle)
        if cycle.corrupt_state:
            core.stored = None
        if not cycle.outage:
            core.run(*model.collect(outage=False), model.now())
        else:
            model.collect(outage=True)
        for family, name in PUBLISHED.items():
            assert core.published[name] == model.published[family], (number, name)


@MODEL_SETTINGS
@given(scenario=scenarios)
def test_core_publishes_exactly_the_models_increments(
    scenario: tuple[list[tuple[bool, Condition]], list[Cycle]],
) -> None:
    # given pods that fail, recover, restart, leave and join over 30 to 40 collections, a first run
    # with failing pods, whole-cluster outages and corrupt-state rebaselines
    first, plan = scenario
    # when the core aggregates each collection against the stored state, then after every collection
    # the published increases equal the model's
    _run_core(first, plan)


# -- the whole job -------------------------------------------------------------------------------------


@dataclass
class RecordingPublisher:
    """Accepts everything; sums what it published per metric name."""

    totals: dict[str, float] = field(default_factory=dict)

    def publish(self, cluster: str, batches: Sequence[MetricBatch]) -> PublishResult:
        result = PublishResult()
        for batch in batches:
            for metric in batch.metrics:
                self.totals[metric.name] = self.totals.get(metric.name, 0.0) + metric.value
                result.published += 1
        return result


class JobRunner:
    """``run_collection`` over a model cluster, with an in-memory store and a recording publisher."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.store = InMemoryStateStore()
        self.publisher = RecordingPublisher()
        self.outage = False
        self.settings = load_settings({"CLUSTER_NAMES": CLUSTER, "STATE_BUCKET": "state-bucket"})

    def collect(self, spec: ClusterSpec, deadline: float) -> ClusterCollection:
        nodes, failed = self.model.collect(self.outage)
        now = self.model.now()
        if self.outage:
            return ClusterCollection(CLUSTER, "error", "unreachable", [], set(), CollectionHealth(), [], now)
        health = CollectionHealth(len(self.model.pods), len(nodes), len(failed))
        return ClusterCollection(
            CLUSTER, "ok", None, nodes, set(failed), health, [], now, failed_started_at=failed
        )

    def run(self) -> None:
        deps = Deps(
            store=self.store, publisher=self.publisher, collect=self.collect,
            clock=self.model.now, monotonic=lambda: (self.model.now() - T0).total_seconds(),
        )  # fmt: skip
        run_collection(self.settings, deps=deps, remaining_seconds=300.0)

    def corrupt(self) -> None:
        stored = self.store.load(CLUSTER)
        assert stored is not None
        truncated = b'{"format": "cni-metrics-state", "version": 1, "state": {"v": 1'
        self.store.save(CLUSTER, truncated, if_match=stored.etag)


def _run_job(first: Sequence[tuple[bool, Condition]], plan: Sequence[Cycle]) -> JobRunner:
    job = JobRunner(_model(first))
    job.run()
    for number, cycle in enumerate(plan, 1):
        job.model.advance(cycle)
        if cycle.corrupt_state:
            job.corrupt()
        job.outage = cycle.outage
        job.run()
        for family, name in PUBLISHED.items():
            assert job.publisher.totals.get(name, 0.0) == job.model.published[family], (number, name)
    return job


@settings(MODEL_SETTINGS, max_examples=15)
@given(scenario=scenarios)
def test_job_publishes_exactly_the_models_increments(
    scenario: tuple[list[tuple[bool, Condition]], list[Cycle]],
) -> None:
    # given the same kind of scenarios, when the whole job runs each collection, then after every run
    # the published increases equal the model's
    first, plan = scenario
    _run_job(first, plan)


def _steady(add: int, condition: Condition = "ok") -> PodStep:
    return PodStep(condition, restart=False, leave=False, add=add, delete=0)


def test_pod_failing_since_before_the_first_run_does_not_publish_its_history_when_healed() -> None:
    # given (the reproduced case) a pod listed by the first run and answering 500 in cycles 1 and 2,
    # healed in cycle 3 with restart count 0, beside a healthy pod; 30 cycles in all
    first: list[tuple[bool, Condition]] = [(True, "ok"), (True, "failing")]
    healthy, broken = 3, 7
    plan = [Cycle((_steady(healthy), _steady(broken, "failing")), ())]
    plan += [Cycle((_steady(healthy), _steady(broken)), ()) for _ in range(29)]
    # when the job runs every cycle
    job = _run_job(first, plan)
    # then the healed pod's value at cycle 2 is only its baseline: the healthy pod's 30 steps and the
    # broken pod's 28 steps after cycle 2 are published, not the 5 + 2 x 7 it had before
    assert job.publisher.totals["addReqCount"] == 30 * healthy + 28 * broken
    assert job.model.published[ADD] == 30 * healthy + 28 * broken


@pytest.mark.integration
def test_collection_gives_the_failed_pods_start_times_from_the_listing(fake_eks_env: RunningFakeEks) -> None:
    # given the demo stand-in, whose staging cluster has one node answering 500
    cluster = "demo-staging"
    # when it is collected
    result = collect_cluster(ClusterTarget(cluster, fake_eks_env.connection["region"]))
    # then the failed pods are those the stand-in did not serve, each with the start time it lists
    truth = {pod["uid"]: pod for pod in fake_eks_env.truth(cluster)["pods"]}
    failed = {uid for uid, pod in truth.items() if pod["served"] is None and pod["phase"] == "Running"}
    assert failed
    assert result.failed_keys == failed
    assert result.failed_started_at == {
        uid: datetime.fromisoformat(truth[uid]["startTime"].replace("Z", "+00:00")) for uid in failed
    }
