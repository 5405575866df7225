"""Run a FakeEks in a background thread with its own event loop (for tests and tools)."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future
from typing import Any

from fake_eks.scenario import Scenario
from fake_eks.server import FakeEks


class ThreadedFakeEks:
    """A FakeEks whose event loop runs in a daemon thread."""

    def __init__(self, scenario: Scenario, *, port: int = 0) -> None:
        self.server = FakeEks(scenario, port=port)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="fake-eks", daemon=True)
        self.connection: dict[str, Any] = {}

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def start(self, timeout: float = 30.0) -> dict[str, Any]:
        """Start the loop thread and the servers; return the connection document."""
        self._thread.start()
        fut: Future[dict[str, Any]] = asyncio.run_coroutine_threadsafe(self.server.start(), self.loop)
        self.connection = fut.result(timeout)
        return self.connection

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the servers and the loop, and join the thread."""
        if self.loop.is_running():
            asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(timeout)
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self.loop.close()
