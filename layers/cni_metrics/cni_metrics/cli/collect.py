"""``cni-metrics collect``: sign in to EKS clusters, scrape every aws-node and print what would be published.

Signs in through the standard AWS configuration (environment, profiles, ``AWS_ENDPOINT_URL_*``). The
aggregate is a first-run one (gauges and derived numbers; counter increases need a stored baseline).
Exit status: 0 every cluster collected (or has no aws-node pods), 1 some cluster failed, 2 usage.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TextIO

from cni_metrics.adapters.scrape import DEFAULT_SCRAPE
from cni_metrics.capacity.core import capacity
from cni_metrics.cli.aggregate import json_number
from cni_metrics.core.aggregate import aggregate

if TYPE_CHECKING:
    from cni_metrics.collector.cluster import ClusterCollection

MAX_NODE_ERRORS_SHOWN = 20
PROGRESS_MIN_PODS = 100  # a "big" cluster: smaller ones finish before a progress line helps
PROGRESS_INTERVAL_SECONDS = 0.2
DEFAULT_THRESHOLD_PCT = 90.0  # EXHAUSTION_THRESHOLD_PCT's default


def register(subparsers: Any) -> None:
    """Add the ``collect`` subcommand to the ``cni-metrics`` parser."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "collect", help="collect aws-node metrics of EKS clusters", description=__doc__
    )
    parser.add_argument("--cluster", action="append", required=True, metavar="NAME", help="repeatable")
    parser.add_argument("--region", help="default: the AWS configuration's region")
    parser.add_argument("--role-arn", metavar="ARN", help="role to assume first (clusters in other accounts)")
    parser.add_argument("--concurrency", type=int, default=DEFAULT_SCRAPE.concurrency, metavar="N",
                        help=f"scrapes in flight ({DEFAULT_SCRAPE.concurrency})")
    parser.add_argument(
        "--timeout", type=float, default=60.0, metavar="SECONDS", help="deadline of the run (60)"
    )
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.add_argument(
        "--dry-run", action="store_true",
        help="print only, publish nothing (without it: one collector run configured by the environment "
        "like the Lambda: STATE_BUCKET, PUBLISH_MODE, ...)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log per-node failures")
    parser.set_defaults(func=run)


def report(collection: ClusterCollection) -> dict[str, Any]:
    """The JSON document of one cluster: status, health, first-run aggregate, node errors."""
    doc: dict[str, Any] = {
        "cluster": collection.cluster,
        "status": collection.status,
        "error": collection.error,
        "health": collection.health.as_dict(),
    }
    if collection.nodes:
        result = aggregate(collection.nodes, None, now=collection.collected_at)
        doc["metrics"] = {m.name: json_number(m.value) for m in result.metrics}
        doc["units"] = {m.name: m.unit for m in result.metrics}
        doc["capacity"] = _capacity(collection)
    doc["nodeErrors"] = [
        {"pod": e.pod, "reason": e.reason, "message": e.message} for e in collection.node_errors
    ]
    return doc


def _capacity(collection: ClusterCollection) -> dict[str, Any]:
    """Subnet headroom, utilisation per zone, what remains and the nodes nearest exhaustion (no trend yet)."""
    sources = collection.capacity
    subnets = sources.subnets if sources is not None else None
    cap = capacity(collection.nodes, subnets, sources.pod_subnet_ids if sources is not None else (), [],
                   now=collection.collected_at, threshold_pct=DEFAULT_THRESHOLD_PCT)
    return {
        "subnets": [{"subnetId": s.subnet_id, "zone": s.zone, "cidr": s.cidr, "available": s.available}
                    for s in sorted(subnets or [], key=lambda s: s.subnet_id)],
        "zoneIPUtilization": {m.dimensions[0][1]: round(m.value, 1) for m in cap.metrics
                              if m.name == "zoneIPUtilization"},
        "remainingIPAddresses": cap.remaining,
        "nearest": [n.as_record() for n in cap.top],
        "errors": list(sources.errors) if sources is not None else [],
    }


def _cluster_table(doc: dict[str, Any]) -> str:
    health = doc["health"]
    lines = [f"cluster {doc['cluster']}: {doc['status']}"]
    if doc["error"]:
        lines.append(f"  error: {doc['error']}")
    failed = ", ".join(f"{k} {v}" for k, v in health["nodesFailedByReason"].items())
    lines.append(
        f"  aws-node pods {health['nodesTotal']}: scraped {health['nodesScraped']}, "
        f"failed {health['nodesFailed']}{f' ({failed})' if failed else ''}, skipped {health['nodesSkipped']}"
    )
    lines.append(f"  {health['scrapeDurationMs']:.0f} ms, {health['bytesScraped']} bytes received")
    metrics = doc.get("metrics", {})
    if metrics:
        width = max(len(name) for name in metrics)
        lines.append("")
        units = doc["units"]
        lines.extend(f"  {name:<{width}}  {value:>14}  {units[name]}" for name, value in metrics.items())
    cap = doc.get("capacity")
    if cap:
        lines += ["", f"  IPs remaining: {cap['remainingIPAddresses']}"]
        lines += [f"  subnet {s['subnetId']} {s['zone']} {s['cidr']}: {s['available']} free"
                  for s in cap["subnets"]]
        lines += [f"  zone {zone}: {pct}% used" for zone, pct in cap["zoneIPUtilization"].items()]
        lines += [f"  near exhaustion: {n['node']} {n['instanceType']} {n['zone']} "
                  f"{n['assigned']:g}/{n['held']:g}/{n['max']:g}" for n in cap["nearest"][:5]]
        lines += [f"  capacity incomplete: {error}" for error in cap["errors"]]
    if doc["nodeErrors"]:
        lines += ["", "  failed nodes:"]
        shown = doc["nodeErrors"][:MAX_NODE_ERRORS_SHOWN]
        lines.extend(f"    {e['pod']}: {e['reason']}: {e['message']}" for e in shown)
        if len(doc["nodeErrors"]) > MAX_NODE_ERRORS_SHOWN:
            lines.append(f"    ... and {len(doc['nodeErrors']) - MAX_NODE_ERRORS_SHOWN} more (--format json)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run the subcommand; returns the exit status."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if args.verbose:  # only our own loggers: library debug logs may show request details
        logging.getLogger("cni_metrics").setLevel(logging.DEBUG)
    # boto3 and the kubernetes client load here, not when the CLI starts.
    import boto3

    from cni_metrics.adapters.eks_auth import ClusterTarget
    from cni_metrics.collector.cluster import collect_cluster

    if not args.dry_run:
        return _publish(args)
    if args.concurrency < 1:
        print("error: --concurrency must be at least 1", file=sys.stderr)
        return 2
    region = args.region or boto3.Session().region_name
    if not region:
        print("error: no region: pass --region or configure one (AWS_REGION, profile)", file=sys.stderr)
        return 2
    deadline = time.monotonic() + args.timeout
    targets = [ClusterTarget(name, region, role_arn=args.role_arn) for name in dict.fromkeys(args.cluster)]

    def one(target: ClusterTarget) -> ClusterCollection:
        # a session per cluster: boto3 sessions are not thread-safe
        session = boto3.Session(region_name=target.region)
        scrape = replace(DEFAULT_SCRAPE, concurrency=args.concurrency)
        progress = ProgressLine(target.name, sys.stderr) if sys.stderr.isatty() else None
        return collect_cluster(target, session=session, scrape=scrape, deadline=deadline, progress=progress)

    with ThreadPoolExecutor(max_workers=min(4, len(targets))) as pool:
        collections = list(pool.map(one, targets))
    docs = [report(c) for c in collections]
    if args.format == "json":
        print(json.dumps({"clusters": docs}, indent=2))
    else:
        print("\n\n".join(_cluster_table(doc) for doc in docs))
    return 1 if any(c.status == "error" for c in collections) else 0


class ProgressLine:
    """``cluster NAME: N/M aws-node pods scraped`` on a terminal, rewritten in place (at most 5 times a
    second) for a cluster of at least ``PROGRESS_MIN_PODS`` pods, ended by a newline when all are done."""

    def __init__(self, cluster: str, stream: TextIO, clock: Callable[[], float] = time.monotonic) -> None:
        self._cluster = cluster
        self._stream = stream
        self._clock = clock
        self._shown = -1.0

    def __call__(self, done: int, total: int) -> None:
        if total < PROGRESS_MIN_PODS:
            return
        now = self._clock()
        if done < total and now - self._shown < PROGRESS_INTERVAL_SECONDS:
            return
        self._shown = now
        end = "\n" if done == total else ""
        self._stream.write(f"\rcluster {self._cluster}: {done}/{total} aws-node pods scraped{end}")
        self._stream.flush()


def _publish(args: argparse.Namespace) -> int:
    """One collector run (state, outbox, publishing) for the named clusters, configured like the Lambda."""
    import os

    from cni_metrics.collector.job import run_collection
    from cni_metrics.collector.settings import ConfigError, load_settings
    from cni_metrics.collector.wiring import build_deps

    # The environment configures the clusters (and their access), the event only chooses them by name,
    # as for the Lambda: the command line's clusters are this run's configuration.
    names = list(dict.fromkeys(args.cluster))
    env = {**os.environ, "SCRAPE_CONCURRENCY": str(args.concurrency), "CLUSTER_NAMES": ",".join(names),
           "CLUSTER_DISCOVERY_TAG": ""}
    access = {key: value for key, value in (("region", args.region), ("role_arn", args.role_arn)) if value}
    if access:
        env["CLUSTERS_JSON"] = json.dumps([{"name": name, **access} for name in names])
    try:
        settings = load_settings(env, {"clusters": names})
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = run_collection(settings, deps=build_deps(settings), remaining_seconds=args.timeout)
    print(json.dumps(summary.to_dict(), indent=2))
    return 0 if summary.ok else 1
