"""Run a module's unit tests against each of its mutants, each in a forked child with a time limit.

The layer is copied once to a temporary directory that comes first on the child's ``sys.path`` (ahead of
the editable install), and the mutated module is written there; the working tree is never touched. The
parent imports pytest, hypothesis and the tests' heavy third-party modules once, but no ``cni_metrics``
module, so every child imports the copy. A child that fails (a test failed, or the mutant does not even
import) kills its mutant; one still running at the time limit is killed and so is its mutant.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mutate.operators import Mutation, mutant, mutations

PRELOAD = ("pytest", "hypothesis", "boto3", "botocore.session", "prometheus_client", "fake_eks.testing")


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one mutant went: ``killed`` by a failing test, ``timeout``, or ``survived``."""

    mutation: Mutation
    result: str
    seconds: float
    source_line: str


@dataclass(slots=True)
class Report:
    """Every mutant of one module and how it went; ``equivalent``: surviving keys known to be equivalent."""

    module: str
    outcomes: list[Outcome] = field(default_factory=list)
    equivalent: dict[str, str] = field(default_factory=dict)

    @property
    def survivors(self) -> list[Outcome]:
        """Surviving mutants not known to be equivalent."""
        return [o for o in self.outcomes if o.result == "survived" and o.mutation.key not in self.equivalent]

    @property
    def equivalent_survivors(self) -> list[Outcome]:
        """Surviving mutants listed as equivalent (with why)."""
        return [o for o in self.outcomes if o.result == "survived" and o.mutation.key in self.equivalent]

    @property
    def killed(self) -> int:
        """Mutants a test killed (or that timed out)."""
        return sum(1 for o in self.outcomes if o.result != "survived")

    @property
    def score(self) -> float:
        """killed / (mutants - equivalent ones), in percent."""
        scored = len(self.outcomes) - len(self.equivalent_survivors)
        return 100.0 * self.killed / scored if scored else 100.0


def preload(extra_paths: Sequence[Path]) -> None:
    """Import what every child needs once, in the parent (never ``cni_metrics``)."""
    sys.path[:0] = [str(path) for path in extra_paths]
    for name in PRELOAD:
        __import__(name)
    if any(name == "cni_metrics" or name.startswith("cni_metrics.") for name in sys.modules):
        raise RuntimeError("cni_metrics was imported before forking: the mutants would not be used")


def _run_child(package_root: Path, pytest_args: Sequence[str], log: Path, limit: float) -> str:
    """Run pytest in a forked child with ``package_root`` first on sys.path: passed, failed or timeout."""
    pid = os.fork()
    if pid == 0:  # the child: its own process group, output to the log, exit with pytest's status
        code = 70
        try:
            os.setpgid(0, 0)
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            sys.path.insert(0, str(package_root))
            import pytest

            options = ["-x", "-q", "-p", "no:cacheprovider", "-p", "mutate.plugin"]
            code = int(pytest.main([*options, *pytest_args]))
        finally:
            os._exit(code)
    deadline = time.monotonic() + limit
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return "passed" if os.waitstatus_to_exitcode(status) == 0 else "failed"
        if time.monotonic() > deadline:
            os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return "timeout"
        time.sleep(0.02)


def run_module(
    root: Path,
    module: Path,
    pytest_args: Sequence[str],
    *,
    equivalent: dict[str, str],
    timeout: float | None = None,
    progress: Callable[[int, int, Outcome], None] | None = None,
) -> Report:
    """Every mutant of ``module`` (a file of the layer package) against ``pytest_args`` (run from ``root``).

    The unmutated module (as unparsed) must pass first; the time limit per mutant is ``timeout``, or
    three times that first run plus 10 s.
    """
    package = root / "layers" / "cni_metrics" / "cni_metrics"
    source = module.read_text()
    lines = source.splitlines()
    report = Report(str(module.relative_to(root)), equivalent=equivalent)
    with tempfile.TemporaryDirectory(prefix="mutate-") as tmp:
        copy_root = Path(tmp) / "layer"
        shutil.copytree(package, copy_root / "cni_metrics", ignore=shutil.ignore_patterns("__pycache__"))
        target = copy_root / "cni_metrics" / module.relative_to(package)
        log = Path(tmp) / "pytest.log"
        target.write_text(mutant(source, None))
        started = time.monotonic()
        if _run_child(copy_root, pytest_args, log, 600.0) != "passed":
            raise RuntimeError(f"the tests fail on the unmutated {module}:\n{log.read_text()[-4000:]}")
        limit = timeout if timeout is not None else 3 * (time.monotonic() - started) + 10.0
        points = mutations(source)
        for mutation in points:
            target.write_text(mutant(source, mutation.index))
            began = time.monotonic()
            result = _run_child(copy_root, pytest_args, log, limit)
            outcome = Outcome(
                mutation,
                {"passed": "survived", "failed": "killed", "timeout": "timeout"}[result],
                time.monotonic() - began,
                lines[mutation.line - 1].strip() if 0 < mutation.line <= len(lines) else "",
            )
            report.outcomes.append(outcome)
            if progress is not None:
                progress(len(report.outcomes), len(points), outcome)
    return report
