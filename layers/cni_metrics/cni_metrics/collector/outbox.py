"""The state document's outbox: read, split by lease, settle after publishing (docs/design/state.md)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from cni_metrics.adapters.publishers import PublishResult
from cni_metrics.adapters.state_store import (
    DocumentError,
    OutboxEntry,
    StateConflict,
    StateDocument,
    StateStore,
    StateStoreError,
    StoredObject,
    decode_document,
    encode_document,
)

logger = logging.getLogger(__name__)

# CloudWatch drops datums older than two weeks; older outbox entries are discarded (and logged).
MAX_OUTBOX_AGE = timedelta(days=14) - timedelta(hours=1)
# Added to a lease so that clock differences between Lambda hosts cannot end it early.
LEASE_SKEW = timedelta(seconds=10)
SETTLE_ATTEMPTS = 5
CLAIM_ATTEMPTS = 3


def read_document(loaded: StoredObject | None, location: str) -> tuple[StateDocument, str | None]:
    """The stored document, or an empty one; a corrupt object gives an empty one and the reason."""
    if loaded is None:
        return StateDocument(None), None
    try:
        return decode_document(loaded.body), None
    except DocumentError as exc:
        message = f"corrupt state object {location}: {exc}; replaced (counter increases start again next run)"
        logger.error(message)
        return StateDocument(None), message


def split_outbox(
    outbox: Sequence[OutboxEntry], now: datetime, cluster: str
) -> tuple[list[OutboxEntry], list[OutboxEntry]]:
    """(entries another live run owns, entries this run takes over); too old ones are dropped."""
    kept: list[OutboxEntry] = []
    taken: list[OutboxEntry] = []
    for entry in outbox:
        if not entry.claimable(now):
            kept.append(entry)
        elif now - entry.batch.collected_at > MAX_OUTBOX_AGE:
            logger.error(
                "cluster %s: dropping %d unpublished datums of %s (older than CloudWatch accepts)",
                cluster, len(entry.batch.metrics), entry.batch.collected_at.isoformat(),
                extra={"cluster": cluster},
            )
        else:
            taken.append(entry)
    return kept, taken


def settle(
    store: StateStore,
    cluster: str,
    run_id: str,
    etag: str,
    claim: StateDocument,
    result: PublishResult,
    clock: Callable[[], datetime],
) -> bool:
    """Remove this run's published entries (conditional write, re-read on conflict); True when done."""
    unpublished = {batch.id: batch for batch in result.unpublished}
    document = claim
    for _ in range(SETTLE_ATTEMPTS):
        outbox = []
        for entry in document.outbox:
            if entry.owner != run_id:
                outbox.append(entry)
            elif entry.batch.id in unpublished:  # released: the next run takes it over
                outbox.append(OutboxEntry(unpublished[entry.batch.id], None, None))
        settled = StateDocument(document.state, outbox, run_id, clock(), document.based_on)
        try:
            store.save(cluster, encode_document(settled), if_match=etag)
            return True
        except (StateConflict, StateStoreError) as exc:
            logger.info("cluster %s: settling again (%s)", cluster, exc, extra={"cluster": cluster})
        try:
            loaded = store.load(cluster)
            if loaded is None:
                return False
            document, etag = decode_document(loaded.body), loaded.etag
        except (StateStoreError, DocumentError) as exc:
            logger.warning("cluster %s: cannot re-read state to settle: %s", cluster, exc)
        if not any(entry.owner == run_id for entry in document.outbox):
            logger.warning(
                "cluster %s: this run's outbox entries were taken over before it settled", cluster,
                extra={"cluster": cluster},
            )
            return False
    logger.error(
        "cluster %s: could not settle the outbox; its datums will be published again after the lease",
        cluster, extra={"cluster": cluster},
    )
    return False
