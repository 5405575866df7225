"""What a faulty node does to a scrape through the proxy (see SCENARIOS.md for each kind)."""

from __future__ import annotations

import asyncio
import random

from aiohttp import web

from fake_eks.responses import PROM_CONTENT_TYPE, abort_with_reset, reach_error
from fake_eks.scenario import FaultSpec
from fake_eks.sim import AwsNodePod

_HTML = (
    "<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n<body>\n<center><h1>502 Bad Gateway"
    "</h1></center>\n<hr><center>nginx</center>\n</body>\n</html>\n"
)


def _huge_block() -> bytes:
    lines = [
        f'awscni_aws_utils_error_count{{fn="AllocIPAddresses",error="InvalidParameterValue: request {i:08d} '
        f'for eni-0123456789abcdef0 failed: the subnet has insufficient free addresses"}} 1\n'
        for i in range(1024)
    ]
    return "".join(lines).encode()


async def _wait_closed(request: web.Request) -> None:
    while request.transport is not None and not request.transport.is_closing():
        await asyncio.sleep(0.2)


async def serve_fault(request: web.Request, pod: AwsNodePod, fault: FaultSpec) -> web.StreamResponse | None:
    """Answer the scrape as the fault dictates; None means: serve the payload normally (after any delay)."""
    p = fault.params
    kind = fault.kind
    plain = {"Content-Type": "text/plain; charset=utf-8"}
    if kind == "latency":
        ms = float(p.get("ms", 500)) + random.uniform(-1, 1) * float(p.get("jitter_ms", 0))
        await asyncio.sleep(max(0.0, ms) / 1e3)
        return None
    if kind == "hang":
        await _wait_closed(request)
        return web.Response(status=504)
    if kind == "port_blocked":
        await asyncio.sleep(float(p.get("delay_s", 0)))
        return reach_error(f"dial tcp {pod.node_ip}:61678: i/o timeout")
    if kind == "throttle_429":
        return web.Response(
            status=429,
            text="Too Many Requests\n",
            headers={**plain, "Retry-After": str(p.get("retry_after", 2))},
        )
    if kind == "error_500":
        return web.Response(
            status=500,
            headers=plain,
            text=(
                'An error has occurred while serving metrics:\n\ncollected metric "awscni_ip_max" '
                "{ gauge:<value:29 > }"
                " was collected before with the same name and label values\n"
            ),
        )
    if kind == "reset":
        abort_with_reset(request)
        return web.Response(status=500)
    body, _ = pod.state.render()
    ctype = {"Content-Type": PROM_CONTENT_TYPE[pod.state.shape]}
    if kind == "truncated":
        resp = web.StreamResponse(status=200, headers=ctype)
        resp.content_length = len(body)
        await resp.prepare(request)
        await resp.write(body[: len(body) // 2])
        if request.transport is not None:
            request.transport.close()
        return resp
    if kind == "garbage":
        rng = random.Random(pod.uid)
        return web.Response(status=200, body=rng.randbytes(int(p.get("bytes", 4096))), headers=ctype)
    if kind == "invalid_utf8":
        bad = body.replace(b"add IP address requests", b"add IP \xff\xfe address requests", 1)
        bad = bad.replace(b'go_info{version="', b'go_info{version="\xc3\x28', 1)
        return web.Response(status=200, body=bad, headers=ctype)
    if kind == "html_error":
        return web.Response(
            status=int(p.get("status", 200)), text=_HTML, headers={"Content-Type": "text/html; charset=utf-8"}
        )
    if kind == "huge":
        resp = web.StreamResponse(status=200, headers=ctype)
        await resp.prepare(request)
        block = _huge_block()
        target = int(float(p.get("mb", 64)) * 1024 * 1024)
        await resp.write(body)
        sent = len(body)
        while sent < target:
            await resp.write(block)
            sent += len(block)
        await resp.write_eof()
        return resp
    if kind == "slow_drip":
        resp = web.StreamResponse(status=200, headers=ctype)
        resp.content_length = len(body)
        await resp.prepare(request)
        chunk, interval = int(p.get("chunk", 64)), float(p.get("interval_s", 0.5))
        for i in range(0, len(body), chunk):
            await resp.write(body[i : i + chunk])
            await asyncio.sleep(interval)
        await resp.write_eof()
        return resp
    if kind == "pending":
        return reach_error("dial tcp :61678: connect: no route to host")
    return None
