"""Lambda's Invoke API on loopback for `sam build` functions, run by warm pools of runtime processes.

``InvokeApi(build_dir, {"CollectorFunction": PoolConfig(size=8)}, variables=...)`` serves
``POST /2015-03-31/functions/{name}/invocations`` (what boto3's ``invoke`` sends; point it here with
``AWS_ENDPOINT_URL_LAMBDA=invoke_api.url``). ``{name}`` is a function's logical id, or an ARN ending in it.

- ``X-Amz-Invocation-Type: Event``: 202 at once, the event queued. Each function has a pool of ``size`` warm
  worker processes (the built artifact under awslambdaric, as ``runner.invoke`` runs it, each with its own
  Runtime API server, initialised before the pool is ready); the pool size plays the reserved concurrency:
  events beyond it wait in the queue, as Lambda keeps throttled asynchronous events and retries them. A
  worker takes the oldest event; one that waited longer than ``max_event_age_seconds`` is not run but goes
  to the on-failure destination (condition ``EventAgeExceeded``). One that fails or times out runs again
  up to ``max_retry_attempts`` times (the template's ``MaximumRetryAttempts``: 0 by default), each after
  ``retry_delays_seconds`` (Lambda waits about a minute, then two) and still subject to the maximum age
  counted from its arrival; then it goes to the destination (``RetriesExhausted``).
  Destination records have Lambda's shape (``version``, ``requestContext``, ``requestPayload``,
  ``responseContext``, ``responsePayload``): ``InvokeApi.on_failure``, and a JSON line each in
  ``on_failure_file`` when given.
- ``RequestResponse`` (the default): run on the same pool; 200 with the handler's payload, or with
  ``X-Amz-Function-Error: Unhandled`` and the error document. ``DryRun``: 204.
- An unknown function: 404 ``ResourceNotFoundException``; a payload over Lambda's limit (1 MB Event, 6 MB
  RequestResponse): 413 ``RequestEntityTooLargeException``.

A worker that times out or dies is replaced by a new (cold) process. Every worker gets
``AWS_ENDPOINT_URL_LAMBDA`` pointing at this API (unless ``variables`` set it), so a function invoking
another (the fleet dispatcher the collector) goes through it too. ``Record``s say what ran when, where (the
worker's pid) and how; ``wait_idle`` waits for the queues to drain.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal, TextIO
from urllib.parse import unquote, urlsplit

from local_lambda.built import BuildError, BuiltFunction, load_function
from local_lambda.runner import (
    check_compatible,
    declared_overrides,
    link_runtime_client,
    pump,
    read_env_file,
    start_runtime,
    stop_runtime,
    wait_outcome,
)
from local_lambda.runtime_api import Invocation, RuntimeApiServer

MAX_EVENT_PAYLOAD = 1024 * 1024
MAX_SYNC_PAYLOAD = 6 * 1024 * 1024
# How long a new worker may take to initialise (import its handler) before the pool gives up on it.
WORKER_INIT_SECONDS = 60.0
_PATH_PREFIX, _PATH_SUFFIX = "/2015-03-31/functions/", "/invocations"
InvocationType = Literal["Event", "RequestResponse"]


@dataclass(frozen=True)
class PoolConfig:
    """One function's pool: its warm workers (the reserved concurrency), its asynchronous settings, and
    optionally another timeout than the template's (Lambda allows up to 900 s)."""

    size: int = 1
    max_event_age_seconds: float = 60.0
    timeout_seconds: int | None = None
    max_retry_attempts: int = 0
    """A failed Event invocation is run again up to this many times (the template's MaximumRetryAttempts)."""
    retry_delays_seconds: tuple[float, ...] = (60.0, 120.0)
    """The wait before each retry (Lambda: about one minute, then two); the last one repeats."""


@dataclass
class Record:
    """One invocation as the pool handled it (monotonic times)."""

    function: str
    invocation_type: InvocationType
    event: bytes
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    enqueued_at: float = field(default_factory=time.monotonic)
    started_at: float | None = None
    ended_at: float | None = None
    worker: int | None = None
    """The pid of the worker process that ran it."""
    payload: Any = None
    error: dict[str, Any] | None = None
    condition: str | None = None
    """Why it went to the on-failure destination (``EventAgeExceeded``, ``RetriesExhausted``), else None."""
    attempts: int = 0
    """How many times it ran (a failed Event invocation runs again up to ``max_retry_attempts`` times)."""
    done: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def seconds(self) -> float | None:
        """How long it ran (None: it did not)."""
        return None if self.started_at is None or self.ended_at is None else self.ended_at - self.started_at

    @property
    def waited(self) -> float | None:
        """How long it waited in the queue (None: not taken yet)."""
        return None if self.started_at is None else self.started_at - self.enqueued_at


class Worker:
    """One warm runtime process of a function, with its own Runtime API server."""

    def __init__(self, function: BuiltFunction, variables: Mapping[str, str], log: TextIO | None) -> None:
        self.function = function
        self._runtime_dir = Path(tempfile.mkdtemp(prefix="lambda-worker-"))
        link_runtime_client(self._runtime_dir)
        self._server = RuntimeApiServer().__enter__()
        self.started = time.monotonic()
        self.process = start_runtime(function, self._runtime_dir, self._server.address, variables)
        self.lines: deque[str] = deque(maxlen=200)
        self._reader = threading.Thread(target=pump, args=(self.process.stdout, self.lines, log),
                                        daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        """The runtime process's pid."""
        return self.process.pid

    def ready(self, timeout: float) -> bool:
        """Whether it initialised (it waits for its first event) within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not self._server.waiting.wait(0.1):
            if self.process.poll() is not None or time.monotonic() > deadline:
                return False
        return True

    def run(self, event: bytes) -> tuple[Any, dict[str, Any] | None, bool]:
        """Run one event: (payload, error document or None, whether the worker is still usable)."""
        arn = f"arn:aws:lambda:local:123456789012:function:{self.function.name}"
        invocation = Invocation(event=event, function_arn=arn, timeout_seconds=self.function.timeout_seconds)
        self._server.submit(invocation)
        broken = wait_outcome(invocation, self.process, time.monotonic())
        error = broken or invocation.error
        payload = None
        if error is None and invocation.response:
            payload = json.loads(invocation.response)
        return payload, error, broken is None

    def stop(self) -> None:
        """End the process and the server; remove its runtime directory."""
        stop_runtime(self.process)
        self._reader.join(timeout=5)
        self._server.__exit__(None, None, None)
        shutil.rmtree(self._runtime_dir, ignore_errors=True)


class Pool:
    """A function's warm workers and its queue of invocations."""

    def __init__(self, function: BuiltFunction, config: PoolConfig, variables: Mapping[str, str],
                 on_failure: Callable[[Record], None], log: TextIO | None) -> None:
        if config.size < 1:
            raise ValueError(f"{function.name}: a pool of at least one worker")
        self.function, self.config = function, config
        self._variables, self._on_failure, self._log = dict(variables), on_failure, log
        self._queue: queue.Queue[Record | None] = queue.Queue()
        self._pending = 0
        self._idle = threading.Condition()
        self._timers: list[threading.Timer] = []
        self.records: list[Record] = []
        self.workers: list[Worker] = [Worker(function, variables, log) for _ in range(config.size)]
        for worker in self.workers:
            if not worker.ready(WORKER_INIT_SECONDS):
                output = "".join(worker.lines)[-2000:]
                self.close()
                raise BuildError(f"{function.name}: a worker did not initialise: {output}")
        self._threads = [threading.Thread(target=self._serve, args=(slot,), daemon=True)
                         for slot in range(config.size)]
        for thread in self._threads:
            thread.start()

    def submit(self, record: Record) -> None:
        """Queue an invocation (a free worker takes the oldest)."""
        with self._idle:
            self._pending += 1
            self.records.append(record)
        self._queue.put(record)

    def wait_idle(self, timeout: float) -> bool:
        """Whether every queued invocation ended within ``timeout`` seconds."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def _serve(self, slot: int) -> None:
        while (record := self._queue.get()) is not None:
            retrying = False
            try:
                retrying = self._run(slot, record)
            finally:
                if not retrying:
                    record.done.set()
                    with self._idle:
                        self._pending -= 1
                        self._idle.notify_all()

    def _run(self, slot: int, record: Record) -> bool:
        """Run ``record`` on the slot's worker; True when it was queued again for a retry."""
        age = time.monotonic() - record.enqueued_at  # Lambda counts an event's age across its retries
        if record.invocation_type == "Event" and age > self.config.max_event_age_seconds:
            record.condition = "EventAgeExceeded"
            self._on_failure(record)
            return False
        worker = self.workers[slot]
        record.started_at, record.worker = time.monotonic(), worker.pid
        record.attempts += 1
        record.payload, record.error, usable = worker.run(record.event)
        record.ended_at = time.monotonic()
        if not usable:  # timed out or died: Lambda recycles the environment
            worker.stop()
            self.workers[slot] = Worker(self.function, self._variables, self._log)
            self.workers[slot].ready(WORKER_INIT_SECONDS)
        if record.error is None or record.invocation_type != "Event":
            return False
        if record.attempts <= self.config.max_retry_attempts:
            self._retry_later(record)
            return True
        record.condition = "RetriesExhausted"
        self._on_failure(record)
        return False

    def _retry_later(self, record: Record) -> None:
        """Queue ``record`` again after this attempt's delay (it stays pending meanwhile)."""
        delays = self.config.retry_delays_seconds or (0.0,)
        delay = delays[min(record.attempts, len(delays)) - 1]
        timer = threading.Timer(delay, self._queue.put, args=(record,))
        timer.daemon = True
        with self._idle:
            self._timers = [t for t in self._timers if t.is_alive()] + [timer]
        timer.start()

    def close(self) -> None:
        """Stop taking invocations (and retries still waiting) and end every worker."""
        for timer in getattr(self, "_timers", ()):
            timer.cancel()
        for _ in getattr(self, "_threads", ()):
            self._queue.put(None)
        for thread in getattr(self, "_threads", ()):
            thread.join(timeout=WORKER_INIT_SECONDS)
        for worker in self.workers:
            worker.stop()


def destination_record(record: Record, function_arn: str) -> dict[str, Any]:
    """Lambda's on-failure destination record for an asynchronous invocation."""
    document: dict[str, Any] = {
        "version": "1.0",
        "timestamp": datetime.now(UTC).isoformat(),
        "requestContext": {"requestId": record.request_id, "functionArn": f"{function_arn}:$LATEST",
                           "condition": record.condition,
                           "approximateInvokeCount": record.attempts},
        "requestPayload": json.loads(record.event),
    }
    if record.started_at is not None:
        document["responseContext"] = {"statusCode": 200, "executedVersion": "$LATEST",
                                       "functionError": "Unhandled"}
        document["responsePayload"] = record.error
    return document


class InvokeApi:
    """The Invoke API for the given functions of a build, each with its pool (a context manager)."""

    def __init__(self, build_dir: Path, pools: Mapping[str, PoolConfig], *, env_file: Path | None = None,
                 variables: Mapping[str, str] | None = None, on_failure_file: Path | None = None,
                 log: TextIO | None = None, port: int = 0) -> None:
        self.on_failure: list[dict[str, Any]] = []
        self._on_failure_file = on_failure_file
        self._lock = threading.Lock()
        self.pools: dict[str, Pool] = {}
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler(self))  # bound: its URL is known
        self._server.daemon_threads = True
        overrides = {"AWS_ENDPOINT_URL_LAMBDA": self.url, **(variables or {})}
        region = overrides.get("AWS_REGION") or overrides.get("AWS_DEFAULT_REGION") or "us-east-1"
        try:
            for name, config in pools.items():
                function = load_function(build_dir, name, region=region)
                if config.timeout_seconds is not None:
                    function = replace(function, timeout_seconds=config.timeout_seconds)
                check_compatible(function)
                applied, _ = declared_overrides(function, read_env_file(env_file, name))
                self.pools[name] = Pool(function, config, {**applied, **overrides}, self._failed, log)
        except BaseException:
            self.close()
            raise
        self._thread = threading.Thread(target=self._server.serve_forever, name="invoke-api", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``: the value of AWS_ENDPOINT_URL_LAMBDA."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def records(self, function: str) -> list[Record]:
        """Every invocation of ``function`` so far, in arrival order."""
        return list(self.pools[function].records)

    def wait_idle(self, timeout: float) -> bool:
        """Whether every pool drained within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        return all(pool.wait_idle(max(0.0, deadline - time.monotonic())) for pool in self.pools.values())

    def invoke(self, function: str, event: bytes, invocation_type: InvocationType) -> Record:
        """Queue an invocation of ``function`` (what a request does; ``RequestResponse`` callers wait on
        ``record.done``)."""
        record = Record(function, invocation_type, event)
        self.pools[function].submit(record)
        return record

    def _failed(self, record: Record) -> None:
        document = destination_record(record, f"arn:aws:lambda:local:123456789012:function:{record.function}")
        with self._lock:
            self.on_failure.append(document)
            if self._on_failure_file is not None:
                with self._on_failure_file.open("a") as out:
                    out.write(json.dumps(document, default=str) + "\n")

    def function_of(self, path: str) -> str | None:
        """The pool a request path names (logical id, or an ARN / partial ARN ending in it), else None."""
        raw = urlsplit(path).path
        if not (raw.startswith(_PATH_PREFIX) and raw.endswith(_PATH_SUFFIX)):
            return None
        name = unquote(raw[len(_PATH_PREFIX):-len(_PATH_SUFFIX)])
        if name.startswith("arn:") or ":function:" in name or name.startswith("function:"):
            name = name.split("function:", 1)[1].split(":", 1)[0]
        return name if name in self.pools else None

    def close(self) -> None:
        """Stop serving and end every worker."""
        if getattr(self, "_thread", None) is not None:
            self._server.shutdown()
        self._server.server_close()
        for pool in self.pools.values():
            pool.close()

    def __enter__(self) -> InvokeApi:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _handler(api: InvokeApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            kind = self.headers.get("X-Amz-Invocation-Type") or "RequestResponse"
            function = api.function_of(self.path)
            if function is None:
                self._error(404, "ResourceNotFoundException", f"Function not found: {self.path}")
                return
            limit = MAX_EVENT_PAYLOAD if kind == "Event" else MAX_SYNC_PAYLOAD
            if len(body) > limit:
                self._error(413, "RequestEntityTooLargeException",
                            f"{len(body)} bytes exceeds the maximum allowed payload size ({limit} bytes)")
                return
            try:
                json.loads(body or b"{}")
            except ValueError:
                self._error(400, "InvalidRequestContentException", "Could not parse request body into json")
                return
            if kind == "DryRun":
                self._send(204, b"", {})
            elif kind == "Event":
                record = api.invoke(function, body or b"{}", "Event")
                self._send(202, b"", {"x-amzn-RequestId": record.request_id})
            elif kind == "RequestResponse":
                self._sync(api.invoke(function, body or b"{}", "RequestResponse"))
            else:
                self._error(400, "InvalidParameterValueException", f"X-Amz-Invocation-Type {kind}")

        def _sync(self, record: Record) -> None:
            record.done.wait()
            headers = {"x-amzn-RequestId": record.request_id, "X-Amz-Executed-Version": "$LATEST"}
            if record.error is not None:
                headers["X-Amz-Function-Error"] = "Unhandled"
                self._send(200, json.dumps(record.error).encode(), headers)
            else:
                self._send(200, json.dumps(record.payload).encode(), headers)

        def _error(self, status: int, error_type: str, message: str) -> None:
            body = json.dumps({"Type": "User", "message": message}).encode()
            headers = {"x-amzn-ErrorType": error_type, "x-amzn-RequestId": str(uuid.uuid4())}
            self._send(status, body, headers)

        def _send(self, status: int, body: bytes, headers: Mapping[str, str]) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


def worker_cpu_seconds(pids: Iterable[int]) -> float:
    """CPU seconds (user + system) the processes have used so far (those that still exist)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total

