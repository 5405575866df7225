"""A local stand-in for CloudFormation's response URL: an HTTPS server that records custom-resource answers.

A custom-resource function answers CloudFormation with a ``PUT`` of a JSON document (``Status``,
``PhysicalResourceId``, ``Reason``, ``RequestId``, ``Data``, ...) to the request's pre-signed
``ResponseURL``. crhelper only speaks HTTPS and verifies the certificate (``AWS_CA_BUNDLE`` names the
CA to trust), so the receiver serves a certificate for 127.0.0.1 and localhost from a CA of its own,
written to ``ca_file``.
"""

from __future__ import annotations

import json
import queue
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from fake_eks.certs import make_cluster_tls

# Where the sample custom-resource events (events/dashboard-*.json) send their answer: `make stand-ins`
# listens there; `make invoke` listens on a free port and points such a ResponseURL at it.
RECEIVER_HOSTS = ("127.0.0.1", "localhost", "host.docker.internal")
RECEIVER_PORT = 18443


class _Handler(BaseHTTPRequestHandler):
    server: CfnReceiver

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request access log."""

    def do_PUT(self) -> None:
        """Record one answer (its path and JSON body) and reply 200 as S3 does."""
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            document = json.loads(body)
        except ValueError:
            document = {"unparsable": body.decode(errors="replace")}
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
        self.server.answers.put({"path": self.path, "body": document})


class CfnReceiver(ThreadingHTTPServer):
    """Records the answers PUT to it, from a background thread, on 127.0.0.1:``port`` (0: a free one)."""

    daemon_threads = True

    def __init__(self, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        tls = make_cluster_tls("cloudformation-receiver")
        self.socket = tls.server_context().wrap_socket(self.socket, server_side=True)
        self._folder = tempfile.TemporaryDirectory(prefix="cfn-receiver-")
        self.ca_file = Path(self._folder.name) / "ca.pem"
        self.ca_file.write_text(tls.ca_pem)
        self.answers: queue.Queue[dict[str, Any]] = queue.Queue()
        self._thread = threading.Thread(target=self.serve_forever, name="cfn-receiver", daemon=True)

    @property
    def netloc(self) -> str:
        """``127.0.0.1:port``."""
        host, port = self.server_address[:2]
        return f"{host!s}:{port}"

    def next_answer(self, timeout: float) -> dict[str, Any] | None:
        """The oldest answer not yet taken (``{"path", "body"}``), waiting up to ``timeout`` s; else None."""
        try:
            return self.answers.get(timeout=timeout)
        except queue.Empty:
            return None

    def __enter__(self) -> CfnReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=5)
        self._folder.cleanup()
