"""The state document's protocol: lease, claim (outbox split and cap), settle (docs/design/state.md).

Every write is conditional on the ETag last read and goes through ``save_once`` (a write whose response
was lost is recognised); after a conflict the object is read again and the change applied again, so a
settle of another run landing in between is never overwritten.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from cni_metrics.adapters.publishers import MetricBatch
from cni_metrics.adapters.state_store import (
    DocumentError,
    Lease,
    OutboxEntry,
    StateConflict,
    StateDocument,
    StateStore,
    StoredObject,
    decode_document,
    encode_document,
    save_once,
)
from cni_metrics.core.catalogue import datum
from cni_metrics.core.model import ClusterState

logger = logging.getLogger(__name__)

# CloudWatch drops datums older than two weeks; older outbox entries are discarded (and counted).
MAX_OUTBOX_AGE = timedelta(days=14) - timedelta(hours=1)
# The outbox keeps at most this many datums (the newest batches): about 0.5 MB of document at the
# 40-110 bytes a datum takes, ten PutMetricData calls to empty it, and hours of a failing publish at one
# batch a minute. Older batches beyond it are dropped and counted in ``outboxDatumsDropped``.
MAX_OUTBOX_DATUMS = 10_000
# Datums published (one PutMetricData call) and settled before the next ones are sent.
STEP_DATUMS = 1_000
# Datums still unpublished this long after their collection mean publishing is stuck, not throttled.
STUCK_AFTER = timedelta(minutes=10)
# Added to a lease so that clock differences between Lambda hosts cannot end it early.
LEASE_SKEW = timedelta(seconds=10)
# Conditional writes lost to other runs' writes (their settles) before this run gives up.
WRITE_ATTEMPTS = 5
DROPPED_METRIC = "outboxDatumsDropped"


class Stop(Exception):
    """This run cannot go on with the cluster; the message says why."""


class Busy(Stop):
    """Another run holds the collection lease: this run skips the cluster, the next counts the interval."""


class Superseded(Stop):
    """This run's lease or outbox entries were taken over (it overran them) or the object was replaced."""


Current = tuple[StateDocument, str | None]
"""A document as stored and its ETag (None: no object yet)."""


def read_document(
    loaded: StoredObject | None, location: str, cluster: str
) -> tuple[StateDocument, str | None]:
    """The stored document, or an empty one; a corrupt object gives an empty one and the reason."""
    if loaded is None:
        return StateDocument(None), None
    try:
        return decode_document(loaded.body), None
    except DocumentError as exc:
        message = f"corrupt state object {location}: {exc}; replaced (counter increases start again next run)"
        logger.error(message, extra={"cluster": cluster})
        return StateDocument(None), message


def update(
    store: StateStore,
    cluster: str,
    current: Current,
    change: Callable[[StateDocument], StateDocument],
    read: Callable[[StoredObject | None], StateDocument],
) -> tuple[StateDocument, str]:
    """Write ``change(document)`` conditionally; after a conflict ``read`` the object again and re-apply.

    ``change`` and ``read`` raise ``Stop`` when the run cannot go on; ``StateStoreError`` passes through;
    ``StateConflict`` when every one of ``WRITE_ATTEMPTS`` writes lost the condition.
    """
    document, etag = current
    for _ in range(WRITE_ATTEMPTS):
        changed = change(document)
        try:
            return changed, save_once(store, cluster, encode_document(changed), if_match=etag)
        except StateConflict:
            loaded = store.load(cluster)
            document, etag = read(loaded), None if loaded is None else loaded.etag
    location = store.location(cluster)
    raise StateConflict(f"{location} kept changing: {WRITE_ATTEMPTS} writes lost the condition")


def strict_reader(location: str) -> Callable[[StoredObject | None], StateDocument]:
    """A re-read during a run: the object must still be a valid document."""

    def read(loaded: StoredObject | None) -> StateDocument:
        if loaded is None:
            raise Superseded(f"{location} was deleted during this run")
        try:
            return decode_document(loaded.body)
        except DocumentError as exc:
            raise Superseded(f"{location} was replaced by an invalid object during this run: {exc}") from None

    return read


@dataclass(frozen=True, slots=True)
class Leased:
    """The document with this run's collection lease, as written."""

    document: StateDocument
    etag: str
    existed: bool  # an object was stored before this run
    corrupt: str | None  # why the stored object was replaced, if it was corrupt


def take_lease(
    store: StateStore, cluster: str, run_id: str, until: datetime, clock: Callable[[], datetime]
) -> Leased:
    """Load the state and take the collection lease before collecting; ``Busy`` if another run holds it."""
    location = store.location(cluster)
    loaded = store.load(cluster)
    document, corrupt = read_document(loaded, location, cluster)

    def read(again: StoredObject | None) -> StateDocument:
        nonlocal corrupt
        reread, corrupt = read_document(again, location, cluster)
        return reread

    def leased(stored: StateDocument) -> StateDocument:
        now = clock()
        if stored.lease is not None and stored.lease.held_by_other(run_id, now):
            until_text = stored.lease.until.isoformat()
            raise Busy(f"another invocation is collecting this cluster (its lease runs until {until_text})")
        return replace(stored, writer=run_id, written_at=now, lease=Lease(run_id, until))

    current: Current = (document, None if loaded is None else loaded.etag)
    written, etag = update(store, cluster, current, leased, read)
    return Leased(written, etag, loaded is not None, corrupt)


def release_lease(
    store: StateStore, cluster: str, run_id: str, current: Current, clock: Callable[[], datetime]
) -> None:
    """Give the lease back without a claim (no time left): the next run need not wait for it to expire."""

    def released(stored: StateDocument) -> StateDocument:
        if stored.lease is None or stored.lease.owner != run_id:
            raise Superseded("the lease is no longer this run's")
        return replace(stored, writer=run_id, written_at=clock(), lease=None)

    try:
        update(store, cluster, current, released, strict_reader(store.location(cluster)))
    except Exception as exc:  # best effort: the lease expires on its own
        logger.warning("cluster %s: cannot release the lease: %s", cluster, exc, extra={"cluster": cluster})


@dataclass(frozen=True, slots=True)
class Split:
    """An outbox divided at claim time."""

    kept: list[OutboxEntry]  # live entries of other runs, untouched
    taken: list[OutboxEntry]  # released or expired entries this run takes over (oldest first)
    too_old: int  # datums dropped: older than CloudWatch accepts
    over_cap: int  # datums dropped: older batches beyond MAX_OUTBOX_DATUMS

    @property
    def dropped(self) -> int:
        """Datums dropped in all."""
        return self.too_old + self.over_cap


def split_outbox(
    outbox: Sequence[OutboxEntry], now: datetime, *, own_datums: int, max_datums: int = MAX_OUTBOX_DATUMS
) -> Split:
    """Keep live entries of other runs; take the others over, newest first, while the outbox
    (with ``own_datums`` of this run's batch) stays within ``max_datums``; drop the rest."""
    kept: list[OutboxEntry] = []
    claimable: list[OutboxEntry] = []
    too_old = 0
    for entry in outbox:
        if not entry.claimable(now):
            kept.append(entry)
        elif now - entry.batch.collected_at > MAX_OUTBOX_AGE:
            too_old += len(entry.batch.metrics)
        else:
            claimable.append(entry)
    room = max_datums - own_datums - sum(len(entry.batch.metrics) for entry in kept)
    taken: list[OutboxEntry] = []
    over_cap = 0
    for entry in sorted(claimable, key=lambda e: e.batch.collected_at, reverse=True):
        size = len(entry.batch.metrics)
        if over_cap or size > room:
            over_cap += size
        else:
            taken.append(entry)
            room -= size
    taken.reverse()
    return Split(kept, taken, too_old, over_cap)


@dataclass(frozen=True, slots=True)
class Claimed:
    """The claim as written: this run's entries (its batch first) and what the outbox dropped."""

    document: StateDocument
    etag: str
    mine: list[OutboxEntry]
    split: Split


def claim(
    store: StateStore,
    cluster: str,
    leased: Leased,
    run_id: str,
    state: ClusterState | None,
    batch: MetricBatch,
    lease_until: datetime,
    clock: Callable[[], datetime],
) -> Claimed:
    """Write the new baselines and the outbox (kept + this run's batch + taken over), releasing the
    collection lease; ``Superseded`` if this run no longer holds that lease."""
    outcome: list[tuple[list[OutboxEntry], Split]] = []

    def claimed(stored: StateDocument) -> StateDocument:
        if stored.lease is None or stored.lease.owner != run_id:
            raise Superseded("another invocation took this cluster's lease over (this run overran it)")
        now = clock()
        split = split_outbox(stored.outbox, now, own_datums=len(batch.metrics) + 1)
        own = batch
        if split.dropped:
            own = replace(batch, metrics=(*batch.metrics, datum(DROPPED_METRIC, float(split.dropped))))
        batches = ([own] if own.metrics else []) + [entry.batch for entry in split.taken]
        mine = [OutboxEntry(each, run_id, lease_until) for each in batches]
        outcome[:] = [(mine, split)]
        return StateDocument(state, split.kept + mine, run_id, now, None)

    current: Current = (leased.document, leased.etag)
    document, etag = update(store, cluster, current, claimed, strict_reader(store.location(cluster)))
    mine, split = outcome[0]
    return Claimed(document, etag, mine, split)


def publish_steps(entries: Sequence[OutboxEntry], size: int = STEP_DATUMS) -> list[list[MetricBatch]]:
    """The entries' batches in order, grouped up to ``size`` datums (a larger batch is a step alone)."""
    steps: list[list[MetricBatch]] = []
    total = 0
    for entry in entries:
        count = len(entry.batch.metrics)
        if not steps or total + count > size:
            steps.append([])
            total = 0
        steps[-1].append(entry.batch)
        total += count
    return steps


def settle(
    store: StateStore,
    cluster: str,
    run_id: str,
    current: Current,
    *,
    published: Collection[str],
    released: Sequence[MetricBatch],
    clock: Callable[[], datetime],
) -> tuple[StateDocument, str]:
    """Remove this run's ``published`` entries and release (owner None) its ``released`` ones; entries it
    has not published yet stay its own. ``Superseded`` when its entries were taken over."""
    unpublished = {batch.id: batch for batch in released}

    def settled(stored: StateDocument) -> StateDocument:
        if not any(entry.owner == run_id for entry in stored.outbox):
            raise Superseded("this run's outbox entries were taken over before it settled")
        outbox = []
        for entry in stored.outbox:
            if entry.owner != run_id:
                outbox.append(entry)
            elif entry.batch.id in unpublished:  # released: the next run takes it over
                outbox.append(OutboxEntry(unpublished[entry.batch.id], None, None))
            elif entry.batch.id not in published:  # a later step of this run
                outbox.append(entry)
        return replace(stored, outbox=outbox, writer=run_id, written_at=clock())

    return update(store, cluster, current, settled, strict_reader(store.location(cluster)))
