"""``python -m mutate [module ...] [--timeout S]``: mutation score of core modules against their unit tests.

Without modules, every module of ``TARGETS``. Prints each mutant as it is judged, then per module the
score (killed / (mutants - equivalent)), the surviving mutants and the equivalent ones with their reasons.
Exits 1 when a module scores below ``--min-score`` (default 95).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from mutate.equivalent import EQUIVALENT
from mutate.runner import Outcome, Report, preload, run_module

ROOT = Path(__file__).resolve().parents[2]
CORE = "layers/cni_metrics/cni_metrics/core"
# module -> the pytest arguments of its own unit tests (run from the repository root)
TARGETS: dict[str, tuple[str, ...]] = {
    f"{CORE}/aggregate.py": (
        "tests/unit/test_aggregate.py",
        "tests/unit/test_aggregate_properties.py",
        "tests/unit/test_counter_model.py::test_core_publishes_exactly_the_models_increments",
    ),
    f"{CORE}/state_codec.py": ("tests/unit/test_state_codec.py",),
    f"{CORE}/node.py": (
        "tests/unit/test_node.py",
        "tests/unit/test_parser.py",
        "tests/unit/test_parser_quick_scan.py",
        "tests/unit/test_parser_properties.py",
    ),
    f"{CORE}/metric_sets.py": ("tests/unit/test_metric_sets.py",),
}


def _print_progress(done: int, total: int, outcome: Outcome) -> None:
    m = outcome.mutation
    line = f"[{done:3d}/{total}] {outcome.result:8s} line {m.line:4d} {m.key} ({outcome.seconds:.1f} s)"
    print(line, flush=True)


def _summary(report: Report) -> str:
    total = len(report.outcomes)
    equivalent = report.equivalent_survivors
    lines = [
        f"{report.module}: {report.killed}/{total - len(equivalent)} killed = {report.score:.1f} % "
        f"({total} mutants, {len(equivalent)} equivalent)"
    ]
    for outcome in report.survivors:
        mutation = outcome.mutation
        lines.append(f"  SURVIVED line {mutation.line}: {mutation.key}    | {outcome.source_line}")
    for outcome in equivalent:
        reason = report.equivalent[outcome.mutation.key]
        lines.append(f"  equivalent line {outcome.mutation.line}: {outcome.mutation.key}: {reason}")
    stale = set(report.equivalent) - {o.mutation.key for o in equivalent}
    lines.extend(f"  (listed as equivalent but killed or gone: {key})" for key in sorted(stale))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run, print, and return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m mutate", description=__doc__)
    parser.add_argument("modules", nargs="*", help=f"modules (default: {', '.join(TARGETS)})")
    parser.add_argument("--timeout", type=float, help="seconds per mutant (default: 3x the first run + 10)")
    parser.add_argument("--min-score", type=float, default=95.0)
    args = parser.parse_args(argv)
    modules = args.modules or list(TARGETS)
    unknown = [m for m in modules if m not in TARGETS]
    if unknown:
        parser.error(f"no unit tests configured for {', '.join(unknown)}")
    os.chdir(ROOT)  # the tests' paths are relative to the repository root
    preload([ROOT / "devtools", ROOT / "tests" / "unit", ROOT / "tests" / "fake_eks"])
    reports = []
    for module in modules:
        print(f"== {module}", flush=True)
        reports.append(
            run_module(
                ROOT, ROOT / module, TARGETS[module], equivalent=EQUIVALENT.get(module, {}),
                timeout=args.timeout, progress=_print_progress,
            )
        )  # fmt: skip
    print()
    for report in reports:
        print(_summary(report))
    return 0 if all(report.score >= args.min_score for report in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
