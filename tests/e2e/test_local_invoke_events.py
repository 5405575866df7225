"""`make invoke EVENT=events/<file>.json` on every sample event.

Each runs the very command make runs (read from ``make -n``: the function chosen by the file's name,
events/env.json, fresh stand-ins of the demo scenario) on the local build (`make build-local`), in a
runtime process of its own. A custom-resource event's output is the answer the stand-ins' HTTPS receiver
got from the function, which must echo the request and carry the dashboard name as physical id.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
from local_lambda.built import BuildError, load_function
from local_lambda.runner import read_env_file

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
BUILD_DIR = REPO / ".aws-sam" / "local" / "build"
ENV_FILE = REPO / "events" / "env.json"
EVENTS = sorted(path for path in [*(REPO / "events").glob("*.json"), *(REPO / "events").glob("*/*.json")]
                if not path.name.startswith("env"))


@pytest.fixture(scope="module")
def built() -> None:
    """The local build must exist (make e2e / make test run `make build-local` first)."""
    for function in ("CollectorFunction", "DashboardFunction", "DispatcherFunction"):
        try:
            load_function(BUILD_DIR, function)
        except BuildError as error:
            pytest.fail(f"{error} (run `make build-local`)")


def _make_invoke_command(event: Path) -> list[str]:
    """The local_lambda command of `make invoke EVENT=<event>`, as `make -n` prints it."""
    done = subprocess.run(["make", "-n", "-s", "invoke", f"EVENT={event.relative_to(REPO)}"], cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=True)
    lines = done.stdout.replace("\\\n", " ").splitlines()
    (line,) = [line for line in lines if " -m local_lambda invoke " in line]
    return shlex.split(line)


def _function_of(command: list[str]) -> str:
    return command[command.index("--function") + 1]


@pytest.mark.parametrize("event", EVENTS, ids=[path.stem for path in EVENTS])
def test_make_invoke_runs_the_sample_event(built: None, event: Path) -> None:
    # Given the command `make invoke EVENT=<event>` runs, and the event
    command = _make_invoke_command(event)
    function = _function_of(command)
    document: dict[str, Any] = json.loads(event.read_text())
    chosen = sorted(document.get("clusters") or read_env_file(ENV_FILE, function)["CLUSTER_NAMES"].split(","))
    collector_env = read_env_file(ENV_FILE, "CollectorFunction")

    # When it runs
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)

    # Then it exits 0 and prints the outcome, with no credential of the stand-ins in it
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    output = json.loads(done.stdout)
    assert "fake-eks-secret-access-key" not in done.stdout + done.stderr
    if function == "CollectorFunction":
        # the collector's summary: every cluster the event chose (all configured ones without a choice)
        assert output["ok"] is True
        assert sorted(c["cluster"] for c in output["clusters"]) == chosen
        assert all(c["status"] == "ok" and c["nodes"] > 0 for c in output["clusters"]), output
    elif function == "DispatcherFunction":
        # the dispatcher's result, then what its Event invocations of the collector (through the local
        # Invoke API) did: the fleet document the stand-ins wrote names each cluster of the scenario, so
        # every configured cluster is dispatched once and collected, with nothing on the on-failure record
        assert output["dispatcher"]["clusters"] == output["dispatcher"]["dispatched"] == len(chosen)
        assert output["dispatcher"]["failed"] == output["dispatcher"]["problems"] == []
        collected = [c for run in output["collector"] for c in run["clusters"]]
        assert sorted(c["cluster"] for c in collected) == chosen
        assert all(c["status"] == "ok" and c["nodes"] > 0 for c in collected), collected
        assert output["onFailure"] == []
        assert collector_env["STATE_BUCKET"] == read_env_file(ENV_FILE, function)["STATE_BUCKET"]
    elif "RequestType" in document:
        # the answer CloudFormation would get: SUCCESS for this request, physical id = the dashboard name
        assert function == "DashboardFunction"
        assert output["Status"] == "SUCCESS", output
        for key in ("RequestId", "StackId", "LogicalResourceId"):
            assert output[key] == document[key], key
        name = document["ResourceProperties"]["DashboardName"]
        assert output["PhysicalResourceId"] == document.get("PhysicalResourceId", name) == name
    else:
        # the dashboard run's summary: the event's clusters (all configured ones on the schedule), put
        assert function == "DashboardFunction"
        assert output["clusters"] == chosen
        assert output["dashboards"]["put"] == ["cni-metrics"]
