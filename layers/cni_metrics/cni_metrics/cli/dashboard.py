"""``cni-metrics dashboard``: print the dashboard bodies, put them (unless --dry-run), draw them."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3

from cni_metrics.dashboard.body import build_dashboards
from cni_metrics.dashboard.clusters import resolve_clusters
from cni_metrics.dashboard.job import apply
from cni_metrics.dashboard.settings import load_dashboard_settings, parse_clusters
from cni_metrics.dashboard.validate import validate_body
from cni_metrics.settings_fields import ConfigError


def register(subparsers: Any) -> None:
    """Add the ``dashboard`` subcommand."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "dashboard",
        help="print (and put) the CloudWatch dashboards; --render draws them from GetMetricData",
        description="Prints a JSON object {dashboard name: body}. Without --dry-run the dashboards (and "
        "alarms when ALARMS_ENABLED) are put like the dashboard function does. Clusters default to "
        "CLUSTER_NAMES plus CLUSTER_DISCOVERY_TAG; endpoints follow AWS_ENDPOINT_URL_CLOUDWATCH/_EKS.",
    )
    parser.add_argument("--cluster", action="append", default=[], metavar="NAME", help="repeatable")
    parser.add_argument("--name", help="dashboard name (default DASHBOARD_NAME or cni-metrics)")
    parser.add_argument("--namespace", help="metrics namespace (default METRICS_NAMESPACE or Kubernetes)")
    parser.add_argument("--region", help="default AWS_REGION or us-east-1")
    parser.add_argument("--dry-run", action="store_true", help="print only: write nothing to CloudWatch")
    parser.add_argument("--render", type=Path, metavar="FILE.png|FILE.html",
                        help="draw the graphs from GetMetricData into a PNG (one per page) or an HTML page")
    parser.add_argument("--hours", type=float, default=3.0, help="time range read by --render (default 3)")
    parser.add_argument("--period", type=int, help="--render: read with this period (s) instead of 60")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build, validate, print; put unless --dry-run; render when asked."""
    env = dict(os.environ)
    env["AWS_REGION"] = args.region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
    overrides = {"DASHBOARD_NAME": args.name, "METRICS_NAMESPACE": args.namespace}
    env.update({key: value for key, value in overrides.items() if value})
    try:
        settings = load_dashboard_settings(env)
        explicit = parse_clusters(args.cluster)
    except ConfigError as error:
        print(f"cni-metrics dashboard: {error}", file=sys.stderr)
        return 2
    if explicit:
        clusters = list(explicit)
    else:
        eks = boto3.client("eks", region_name=settings.region) if settings.discovery_tag else None
        clusters = resolve_clusters(settings, eks)
    if not clusters and not args.dry_run:
        print("cni-metrics dashboard: no clusters (--cluster, CLUSTER_NAMES or CLUSTER_DISCOVERY_TAG); "
              "refusing to empty the dashboards without --dry-run", file=sys.stderr)
        return 2
    pages = build_dashboards(clusters, settings.dashboard_options())
    for page in pages:
        validate_body(page.body)
    print(json.dumps({page.name: page.body for page in pages}, indent=2, sort_keys=True))
    cloudwatch = boto3.client("cloudwatch", region_name=settings.region)
    if not args.dry_run:
        print(json.dumps(apply(settings, clusters, cloudwatch).summary()), file=sys.stderr)
    if args.render is not None:
        from dashboard_preview.render import render_pages  # matplotlib only when drawing

        end = datetime.now(UTC) + timedelta(minutes=1)
        start = end - timedelta(hours=args.hours)
        for path in render_pages(pages, args.render, cloudwatch, start, end, args.period):
            print(f"rendered {path}", file=sys.stderr)
    return 0
