"""HTTP answers shared by the API server and the fault behaviours."""

from __future__ import annotations

import contextlib
import gzip
import socket
import struct
from typing import Any

from aiohttp import web

from fake_eks.sim import AwsNodePod

PROM_CONTENT_TYPE = {
    "modern": "text/plain; version=0.0.4; charset=utf-8; escaping=underscores",
    "old": "text/plain; version=0.0.4; charset=utf-8",
}


def status_response(
    code: int,
    reason: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """A Kubernetes ``Status`` failure."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return web.json_response(body, status=code, headers=headers)


def reach_error(why: str) -> web.Response:
    """503 from the API server's proxy when the node cannot be reached."""
    return status_response(503, "ServiceUnavailable", f"error trying to reach service: {why}")


async def serve_payload(request: web.Request, pod: AwsNodePod) -> web.StreamResponse:
    """Step the node, send its payload, and record the serve once sent whole.

    Like aws-node's promhttp handler behind the API server proxy: gzip when asked, and then chunked
    (the compressed length is not known up front); plain bodies carry a Content-Length. Head and body
    leave in one write, as Go's buffered response writer sends a small answer.
    """
    body = pod.serve()
    headers = {"Content-Type": PROM_CONTENT_TYPE[pod.state.shape]}
    gzipped = "gzip" in request.headers.get("Accept-Encoding", "")
    if gzipped:
        body = gzip.compress(body, compresslevel=1)
        headers["Content-Encoding"] = "gzip"
    resp = web.Response(status=200, body=body, headers=headers)  # a Response buffers its head
    if gzipped:
        resp.enable_chunked_encoding()
    await resp.prepare(request)
    await resp.write_eof()
    pod.record()
    return resp


def abort_with_reset(request: web.Request) -> None:
    """Close the connection with a TCP RST."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
