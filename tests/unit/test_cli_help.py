"""The command line's own conventions: --version, and help texts without reStructuredText markup."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest
from cni_metrics.cli import main

REPO = Path(__file__).resolve().parents[2]


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    assert exited.value.code == 0
    return capsys.readouterr().out


def test_version_is_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    # given the version the package declares, and pyproject reading it from there (one home)
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert "version" not in project
    assert "version" in project["dynamic"]
    module = ast.parse((REPO / "layers" / "cni_metrics" / "cni_metrics" / "__init__.py").read_text())
    (declared,) = [str(node.value.value) for node in module.body if isinstance(node, ast.Assign)
                   and isinstance(node.value, ast.Constant) and ast.unparse(node.targets[0]) == "__version__"]
    # when the command is asked for its version, then it prints that version
    assert _run(capsys, "--version").strip() == f"cni-metrics {declared}"


@pytest.mark.parametrize("command", [(), ("aggregate",), ("collect",), ("dashboard",)])
def test_help_shows_no_literal_markup(capsys: pytest.CaptureFixture[str], command: tuple[str, ...]) -> None:
    # when help is asked for, then it is plain text: the ``literal`` markup is gone, the words stay
    text = _run(capsys, *command, "--help")
    assert "``" not in text
    assert "cni-metrics" in text
