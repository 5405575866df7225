"""A response body accumulated under a cap on its decompressed size (gzip bombs stop at the cap), and
what a complete one holds: both transports read a 200 body through here.

A gzip body is one gzip member, as Go's (and every Prometheus client's) gzip writer makes it: a byte after
the end of that member is refused (``bad_payload``) at once, never buffered.
"""

from __future__ import annotations

import zlib

from cni_metrics.adapters.scrape.http1 import decimal
from cni_metrics.adapters.scrape.policy import ScrapeFailure, unexpected
from cni_metrics.core.model import NodeMetrics
from cni_metrics.core.node import read_node_metrics
from cni_metrics.core.parser import PayloadError


def open_body(content_encoding: str | None, content_length: str | None, cap: int) -> CappedBody:
    """The capped body of a 200 response; ``too_large`` at once when an unencoded body announces more."""
    if content_length and not content_encoding and (decimal(content_length.strip()) or 0) > cap:
        raise ScrapeFailure("too_large", f"payload of {content_length} bytes is larger than {cap} bytes")
    return CappedBody(content_encoding, cap)


def payload_metrics(body: CappedBody, content_type: str | None) -> NodeMetrics:
    """The awscni metrics of a complete body; ``ScrapeFailure`` (``bad_payload``, or ``other`` for a parser
    bug, which must not take the run down) when it has none."""
    try:
        metrics = read_node_metrics(body.finish())
    except PayloadError as exc:
        raise ScrapeFailure("bad_payload", str(exc)) from None
    except ScrapeFailure:
        raise
    except Exception as exc:
        raise unexpected(exc) from None
    if not metrics.gauges and not metrics.counters:
        message = f"no awscni metrics in the payload (Content-Type {content_type or 'none'})"
        raise ScrapeFailure("bad_payload", message)
    return metrics


class CappedBody:
    """Accumulates a body chunk by chunk, decompressing gzip as a stream, never beyond ``cap`` bytes."""

    def __init__(self, content_encoding: str | None, cap: int) -> None:
        encoding = (content_encoding or "identity").strip().lower()
        if encoding not in ("identity", "gzip", "x-gzip"):
            raise ScrapeFailure("bad_payload", f"unsupported Content-Encoding {encoding!r}")
        self._cap = cap
        self._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS) if encoding != "identity" else None
        self._parts: list[bytes] = []
        self._size = 0
        self.wire_bytes = 0

    def feed(self, chunk: bytes) -> None:
        """Add one chunk read from the wire."""
        self.wire_bytes += len(chunk)
        if self._decoder is None:
            self._add(chunk)
            return
        data = chunk
        while data:
            if self._decoder.eof:
                raise ScrapeFailure("bad_payload", "bytes after the end of the gzip body")
            try:
                out = self._decoder.decompress(data, self._cap + 1 - self._size)
            except zlib.error as exc:
                raise ScrapeFailure("bad_payload", f"corrupt gzip body: {exc}") from None
            self._add(out)
            data = self._decoder.unused_data or self._decoder.unconsumed_tail

    def _add(self, data: bytes) -> None:
        self._size += len(data)
        if self._size > self._cap:
            raise ScrapeFailure("too_large", f"payload larger than {self._cap} bytes after decompression")
        if data:
            self._parts.append(data)

    def finish(self) -> bytes:
        """The whole decompressed body (the decoder must have seen the end of the gzip stream)."""
        if self._decoder is not None:
            if not self._decoder.eof:
                raise ScrapeFailure("bad_payload", "truncated gzip body")
            self._add(self._decoder.flush())
        body = b"".join(self._parts)
        self._parts = []
        return body
