"""A one-invocation Lambda Runtime API server (the interface awslambdaric talks to) on 127.0.0.1.

Endpoints (version 2018-06-01): ``GET invocation/next`` hands out the single event once (later calls wait
until the server closes), ``POST invocation/{id}/response`` and ``POST invocation/{id}/error`` record
the outcome, ``POST init/error`` records a failed initialisation.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_PREFIX = "/2018-06-01/runtime"


@dataclass
class Invocation:
    """The event of the one invocation and, once known, its outcome."""

    event: bytes
    function_arn: str
    timeout_seconds: float
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    delivered_at: float | None = None
    response: bytes | None = None
    error: dict[str, Any] | None = None
    finished: threading.Event = field(default_factory=threading.Event)


class _Handler(BaseHTTPRequestHandler):
    server: RuntimeApiServer

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request access log."""

    def do_GET(self) -> None:
        """``/invocation/next``: the event once, then wait for the end."""
        if self.path != f"{_PREFIX}/invocation/next":
            self._reply(404, {"errorMessage": f"unknown path {self.path}"})
            return
        invocation = self.server.invocation
        with self.server.lock:
            first = invocation.delivered_at is None
            if first:
                invocation.delivered_at = time.time()
        if not first:
            self.server.closing.wait()
            self._reply(410, {"errorMessage": "no more invocations"})
            return
        deadline_ms = int((invocation.delivered_at or time.time()) * 1000 + invocation.timeout_seconds * 1000)
        self.send_response(200)
        # awslambdaric's C extension crashes on a /next answer without a Content-Type.
        self.send_header("Content-Type", "application/json")
        self.send_header("Lambda-Runtime-Aws-Request-Id", invocation.request_id)
        self.send_header("Lambda-Runtime-Deadline-Ms", str(deadline_ms))
        self.send_header("Lambda-Runtime-Invoked-Function-Arn", invocation.function_arn)
        trace_id = f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};Sampled=0"
        self.send_header("Lambda-Runtime-Trace-Id", trace_id)
        self.send_header("Content-Length", str(len(invocation.event)))
        self.end_headers()
        self.wfile.write(invocation.event)

    def do_POST(self) -> None:
        """Record a response, an invocation error or an init error."""
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        invocation = self.server.invocation
        base = f"{_PREFIX}/invocation/{invocation.request_id}"
        if self.path == f"{base}/response":
            invocation.response = body
        elif self.path in (f"{base}/error", f"{_PREFIX}/init/error"):
            invocation.error = _error_document(body, self.headers.get("Lambda-Runtime-Function-Error-Type"))
        else:
            self._reply(404, {"errorMessage": f"unknown path {self.path}"})
            return
        self._reply(202, {"status": "OK"})
        invocation.finished.set()

    def _reply(self, status: int, document: dict[str, Any]) -> None:
        data = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _error_document(body: bytes, error_type: str | None) -> dict[str, Any]:
    """The runtime's error JSON (errorMessage, errorType, stackTrace), whatever shape it came in."""
    try:
        document = json.loads(body) if body else {}
    except ValueError:
        document = {"errorMessage": body.decode(errors="replace")}
    if not isinstance(document, dict):
        document = {"errorMessage": str(document)}
    document.setdefault("errorType", error_type or "Unhandled")
    return document


class RuntimeApiServer(ThreadingHTTPServer):
    """Serves one ``Invocation`` on 127.0.0.1 (port chosen by the OS) from a background thread."""

    daemon_threads = True

    def __init__(self, invocation: Invocation) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.invocation = invocation
        self.lock = threading.Lock()
        self.closing = threading.Event()
        self._thread = threading.Thread(target=self.serve_forever, name="runtime-api", daemon=True)

    @property
    def address(self) -> str:
        """``host:port``, the value of AWS_LAMBDA_RUNTIME_API."""
        host, port = self.server_address[:2]
        return f"{host!s}:{port}"

    def __enter__(self) -> RuntimeApiServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.closing.set()
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=5)
