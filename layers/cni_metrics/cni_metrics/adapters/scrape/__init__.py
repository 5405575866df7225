"""Concurrent scraping of aws-node metrics through the Kubernetes API server proxy.

Modules: ``transport`` (``open_scraper``: the scraper of the transport ``ScrapeSettings.transport``
names, behind ``ClusterScraper``), ``attempts`` (the book of a run and the retry rule both transports
share), ``scraper`` (``Scraper``, the built-in transport from one thread: connections, DNS, requests;
``ScrapeSettings``, the scrape defaults), ``loop`` (``ScrapeRun``: one ``scrape_all`` on the selector,
through ``RunContext``), ``requests_transport`` (``RequestsScraper``: requests and a thread pool),
``policy`` (failure classes, retries, error texts), ``body`` (capped decompression, the payload's
metrics) and ``http1`` (the wire format, no I/O).
"""

from cni_metrics.adapters.scrape.attempts import PodRef, Progress, ScrapeResult
from cni_metrics.adapters.scrape.policy import FAILURE_REASONS, FailureReason, ScrapeFailure
from cni_metrics.adapters.scrape.scraper import DEFAULT_SCRAPE, TRANSPORTS, Scraper, ScrapeSettings, Transport
from cni_metrics.adapters.scrape.transport import ClusterScraper, open_scraper

__all__ = [
    "DEFAULT_SCRAPE",
    "FAILURE_REASONS",
    "TRANSPORTS",
    "ClusterScraper",
    "FailureReason",
    "PodRef",
    "Progress",
    "ScrapeFailure",
    "ScrapeResult",
    "ScrapeSettings",
    "Scraper",
    "Transport",
    "open_scraper",
]
