"""``python -m dashboard_preview --render FILE.png|FILE.html``: draw the dashboards from GetMetricData.

The pages are the ones ``cni-metrics dashboard`` prints (same arguments and environment), plus, with
``--fleet NAME``, the overview page fleet mode puts (``NAME-fleet``); the drawing needs matplotlib, which
the Lambda layer never ships.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
from cni_metrics.cli.dashboard import add_page_arguments, build_pages
from cni_metrics.dashboard.clusters import FleetUnavailable
from cni_metrics.settings_fields import ConfigError

from dashboard_preview.render import render_pages, with_fleet_page


def main(argv: Sequence[str] | None = None) -> int:
    """Draw every page into ``--render`` (one PNG per page, or one HTML)."""
    parser = argparse.ArgumentParser(prog="python -m dashboard_preview", description=__doc__)
    add_page_arguments(parser)
    parser.add_argument("--render", type=Path, required=True, metavar="FILE.png|FILE.html",
                        help="draw the graphs into a PNG (one per page) or an HTML page")
    parser.add_argument("--hours", type=float, default=3.0, help="time range read (default 3)")
    parser.add_argument("--period", type=int, help="read with this period (s) instead of the widgets'")
    parser.add_argument("--fleet", metavar="NAME",
                        help="also draw the fleet overview page of the fleet NAME (fleet mode's NAME-fleet)")
    args = parser.parse_args(argv)
    try:
        settings, selection, pages = build_pages(args)
    except (ConfigError, FleetUnavailable) as error:
        print(f"dashboard_preview: {error}", file=sys.stderr)
        return 2
    if selection.fleet is None:
        pages = with_fleet_page(pages, args.fleet, settings.dashboard_options(), len(selection.clusters))
    cloudwatch = boto3.client("cloudwatch", region_name=settings.region)
    end = datetime.now(UTC) + timedelta(minutes=1)
    start = end - timedelta(hours=args.hours)
    for path in render_pages(pages, args.render, cloudwatch, start, end, args.period):
        print(f"rendered {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
