"""Scrape failure classification, retry policy and the bomb-safe decompressed size cap (no network)."""

from __future__ import annotations

import gzip
import json
import random
import resource
import zlib
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from cni_metrics.adapters.scrape.body import CappedBody, open_body, payload_metrics
from cni_metrics.adapters.scrape.policy import (
    ERROR_BODY_BYTES,
    MAX_RETRY_AFTER_SECONDS,
    ScrapeFailure,
    classify_status,
    parse_retry_after,
    retry_delay,
    should_retry,
    status_failure,
    status_message,
)
from cni_metrics.adapters.scrape.scraper import metrics_path

FORBIDDEN = json.dumps({
    "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
    "message": 'pods "aws-node-x:61678" is forbidden: User "u" cannot get resource "pods/proxy" in API'
    ' group "" in the namespace "kube-system"',
    "reason": "Forbidden", "code": 403,
}).encode()


@pytest.mark.parametrize(
    ("status", "reason", "retryable"),
    [
        (401, "unauthorized", False),
        (403, "forbidden", False),
        (404, "not_found", False),
        (429, "throttled", True),
        (503, "unreachable", True),
        (502, "unreachable", False),
        (504, "timeout", False),
        (500, "other", False),
        (418, "other", False),
    ],
)
def test_status_classes(status: int, reason: str, retryable: bool) -> None:
    failure = classify_status(status, b"")
    assert (failure.reason, failure.retryable, failure.status) == (reason, retryable, status)


def test_status_json_message_is_kept() -> None:
    # given the API server's RBAC denial
    failure = classify_status(403, FORBIDDEN)
    # then the message is the Status message, on one line
    assert failure.reason == "forbidden"
    assert 'cannot get resource "pods/proxy"' in failure.message
    assert failure.message.startswith("HTTP 403: ")


def test_non_json_body_is_shortened_to_one_line() -> None:
    text = status_message(b"<html>\n<body>Bad gateway</body>\n</html>" + b"x" * 1000)
    assert "\n" not in text
    assert len(text) <= 300


def test_retry_after_forms() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_retry_after("3") == 3.0
    http_date = format_datetime(now + timedelta(seconds=5), usegmt=True)
    assert parse_retry_after(http_date, now=now.timestamp()) == 5.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


@pytest.mark.parametrize("value", ["\u00b2", "\u0663", "1\u00b9", "9" * 19, "Wed, 99 Oct 99999 07:28:00 GMT"])
def test_retry_after_reads_ascii_digits_only(value: str) -> None:
    # given digits str.isdigit accepts but int refuses ("²") or reads ("٣"), too many digits, a bad date
    # then the hint is ignored (None), never an exception
    assert parse_retry_after(value) is None


def test_bytes_after_the_gzip_member_are_refused_at_once() -> None:
    # given a gzip member followed by more bytes, in the member's last chunk or in later ones
    member = gzip.compress(b"awscni_assigned_ip_addresses 3\n")
    for data in (member + b"\0", member + b"\0" * (1 << 20)):
        body = CappedBody("gzip", 1 << 20)
        # when it is fed, then it is a bad payload
        with pytest.raises(ScrapeFailure, match="after the end of the gzip body") as failure:
            _feed(body, data, chunk=len(member))
        assert failure.value.reason == "bad_payload"


def test_retry_delay_honours_retry_after_with_jitter_and_cap() -> None:
    rng = random.Random(7)
    hinted = ScrapeFailure("throttled", "", status=429, retryable=True, retry_after=2.0)
    huge = ScrapeFailure("throttled", "", status=429, retryable=True, retry_after=3600.0)
    plain = ScrapeFailure("unreachable", "", status=503, retryable=True)
    delays = [retry_delay(plain, rng) for _ in range(200)]
    assert 2.0 < retry_delay(hinted, rng) <= 2.3
    assert MAX_RETRY_AFTER_SECONDS < retry_delay(huge, rng) <= MAX_RETRY_AFTER_SECONDS + 0.3
    assert all(0.1 <= d <= 0.35 for d in delays)
    assert len(set(delays)) > 100, "jittered"


def test_retry_only_once_only_retryable_only_before_deadline() -> None:
    retryable = ScrapeFailure("throttled", "", retryable=True)
    final = ScrapeFailure("forbidden", "")
    assert should_retry(retryable, 0.2, now=0.0, deadline=5.0, retried=False)
    assert not should_retry(retryable, 0.2, now=0.0, deadline=5.0, retried=True)
    assert not should_retry(final, 0.2, now=0.0, deadline=5.0, retried=False)
    assert not should_retry(retryable, 4.8, now=0.0, deadline=5.0, retried=False)


def _feed(body: CappedBody, data: bytes, chunk: int = 65536) -> bytes:
    for start in range(0, len(data), chunk):
        body.feed(data[start:start + chunk])
    return body.finish()


def test_gzip_body_is_decompressed() -> None:
    payload = b"awscni_assigned_ip_addresses 3\n" * 1000
    body = CappedBody("gzip", 1 << 20)
    assert _feed(body, gzip.compress(payload)) == payload
    assert body.wire_bytes == len(gzip.compress(payload))


def test_gzip_bomb_stops_at_the_cap_without_inflating() -> None:
    # given 512 MiB of zeros gzip-compressed (about 500 KB on the wire)
    compressor = zlib.compressobj(1, zlib.DEFLATED, 31)
    block = bytes(1 << 20)
    bomb = b"".join(compressor.compress(block) for _ in range(512)) + compressor.flush()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # when it is read with an 8 MiB cap
    with pytest.raises(ScrapeFailure) as failure:
        _feed(CappedBody("gzip", 8 << 20), bomb)
    # then it is "too large" and memory grew by about the cap, not by gigabytes
    assert failure.value.reason == "too_large"
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before < 64 * 1024  # KiB


def test_plain_body_over_the_cap_is_too_large() -> None:
    with pytest.raises(ScrapeFailure, match="too_large"):
        _feed(CappedBody(None, 100), b"x" * 101)
    assert _feed(CappedBody(None, 100), b"x" * 100) == b"x" * 100


@pytest.mark.parametrize(
    "data",
    [
        gzip.compress(b"awscni_x 1\n" * 100)[:-12],
        b"\x1f\x8b\x08\x00garbage-not-deflate",
        b"plain text, not gzip",
    ],
)
def test_broken_gzip_is_a_bad_payload(data: bytes) -> None:
    with pytest.raises(ScrapeFailure) as failure:
        _feed(CappedBody("gzip", 1 << 20), data)
    assert failure.value.reason == "bad_payload"


def test_unknown_encoding_is_a_bad_payload() -> None:
    with pytest.raises(ScrapeFailure, match="bad_payload"):
        CappedBody("br", 100)


def test_metrics_path_quotes_the_pod_name() -> None:
    expected = "/api/v1/namespaces/kube-system/pods/aws-node-abc12:61678/proxy/metrics"
    assert metrics_path("aws-node-abc12") == expected
    assert "/" not in metrics_path("a/b").split("/pods/")[1].split(":")[0]


def test_a_status_failure_reads_a_gzip_body_and_its_retry_after() -> None:
    # given a 429 whose Status JSON is gzip-encoded, with Retry-After: 3
    body = gzip.compress(json.dumps({"kind": "Status", "message": "slow down"}).encode())
    # when it is classed
    failure = status_failure(429, body, content_encoding=" GZIP ", retry_after="3")
    # then it is a retryable throttle with the Status message and the server's wait
    assert (failure.reason, failure.status, failure.retryable) == ("throttled", 429, True)
    assert failure.message == "HTTP 429: slow down"
    assert failure.retry_after == 3.0


def test_a_status_failure_reads_only_the_start_of_a_body() -> None:
    # given a 500 whose plain body is far longer than what is read of an error body
    body = b"x" * (ERROR_BODY_BYTES * 4)
    # when it is classed / then its message is one line made from the start only, never the whole body
    failure = status_failure(500, body, content_encoding=None, retry_after=None)
    assert failure.reason == "other"
    assert failure.message == "HTTP 500: " + "x" * 300
    # and a corrupt gzip body leaves the status alone in the message
    assert status_failure(503, b"not gzip", content_encoding="gzip", retry_after=None).message == "HTTP 503"


def test_a_plain_body_announced_over_the_cap_is_too_large_before_it_is_read() -> None:
    # given a 200 announcing 2,000 plain bytes under a cap of 1,024
    with pytest.raises(ScrapeFailure) as raised:
        open_body(None, "2000", 1024)
    # then it is refused at once, naming both sizes
    assert (raised.value.reason, raised.value.message) == (
        "too_large", "payload of 2000 bytes is larger than 1024 bytes"
    )
    # and a gzip body announcing as much is read (its decompressed size is what the cap bounds)
    assert isinstance(open_body("gzip", "2000", 1024), CappedBody)


@pytest.mark.parametrize(
    ("payload", "content_type", "message"),
    [
        (b"go_goroutines 7\n", "text/plain", "no awscni metrics in the payload (Content-Type text/plain)"),
        (b"<html>502</html>", None, "no awscni metrics in the payload (Content-Type none)"),
        (b"awscni_ip_max{ 15\n", "text/plain", "line 1: "),
    ],
)
def test_a_body_without_awscni_metrics_is_a_bad_payload(
    payload: bytes, content_type: str | None, message: str
) -> None:
    # given a complete body without a readable awscni sample
    body = CappedBody(None, 1024)
    body.feed(payload)
    # when its metrics are read / then it is a bad payload saying why
    with pytest.raises(ScrapeFailure) as raised:
        payload_metrics(body, content_type)
    assert raised.value.reason == "bad_payload"
    assert raised.value.message.startswith(message)


def test_a_complete_body_gives_its_awscni_metrics() -> None:
    # given a gzip body of one gauge and one counter, fed in two pieces
    wire = gzip.compress(b"# TYPE awscni_ip_max gauge\nawscni_ip_max 15\nawscni_add_ip_req_count 3\n")
    body = CappedBody("gzip", 1024)
    body.feed(wire[:10])
    body.feed(wire[10:])
    # when its metrics are read / then they are the values written
    metrics = payload_metrics(body, "text/plain")
    assert (metrics.gauges, metrics.counters) == ({"awscni_ip_max": 15.0}, {"awscni_add_ip_req_count": 3.0})
