"""SCRAPE_TRANSPORT: read by the settings, carried by ScrapeSettings, honoured by open_scraper."""

from __future__ import annotations

import ssl
import tempfile
from pathlib import Path

import pytest
from cni_metrics.adapters.scrape import DEFAULT_SCRAPE, ScrapeSettings, Transport, open_scraper
from cni_metrics.adapters.scrape.requests_transport import RequestsScraper
from cni_metrics.adapters.scrape.scraper import Scraper
from cni_metrics.collector.settings import ConfigError, load_settings
from fake_eks.certs import make_cluster_tls

BASE = {"CLUSTER_NAMES": "alpha", "STATE_BUCKET": "state-bucket"}


class Tokens:
    def token(self) -> str:
        return "k8s-aws-v1.unused"

    def refresh(self, stale: str) -> str:
        return stale


@pytest.mark.parametrize("env", [BASE, {**BASE, "SCRAPE_TRANSPORT": ""}])
def test_the_builtin_transport_is_the_default(env: dict[str, str]) -> None:
    # given no SCRAPE_TRANSPORT, or an empty one (a template's unset parameter) / when the settings are loaded
    settings = load_settings(env)
    # then the scrape runs on the built-in transport
    assert settings.scrape_transport == DEFAULT_SCRAPE.transport == "builtin"
    assert settings.scrape == DEFAULT_SCRAPE


def test_scrape_transport_reaches_the_scrape_settings() -> None:
    # given SCRAPE_TRANSPORT=requests beside the other scrape variables
    env = {**BASE, "SCRAPE_TRANSPORT": "requests", "SCRAPE_CONCURRENCY": "8", "READ_TIMEOUT_SECONDS": "4"}
    # when the settings are loaded
    settings = load_settings(env)
    # then every cluster's scrape settings carry it with the others
    assert settings.scrape == ScrapeSettings(concurrency=8, read_timeout=4.0, transport="requests")


@pytest.mark.parametrize("value", ["urllib3", "Requests"])
def test_an_unknown_transport_is_refused_by_name(value: str) -> None:
    # given SCRAPE_TRANSPORT set to something neither transport is called
    with pytest.raises(ConfigError) as raised:
        load_settings({**BASE, "SCRAPE_TRANSPORT": value})
    # then the configuration is refused, naming the variable and the two values
    message = str(raised.value)
    assert message.startswith("invalid configuration: SCRAPE_TRANSPORT: ")
    assert "'builtin'" in message
    assert "'requests'" in message


@pytest.mark.parametrize(("transport", "kind"), [("builtin", Scraper), ("requests", RequestsScraper)])
def test_open_scraper_gives_the_chosen_transport(transport: Transport, kind: type) -> None:
    # given a cluster CA and settings naming a transport
    context = ssl.create_default_context(cadata=make_cluster_tls("chosen").ca_pem)
    # when a scraper is opened for them
    scraper = open_scraper("https://127.0.0.1:1", context, Tokens(), ScrapeSettings(transport=transport))
    scraper.close()
    # then it is that transport's
    assert type(scraper) is kind


def test_the_requests_transport_trusts_the_cluster_ca_alone_and_removes_its_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a cluster CA, and temporary files in a folder of their own
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    tls = make_cluster_tls("ca-file")
    context = ssl.create_default_context(cadata=tls.ca_pem)
    # when a requests scraper is opened, then closed
    scraper = RequestsScraper("https://127.0.0.1:1", context, Tokens())
    written = [path.read_text() for path in tmp_path.iterdir()]
    scraper.close()
    # then its one file (requests' verify) held exactly that CA, and is gone once the scraper is closed
    assert [ssl.PEM_cert_to_DER_cert(text) for text in written] == [ssl.PEM_cert_to_DER_cert(tls.ca_pem)]
    assert list(tmp_path.iterdir()) == []


def test_both_transports_refuse_a_context_that_does_not_verify() -> None:
    # given a TLS context without host name checking
    context = ssl.create_default_context(cadata=make_cluster_tls("lax").ca_pem)
    context.check_hostname = False
    for kind in (Scraper, RequestsScraper):
        # when a scraper is made with it / then it is refused
        with pytest.raises(ValueError, match="must verify the certificate and the host name"):
            kind("https://127.0.0.1:1", context, Tokens())
