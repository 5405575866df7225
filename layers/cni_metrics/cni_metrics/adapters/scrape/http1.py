"""HTTP/1.1 responses parsed from bytes as they arrive (no I/O): the scraper's wire format.

Hand-written over ``http.client``, whose blocking reads, request building and email-package header
parsing cost about 0.5 ms of CPU per scrape here against about 0.2 ms for this module (``make bench``,
scrape), and which cannot be driven by an event loop. It speaks only what the scraper needs, strictly: a
prebuilt GET request; a response whose head is at most 64 KiB; 1xx interim responses skipped; the body
framed by chunked transfer coding, Content-Length, or the end of the connection (RFC 9112 section 6.3).
Anything else is a ``ProtocolError``; the connection then serves no other request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MAX_HEAD_BYTES = 64 * 1024
MAX_CHUNK_LINE_BYTES = 4 * 1024

Framing = Literal["length", "chunked", "close", "none"]


class ProtocolError(Exception):
    """The response breaks HTTP/1.1: status line, header fields or body framing."""


class ClosedWithoutResponse(ConnectionResetError):
    """The server closed the connection before sending any byte of a response."""


class TruncatedBody(Exception):
    """The connection ended before the end of the body its framing announced."""


@dataclass(frozen=True, slots=True)
class Head:
    """A response's status and header fields (names lower-cased, repeated fields joined by ", ")."""

    status: int
    headers: dict[str, str]

    def header(self, name: str) -> str | None:
        """The value of the field ``name`` (lower case), None when absent."""
        return self.headers.get(name)


class ResponseReader:
    """One response: ``feed`` it the bytes received, take the body pieces it returns, until ``done``."""

    __slots__ = (
        "_buf",
        "_chunk_end",
        "_framing",
        "_left",
        "_searched",
        "_trailer_bytes",
        "done",
        "head",
        "keep_alive",
        "received",
    )

    def __init__(self) -> None:
        self._buf = bytearray()  # received, not yet consumed
        self._searched = 0  # head: bytes of the buffer already searched for its end
        self._framing: Framing = "none"
        self._left = 0  # bytes left of the body (length) or of the current chunk (chunked)
        self._chunk_end = False  # chunked: the CRLF after a chunk's data is due
        self._trailer_bytes = -1  # chunked: >= 0 while reading the trailer section
        self.head: Head | None = None  # set once the (final) head is complete
        self.done = False  # the body was read to its end
        self.keep_alive = False  # the server keeps the connection after this response
        self.received = 0  # bytes fed so far

    @property
    def reusable(self) -> bool:
        """Whether the connection may carry another request: body read whole, kept alive, nothing extra."""
        return self.done and self.keep_alive and not self._buf

    def feed(self, data: bytes) -> list[bytes]:
        """Add bytes received; the body pieces (de-chunked, not decoded) they complete, in order."""
        self.received += len(data)
        self._buf += data
        pieces: list[bytes] = []
        if self.done or (self.head is None and not self._read_head()):
            return pieces
        if self._framing == "chunked":
            self._read_chunks(pieces)
        elif self._buf and self._framing == "length":
            piece = bytes(self._buf[: self._left])
            del self._buf[: self._left]
            self._left -= len(piece)
            self.done = self._left == 0
            pieces.append(piece)
        elif self._buf and self._framing == "close":
            pieces.append(bytes(self._buf))
            self._buf.clear()
        return pieces

    def connection_closed(self) -> None:
        """The server closed the connection: the end of a close-delimited body, else an error."""
        if self.done:
            return
        if self.head is None:
            if not self._buf:
                raise ClosedWithoutResponse("the server closed the connection without a response")
            raise ProtocolError("connection closed inside the response head")
        if self._framing == "close":
            self.done = True
            self.keep_alive = False
        elif self._framing == "length":
            raise TruncatedBody(f"connection closed {self._left} bytes before the end of the body")
        elif self._left:
            raise TruncatedBody(f"connection closed {self._left} bytes before the end of a chunk")
        else:
            raise TruncatedBody("connection closed inside the chunked framing")

    # -- internals ----------------------------------------------------------------------------------

    def _read_head(self) -> bool:
        """Consume heads until the final one; False while it is incomplete."""
        while True:
            end = self._buf.find(b"\r\n\r\n", max(0, self._searched - 3))
            if end < 0 or end > MAX_HEAD_BYTES:
                self._searched = len(self._buf)
                if self._searched > MAX_HEAD_BYTES:
                    raise ProtocolError(f"response head longer than {MAX_HEAD_BYTES} bytes")
                return False
            block = bytes(self._buf[:end])
            del self._buf[: end + 4]
            self._searched = 0
            status, headers, version = _parse_head(block)
            if not (100 <= status < 200 and status != 101):
                break
        self.keep_alive = version == b"HTTP/1.1" and "close" not in _tokens(headers.get("connection", ""))
        self._framing, self._left = _framing(status, headers)
        if self._framing == "close" or ("transfer-encoding" in headers and "content-length" in headers):
            self.keep_alive = False
        self.done = self._framing == "none"
        self.head = Head(status, headers)
        return True

    def _line(self, what: str) -> bytes | None:
        """One CRLF-terminated line of the chunked framing without its CRLF; None while incomplete."""
        end = self._buf.find(b"\r\n")
        if end < 0 or end > MAX_CHUNK_LINE_BYTES:
            if len(self._buf) > MAX_CHUNK_LINE_BYTES:
                raise ProtocolError(f"{what} longer than {MAX_CHUNK_LINE_BYTES} bytes")
            return None
        line = bytes(self._buf[:end])
        del self._buf[: end + 2]
        return line

    def _read_chunks(self, pieces: list[bytes]) -> None:
        buf = self._buf
        while buf:
            if self._left:
                piece = bytes(buf[: self._left])
                del buf[: self._left]
                self._left -= len(piece)
                self._chunk_end = self._left == 0
                pieces.append(piece)
                continue
            if self._chunk_end:
                if len(buf) >= 2 and buf[:2] != b"\r\n":
                    raise ProtocolError("chunk data longer than its size")
                if self._line("end of a chunk") is None:
                    return
                self._chunk_end = False
                continue
            if self._trailer_bytes >= 0:
                if (trailer := self._line("trailer field")) is None:
                    return
                if not trailer:  # the trailer section ends at an empty line
                    self.done = True
                    return
                self._trailer_bytes += len(trailer)
                if self._trailer_bytes > MAX_HEAD_BYTES:
                    raise ProtocolError(f"trailer section longer than {MAX_HEAD_BYTES} bytes")
                continue
            if (line := self._line("chunk size line")) is None:
                return
            size_field = line.split(b";", 1)[0].strip()
            if not size_field or len(size_field) > 16 or size_field.strip(b"0123456789abcdefABCDEF"):
                raise ProtocolError(f"bad chunk size {size_field[:20]!r}")
            self._left = int(size_field, 16)
            if self._left == 0:
                self._trailer_bytes = 0


def request_bytes(path: str, host: str, headers: dict[str, str]) -> bytes:
    """A GET request for ``path`` with ``headers``; raises ValueError on a character that could split it."""
    fields = (f"{name}: {value}" for name, value in headers.items())
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}", *fields]
    if " " in path or any(not line.isprintable() for line in lines):
        raise ValueError("request path or header contains a control character or a space in the path")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _parse_head(block: bytes) -> tuple[int, dict[str, str], bytes]:
    lines = block.split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    code = rest[:3]
    if version not in (b"HTTP/1.1", b"HTTP/1.0") or len(code) != 3 or not code.isdigit() or rest[3:4] not in (
        b"", b" "
    ):
        raise ProtocolError(f"bad status line {lines[0][:40]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip() or line[:1] in (b" ", b"\t"):
            raise ProtocolError(f"bad header line {line[:40]!r}")
        key = name.decode("latin-1").lower()
        text = value.strip(b" \t").decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return int(code), headers, version


def _tokens(value: str) -> set[str]:
    return {token.strip().lower() for token in value.split(",")}


def _framing(status: int, headers: dict[str, str]) -> tuple[Framing, int]:
    """How the body ends (RFC 9112 section 6.3) and, for Content-Length, its size."""
    if status in (204, 304) or 100 <= status < 200:
        return "none", 0
    encoding = headers.get("transfer-encoding")
    if encoding is not None:
        codings = [token.strip().lower() for token in encoding.split(",")]
        if codings[-1] == "chunked":
            return "chunked", 0
        return "close", 0
    length = headers.get("content-length")
    if length is None:
        return "close", 0
    size = content_length(length)
    return ("length", size) if size else ("none", 0)


def content_length(value: str) -> int:
    """The size a Content-Length field value gives (repeated identical values allowed); ``ProtocolError``
    for anything else."""
    values = {part.strip() for part in value.split(",")}
    size = decimal(values.pop()) if len(values) == 1 else None
    if size is None:
        raise ProtocolError(f"bad Content-Length {value[:40]!r}")
    return size


def decimal(text: str) -> int | None:
    """The number ``text`` spells in 1 to 18 ASCII digits, else None (``str.isdigit`` alone also takes
    ``²`` or ``٣``, which ``int`` then refuses or reads)."""
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        return None
    return int(text)
