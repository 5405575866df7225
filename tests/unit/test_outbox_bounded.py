"""The outbox is bounded, a persistent publish failure fails the invocation, and a run killed while
publishing republishes at most one step (issue 14, item 5)."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import pytest
from cni_metrics.adapters.publishers import MetricBatch, PublishResult
from cni_metrics.adapters.state_store import OutboxEntry, StoredObject, decode_document, encode_document
from cni_metrics.core.model import MetricValue
from test_service import World

CAP = 10_000  # the documented cap (docs/design/state.md): the newest datums kept
STEP = 1_000  # datums published, then settled, before the next ones (one PutMetricData call)


def released_batch(at: datetime, size: int, tag: str) -> OutboxEntry:
    """An unpublished, released batch of ``size`` distinct datums collected at ``at``."""
    metrics = tuple(
        MetricValue("availableSubnetIPAddresses", float(i), "Count", (("SubnetId", f"subnet-{tag}-{i}"),))
        for i in range(size)
    )
    return OutboxEntry(MetricBatch(f"old-{tag}/alpha", at, metrics), None, None)


def preload(world: World, entries: list[OutboxEntry]) -> None:
    """Put ``entries`` into the stored document's outbox, as earlier failing runs would have left them."""
    stored = world.store.load("alpha")
    assert stored is not None
    document = replace(decode_document(stored.body), outbox=entries)
    world.store.objects["alpha"] = StoredObject(encode_document(document), stored.etag)


def test_a_day_of_failed_publishing_keeps_the_newest_datums_counts_the_dropped_and_publishes_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # given a baseline, then a day of runs whose publishing failed (one batch of 20 datums a minute)
    # and two batches older than CloudWatch accepts
    world = World("alpha")
    world.run()
    now = world.clock()
    recent = [released_batch(now - timedelta(minutes=m), 20, f"m{m}") for m in range(1440, 0, -1)]
    too_old = [released_batch(now - timedelta(days=15, minutes=m), 20, f"d{m}") for m in range(2)]
    preload(world, too_old + recent)
    # when the next run comes and publishing still fails
    world.publisher.fail = lambda cluster, metric: True
    with caplog.at_level(logging.ERROR):
        summary = world.run()
    outcome = world.outcome(summary, "alpha")
    # then the outbox keeps the run's own batch (with the drop count) and the newest batches within
    # the cap, all else is dropped and counted
    stored = world.store.load("alpha")
    assert stored is not None
    outbox = decode_document(stored.body).outbox
    own = next(entry.batch for entry in outbox if not entry.batch.id.startswith("old-"))
    kept_recent = (CAP - len(own.metrics)) // 20
    dropped = 2 * 20 + (1440 - kept_recent) * 20
    assert [entry.batch.collected_at for entry in outbox if entry.batch is not own] == [
        now - timedelta(minutes=m) for m in range(kept_recent, 0, -1)
    ]
    assert outcome.pending == len(own.metrics) + kept_recent * 20 <= CAP
    assert len(stored.body) < 1_000_000
    assert outcome.dropped == dropped
    assert [m.value for m in own.metrics if m.name == "outboxDatumsDropped"] == [float(dropped)]
    # and the drop is logged as an error naming the cluster, and fails the invocation (publishing is
    # stuck) so that the collector's Errors alarm sees it
    assert any(
        r.levelno == logging.ERROR and "alpha" in r.getMessage() and f"dropped {dropped} " in r.getMessage()
        for r in caplog.records
    )
    assert outcome.status == "publish_stuck"
    assert summary.failed_everywhere
    # when publishing works again
    world.publisher.fail = lambda cluster, metric: False
    world.clock.advance(60)
    recovered = world.outcome(world.run(), "alpha")
    # then everything kept is published once, the drop count included, and the outbox is empty
    assert recovered.status == "ok"
    assert world.publisher.values("alpha", "outboxDatumsDropped") == [float(dropped)]
    subnet = "availableSubnetIPAddresses"
    published = Counter((at, m) for _, at, m in world.publisher.published if m.name == subnet)
    assert sum(published.values()) == kept_recent * 20
    assert set(published.values()) == {1}
    assert {at for at, _ in published} == {now - timedelta(minutes=m) for m in range(kept_recent, 0, -1)}
    assert world.outbox("alpha") == 0


def test_publishing_that_keeps_failing_reaches_the_alarm_after_ten_minutes() -> None:
    # given a baseline and publishing that fails from now on (a missing IAM permission, say)
    world = World("alpha")
    world.run()
    world.publisher.fail = lambda cluster, metric: True
    statuses: list[tuple[str, bool]] = []
    # when a run comes every minute for 13 minutes
    for _ in range(13):
        world.clock.advance(60)
        summary = world.run()
        statuses.append((world.outcome(summary, "alpha").status, summary.failed_everywhere))
    # then the runs leave their datums for the next one (a throttle passes) until one finds datums
    # unpublished for more than ten minutes (the 12th: the oldest were collected by the 1st); from
    # then on the invocation fails
    assert statuses == [("publish_failed", False)] * 11 + [("publish_stuck", True)] * 2


@dataclass
class DyingPublisher:
    """Records what CloudWatch accepted; the invocation is killed once ``die_after`` datums were
    accepted (the response to that call never reaches the run)."""

    die_after: int
    published: list[tuple[datetime, MetricValue]] = field(default_factory=list)

    def publish(self, cluster: str, batches: Sequence[MetricBatch]) -> PublishResult:
        result = PublishResult()
        for batch in batches:
            for metric in batch.metrics:
                self.published.append((batch.collected_at, metric))
                result.published += 1
            if len(self.published) >= self.die_after:
                self.die_after = 1 << 60
                raise RuntimeError("Task timed out")
        return result


def test_a_run_killed_while_publishing_republishes_at_most_the_step_in_flight() -> None:
    # given a baseline and four released batches of 600 datums each from earlier failed runs
    world = World("alpha")
    world.run()
    now = world.clock()
    preload(world, [released_batch(now - timedelta(minutes=m), 600, f"m{m}") for m in range(4, 0, -1)])
    publisher = DyingPublisher(die_after=1_800)
    world.publisher = publisher  # type: ignore[assignment]
    # when a run publishes them and is killed once about 1,800 datums were accepted
    world.clock.advance(60)
    killed = world.outcome(world.run(remaining=120), "alpha")
    assert killed.status == "error"
    # and a run after its lease publishes what is left
    world.clock.advance(200)
    world.run()
    # then every datum was published, and the only ones published twice are those of the one
    # PutMetricData step that was in flight when the run died
    counts = Counter(publisher.published)
    preloaded = {(now - timedelta(minutes=m), i) for m in range(4, 0, -1) for i in range(600)}
    accepted = {(at, int(m.value)) for at, m in counts if m.name == "availableSubnetIPAddresses"}
    assert accepted == preloaded
    twice = [key for key, count in counts.items() if count > 1]
    assert all(count <= 2 for count in counts.values())
    assert 0 < len(twice) <= STEP
    assert {at for at, _ in twice} == {now - timedelta(minutes=2)}  # the third batch, its own step
    assert json.loads(world.store.objects["alpha"].body)["outbox"] == []
