"""``cni-metrics dashboard``: print the dashboard bodies and put them (unless --dry-run)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import boto3

from cni_metrics.dashboard.body import DashboardPage
from cni_metrics.dashboard.clusters import FleetUnavailable, Selection, select_clusters
from cni_metrics.dashboard.job import apply, pages_for
from cni_metrics.dashboard.settings import DashboardSettings, load_dashboard_settings, parse_clusters
from cni_metrics.dashboard.validate import validate_body
from cni_metrics.settings_fields import ConfigError


def register(subparsers: Any) -> None:
    """Add the ``dashboard`` subcommand."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "dashboard",
        help="print (and put) the CloudWatch dashboards",
        description="Prints a JSON object {dashboard name: body}. Without --dry-run the dashboards (and "
        "alarms when ALARMS_ENABLED) are put like the dashboard function does. Clusters default to "
        "CLUSTER_NAMES plus CLUSTER_DISCOVERY_TAG, or in fleet mode (FLEET_DOCUMENT) the fleet's clusters "
        "and its overview page; endpoints follow AWS_ENDPOINT_URL_CLOUDWATCH/_EKS/_S3.",
    )
    add_page_arguments(parser)
    parser.add_argument("--dry-run", action="store_true", help="print only: write nothing to CloudWatch")
    parser.set_defaults(func=run)


def add_page_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments that choose the pages: clusters, set name, namespace, region."""
    parser.add_argument("--cluster", action="append", default=[], metavar="NAME", help="repeatable")
    parser.add_argument("--name", help="dashboard name (default DASHBOARD_NAME or cni-metrics)")
    parser.add_argument("--namespace", help="metrics namespace (default METRICS_NAMESPACE or Kubernetes)")
    parser.add_argument("--region", help="default AWS_REGION or us-east-1")


def build_pages(args: argparse.Namespace) -> tuple[DashboardSettings, Selection, list[DashboardPage]]:
    """The settings, clusters (in fleet mode with the fleet's name) and validated pages the arguments and
    the environment ask for; ``FleetUnavailable`` when fleet mode cannot read the fleet."""
    env = dict(os.environ)
    env["AWS_REGION"] = args.region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
    overrides = {"DASHBOARD_NAME": args.name, "METRICS_NAMESPACE": args.namespace}
    env.update({key: value for key, value in overrides.items() if value})
    settings = load_dashboard_settings(env)
    explicit = list(parse_clusters(args.cluster))
    eks = boto3.client("eks", region_name=settings.region) if settings.discovery_tag else None
    s3 = boto3.client("s3", region_name=settings.region) if settings.fleet is not None else None
    selection = select_clusters(settings, eks=eks, s3=s3, requested=explicit or None)
    pages = pages_for(settings, selection.clusters, selection.fleet)
    for page in pages:
        validate_body(page.body)
    return settings, selection, pages


def run(args: argparse.Namespace) -> int:
    """Build, validate, print; put unless --dry-run."""
    try:
        settings, selection, pages = build_pages(args)
    except (ConfigError, FleetUnavailable) as error:
        print(f"cni-metrics dashboard: {error}", file=sys.stderr)
        return 2
    if not selection.clusters and not args.dry_run:
        print("cni-metrics dashboard: no clusters (--cluster, CLUSTER_NAMES or CLUSTER_DISCOVERY_TAG); "
              "refusing to empty the dashboards without --dry-run", file=sys.stderr)
        return 2
    print(json.dumps({page.name: page.body for page in pages}, indent=2, sort_keys=True))
    if not args.dry_run:
        cloudwatch = boto3.client("cloudwatch", region_name=settings.region)
        outcome = apply(settings, selection.clusters, cloudwatch, fleet=selection.fleet)
        print(json.dumps(outcome.summary()), file=sys.stderr)
    return 0
