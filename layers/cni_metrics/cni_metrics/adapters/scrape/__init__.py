"""Concurrent scraping of aws-node metrics through the Kubernetes API server proxy, from one thread.

Modules: ``scraper`` (``Scraper``: connections, DNS, requests; ``ScrapeSettings``, the scrape defaults),
``loop`` (``ScrapeRun``: one ``scrape_all`` on the selector, through ``RunContext``), ``policy`` (failure
classes, retries, error texts), ``body`` (capped decompression) and ``http1`` (the wire format, no I/O).
"""

from cni_metrics.adapters.scrape.loop import PodRef, ScrapeResult
from cni_metrics.adapters.scrape.policy import FAILURE_REASONS, FailureReason, ScrapeFailure
from cni_metrics.adapters.scrape.scraper import DEFAULT_SCRAPE, Scraper, ScrapeSettings

__all__ = [
    "DEFAULT_SCRAPE",
    "FAILURE_REASONS",
    "FailureReason",
    "PodRef",
    "ScrapeFailure",
    "ScrapeResult",
    "ScrapeSettings",
    "Scraper",
]
