"""The local EKS stand-in under load: scrapes/second at 64 in flight with 20 ms added latency (scale-5k).

The stand-in runs as a ``fake-eks`` child process (scenario ``scale-5k``: 5,000 aws-node pods, 20 ms +- 5 ms
added latency per scrape); this process lists the pods (pages of 500) and scrapes every pod once through
the API server proxy with aiohttp, 64 in flight, TLS with the cluster CA, a botocore-made token, gzip.
Reported: scrapes/second, the ideal for 64 in flight at 20 ms, the server's CPU share and its memory.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import time
from pathlib import Path
from typing import Any

import aiohttp
from fake_eks.testing import RunningFakeEks, start_fake_eks

SCENARIO = "scale-5k"
IN_FLIGHT = 64
LATENCY_S = 0.020


def _proc(pid: int) -> dict[str, float]:
    """RSS, peak RSS (MB) and CPU seconds of a process, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    mem = {ln.split(":")[0]: int(ln.split()[1]) / 1024 for ln in status.splitlines() if ln.startswith("Vm")}
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return {"rss_mb": mem["VmRSS"], "peak_mb": mem["VmHWM"], "cpu_s": cpu}


async def _run(eks: RunningFakeEks, cluster: str) -> dict[str, Any]:
    ctx = ssl.create_default_context(cafile=eks.ca_file(cluster))
    headers = {"Authorization": f"Bearer {eks.token(cluster)}", "Accept-Encoding": "gzip"}
    base = eks.endpoint(cluster)
    connector = aiohttp.TCPConnector(limit=IN_FLIGHT, ssl=ctx)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, headers=headers, timeout=timeout) as session:
        names: list[str] = []
        cont = ""
        list_started = time.perf_counter()
        while True:
            params = {
                "labelSelector": "k8s-app=aws-node",
                "limit": "500",
                **({"continue": cont} if cont else {}),
            }
            async with session.get(f"{base}/api/v1/namespaces/kube-system/pods", params=params) as resp:
                page = await resp.json()
            names += [p["metadata"]["name"] for p in page["items"]]
            cont = page["metadata"].get("continue", "")
            if not cont:
                break
        list_s = time.perf_counter() - list_started
        sem = asyncio.Semaphore(IN_FLIGHT)
        ok = 0
        wire = 0

        async def scrape(name: str) -> None:
            nonlocal ok, wire
            async with sem:
                url = f"{base}/api/v1/namespaces/kube-system/pods/{name}:61678/proxy/metrics"
                async with session.get(url, auto_decompress=False) as resp:
                    body = await resp.read()
                    wire += len(body)
                    ok += resp.status == 200

        started = time.perf_counter()
        await asyncio.gather(*(scrape(n) for n in names))
        elapsed = time.perf_counter() - started
    return {"pods": len(names), "ok": ok, "elapsed": elapsed, "list_s": list_s, "wire_bytes": wire}


def main() -> None:
    """Run the measurement and print the figures."""
    started = time.perf_counter()
    with start_fake_eks(SCENARIO, subprocess_mode=True) as eks:
        ready_s = time.perf_counter() - started
        pid = int(eks.connection["pid"])
        cluster = eks.clusters[0]
        idle = _proc(pid)
        client_cpu = time.process_time()
        result = asyncio.run(_run(eks, cluster))
        client_cpu = time.process_time() - client_cpu
        loaded = _proc(pid)
        truth = eks.truth(cluster)
    served = sum(p["scrapes"] for p in truth["pods"])
    rate = result["pods"] / result["elapsed"]
    ideal = IN_FLIGHT / LATENCY_S
    server_cpu_s = loaded["cpu_s"] - idle["cpu_s"]
    per_scrape_ms = server_cpu_s / result["pods"] * 1e3
    print(
        f"scenario {SCENARIO}: {result['pods']} aws-node pods, ready in {ready_s:.1f} s, "
        f"list (pages of 500) {result['list_s'] * 1e3:.0f} ms"
    )
    print(
        f"scrapes: {result['ok']}/{result['pods']} OK (truth: {served} serves), {result['elapsed']:.2f} s, "
        f"{rate:.0f} scrapes/s at {IN_FLIGHT} in flight with {LATENCY_S * 1e3:.0f} ms (+-5 ms) added latency "
        f"(ideal {ideal:.0f}/s), {result['wire_bytes'] / result['pods'] / 1024:.1f} KB/scrape gzipped"
    )
    print(
        f"server: {per_scrape_ms:.2f} ms CPU per scrape (list included), i.e. about "
        f"{1e3 / per_scrape_ms:.0f} scrapes/s per free core; {server_cpu_s / result['elapsed'] * 100:.0f}% "
        f"of a core used during the run; client: {client_cpu / result['pods'] * 1e3:.2f} ms CPU per scrape; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    print(
        f"server memory: RSS {loaded['rss_mb']:.0f} MB after the run (after start {idle['rss_mb']:.0f} MB, "
        f"peak {loaded['peak_mb']:.0f} MB)"
    )


if __name__ == "__main__":
    main()
