"""`cni-metrics aggregate`: files as nodes, json/table output, --previous/--save-state."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest
from cni_metrics.cli import aggregate as cli
from cni_metrics.core.state_codec import load_state
from core_payloads import FIXTURE_NAMES, fixture, payload

ADD = "awscni_add_ip_req_count"


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="cni-metrics")
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["aggregate", *argv])
    code: int = args.func(args)
    return code, capsys.readouterr().out


def run_json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    code, out = run(["--format", "json", *argv], capsys)
    doc: dict[str, Any] = json.loads(out)
    return code, doc


def write_nodes(directory: Path, values: dict[str, float]) -> Path:
    directory.mkdir(exist_ok=True)
    for name, value in values.items():
        (directory / name).write_bytes(
            payload({"awscni_ip_max": 10, "awscni_assigned_ip_addresses": 4}, {ADD: value})
        )
    return directory


def test_fixture_directory_as_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # given the three fixture payloads copied into a directory
    for name in FIXTURE_NAMES:
        (tmp_path / name).write_bytes(fixture(name))
    # when aggregated without previous state
    code, doc = run_json([str(tmp_path)], capsys)
    # then gauges are summed (1 + 1 + 9 assigned), no increases, totals are cumulative sums
    assert code == 0
    assert (doc["nodes"], doc["nodesFailed"], doc["errors"]) == (3, 0, [])
    assert doc["metrics"]["assignIPAddresses"] == 11
    assert doc["metrics"]["maxIPAddresses"] == 15 + 15 + 30
    assert doc["metrics"]["awsAPILatency"] == 1
    assert "addReqCount" not in doc["metrics"]
    assert doc["counterTotals"]["addReqCount"] == 100 + 100 + 57
    assert doc["units"]["ipUtilization"] == "Percent"


def test_previous_and_save_state_give_per_node_increases(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # given two snapshots of the same two nodes: 10/20 then 13/25 (upstream's bug case)
    first = write_nodes(tmp_path / "t0", {"node-a": 10, "node-b": 20})
    second = write_nodes(tmp_path / "t1", {"node-a": 13, "node-b": 25})
    state = tmp_path / "state.json"
    # when the first run saves state and the second uses it
    code0, doc0 = run_json(["--save-state", str(state), str(first)], capsys)
    code1, doc1 = run_json(["--previous", str(state), "--save-state", str(state), str(second)], capsys)
    # then the second run publishes 3 + 5, and the state now holds the second values
    assert (code0, code1) == (0, 0)
    assert "addReqCount" not in doc0["metrics"]
    assert doc1["metrics"]["addReqCount"] == 8
    assert load_state(state.read_bytes()).pods["node-a"].counters == {ADD: 13}


def test_missing_previous_state_is_a_first_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nodes = write_nodes(tmp_path / "t0", {"a": 1})
    code, doc = run_json(["--previous", str(tmp_path / "none.json"), str(nodes)], capsys)
    assert code == 0
    assert doc["nodes"] == 1


def test_corrupt_previous_state_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state.json"
    state.write_text("{not json")
    code, out = run(["--previous", str(state), str(write_nodes(tmp_path / "t0", {"a": 1}))], capsys)
    assert code == 2
    assert out == ""


def test_bad_files_are_reported_and_the_rest_aggregated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # given one good file, one malformed on line 2, one missing
    good = tmp_path / "good"
    good.write_bytes(payload({"awscni_ip_max": 10}))
    bad = tmp_path / "bad"
    bad.write_bytes(b"# HELP x\nawscni_ip_max ten\n")
    # when aggregated
    code, doc = run_json([str(good), str(bad), str(tmp_path / "missing")], capsys)
    # then exit 1, the good node counts, errors name file, line and reason
    assert code == 1
    assert (doc["nodes"], doc["nodesFailed"]) == (1, 2)
    assert doc["errors"][0] == {"file": str(bad), "line": 2, "reason": "invalid value 'ten'"}
    assert doc["errors"][1]["file"] == str(tmp_path / "missing")
    assert doc["errors"][1]["line"] is None
    assert doc["metrics"]["maxIPAddresses"] == 10


def test_table_format_lists_metrics_totals_and_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nodes = write_nodes(tmp_path / "t0", {"a": 3, "b": 4})
    (nodes / "c").write_bytes(b"awscni_ip_max\n")
    code, out = run(["--exhaustion-threshold", "40", str(nodes)], capsys)
    assert code == 1
    assert "nodes: 2   failed: 1" in out
    assert any(line.split() == ["nodesNearIPExhaustion", "2", "Count"] for line in out.splitlines())
    assert any(line.split() == ["ipUtilization", "40", "Percent"] for line in out.splitlines())
    assert any(line.split() == ["addReqCount", "7"] for line in out.splitlines())
    assert f"{nodes / 'c'}: line 1: malformed sample line" in out


def test_same_file_name_in_two_directories_keeps_both_nodes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = write_nodes(tmp_path / "a", {"node": 1})
    b = write_nodes(tmp_path / "b", {"node": 2})
    _, doc = run_json([str(a), str(b)], capsys)
    assert doc["nodes"] == 2
    assert doc["counterTotals"]["addReqCount"] == 3


def test_failed_file_keeps_its_baseline_for_the_next_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # given node b is unreadable in the second snapshot and back at +4 in the third
    state = tmp_path / "state.json"
    run_json(["--save-state", str(state), str(write_nodes(tmp_path / "t0", {"a": 1, "b": 10}))], capsys)
    second = write_nodes(tmp_path / "t1", {"a": 2})
    (second / "b").write_bytes(b"awscni_add_ip_req_count{\n")
    code, doc1 = run_json(["--previous", str(state), "--save-state", str(state), str(second)], capsys)
    third = write_nodes(tmp_path / "t2", {"a": 2, "b": 14})
    _, doc2 = run_json(["--previous", str(state), str(third)], capsys)
    # then the failed run counts a's +1 only, and the next one b's +4 (not a baseline)
    assert code == 1
    assert doc1["metrics"]["addReqCount"] == 1
    assert doc2["metrics"]["addReqCount"] == 4
