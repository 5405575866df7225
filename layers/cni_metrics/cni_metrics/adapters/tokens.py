"""The bearer-token source of discovery (kube.py) and scraping (scrape/), apart so neither needs the other."""

from __future__ import annotations

from typing import Protocol


class BearerTokens(Protocol):
    """Where requests get their bearer token, and a new one after a 401."""

    def token(self) -> str:
        """The current token."""
        ...

    def refresh(self, stale: str) -> str:
        """A replacement for ``stale``."""
        ...
