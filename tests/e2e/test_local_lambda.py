"""local_lambda against a tiny handler: Lambda layout, environment, outcome, errors, timeout, CLI."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from local_lambda.built import BuildError, load_function
from local_lambda.runner import invoke, invoke_built
from local_lambda.runtime_api import Invocation, RuntimeApiServer

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]

BUILT_TEMPLATE = """\
Transform: AWS::Serverless-2016-10-31
Parameters:
  Timeout: {Type: Number, Default: 5}
Mappings:
  Names: {Store: {Prefix: state/}}
Globals:
  Function:
    Runtime: python%(minor)s
    Handler: app.lambda_handler
    Layers: [!Ref Lib]
    Environment:
      Variables:
        FROM_GLOBAL: g
        OVERRIDDEN: template
Resources:
  Echo:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: Echo
      Timeout: !Ref Timeout
      MemorySize: 256
      Environment:
        Variables:
          PREFIX: !FindInMap [Names, Store, Prefix]
          BUCKET: !Ref Bucket
  Slow:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: Echo
      Timeout: 1
  Broken:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: Broken
  Lib:
    Type: AWS::Serverless::LayerVersion
    Properties:
      ContentUri: Lib
  Bucket:
    Type: AWS::S3::Bucket
"""

ECHO_HANDLER = '''\
import importlib.util
import os
import sys
import time

import libmod

NAMES = ("FROM_GLOBAL", "OVERRIDDEN", "PREFIX", "BUCKET", "EXTRA", "AWS_LAMBDA_FUNCTION_NAME", "_HANDLER",
         "LAMBDA_TASK_ROOT", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_TIMEOUT", "AWS_REGION",
         "AWS_LAMBDA_RUNTIME_API")


def lambda_handler(event, context):
    if event.get("raise"):
        raise ValueError("boom")
    time.sleep(event.get("sleep", 0))
    return {
        "event": event,
        "env": {name: os.environ.get(name) for name in NAMES},
        "remaining_ms": context.get_remaining_time_in_millis(),
        "request_id": context.aws_request_id,
        "layer_module": libmod.__file__,
        "cwd": os.getcwd(),
        "dev_venv_visible": importlib.util.find_spec("pytest") is not None,
        "first_path": sys.path[0],
    }
'''


# with BUILT_TEMPLATE, conftest's build_dir: function code dirs, one layer with python/
BUILD_FILES = {
    "Echo/app.py": ECHO_HANDLER,
    "Broken/app.py": "import module_that_is_not_there\n",
    "Lib/python/libmod.py": "VALUE = 1\n",
}


def test_handler_runs_with_lambda_layout_and_environment(build_dir: Path, tmp_path: Path) -> None:
    # Given an env-vars file with a Parameters section and a function section, one of its variables
    # (EXTRA) declared by no function
    env_file = tmp_path / "env.json"
    env_file.write_text(json.dumps({"Parameters": {"EXTRA": "all", "PREFIX": "all/"},
                                    "Echo": {"OVERRIDDEN": "file"}}))
    log = io.StringIO()

    # When the function is invoked with an override of the region
    result = invoke_built(build_dir, "Echo", b'{"hello": "world"}', env_file, {"AWS_REGION": "eu-west-1"},
                          log_stream=log)

    # Then the handler saw the event, Lambda's variables and paths, and nothing of the dev venv; the file
    # set the declared variables only, as sam local invoke does (Parameters for every function, then the
    # function's section; a Ref to a resource is its logical id), and the dropped one is named in the log
    assert result.ok, result.error
    payload = result.payload
    assert payload["event"] == {"hello": "world"}
    assert "not declared by Echo in the template, dropped as sam local invoke drops them: EXTRA" in (
        log.getvalue())
    assert payload["env"] == {
        "FROM_GLOBAL": "g", "OVERRIDDEN": "file", "PREFIX": "all/", "BUCKET": "Bucket", "EXTRA": None,
        "AWS_LAMBDA_FUNCTION_NAME": "Echo", "_HANDLER": "app.lambda_handler",
        "LAMBDA_TASK_ROOT": str(build_dir / "Echo"), "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_LAMBDA_FUNCTION_TIMEOUT": "5", "AWS_REGION": "eu-west-1",
        "AWS_LAMBDA_RUNTIME_API": payload["env"]["AWS_LAMBDA_RUNTIME_API"],
    }
    assert payload["env"]["AWS_LAMBDA_RUNTIME_API"].startswith("127.0.0.1:")
    assert payload["layer_module"] == str(build_dir / "Lib" / "python" / "libmod.py")
    assert payload["cwd"] == str(build_dir / "Echo")
    assert payload["first_path"] == str(build_dir / "Echo")
    assert payload["dev_venv_visible"] is False
    assert 3000 < payload["remaining_ms"] <= 5000
    assert payload["request_id"] == result.request_id


def test_handler_exception_is_reported_as_function_error(build_dir: Path) -> None:
    # Given an event that makes the handler raise
    function = load_function(build_dir, "Echo")

    # When it is invoked
    result = invoke(function, b'{"raise": true}', log_stream=None)

    # Then the runtime's error document comes back, with the traceback in the logs
    assert not result.ok
    assert result.error is not None
    assert result.error["errorType"] == "ValueError"
    assert result.error["errorMessage"] == "boom"
    assert "ValueError" in result.logs


def test_import_failure_is_an_init_error(build_dir: Path) -> None:
    # Given a function whose module cannot be imported
    function = load_function(build_dir, "Broken")

    # When it is invoked
    result = invoke(function, b"{}", log_stream=None)

    # Then the error is the runtime's import error
    assert result.error is not None
    assert result.error["errorType"] == "Runtime.ImportModuleError"


def test_function_past_its_timeout_is_stopped(build_dir: Path) -> None:
    # Given a function with a 1 s timeout and an event that sleeps 3 s
    function = load_function(build_dir, "Slow")

    # When it is invoked
    result = invoke(function, b'{"sleep": 3}', log_stream=None)

    # Then it is reported as timed out, soon after its deadline
    assert result.error is not None
    assert result.error["errorType"] == "Sandbox.Timedout"
    assert result.duration_ms < 2900


def test_missing_build_is_a_clear_error(tmp_path: Path) -> None:
    # Given an empty build directory / When the function is loaded / Then the error says what to run
    with pytest.raises(BuildError, match="make build-local"):
        load_function(tmp_path, "Echo")


def test_cli_prints_result_and_exit_code(build_dir: Path, tmp_path: Path) -> None:
    # Given an event file that succeeds and one that fails
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text('{"n": 1}')
    bad.write_text('{"raise": true}')
    env = {**os.environ, "PYTHONPATH": str(REPO / "devtools")}

    def run(event: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "local_lambda", "invoke", "--function", "Echo", "--event", str(event),
             "--build-dir", str(build_dir), "--quiet"],
            capture_output=True, text=True, env=env, timeout=60, check=False,
        )

    # When each is invoked through the command line
    ok, failed = run(good), run(bad)

    # Then stdout is the result JSON and the exit status tells success from a function error
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["event"] == {"n": 1}
    assert "REPORT RequestId:" in ok.stderr
    assert failed.returncode == 1
    assert json.loads(failed.stdout)["errorMessage"] == "boom"


def test_runtime_api_next_carries_content_type_and_deadline() -> None:
    # Given a Runtime API server holding one event with a 7 s timeout
    arn = "arn:aws:lambda:local:123456789012:function:f"
    invocation = Invocation(event=b'{"k": 1}', function_arn=arn, timeout_seconds=7)
    with RuntimeApiServer(invocation) as server:
        base = f"http://{server.address}/2018-06-01/runtime/invocation"

        # When the runtime asks for the next event and answers it
        started = time.time()
        with urllib.request.urlopen(f"{base}/next", timeout=5) as response:
            headers, body = response.headers, response.read()
        url = f"{base}/{invocation.request_id}/response"
        answer = urllib.request.Request(url, data=b'"done"', method="POST")
        with urllib.request.urlopen(answer, timeout=5) as accepted:
            status = accepted.status

    # Then the event comes with a Content-Type (awslambdaric's C extension needs one), the request id and
    # a deadline 7 s ahead; the response is accepted and recorded
    assert body == b'{"k": 1}'
    assert headers["Content-Type"] == "application/json"
    assert headers["Lambda-Runtime-Aws-Request-Id"] == invocation.request_id
    assert abs(int(headers["Lambda-Runtime-Deadline-Ms"]) / 1000 - (started + 7)) < 1
    assert status == 202
    assert invocation.response == b'"done"'
    assert invocation.finished.is_set()
