"""The e2e tests' shared fixtures."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def build_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A `sam build`-shaped directory for the test module: its ``BUILT_TEMPLATE`` (``%(minor)s`` this
    interpreter's Python minor version) as template.yaml, and each of its ``BUILD_FILES`` (path: text)."""
    root = tmp_path_factory.mktemp("build")
    minor = f"{sys.version_info.major}.{sys.version_info.minor}"
    (root / "template.yaml").write_text(request.module.BUILT_TEMPLATE % {"minor": minor})
    files: dict[str, str] = request.module.BUILD_FILES
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root
