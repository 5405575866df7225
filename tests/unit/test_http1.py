"""The scraper's HTTP/1.1 response reader, fed scripted bytes the way a socket could deliver them.

Each script is the exact response bytes for one request. Every test feeds it three ways (in one piece,
byte by byte, and cut at seeded random points), so no framing depends on where reads happen to end;
the assertions compare the body reassembled with the body the script framed, and the reuse verdict with
what the framing allows.
"""

from __future__ import annotations

import gzip
import random
from collections.abc import Iterator

import pytest
from cni_metrics.adapters.scrape import http1

BODY = b"# TYPE awscni_ip_max gauge\nawscni_ip_max 15\n" * 40


def _splits(wire: bytes) -> Iterator[list[bytes]]:
    yield [wire]
    yield [wire[i : i + 1] for i in range(len(wire))]
    rng = random.Random(len(wire))
    cuts = sorted(rng.sample(range(1, len(wire)), min(7, len(wire) - 1))) if len(wire) > 1 else []
    yield [wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True)]


def _read(pieces: list[bytes], *, closed: bool = False) -> tuple[http1.ResponseReader, bytes]:
    """Feed ``pieces``; then, if ``closed``, tell the reader the connection ended."""
    reader = http1.ResponseReader()
    body = b"".join(part for piece in pieces for part in reader.feed(piece))
    if closed:
        reader.connection_closed()
    return reader, body


def _chunked(body: bytes, size: int, trailer: bytes = b"") -> bytes:
    pieces = [body[i : i + size] for i in range(0, len(body), size)]
    framed = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in pieces)
    return framed + b"0\r\n" + trailer + b"\r\n"


def test_a_content_length_body_is_read_whole_and_the_connection_is_reusable() -> None:
    # given a response framed by Content-Length
    wire = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Type: text/plain\r\n\r\n%s" % (len(BODY), BODY)
    for pieces in _splits(wire):
        # when it is fed however the reads fall
        reader, body = _read(pieces)
        # then the body is the one framed, the head is parsed, and the connection may carry another request
        assert body == BODY
        headers = {"content-length": str(len(BODY)), "content-type": "text/plain"}
        assert reader.head == http1.Head(200, headers)
        assert reader.done
        assert reader.reusable
        assert reader.received == len(wire)


def test_chunked_bodies_with_extensions_and_trailers_are_reassembled() -> None:
    # given a gzip body sent in 100-byte chunks with chunk extensions and a trailer field
    stream = gzip.compress(BODY)
    wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Encoding: gzip\r\n\r\n" + _chunked(
        stream, 100, b"X-Checksum: 1\r\n"
    )
    for pieces in _splits(wire):
        reader, body = _read(pieces)
        # then the de-chunked bytes are the gzip stream sent, and the connection stays usable
        assert reader.head is not None
        assert reader.head.header("content-encoding") == "gzip"
        assert body == stream
        assert gzip.decompress(body) == BODY
        assert reader.reusable


def test_a_body_is_not_done_until_its_last_byte() -> None:
    wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + _chunked(BODY, 64)
    reader, _ = _read([wire[:-1]])
    assert not reader.done
    assert not reader.reusable
    assert reader.feed(wire[-1:]) == []
    assert reader.done


def test_interim_100_responses_are_skipped() -> None:
    for pieces in _splits(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"):
        reader, body = _read(pieces)
        assert reader.head is not None
        assert (reader.head.status, body) == (200, b"abc")


def test_a_body_ended_by_close_is_read_to_the_end_and_not_reusable() -> None:
    for pieces in _splits(b"HTTP/1.1 200 OK\r\n\r\n" + BODY):
        reader, body = _read(pieces)
        assert not reader.done  # only the end of the connection ends it
        reader.connection_closed()
        assert body == BODY
        assert reader.done
        assert not reader.reusable


def test_a_response_without_a_body_is_done_at_its_head() -> None:
    reader, body = _read([b"HTTP/1.1 204 No Content\r\n\r\n"])
    assert (reader.done, reader.reusable, body) == (True, True, b"")


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
    ],
)
def test_responses_that_end_the_connection_make_it_not_reusable(head: bytes) -> None:
    body = _chunked(b"abc", 2) if b"chunked" in head else b"abc"
    for pieces in _splits(head + body):
        reader, read = _read(pieces)
        assert read == b"abc"
        assert reader.done
        assert not reader.reusable


def test_extra_bytes_after_a_response_make_the_connection_not_reusable() -> None:
    for pieces in _splits(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcHTTP/1.1 200 OK\r\n"):
        reader, body = _read(pieces)
        assert body == b"abc"
        assert reader.done
        assert not reader.reusable


@pytest.mark.parametrize(
    ("response", "error", "text"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", http1.TruncatedBody, "7 bytes before the end"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", http1.TruncatedBody, "of a chunk"),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
            http1.TruncatedBody,
            "inside the chunked framing",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            http1.ProtocolError,
            "bad chunk size",
        ),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n", http1.ProtocolError, "longer"),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1" + b"0" * 5000,
            http1.ProtocolError,
            "longer than",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n" + b"X: y\r\n" * 17000,
            http1.ProtocolError,
            "trailer section longer",
        ),
    ],
)
def test_broken_bodies_raise_a_clear_error(response: bytes, error: type[Exception], text: str) -> None:
    for pieces in _splits(response):
        with pytest.raises(error, match=text):
            _read(pieces, closed=True)


@pytest.mark.parametrize(
    ("response", "text"),
    [
        (b"SSH-2.0-OpenSSH\r\n\r\n", "bad status line"),
        (b"HTTP/1.1 2000 OK\r\n\r\n", "bad status line"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "bad header line"),
        (b"HTTP/1.1 200 OK\r\nA: b\r\n folded\r\n\r\n", "bad header line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 3, 4\r\n\r\nabc", "bad Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -3\r\n\r\nabc", "bad Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\nabc", "bad Content-Length"),  # "²" in Latin-1
        ("HTTP/1.1 200 OK\r\nContent-Length: \u0663\r\n\r\nabc".encode(), "bad Content-Length"),  # "٣" UTF-8
        (b"HTTP/1.1 200 OK\r\nX: " + b"a" * (70 * 1024), "longer than"),
        (b"HTTP/1.1 200 OK\r\nX: a", "closed inside the response head"),
    ],
)
def test_broken_heads_raise_a_protocol_error(response: bytes, text: str) -> None:
    with pytest.raises(http1.ProtocolError, match=text):
        _read([response], closed=True)


def test_a_head_longer_than_the_cap_is_refused_before_the_connection_ends() -> None:
    # given a head that is still open after 64 KiB of header fields
    reader = http1.ResponseReader()
    reader.feed(b"HTTP/1.1 200 OK\r\n")
    for _ in range(63):
        reader.feed(b"X: " + b"a" * 1021 + b"\r\n")
    # then the next kilobyte is refused, with the connection still open
    with pytest.raises(http1.ProtocolError, match="longer than"):
        reader.feed(b"X: " + b"a" * 1021 + b"\r\n")


def test_a_close_before_any_response_byte_is_its_own_error() -> None:
    with pytest.raises(http1.ClosedWithoutResponse):
        _read([], closed=True)


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/metrics\r\nX-Injected: 1", {}),
        ("/metrics HTTP/1.0", {}),
        ("/metrics", {"Authorization": "Bearer a\r\nX-Injected: 1"}),
        ("/metrics", {"Authorization": "Bearer a\nb"}),
    ],
)
def test_requests_that_could_be_split_are_refused(path: str, headers: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="control character"):
        http1.request_bytes(path, "example.com", headers)


def test_a_request_carries_the_host_and_headers_in_order() -> None:
    request = http1.request_bytes("/api/v1/x", "abc.eks.amazonaws.com", {"Accept": "*/*", "User-Agent": "u"})
    assert (
        request
        == b"GET /api/v1/x HTTP/1.1\r\nHost: abc.eks.amazonaws.com\r\nAccept: */*\r\nUser-Agent: u\r\n\r\n"
    )


@pytest.mark.parametrize(("value", "size"), [("0", 0), ("1234", 1234), ("7, 7", 7), (" 12 ", 12)])
def test_a_content_length_is_one_size_in_ascii_digits(value: str, size: int) -> None:
    # given a Content-Length value (repeated identical values allowed) / then its size is read
    assert http1.content_length(value) == size


@pytest.mark.parametrize("value", ["", "7, 8", "-1", "1e3", "\u00b2", "\u0663", "1" * 19])
def test_any_other_content_length_is_a_protocol_error(value: str) -> None:
    # given a Content-Length value that is not one size in ASCII digits / then it is refused by name
    with pytest.raises(http1.ProtocolError, match="bad Content-Length"):
        http1.content_length(value)
