"""S3StateStore against moto over HTTP: conditional writes are real compare-and-swap."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import boto3
import pytest
from cni_metrics.adapters.publishers import MetricBatch
from cni_metrics.adapters.state_store import (
    DocumentError,
    Lease,
    OutboxEntry,
    S3StateStore,
    StateConflict,
    StateDocument,
    StateStoreError,
    decode_document,
    encode_document,
)
from cni_metrics.core.model import ClusterState, MetricValue, PodState

pytestmark = pytest.mark.integration
NOW = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)


STATE_BUCKET = "cni-metrics-test-state"


@pytest.fixture
def store(aws: str) -> S3StateStore:
    return S3StateStore(boto3.client("s3"), STATE_BUCKET, "cni-metrics/state/")


def test_missing_state_loads_as_none(store: S3StateStore) -> None:
    # given an empty bucket, when a cluster's state is loaded, then there is none
    assert store.load("alpha") is None


def test_create_only_once_then_compare_and_swap_on_the_etag(store: S3StateStore) -> None:
    # given a state created with If-None-Match
    first = store.save("alpha", b"one", if_match=None)
    # when a second creation races it, then it conflicts
    with pytest.raises(StateConflict):
        store.save("alpha", b"other", if_match=None)
    # when a write names the current ETag, then it succeeds; a stale ETag conflicts
    second = store.save("alpha", b"two", if_match=first)
    with pytest.raises(StateConflict):
        store.save("alpha", b"three", if_match=first)
    loaded = store.load("alpha")
    assert loaded is not None
    assert (loaded.body, loaded.etag) == (b"two", second)
    assert store.location("alpha") == f"s3://{STATE_BUCKET}/cni-metrics/state/alpha.json"


def test_write_against_a_deleted_object_conflicts(store: S3StateStore) -> None:
    # given a stored state that someone deletes
    etag = store.save("alpha", b"one", if_match=None)
    boto3.client("s3").delete_object(Bucket=STATE_BUCKET, Key=store.key("alpha"))
    # when a run writes against the ETag it loaded, then it conflicts
    with pytest.raises(StateConflict):
        store.save("alpha", b"two", if_match=etag)


def test_missing_bucket_is_a_clear_store_error(aws: str) -> None:
    # given a store naming a bucket that does not exist
    store = S3StateStore(boto3.client("s3"), "no-such-bucket", "p/")
    # when it is read or written, then the error names the location
    with pytest.raises(StateStoreError, match=r"s3://no-such-bucket/p/alpha\.json: NoSuchBucket"):
        store.load("alpha")
    with pytest.raises(StateStoreError, match=r"cannot write s3://no-such-bucket/p/alpha\.json"):
        store.save("alpha", b"x", if_match=None)


def test_document_round_trips_through_s3(store: S3StateStore) -> None:
    # given baselines, an outbox entry and a collection lease
    pod = PodState("uid-1", NOW, 2, {"awscni_add_ip_req_count": 41.0}, 3.5, 7.0)
    state = ClusterState(NOW, {"uid-1": pod})
    metrics = (MetricValue("addReqCount", 4.0), MetricValue("ipUtilization", 12.5, "Percent"))
    batch = MetricBatch("run/alpha", NOW, metrics)
    until = NOW + timedelta(minutes=1)
    document = StateDocument(state, [OutboxEntry(batch, "run", until)], "run", NOW, Lease("run", until))
    # when it is stored and read back
    store.save("alpha", encode_document(document), if_match=None)
    loaded = store.load("alpha")
    assert loaded is not None
    # then it is the same document
    assert decode_document(loaded.body) == document


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\x1f\x8b garbage", "not JSON"),
        (b"[]", "not a cni-metrics-state document"),
        (b'{"format": "cni-metrics-state", "version": 9}', "unsupported version 9"),
        (b'{"format": "cni-metrics-state", "version": 1, "state": {"v": 1}}', "family names"),
        (b'{"format": "cni-metrics-state", "version": 1, "outbox": [{"id": 1}]}', "malformed outbox"),
        (b'{"format": "cni-metrics-state", "version": 1, "lease": {"owner": "x"}}', "malformed"),
        (b'{"format": "cni-metrics-state", "version": 1, "outbox": [NaN]}', "NaN is not a number"),
        (b'{"format": "cni-metrics-state", "version": 1, "outbox": [1e400]}', "number 1e400 is out of range"),
    ],
)
def test_corrupt_objects_are_rejected_with_a_reason(store: S3StateStore, body: bytes, reason: str) -> None:
    # given a corrupt object in the bucket
    store.save("alpha", body, if_match=None)
    loaded = store.load("alpha")
    assert loaded is not None
    # when it is decoded, then the error says what is wrong
    with pytest.raises(DocumentError, match=reason):
        decode_document(loaded.body)
