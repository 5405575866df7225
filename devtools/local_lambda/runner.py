"""Run one invocation of a `sam build` function under the real runtime interface client (awslambdaric).

The layout is Lambda's: the function's build dir is the task root (``/var/task``) and the current
directory, each layer's ``python/`` dir stands where ``/opt/python`` would be, and the runtime client
comes from a directory of its own (``/var/runtime``). The interpreter starts with ``-S``, so nothing
from the development virtual environment is importable besides the runtime client: a dependency missing
from the layer fails here as it would in Lambda.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, MutableSequence
from dataclasses import dataclass
from importlib.metadata import distribution
from pathlib import Path
from typing import Any, TextIO

from local_lambda.built import BuildError, BuiltFunction, load_function
from local_lambda.runtime_api import Invocation, RuntimeApiServer

# Lambda allows 10 s for initialisation before it counts against the invocation.
INIT_SECONDS = 10.0
# Host variables passed through, as `sam local invoke` does (credentials are never printed).
PASSED_THROUGH = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
_RUNTIME_DISTRIBUTIONS = ("awslambdaric", "simplejson", "snapshot-restore-py")


@dataclass(frozen=True)
class InvokeResult:
    """Outcome of one invocation: the payload, or the error document the runtime reported."""

    request_id: str
    payload: Any
    error: dict[str, Any] | None
    logs: str
    duration_ms: float

    @property
    def ok(self) -> bool:
        """The handler returned normally."""
        return self.error is None


def read_env_file(path: Path | None, function: str) -> dict[str, str]:
    """Variables of a `sam local invoke --env-vars` file for ``function``: ``Parameters`` (every function's),
    then the section named by its logical id. `sam local invoke` applies only those the function declares
    (``declared_overrides``)."""
    if path is None:
        return {}
    document = json.loads(path.read_text())
    if not isinstance(document, dict):
        raise BuildError(f"{path}: expected a JSON object of function name -> variables")
    variables: dict[str, str] = {}
    for section in ("Parameters", function):
        values = document.get(section) or {}
        if not isinstance(values, dict):
            raise BuildError(f"{path}: {section} must be an object of variables")
        variables.update({str(key): _env_value(value) for key, value in values.items()})
    return variables


def declared_overrides(function: BuiltFunction,
                       variables: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """The env-vars file's ``variables`` that `sam local invoke` applies (the function declares them), and
    the names it drops."""
    kept = {name: value for name, value in variables.items() if name in function.environment}
    return kept, sorted(set(variables) - set(kept))


def _env_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def lambda_environment(function: BuiltFunction, runtime_dir: Path, api_address: str,
                       variables: Mapping[str, str], host: Mapping[str, str]) -> dict[str, str]:
    """The process environment Lambda would give ``function`` (its own variables, then ``variables``)."""
    env = {key: host[key] for key in PASSED_THROUGH if key in host}
    env.update(function.environment)
    env.update(variables)
    region = (env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or host.get("AWS_DEFAULT_REGION")
              or "us-east-1")
    opt_paths = []
    for layer in function.layer_dirs:
        opt_paths += [layer / "python" / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
                      / "site-packages", layer / "python"]
    env.update({
        "PATH": host.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "PYTHONPATH": os.pathsep.join(str(path) for path in (function.code_dir, *opt_paths, runtime_dir)),
        "LAMBDA_TASK_ROOT": str(function.code_dir),
        "LAMBDA_RUNTIME_DIR": str(runtime_dir),
        "_HANDLER": function.handler,
        "AWS_LAMBDA_RUNTIME_API": api_address,
        "AWS_LAMBDA_FUNCTION_NAME": function.name,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_mb),
        "AWS_LAMBDA_FUNCTION_TIMEOUT": str(function.timeout_seconds),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{function.name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": time.strftime("%Y/%m/%d/[$LATEST]") + "local",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_EXECUTION_ENV": f"AWS_Lambda_{function.runtime}",
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
    })
    return env


def check_compatible(function: BuiltFunction) -> None:
    """Refuse a build this interpreter cannot run (other Python version, other CPU architecture)."""
    here = f"python{sys.version_info.major}.{sys.version_info.minor}"
    if function.runtime != here:
        raise BuildError(f"{function.name} targets {function.runtime}, this interpreter is {here}")
    machine = platform.machine().lower()
    foreign = "x86_64" if machine in ("aarch64", "arm64") else "aarch64"
    for directory in (function.code_dir, *function.layer_dirs):
        for library in directory.rglob(f"*{foreign}-linux-gnu.so"):
            raise BuildError(f"{library} is built for {foreign}, this machine is {machine}: "
                             "build for this machine with `make build-local`")


def link_runtime_client(target: Path) -> None:
    """Make ``target`` hold only the runtime client and its dependencies (Lambda's ``/var/runtime``)."""
    for name in _RUNTIME_DISTRIBUTIONS:
        dist = distribution(name)
        tops = {Path(str(file)).parts[0] for file in dist.files or ()}
        for top in sorted(tops):
            if top.endswith(".dist-info") or top in ("..", "__pycache__"):
                continue
            source = Path(str(dist.locate_file(top)))
            if source.exists() and not (target / top).exists():
                (target / top).symlink_to(source)


def invoke(function: BuiltFunction, event: bytes, variables: Mapping[str, str] | None = None,
           log_stream: TextIO | None = sys.stderr) -> InvokeResult:
    """Run ``function`` once on ``event`` and return what the runtime reported."""
    check_compatible(function)
    json.loads(event)  # Lambda only accepts JSON events
    arn = f"arn:aws:lambda:local:123456789012:function:{function.name}"
    invocation = Invocation(event=event, function_arn=arn, timeout_seconds=function.timeout_seconds)
    with tempfile.TemporaryDirectory(prefix="lambda-") as runtime, RuntimeApiServer(invocation) as server:
        runtime_dir = Path(runtime)
        link_runtime_client(runtime_dir)
        started = time.monotonic()
        process = start_runtime(function, runtime_dir, server.address, variables or {})
        lines: list[str] = []
        reader = threading.Thread(target=pump, args=(process.stdout, lines, log_stream), daemon=True)
        reader.start()
        try:
            timeout_error = wait_outcome(invocation, process, started)
        finally:
            stop_runtime(process)
            reader.join(timeout=5)
        duration_ms = (time.monotonic() - started) * 1000
    error = timeout_error or invocation.error
    payload = None
    if error is None and invocation.response is not None:
        payload = json.loads(invocation.response) if invocation.response else None
    return InvokeResult(request_id=invocation.request_id, payload=payload, error=error,
                        logs="".join(lines), duration_ms=duration_ms)


def start_runtime(function: BuiltFunction, runtime_dir: Path, api_address: str,
                  variables: Mapping[str, str]) -> subprocess.Popen[str]:
    """The runtime client for ``function`` (``python -S -m awslambdaric``), talking to ``api_address``;
    its output (stdout and stderr, as Lambda sends both to the log group) on ``stdout``."""
    env = lambda_environment(function, runtime_dir, api_address, variables, os.environ)
    return subprocess.Popen(
        [sys.executable, "-S", "-m", "awslambdaric", function.handler],
        cwd=function.code_dir, env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
    )


def wait_outcome(
    invocation: Invocation, process: subprocess.Popen[str], started: float
) -> dict[str, Any] | None:
    """Wait for the outcome; an error document when the function timed out or the runtime died."""
    while not invocation.finished.wait(0.05):
        if process.poll() is not None and not invocation.finished.wait(0.5):
            return {"errorType": "Runtime.ExitError",
                    "errorMessage": f"Runtime exited with error: exit status {process.returncode}"}
        delivered = invocation.delivered_at
        if delivered is None:
            if time.monotonic() - started > INIT_SECONDS + invocation.timeout_seconds:
                return {"errorType": "Runtime.InitTimeout",
                        "errorMessage": "Runtime did not ask for the event before the timeout"}
        elif time.time() > delivered + invocation.timeout_seconds:
            return {"errorType": "Sandbox.Timedout",
                    "errorMessage": f"Task timed out after {invocation.timeout_seconds:.2f} seconds"}
    return None


def stop_runtime(process: subprocess.Popen[str]) -> None:
    """End the runtime (after the outcome it waits for the next event forever)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def pump(stream: TextIO | None, lines: MutableSequence[str], echo: TextIO | None) -> None:
    """Collect the function's output (stdout and stderr, as Lambda sends both to its log group)."""
    if stream is None:
        return
    for line in stream:
        lines.append(line)
        if echo is not None:
            echo.write(line)
            echo.flush()


def invoke_built(build_dir: Path, function_name: str, event: bytes, env_file: Path | None = None,
                 overrides: Mapping[str, str] | None = None, log_stream: TextIO | None = sys.stderr
                 ) -> InvokeResult:
    """``invoke`` for ``function_name`` of ``build_dir``: the env-vars file's variables the function
    declares (as `sam local invoke --env-vars`; the others are dropped, with a note), then ``overrides``
    (any variable: they stand for the shell and the container, e.g. credentials)."""
    overrides = dict(overrides or {})
    region = overrides.get("AWS_REGION") or overrides.get("AWS_DEFAULT_REGION") or "us-east-1"
    function = load_function(build_dir, function_name, region=region)
    applied, dropped = declared_overrides(function, read_env_file(env_file, function_name))
    if dropped and log_stream is not None:
        log_stream.write(f"local_lambda: {env_file}: not declared by {function_name} in the template, "
                         f"dropped as sam local invoke drops them: {', '.join(dropped)}\n")
    return invoke(function, event, {**applied, **overrides}, log_stream)
