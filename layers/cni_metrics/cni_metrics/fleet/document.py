"""The fleet document: which clusters a deployment monitors, read from one S3 object at run time.

```json
{"version": 1, "name": "prod",
 "clusters": [{"name": "a", "region": "us-east-1", "role_arn": "arn:aws:iam::222233334444:role/r",
               "endpoint": "https://...", "ca_data": "<base64 PEM>", "alias": "prod-a"}],
 "discovery": [{"role_arn": "arn:aws:iam::333344445555:role/r", "regions": ["us-east-1", "eu-west-1"],
                "tag": "cni-metrics=enabled"}]}
```

An entry is the collector's ``ClusterSpec`` (the same validators: name, region, role ARN, ``https://``
endpoint, CA; the CA also read as the collector reads it) with a required region and an optional
``alias``: the name the cluster is published under (``CLUSTER_ID``), keyed in the state store and named
in events. A discovery rule names an account (its
role; none: the function's own account), regions and a ``key=value`` tag (``settings_fields.Tag``).

A bad entry or rule is reported (``Problem``: which entry, which field, why) and skipped; the rest of the
fleet stands. What makes the whole document unusable (unreadable, larger than ``MAX_DOCUMENT_BYTES``, not
JSON, unknown top-level keys, another version) raises ``FleetDocumentError``.

Why S3 and not SSM Parameter Store: a parameter holds at most 4 KB (8 KB advanced), a handful of clusters
with their CAs; an S3 object has no practical bound, answers conditional reads (``If-None-Match``: 304,
no body) and IAM can grant read of the one object. ``load_fleet`` keeps the parsed document for
``CACHE_TTL_SECONDS`` per warm process, then re-reads it conditionally.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, NoReturn

from botocore.exceptions import BotoCoreError, ClientError
from cachetools import TTLCache
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cni_metrics.adapters.aws_clients import error_text
from cni_metrics.adapters.eks_auth import ClusterAccessError, decode_ca
from cni_metrics.collector.settings import ClusterSpec
from cni_metrics.fleet.location import FleetLocation
from cni_metrics.settings_fields import REGION_PATTERN, ROLE_ARN_PATTERN, ClusterName, Tag, is_cluster_name

VERSION = 1
DEFAULT_NAME = "fleet"
# 1,000 clusters, each with a private endpoint and its CA (about 1.5 KB of base64 PEM), take about 2 MB.
# Parsing and validating holds a few times the document in memory: 4 MiB stays far inside a Lambda's.
MAX_DOCUMENT_BYTES = 4 * 1024 * 1024
# The dispatcher runs once a period (a minute); a warm worker re-reads (conditionally) at most this often,
# so an edit reaches every process within a minute.
CACHE_TTL_SECONDS = 60.0
_TOP_LEVEL = frozenset({"version", "name", "clusters", "discovery"})
_ACCOUNT = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}):role/")

Region = Annotated[str, Field(pattern=REGION_PATTERN)]


class FleetDocumentError(ValueError):
    """The fleet document as a whole cannot be used (unreadable, too large, not JSON, wrong shape)."""


@dataclass(frozen=True, slots=True)
class Problem:
    """Why one entry, rule or discovered cluster was skipped: ``where`` (``clusters[3]``, ``discovery[1]
    eu-west-1``), the cluster's name when known, the field at fault (None: the whole entry) and why.

    ``kind``: ``entry`` for the document's content (an invalid entry or rule, an id or cluster given
    twice), ``discovery`` for what could not be read at run time (a role, a region, a cluster).
    """

    where: str
    cluster: str | None
    field: str | None
    reason: str
    kind: Literal["entry", "discovery"] = "entry"

    def __str__(self) -> str:
        name = f" ({self.cluster})" if self.cluster else ""
        at = f"{self.field}: " if self.field else ""
        return f"{self.where}{name}: {at}{self.reason}"


class FleetCluster(ClusterSpec):
    """One cluster of the fleet: a ``ClusterSpec`` with a required region and an optional alias."""

    region: str = Field(pattern=REGION_PATTERN)  # required in a fleet
    alias: ClusterName | None = None

    @field_validator("ca_data")
    @classmethod
    def _certificate(cls, value: str | None) -> str | None:
        """A CA the collector can use (PEM, or base64 of PEM, as ``eks_auth.decode_ca`` reads it)."""
        if value is not None:
            try:
                decode_ca("", value)
            except ClusterAccessError:
                raise ValueError("must be a PEM certificate, or base64 of one") from None
        return value

    @property
    def id(self) -> str:
        """The name it is published, stored and invoked under: the alias, else the cluster's name."""
        return self.alias or self.name

    @property
    def account(self) -> str | None:
        """The account of its role (None: the function's own account)."""
        return account_of(self.role_arn)

    @property
    def place(self) -> tuple[str, str, str]:
        """The physical cluster: (account or "", region, name)."""
        return (self.account or "", self.region, self.name)


class DiscoveryRule(BaseModel):
    """Every cluster carrying ``tag`` in each of ``regions`` of the account ``role_arn`` reaches."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    role_arn: str | None = Field(default=None, pattern=ROLE_ARN_PATTERN)
    regions: tuple[Region, ...] = Field(max_length=40)
    tag: Tag

    @model_validator(mode="after")
    def _complete(self) -> DiscoveryRule:
        if self.tag is None:
            raise ValueError("tag: required (key=value)")
        if not self.regions:
            raise ValueError("regions: at least one region")
        if len(set(self.regions)) != len(self.regions):
            raise ValueError("regions: a region is listed twice")
        return self

    @property
    def account(self) -> str | None:
        """The account of its role (None: the function's own account)."""
        return account_of(self.role_arn)


def account_of(role_arn: str | None) -> str | None:
    """The 12-digit account of a role ARN (None for None)."""
    match = _ACCOUNT.match(role_arn or "")
    return match.group(1) if match else None


@dataclass(frozen=True, slots=True)
class Fleet:
    """A parsed fleet document: its valid entries (unique ids and places), rules, and what was skipped."""

    name: str
    clusters: tuple[FleetCluster, ...]
    discovery: tuple[DiscoveryRule, ...]
    problems: tuple[Problem, ...] = ()
    etag: str | None = None
    index: Mapping[str, FleetCluster] = field(default_factory=dict, repr=False)
    """Entries by id."""


def parse_fleet(body: bytes, *, etag: str | None = None) -> Fleet:
    """Parse and validate a fleet document; bad entries become ``Problem``s, a bad document raises."""
    if len(body) > MAX_DOCUMENT_BYTES:
        raise FleetDocumentError(f"{len(body)} bytes: more than {MAX_DOCUMENT_BYTES}")
    try:
        raw = json.loads(body, parse_constant=_refuse_constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FleetDocumentError(f"not JSON: {exc}") from None
    except RecursionError:
        raise FleetDocumentError("not JSON this reader accepts: nested too deeply") from None
    if not isinstance(raw, dict):
        raise FleetDocumentError(f"expected a JSON object, got {type(raw).__name__}")
    unknown = sorted(set(raw) - _TOP_LEVEL)
    if unknown:
        raise FleetDocumentError(f"unknown keys {unknown}: expected {sorted(_TOP_LEVEL)}")
    if raw.get("version") != VERSION:
        raise FleetDocumentError(f"version: must be {VERSION}")
    name = raw.get("name", DEFAULT_NAME)
    if not isinstance(name, str) or not is_cluster_name(name):
        raise FleetDocumentError("name: letters, digits, '-' and '_', at most 100, starting alphanumeric")
    problems: list[Problem] = []
    clusters = _entries(_list(raw, "clusters"), problems)
    rules = _rules(_list(raw, "discovery"), problems)
    index = {cluster.id: cluster for cluster in clusters}
    return Fleet(name, tuple(clusters), tuple(rules), tuple(problems), etag, index)


def _refuse_constant(token: str) -> NoReturn:
    raise json.JSONDecodeError(f"{token} is not JSON", token, 0)


def _list(raw: dict[str, Any], key: str) -> list[Any]:
    value = raw.get(key, [])
    if not isinstance(value, list):
        raise FleetDocumentError(f"{key}: expected a list, got {type(value).__name__}")
    return value


def _entries(items: list[Any], problems: list[Problem]) -> list[FleetCluster]:
    """Valid entries in order; an id or a physical cluster already taken is reported and skipped."""
    kept: list[FleetCluster] = []
    ids: dict[str, int] = {}
    places: dict[tuple[str, str, str], int] = {}
    for i, item in enumerate(items):
        where = f"clusters[{i}]"
        label = _label(item)
        entry = _validated(FleetCluster, item, where, label, problems)
        if entry is None:
            continue
        if entry.id in ids:
            which = "alias" if entry.alias else "name"
            reason = f"{entry.id!r} is already clusters[{ids[entry.id]}]'s id: skipped (give one an alias)"
            problems.append(Problem(where, label, which, reason))
        elif entry.place in places:
            problems.append(Problem(where, label, None, f"the same cluster (account, region, name) as "
                                    f"clusters[{places[entry.place]}]: skipped"))
        else:
            ids[entry.id] = i
            places[entry.place] = i
            kept.append(entry)
    return kept


def _rules(items: list[Any], problems: list[Problem]) -> list[DiscoveryRule]:
    rules = []
    for i, item in enumerate(items):
        rule = _validated(DiscoveryRule, item, f"discovery[{i}]", None, problems)
        if rule is not None:
            rules.append(rule)
    return rules


def _validated[M: BaseModel](
    model: type[M], item: Any, where: str, label: str | None, problems: list[Problem]
) -> M | None:
    """``item`` validated as ``model``, or None with one ``Problem`` per field at fault."""
    if not isinstance(item, dict):
        problems.append(Problem(where, None, None, f"expected a JSON object, got {type(item).__name__}"))
        return None
    try:
        return model.model_validate(item)
    except ValidationError as exc:
        for error in exc.errors(include_url=False, include_input=False):  # inputs may hold a CA: never shown
            at = ".".join(str(part) for part in error["loc"]) or None
            reason = error["msg"].removeprefix("Value error, ")
            if at is None and ": " in reason:  # a model-level check names its field first
                at, reason = reason.split(": ", 1)
            problems.append(Problem(where, label, at, reason))
        return None


def _label(item: Any) -> str | None:
    """An entry's name for messages, if it has a string one (cut to 100 characters)."""
    name = item.get("name") if isinstance(item, dict) else None
    return name[:100] if isinstance(name, str) else None


# ---------------------------------------------------------------------------------------------------
# Reading from S3, cached

_clock = time.monotonic  # the cache's timer (tests move it)
_FRESH: TTLCache[tuple[str, str, str], Fleet] = TTLCache(
    maxsize=16, ttl=CACHE_TTL_SECONDS, timer=lambda: _clock()
)
_KNOWN: dict[tuple[str, str, str], Fleet] = {}  # the last document read per location: re-read conditionally
_LOCK = threading.Lock()


def load_fleet(s3: Any, location: FleetLocation, *, max_bytes: int = MAX_DOCUMENT_BYTES) -> Fleet:
    """The fleet document at ``location``, parsed; cached ``CACHE_TTL_SECONDS``, then re-read with
    ``If-None-Match`` (an unchanged document costs no transfer and no parse). ``FleetDocumentError`` when it
    cannot be read or used."""
    cache_key = (str(s3.meta.endpoint_url), location.bucket, location.key)
    with _LOCK:
        fresh = _FRESH.get(cache_key)
        known = _KNOWN.get(cache_key)
    if fresh is not None:
        return fresh
    fleet = _read(s3, location, known, max_bytes)
    with _LOCK:
        _FRESH[cache_key] = _KNOWN[cache_key] = fleet
    return fleet


def clear_cache() -> None:
    """Forget every document read (tests)."""
    with _LOCK:
        _FRESH.clear()
        _KNOWN.clear()


def _read(s3: Any, location: FleetLocation, known: Fleet | None, max_bytes: int) -> Fleet:
    condition = {"IfNoneMatch": known.etag} if known is not None and known.etag else {}
    try:
        response = s3.get_object(Bucket=location.bucket, Key=location.key, **condition)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if known is not None and (status == 304 or error.get("Code") in ("304", "NotModified")):
            return known
        raise FleetDocumentError(f"cannot read {location}: {error_text(exc)}") from None
    except BotoCoreError as exc:
        raise FleetDocumentError(f"cannot read {location}: {error_text(exc)}") from None
    stream = response["Body"]
    try:
        length = response.get("ContentLength")
        if length is not None and length > max_bytes:
            raise FleetDocumentError(f"{location} is {length} bytes: more than {max_bytes}")
        body = stream.read(max_bytes + 1)
    except BotoCoreError as exc:
        raise FleetDocumentError(f"cannot read {location}: {error_text(exc)}") from None
    finally:
        stream.close()
    if len(body) > max_bytes:
        raise FleetDocumentError(f"{location} is more than {max_bytes} bytes")
    try:
        return parse_fleet(body, etag=response.get("ETag"))
    except FleetDocumentError as exc:
        raise FleetDocumentError(f"{location}: {exc}") from None
