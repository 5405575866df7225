"""The console script and the thread runner start, write the connection file and stop cleanly."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from fake_eks.testing import start_fake_eks
from fake_eks_helpers import metrics_path, pod_by_fault


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_console_script_writes_connection_file_and_stops_on_signal(
    tmp_path: Path, sig: signal.Signals
) -> None:
    # given the console script started on the demo scenario
    conn_file = tmp_path / "conn.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "fake_eks", "--scenario", "demo", "--connection-file", str(conn_file)],
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not conn_file.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        conn = json.loads(conn_file.read_text())
        # when it is signalled
        proc.send_signal(sig)
        code = proc.wait(15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    # then it wrote the documented connection file, listened on loopback only, and exited cleanly
    assert set(conn) >= {
        "region",
        "eks_endpoint_url",
        "sts_endpoint_url",
        "credentials",
        "truth_url",
        "clusters",
    }
    assert set(conn["credentials"]) >= {"access_key_id", "secret_access_key", "identity_arn"}
    assert conn["eks_endpoint_url"].startswith("http://127.0.0.1:")
    assert all(c["endpoint"].startswith("https://127.0.0.1:") for c in conn["clusters"].values())
    assert all(c["ca_pem"].startswith("-----BEGIN CERTIFICATE-----") for c in conn["clusters"].values())
    assert code == 0
    assert not conn_file.exists()


def test_unknown_scenario_is_a_usage_error(tmp_path: Path) -> None:
    # given / when
    proc = subprocess.run(
        [sys.executable, "-m", "fake_eks", "--scenario", "no-such-scenario"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # then
    assert proc.returncode == 2
    assert "no scenario" in proc.stderr


def test_stop_is_bounded_while_a_scrape_hangs() -> None:
    # given a stand-in with a scrape hanging on a node that never answers
    with start_fake_eks({"clusters": [{"name": "c", "nodes": 2, "faults": {"hang": [0]}}]}) as eks:
        name = pod_by_fault(eks, "c", "hang")["name"]
        url, ca = eks.endpoint("c") + metrics_path(name), eks.ca_file("c")
        headers = {"Authorization": f"Bearer {eks.token('c')}"}

        def hang() -> None:
            with contextlib.suppress(requests.RequestException):
                requests.get(url, headers=headers, verify=ca, timeout=(5, 30))

        worker = threading.Thread(target=hang, daemon=True)
        worker.start()
        deadline = time.monotonic() + 10
        while pod_by_fault(eks, "c", "hang")["attempts"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        started = time.monotonic()
    # when the block ends, then the server stopped quickly and the hanging client saw its connection end
    assert time.monotonic() - started < 10
    worker.join(10)
    assert not worker.is_alive()
