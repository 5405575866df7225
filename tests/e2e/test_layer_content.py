"""The built layer (`make build-local`) ships every module its own code imports.

Every module of ``cni_metrics`` in the layer is imported, and every name any of them imports (at the
top or inside a function) is looked up, in an isolated interpreter whose path holds only the standard
library and the layer's ``python/`` directory, as Lambda's ``/opt/python`` would.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LAYER = REPO / ".aws-sam" / "local" / "build" / "CniMetricsLayer" / "python"

# Run with -I -S: no environment variables, no user or venv site-packages; only the layer is added.
_PROBE = """
import importlib, importlib.util, json, sys
sys.path.insert(0, sys.argv[1])
modules, names = json.loads(sys.stdin.read())
problems = []
for module in modules:
    try:
        importlib.import_module(module)
    except Exception as exc:
        problems.append(f"import {module}: {type(exc).__name__}: {exc}")
for name in names:
    if importlib.util.find_spec(name) is None:
        problems.append(f"not in the layer: {name}")
print(json.dumps(problems))
"""


def _layer_modules(root: Path) -> tuple[list[str], set[str]]:
    """(module names of the package, top-level names its code imports)."""
    modules: list[str] = []
    imported: set[str] = set()
    for path in sorted((root / "cni_metrics").rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        modules.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    return modules, imported - {"__future__"}


def _problems(root: Path) -> list[str]:
    """What an isolated interpreter with only ``root`` added cannot import or find."""
    modules, imported = _layer_modules(root)
    probe = subprocess.run(
        [sys.executable, "-I", "-S", "-c", _PROBE, str(root)],
        input=json.dumps([modules, sorted(imported)]), capture_output=True, text=True, timeout=300,
        check=False,
    )
    assert probe.returncode == 0, probe.stderr
    problems: list[str] = json.loads(probe.stdout)
    return problems


def test_every_layer_module_imports_with_only_the_layer_on_the_path() -> None:
    # given the layer as `sam build` made it
    if not (LAYER / "cni_metrics").is_dir():
        pytest.fail(f"no layer build at {LAYER} (run `make build-local`)")
    assert "cni_metrics.collector.job" in _layer_modules(LAYER)[0]
    # when an isolated interpreter imports each module and looks up each imported name,
    # then nothing is missing
    assert _problems(LAYER) == []


def test_the_probe_sees_a_missing_module(tmp_path: Path) -> None:
    # given a layer whose module imports something the layer does not ship
    package = tmp_path / "cni_metrics"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "drawing.py").write_text("def draw():\n    import matplotlib\n")
    # when the same probe runs, then the lazy import is reported
    assert _problems(tmp_path) == ["not in the layer: matplotlib"]
