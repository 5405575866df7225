"""The collection lease (issue 14, item 6): one collection of a cluster at a time, and a lease that a
dead or overrunning run cannot hold for long."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from cni_metrics.adapters.state_store import Lease, StoredObject, decode_document, encode_document
from cni_metrics.collector.cluster import ClusterCollection
from cni_metrics.collector.settings import ClusterSpec
from test_service import World


def lease_left_by_a_killed_run(world: World, seconds: float) -> None:
    """The stored document holds another run's lease for ``seconds`` more (it was killed while collecting)."""
    stored = world.store.load("alpha")
    assert stored is not None
    lease = Lease("killed-run", world.clock() + timedelta(seconds=seconds))
    document = replace(decode_document(stored.body), lease=lease)
    world.store.objects["alpha"] = StoredObject(encode_document(document), stored.etag)


def test_a_lease_left_by_a_killed_run_blocks_only_until_it_expires_and_nothing_is_lost() -> None:
    # given a baseline, and a lease a killed run left for 70 more seconds
    world = World("alpha")
    world.run()
    lease_left_by_a_killed_run(world, 70)
    # when a run comes inside that lease
    world.clock.advance(60)
    world.clusters["alpha"].step()
    inside = world.outcome(world.run(), "alpha")
    # then it skips the cluster: nothing collected, written or published
    assert (inside.status, inside.state, inside.collected_at) == ("skipped_busy", "unchanged", None)
    assert "another invocation is collecting this cluster" in (inside.error or "")
    assert world.publisher.values("alpha", "addReqCount") == []
    # when the next run comes after the lease ended
    world.clock.advance(60)
    world.clusters["alpha"].step()
    after = world.outcome(world.run(), "alpha")
    # then it collects, and its increase covers both intervals exactly
    assert after.status == "ok"
    assert world.publisher.total("alpha") == world.clusters["alpha"].true_increase()


def test_a_run_with_no_time_left_after_collecting_gives_the_lease_back() -> None:
    # given a baseline and a collection that uses up the run's time
    world = World("alpha")
    world.run()

    def slow(spec: ClusterSpec, deadline: float) -> ClusterCollection:
        world.clock.advance(50)
        return world.collect(spec, deadline)

    world.clock.advance(60)
    world.clusters["alpha"].step()
    # when the run reaches its claim too late
    late = world.outcome(world.run(remaining=55, collect=slow), "alpha")
    # then it times out, publishes nothing and releases the lease
    assert late.status == "timeout"
    stored = world.store.load("alpha")
    assert stored is not None
    assert decode_document(stored.body).lease is None
    # and a run right after it (inside the lease it had) collects and counts the interval exactly
    world.clock.advance(1)
    world.clusters["alpha"].step()
    assert world.outcome(world.run(), "alpha").status == "ok"
    assert world.publisher.total("alpha") == world.clusters["alpha"].true_increase()


def test_a_run_whose_collection_raises_gives_the_lease_back() -> None:
    # given a baseline
    world = World("alpha")
    world.run()

    def broken(spec: ClusterSpec, deadline: float) -> ClusterCollection:
        raise RuntimeError("boom")

    # when a run's collection raises
    world.clock.advance(60)
    failed = world.outcome(world.run(collect=broken), "alpha")
    # then it is an error and the next run does not wait for the lease
    assert failed.status == "error"
    world.clock.advance(1)
    world.clusters["alpha"].step()
    assert world.outcome(world.run(), "alpha").status == "ok"
    assert world.publisher.total("alpha") == world.clusters["alpha"].true_increase()


def test_a_run_that_overran_its_lease_is_superseded_and_publishes_nothing() -> None:
    # given a baseline
    world = World("alpha")
    world.run()
    world.clock.advance(60)
    world.clusters["alpha"].step()
    inner = []

    def overrun(spec: ClusterSpec, deadline: float) -> ClusterCollection:
        # this run's collection outlives its lease (a host clock far behind, say); another run takes
        # the expired lease over and completes
        collection = world.collect(spec, deadline)
        world.clock.advance(200)
        world.clusters["alpha"].step()
        inner.append(world.outcome(world.run(), "alpha"))
        world.clock.advance(-200)
        return collection

    # when the overrunning run reaches its claim
    outer = world.outcome(world.run(remaining=120, collect=overrun), "alpha")
    # then it is superseded and publishes nothing; the other run's increase covers the interval exactly
    assert [o.status for o in inner] == ["ok"]
    assert (outer.status, outer.state, outer.published) == ("superseded", "conflict", 0)
    assert "took this cluster's lease over" in (outer.error or "")
    assert world.publisher.total("alpha") == world.clusters["alpha"].true_increase()
    assert len(world.publisher.values("alpha", "assignIPAddresses")) == 2
