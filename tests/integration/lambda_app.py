"""A function's ``app.py`` loaded as Lambda loads it, and the parts of the Lambda context the handlers use.

Shared by the integration tests that invoke a handler in this process (tests/integration is on sys.path
under pytest, and on mypy's path in pyproject.toml).
"""

from __future__ import annotations

import importlib.util
import time
import uuid
from pathlib import Path
from types import ModuleType

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"


def load_app(function: str) -> ModuleType:
    """A fresh copy of ``functions/<function>/app.py`` under a module name of its own: a cold start (no
    clients or settings cached by an earlier copy)."""
    spec = importlib.util.spec_from_file_location(
        f"{function}_app_{uuid.uuid4().hex}", FUNCTIONS / function / "app.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class LambdaContext:
    """The parts of the Lambda context the handlers use: ``seconds`` left when it is made (the function's
    timeout), counting down on the monotonic clock; a request id of its own unless given."""

    def __init__(
        self,
        function: str = "collector",
        seconds: float = 55.0,
        *,
        memory_mb: int = 512,
        request_id: str | None = None,
    ) -> None:
        self.function_name = function
        self.memory_limit_in_mb = memory_mb
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{function}"
        self.aws_request_id = request_id or str(uuid.uuid4())
        self.deadline = time.monotonic() + seconds

    def get_remaining_time_in_millis(self) -> int:
        return int((self.deadline - time.monotonic()) * 1000)
