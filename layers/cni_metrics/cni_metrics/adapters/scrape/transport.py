"""The scraper of a cluster on the transport ``ScrapeSettings.transport`` names (``SCRAPE_TRANSPORT``).

``builtin``: ``scraper.Scraper``, one selector thread over hand-written HTTP/1.1 (the default).
``requests``: ``requests_transport.RequestsScraper``, a ``requests.Session`` and a thread pool: the way out
when the API server's front end, or a proxy (``HTTPS_PROXY``), needs what the built-in one does not do.
Both give the same results under the same rules (``ClusterScraper``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from ssl import SSLContext
from typing import Protocol

from cni_metrics.adapters.scrape.attempts import PodRef, Progress, ScrapeResult
from cni_metrics.adapters.scrape.requests_transport import RequestsScraper
from cni_metrics.adapters.scrape.scraper import DEFAULT_SCRAPE, Scraper, ScrapeSettings
from cni_metrics.adapters.tokens import BearerTokens


class ClusterScraper(Protocol):
    """Scrapes one cluster's aws-node pods; kept from one ``scrape_all`` to the next, then closed."""

    def scrape_all(
        self, pods: Sequence[PodRef], deadline: float, progress: Progress | None = None
    ) -> list[ScrapeResult]:
        """Every pod's result, in ``pods`` order, by ``deadline`` (monotonic); ``progress`` is told (done,
        total) as pods finish."""
        ...

    def close(self) -> None:
        """Close every connection."""
        ...


def open_scraper(
    endpoint_url: str,
    ssl_context: SSLContext,
    tokens: BearerTokens,
    settings: ScrapeSettings = DEFAULT_SCRAPE,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> ClusterScraper:
    """The scraper of ``settings.transport`` for the endpoint (TLS verified with ``ssl_context``'s CAs)."""
    if settings.transport == "requests":
        return RequestsScraper(endpoint_url, ssl_context, tokens, settings, clock=clock)
    return Scraper(endpoint_url, ssl_context, tokens, settings, clock=clock)
