"""Where each cluster's counter state lives between invocations, and what the stored document holds.

``StateStore`` stores opaque bytes per cluster with optimistic concurrency: ``load`` returns the body
and its ETag, ``save`` writes only if the object is still the one loaded (``if_match``) or, with
``if_match=None``, only if there is none yet; otherwise ``StateConflict``. ``S3StateStore`` does this
with S3 conditional writes (``If-Match`` / ``If-None-Match: *``), ``InMemoryStateStore`` in a dict.

``save_once`` is the write every caller uses: when a write's response is lost (a timeout or 5xx after
S3 committed it, then a retry that meets its own write as a changed ETag), it re-reads the object and
recognises its own bytes.

``StateDocument`` is the stored body: the counter baselines (``ClusterState`` in the core's codec), the
*collection lease* (the one run collecting the cluster now) and the *outbox*, the metric batches claimed
for publishing but not yet confirmed published. Each outbox entry has an owner (the run publishing it)
and a lease. The protocol is in docs/design/state.md; ``cni_metrics.collector.outbox`` follows it.
Decoding is strict: a number JSON does not allow (NaN, Infinity) or one out of a float's range (1e400)
is a ``DocumentError``, like any other corruption.
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NoReturn, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from cni_metrics.adapters.publishers import MetricBatch
from cni_metrics.core.model import ClusterState, MetricValue
from cni_metrics.core.state_codec import StateError, state_document, state_from_document

FORMAT = "cni-metrics-state"
VERSION = 1
_UNITS = frozenset({"Count", "Percent", "Milliseconds", "Bytes"})


class StateConflict(Exception):
    """The stored object changed since it was loaded (or exists when it should not): someone else won."""


class StateStoreError(Exception):
    """The store could not be read or written (permissions, missing bucket, network)."""


class DocumentError(ValueError):
    """A stored object that is not a valid state document (corrupt, truncated, foreign)."""


@dataclass(frozen=True, slots=True)
class StoredObject:
    """A stored body and the version tag to make a conditional write against."""

    body: bytes
    etag: str


class StateStore(Protocol):
    """Per-cluster bytes with compare-and-swap writes."""

    def location(self, cluster: str) -> str:
        """Where the cluster's state lives, for messages (e.g. ``s3://bucket/key``)."""
        ...

    def load(self, cluster: str) -> StoredObject | None:
        """The stored object, None if there is none; ``StateStoreError`` if the store fails."""
        ...

    def save(self, cluster: str, body: bytes, *, if_match: str | None) -> str:
        """Write ``body`` if the stored ETag is ``if_match`` (None: if nothing is stored); the new ETag."""
        ...


class S3StateStore:
    """One S3 object per cluster at ``{prefix}{cluster}.json``, written with conditional PutObject."""

    def __init__(self, client: Any, bucket: str, prefix: str) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix

    def key(self, cluster: str) -> str:
        """The object key of ``cluster``'s state."""
        return f"{self.prefix}{cluster}.json"

    def location(self, cluster: str) -> str:
        """``s3://bucket/key`` of ``cluster``'s state."""
        return f"s3://{self.bucket}/{self.key(cluster)}"

    def load(self, cluster: str) -> StoredObject | None:
        """GetObject; None on NoSuchKey."""
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.key(cluster))
            return StoredObject(response["Body"].read(), str(response["ETag"]))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise StateStoreError(self._describe("read", cluster, exc)) from None
        except BotoCoreError as exc:
            raise StateStoreError(self._describe("read", cluster, exc)) from None

    def save(self, cluster: str, body: bytes, *, if_match: str | None) -> str:
        """PutObject with If-Match (or If-None-Match: *); 412 and 409 become ``StateConflict``."""
        condition: dict[str, str] = {"IfMatch": if_match} if if_match is not None else {"IfNoneMatch": "*"}
        try:
            response = self.client.put_object(
                Bucket=self.bucket,
                Key=self.key(cluster),
                Body=body,
                ContentType="application/json",
                **condition,
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status in (409, 412) or code in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise StateConflict(f"{self.location(cluster)} changed since it was read") from None
            if if_match is not None and code == "NoSuchKey":
                raise StateConflict(f"{self.location(cluster)} was deleted since it was read") from None
            raise StateStoreError(self._describe("write", cluster, exc)) from None
        except BotoCoreError as exc:
            raise StateStoreError(self._describe("write", cluster, exc)) from None
        return str(response["ETag"])

    def _describe(self, verb: str, cluster: str, exc: Exception) -> str:
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            return f"cannot {verb} {self.location(cluster)}: {error.get('Code')}: {error.get('Message', '')}"
        return f"cannot {verb} {self.location(cluster)}: {type(exc).__name__}: {exc}"


def save_once(store: StateStore, cluster: str, body: bytes, *, if_match: str | None) -> str:
    """``store.save`` that recognises its own write when the response was lost; the new ETag.

    After a conflict or a store error the object is read again: if it holds exactly ``body`` (every
    document carries its writer's run id and write time, so no other write has these bytes), this write
    landed and the stored ETag is returned. Otherwise the original ``StateConflict`` or
    ``StateStoreError`` is raised.
    """
    try:
        return store.save(cluster, body, if_match=if_match)
    except (StateConflict, StateStoreError):
        try:
            stored = store.load(cluster)
        except StateStoreError:
            stored = None
        if stored is not None and stored.body == body:
            return stored.etag
        raise


class InMemoryStateStore:
    """The same contract in a dict (tests, the command line); ETags are a per-store sequence number."""

    def __init__(self) -> None:
        self.objects: dict[str, StoredObject] = {}
        self._lock = threading.Lock()
        self._sequence = 0

    def location(self, cluster: str) -> str:
        """``memory://cluster``."""
        return f"memory://{cluster}"

    def load(self, cluster: str) -> StoredObject | None:
        """The stored object or None."""
        with self._lock:
            return self.objects.get(cluster)

    def save(self, cluster: str, body: bytes, *, if_match: str | None) -> str:
        """Compare-and-swap on the ETag."""
        with self._lock:
            current = self.objects.get(cluster)
            if (current.etag if current else None) != if_match:
                raise StateConflict(f"{self.location(cluster)} changed since it was read")
            self._sequence += 1
            etag = f'"{self._sequence}"'
            self.objects[cluster] = StoredObject(body, etag)
            return etag


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """A batch claimed for publishing: ``owner`` is the run publishing it until ``lease_until``.

    ``owner`` None (released) or a lease in the past means any run may take it over and publish it.
    """

    batch: MetricBatch
    owner: str | None
    lease_until: datetime | None

    def claimable(self, now: datetime) -> bool:
        """Whether a run other than the owner may publish this batch now."""
        return self.owner is None or self.lease_until is None or self.lease_until <= now


@dataclass(frozen=True, slots=True)
class Lease:
    """The run collecting a cluster now, and until when (its invocation's end plus a clock skew)."""

    owner: str
    until: datetime

    def held_by_other(self, run_id: str, now: datetime) -> bool:
        """Whether another run still holds it at ``now``."""
        return self.owner != run_id and now < self.until


@dataclass(frozen=True, slots=True)
class StateDocument:
    """The stored body of one cluster: counter baselines (None before any success), lease and outbox."""

    state: ClusterState | None
    outbox: list[OutboxEntry] = field(default_factory=list)
    writer: str = ""
    written_at: datetime | None = None
    lease: Lease | None = None


def encode_document(document: StateDocument) -> bytes:
    """JSON bytes of ``document`` (the state in the core's compact codec, embedded as an object)."""
    state = None if document.state is None else state_document(document.state)
    outbox = [
        {
            "id": entry.batch.id,
            "owner": entry.owner,
            "lease_until": _iso(entry.lease_until),
            "collected_at": _iso(entry.batch.collected_at),
            "metrics": [_metric_fields(metric) for metric in entry.batch.metrics],
        }
        for entry in document.outbox
    ]
    body = {
        "format": FORMAT,
        "version": VERSION,
        "writer": document.writer,
        "written_at": _iso(document.written_at),
        "lease": None if document.lease is None else {
            "owner": document.lease.owner, "until": _iso(document.lease.until)
        },
        "state": state,
        "outbox": outbox,
    }
    return json.dumps(body, separators=(",", ":"), allow_nan=False).encode()


def decode_document(body: bytes) -> StateDocument:
    """Parse and validate a stored body; ``DocumentError`` says what is wrong with it."""
    try:
        raw = json.loads(body, parse_constant=_refuse_constant, parse_float=_finite, parse_int=_integer)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DocumentError(f"not JSON: {exc}") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise DocumentError(f"not a {FORMAT} document")
    if raw.get("version") != VERSION:
        raise DocumentError(f"unsupported version {raw.get('version')!r}")
    try:
        state = None if raw.get("state") is None else state_from_document(raw["state"])
        outbox = [_entry(item) for item in _list(raw.get("outbox", []), "outbox")]
        lease = _lease(raw.get("lease"))
        return StateDocument(
            state, outbox, str(raw.get("writer", "")), _optional_time(raw.get("written_at")), lease
        )
    except StateError as exc:
        raise DocumentError(exc.reason) from None
    except (TypeError, ValueError, KeyError) as exc:
        raise DocumentError(f"malformed outbox or lease: {exc}") from None


def _refuse_constant(token: str) -> NoReturn:
    raise DocumentError(f"{token} is not a number (CloudWatch and the state codec refuse it)")


def _finite(token: str) -> float:
    value = float(token)
    if not math.isfinite(value):
        raise DocumentError(f"number {token[:40]} is out of range")
    return value


def _integer(token: str) -> int:
    # beyond a float's range (float() of a string gives inf) it is no number this code writes
    if len(token) > 400 or not math.isfinite(float(token)):
        raise DocumentError(f"integer of {len(token)} digits is out of range")
    return int(token)


def _lease(raw: Any) -> Lease | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise TypeError("lease is not an object")
    return Lease(str(raw["owner"]), _required_time(raw["until"]))


def _entry(item: Any) -> OutboxEntry:
    if not isinstance(item, dict):
        raise TypeError("entry is not an object")
    metrics = []
    for raw in _list(item["metrics"], "metrics"):
        # [name, value, unit] or, with extra dimensions, [name, value, unit, [[dimension, value], ...]]
        name, value, unit, *rest = _list(raw, "metric")
        if not isinstance(name, str) or unit not in _UNITS or isinstance(value, bool) or len(rest) > 1:
            raise ValueError(f"bad metric {name!r}")
        dimensions = tuple((str(d), str(v)) for d, v in _list(rest[0], "dimensions")) if rest else ()
        metrics.append(MetricValue(name, float(value), unit, dimensions))
    batch = MetricBatch(str(item["id"]), _required_time(item["collected_at"]), tuple(metrics))
    owner = item.get("owner")
    return OutboxEntry(batch, None if owner is None else str(owner), _optional_time(item.get("lease_until")))


def _metric_fields(metric: MetricValue) -> list[Any]:
    fields: list[Any] = [metric.name, metric.value, metric.unit]
    if metric.dimensions:
        fields.append([list(pair) for pair in metric.dimensions])
    return fields


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError(f"{what} is not a list")
    return value


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat()


def _optional_time(value: Any) -> datetime | None:
    return None if value is None else _required_time(value)


def _required_time(value: Any) -> datetime:
    if not isinstance(value, str):
        raise TypeError(f"time {value!r} is not a string")
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
