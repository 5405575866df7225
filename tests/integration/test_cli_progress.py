"""``cni-metrics collect`` shows its scrape progress on stderr when stderr is a terminal (a big cluster),
and nothing of it when stderr is a pipe or a file."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from fake_eks.testing import RunningFakeEks

pytestmark = pytest.mark.integration

CLI = Path(sys.executable).parent / "cni-metrics"
SCENARIO = {"name": "cli-progress", "seed": 3, "clusters": [{"name": "big", "nodes": 120}]}


def _collect(eks: RunningFakeEks, stderr: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, **eks.env()}
    return subprocess.Popen(
        [str(CLI), "collect", "--dry-run", "--format", "json", "--cluster", "big", "--timeout", "60"],
        stdout=subprocess.DEVNULL, stderr=stderr, env=env,
    )


def _read_all(fd: int, process: subprocess.Popen[bytes]) -> str:
    """What the terminal received until the command ended (and its last bytes were read)."""
    chunks: list[bytes] = []
    end = time.monotonic() + 90
    while time.monotonic() < end:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                data = os.read(fd, 65536)
            except OSError:  # the terminal's other end closed
                break
            if not data:
                break
            chunks.append(data)
        elif process.poll() is not None:
            break
    return b"".join(chunks).decode(errors="replace")


def test_progress_on_a_terminal_only(fake_eks_factory: Callable[..., RunningFakeEks]) -> None:
    # given a cluster of 120 aws-node pods, every one Running
    eks = fake_eks_factory(SCENARIO)
    running = [p for p in eks.truth("big")["pods"] if p["phase"] == "Running"]
    # when the command runs with stderr on a terminal
    main, terminal = pty.openpty()
    process = _collect(eks, terminal)
    os.close(terminal)
    shown = _read_all(main, process)
    os.close(main)
    assert process.wait(timeout=30) == 0
    # then the terminal was shown the progress, ending at every pod scraped
    assert f"cluster big: {len(running)}/{len(running)} aws-node pods scraped" in shown
    # and with stderr a pipe, none of it is written
    piped = _collect(eks, subprocess.PIPE)
    _, err = piped.communicate(timeout=90)
    assert piped.returncode == 0
    assert b"aws-node pods scraped" not in err
