"""A Lambda Runtime API server (the interface awslambdaric talks to) on 127.0.0.1, for one runtime process.

Endpoints (version 2018-06-01): ``GET invocation/next`` hands out the next invocation submitted (waiting
for one; once the server closes, 410), ``POST invocation/{id}/response`` and ``POST invocation/{id}/error``
record the outcome, ``POST init/error`` records a failed initialisation (on the invocation in progress, or
the next one). ``RuntimeApiServer(invocation)`` serves that one event (``runner.invoke``); a warm worker
(``invoke_api``) keeps one server and ``submit``s an invocation at a time; ``waiting`` is set while the
runtime waits on ``/next`` (it has initialised and is idle).
"""

from __future__ import annotations

import json
import queue
import sys
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
        """``/invocation/next``: the next invocation submitted; 410 once the server closes."""
        if self.path != f"{_PREFIX}/invocation/next":
            self._reply(404, {"errorMessage": f"unknown path {self.path}"})
            return
        invocation = self.server.take()
        if invocation is None:
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
        parts = self.path.removeprefix(f"{_PREFIX}/").split("/")
        if self.path == f"{_PREFIX}/init/error":
            invocation = self.server.current()
            outcome = "error"
        elif len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error"):
            invocation = self.server.find(parts[1])
            outcome = parts[2]
        else:
            invocation, outcome = None, ""
        if invocation is None:
            self._reply(404, {"errorMessage": f"unknown path {self.path}"})
            return
        if outcome == "response":
            invocation.response = body
        else:
            invocation.error = _error_document(body, self.headers.get("Lambda-Runtime-Function-Error-Type"))
        self._reply(202, {"status": "OK"})
        self.server.finish(invocation)

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
    """Serves the ``Invocation``s submitted (or the one given) on 127.0.0.1 (port chosen by the OS) from a
    background thread."""

    daemon_threads = True

    def __init__(self, invocation: Invocation | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.closing = threading.Event()
        self.waiting = threading.Event()
        self._queue: queue.Queue[Invocation] = queue.Queue()
        self._known: dict[str, Invocation] = {}
        self._current: Invocation | None = None
        self._thread = threading.Thread(target=self.serve_forever, name="runtime-api", daemon=True)
        if invocation is not None:
            self.submit(invocation)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet when the runtime went away mid-request (a worker stopped while it waited on ``/next``)."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def submit(self, invocation: Invocation) -> None:
        """Hand ``invocation`` to the runtime at its next ``/next``."""
        with self.lock:
            self._known[invocation.request_id] = invocation
        self._queue.put(invocation)

    def take(self) -> Invocation | None:
        """The next invocation, marked delivered (waits for one); None once the server closes."""
        self.waiting.set()
        while not self.closing.is_set():
            try:
                invocation = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            self.waiting.clear()
            with self.lock:
                invocation.delivered_at = time.time()
                self._current = invocation
            return invocation
        return None

    def find(self, request_id: str) -> Invocation | None:
        """A submitted invocation by its request id."""
        with self.lock:
            return self._known.get(request_id)

    def finish(self, invocation: Invocation) -> None:
        """Its outcome is recorded: forget it, tell whoever waits for it."""
        with self.lock:
            self._known.pop(invocation.request_id, None)
            if self._current is invocation:
                self._current = None
        invocation.finished.set()

    def current(self) -> Invocation | None:
        """The invocation delivered last, else the next one (an init error fails it)."""
        with self.lock:
            if self._current is not None and not self._current.finished.is_set():
                return self._current
        try:
            head: Invocation = self._queue.queue[0]
        except IndexError:
            return None
        return head

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
