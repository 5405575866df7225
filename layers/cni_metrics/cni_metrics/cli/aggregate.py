"""``cni-metrics aggregate``: aggregate saved aws-node payloads (one file = one node) like the collector.

Each file is one node's payload, identified by its file name, so a ``--previous`` state saved from one
directory matches the same names in the next. Files have no pod start time: a name not in the previous
state is a baseline (increase 0); a file that fails keeps its previous baseline. Exit status: 0 all
files parsed, 1 some file failed, 2 unusable ``--previous`` state.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cni_metrics.core.aggregate import aggregate
from cni_metrics.core.model import Aggregate, ClusterState, NodeInput
from cni_metrics.core.node import read_node_metrics
from cni_metrics.core.parser import PayloadError
from cni_metrics.core.state_codec import StateError, dump_state, load_state


def register(subparsers: Any) -> None:
    """Add the ``aggregate`` subcommand to the ``cni-metrics`` parser."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "aggregate",
        help="aggregate aws-node payload files",
        description=(
            "Aggregate saved aws-node payloads like the collector: each file (or each file in a directory) "
            "is one node, named by its file name, so --previous state from one directory matches the "
            "same names in the next. A name not in the previous state is a baseline (increase 0)."
        ),
        epilog="exit status: 0 all files parsed, 1 some file failed, 2 unusable --previous state",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", type=Path, help="payload file or directory")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.add_argument("--previous", type=Path, metavar="STATE", help="state saved by a previous run")
    parser.add_argument("--save-state", type=Path, metavar="STATE", help="write the new state here")
    parser.add_argument(
        "--exhaustion-threshold",
        type=float,
        default=90.0,
        metavar="PCT",
        help="IP utilisation (%%) at which a node is near exhaustion (default 90)",
    )
    parser.set_defaults(func=run)


def _files(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")))
        else:
            files.append(path)
    return files


def _read_nodes(files: list[Path]) -> tuple[list[NodeInput], list[dict[str, Any]], set[str]]:
    """Parsed nodes, errors (file, line, reason) and the keys of the files that failed."""
    nodes: list[NodeInput] = []
    errors: list[dict[str, Any]] = []
    failed: set[str] = set()
    keys: set[str] = set()
    for path in files:
        key = path.name if path.name not in keys else str(path)
        keys.add(key)
        try:
            metrics = read_node_metrics(path.read_bytes())
        except PayloadError as exc:
            errors.append({"file": str(path), "line": exc.line, "reason": exc.reason})
        except OSError as exc:
            errors.append({"file": str(path), "line": None, "reason": exc.strerror or str(exc)})
        else:
            nodes.append(NodeInput(key=key, name=key, metrics=metrics))
            continue
        failed.add(key)
    return nodes, errors, failed


def _load_previous(path: Path | None) -> ClusterState | None:
    if path is None:
        return None
    try:
        return load_state(path.read_bytes())
    except FileNotFoundError:
        print(f"note: {path} does not exist yet: first run, counters are baselined", file=sys.stderr)
        return None


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def json_number(value: float) -> float | int:
    """A number as the JSON reports print it: integral values as integers, others to 6 decimals."""
    return int(value) if value.is_integer() and abs(value) < 2**53 else round(value, 6)


def report(result: Aggregate, errors: list[dict[str, Any]]) -> dict[str, Any]:
    """The JSON document printed by ``--format json``."""
    return {
        "nodes": result.nodes,
        "nodesFailed": len(errors),
        "errors": errors,
        "metrics": {m.name: json_number(m.value) for m in result.metrics},
        "units": {m.name: m.unit for m in result.metrics},
        "counterTotals": {k: json_number(v) for k, v in result.counter_totals.items()},
    }


def _metric_table(doc: dict[str, Any]) -> str:
    lines = [f"nodes: {doc['nodes']}   failed: {doc['nodesFailed']}", ""]
    rows = [(name, str(value), doc["units"][name]) for name, value in doc["metrics"].items()]
    width = max([len("metric"), *(len(r[0]) for r in rows)])
    vwidth = max([len("value"), *(len(r[1]) for r in rows)])
    lines.append(f"{'metric':<{width}}  {'value':>{vwidth}}  unit")
    lines.extend(f"{n:<{width}}  {v:>{vwidth}}  {u}" for n, v, u in rows)
    if doc["counterTotals"]:
        lines += ["", "counter totals (cumulative, all nodes):"]
        lines.extend(f"  {name:<{width}}  {value}" for name, value in doc["counterTotals"].items())
    if doc["errors"]:
        lines += ["", "errors:"]
        lines.extend(f"  {e['file']}: line {e['line']}: {e['reason']}" for e in doc["errors"])
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run the subcommand; returns the exit status."""
    try:
        previous = _load_previous(args.previous)
    except (StateError, OSError) as exc:
        print(f"error: cannot use --previous {args.previous}: {exc}", file=sys.stderr)
        return 2
    nodes, errors, failed = _read_nodes(_files(args.paths))
    result = aggregate(
        nodes,
        previous,
        now=datetime.now(UTC),
        failed=dict.fromkeys(failed),
        exhaustion_threshold_pct=args.exhaustion_threshold,
    )
    if args.save_state is not None:
        _write_atomic(args.save_state, dump_state(result.state))
    doc = report(result, errors)
    print(json.dumps(doc, indent=2) if args.format == "json" else _metric_table(doc))
    return 1 if errors else 0
