"""A response body accumulated under a cap on its decompressed size (gzip bombs stop at the cap).

A gzip body is one gzip member, as Go's (and every Prometheus client's) gzip writer makes it: a byte after
the end of that member is refused (``bad_payload``) at once, never buffered.
"""

from __future__ import annotations

import zlib

from cni_metrics.adapters.scrape.policy import ScrapeFailure


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
