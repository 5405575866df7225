"""Where the fleet document is: ``s3://bucket/key`` (a settings field type, importable by any settings).

Kept apart from ``document`` (which builds on the collector's ``ClusterSpec``) so that the collector's
settings can validate ``FLEET_DOCUMENT`` without an import cycle.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BeforeValidator

# S3 bucket names (3-63 lower-case letters, digits, dots and hyphens; as STATE_BUCKET is checked).
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
MAX_KEY_BYTES = 1024


@dataclass(frozen=True, slots=True)
class FleetLocation:
    """The fleet document's S3 object."""

    bucket: str
    key: str

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def parse_location(value: str) -> FleetLocation:
    """``s3://bucket/key`` -> ``FleetLocation``; ``ValueError`` otherwise."""
    bucket, _, key = value.removeprefix("s3://").partition("/")
    if (not value.startswith("s3://") or not _BUCKET.fullmatch(bucket) or not key
            or len(key.encode()) > MAX_KEY_BYTES):
        raise ValueError("expected s3://bucket/key (the fleet document's S3 object)")
    return FleetLocation(bucket, key)


def _location(value: Any) -> Any:
    return parse_location(value.strip()) if isinstance(value, str) else value


FleetDocumentLocation = Annotated[FleetLocation, BeforeValidator(_location)]
"""A settings field type: ``s3://bucket/key`` validated into a ``FleetLocation``."""
