"""Event routing of the dashboard function: custom resource, schedule, direct invoke.

- CloudFormation custom resource (``RequestType`` + ``ResponseURL``): crhelper answers CloudFormation
  in every case (failure and its own imminent timeout included). The ResponseURL is pre-signed (whoever
  holds it can answer for the stack) and crhelper logs it, and the whole event, at DEBUG: its loggers
  stay at INFO or above whatever the log level. Create/Update put the set named by
  the ``DashboardName`` property (else DASHBOARD_NAME) and answer with that name as the physical id;
  Delete removes the set its physical id names (so a rename's cleanup Delete removes the old set).
  Properties override the environment (see ``settings``).
- Direct invoke ``{"clusters": [...]}``: dashboards for exactly those clusters.
- Anything else (the EventBridge schedule): CLUSTER_NAMES plus clusters tagged CLUSTER_DISCOVERY_TAG.

Fleet mode (FLEET_DOCUMENT): the clusters are the fleet's and the overview page ``NAME-fleet`` is put
beside the per-cluster pages (``clusters``: the fleet document and the state listing, S3 reads only); when
the document cannot be read the run fails before changing anything (FAILED for a custom resource).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from functools import cache
from typing import Any

import boto3
from botocore.config import Config
from crhelper import CfnResource

from cni_metrics.dashboard.clusters import Selection, select_clusters
from cni_metrics.dashboard.job import apply, remove
from cni_metrics.dashboard.settings import DashboardSettings, load_dashboard_settings, parse_clusters
from cni_metrics.settings_fields import ConfigError

logger = logging.getLogger(__name__)


# Time kept back from the Lambda timeout when putting alarms (crhelper answers 0.5 s before it).
MARGIN_SECONDS = 10.0
_S3_CONFIG = Config(connect_timeout=2, read_timeout=10, retries={"mode": "standard", "total_max_attempts": 3})


def _cloudwatch(settings: DashboardSettings) -> Any:
    # Adaptive retries pace the calls when PutMetricAlarm (a few per second) is throttled.
    config = Config(retries={"mode": "adaptive"})
    return boto3.client("cloudwatch", region_name=settings.region, config=config)


def _out_of_time(context: Any) -> Callable[[], bool]:
    """True once less than MARGIN_SECONDS of the invocation are left (never without a context)."""
    if context is None:
        return lambda: False
    return lambda: context.get_remaining_time_in_millis() < MARGIN_SECONDS * 1000


def _eks(settings: DashboardSettings) -> Any:
    return boto3.client("eks", region_name=settings.region) if settings.discovery_tag else None


def _s3(settings: DashboardSettings) -> Any:
    return boto3.client("s3", region_name=settings.region, config=_S3_CONFIG) if settings.fleet else None


def _selection(settings: DashboardSettings, requested: list[str] | None = None) -> Selection:
    return select_clusters(settings, eks=_eks(settings), s3=_s3(settings), requested=requested)


@cache
def _helper() -> CfnResource:
    """The crhelper dispatcher. AWS_CA_BUNDLE, when set, verifies the response URL's TLS certificate."""
    level = os.environ.get("POWERTOOLS_LOG_LEVEL", "INFO").upper()
    helper = CfnResource(
        json_logging=False,
        log_level=level,
        sleep_on_delete=0,
        # crhelper's stub says bool, but its code also takes a CA file path (load_verify_locations).
        ssl_verify=os.environ.get("AWS_CA_BUNDLE") or None,  # type: ignore[arg-type]
    )
    # crhelper sets the root logger to ``level``; its own DEBUG records carry the pre-signed ResponseURL.
    numeric = logging.getLevelNamesMapping().get(level, logging.INFO)
    logging.getLogger("crhelper").setLevel(max(logging.INFO, numeric))

    @helper.create
    @helper.update
    def put(event: dict[str, Any], context: Any) -> str:
        settings = load_dashboard_settings(properties=event.get("ResourceProperties"))
        # Set before working so that a failed Create still names the set; its rollback Delete cleans up.
        helper.PhysicalResourceId = settings.name
        selection = _selection(settings)
        outcome = apply(settings, selection.clusters, _cloudwatch(settings), _out_of_time(context),
                        selection.fleet)
        logger.info("custom resource %s: %s", event["RequestType"], outcome.summary())
        helper.Data.update({
            "DashboardNames": ",".join(outcome.dashboards.put + outcome.dashboards.unchanged),
            "Clusters": ",".join(outcome.clusters),
        })
        return settings.name

    @helper.delete
    def delete(event: dict[str, Any], _context: Any) -> str:
        # The physical id names the set this resource made (whatever the properties say); an id crhelper
        # generated for a Create that failed early names no set, so nothing carries its marker or prefix.
        physical_id = str(event.get("PhysicalResourceId", ""))
        try:
            settings = load_dashboard_settings(properties={"DashboardName": physical_id})
        except ConfigError as error:
            logger.info("delete: %s: nothing to remove", error)
            return physical_id
        outcome = remove(settings, _cloudwatch(settings))
        logger.info("custom resource Delete: %s", outcome.summary())
        return physical_id

    return helper


def is_custom_resource(event: Any) -> bool:
    """A CloudFormation custom-resource request."""
    return isinstance(event, dict) and "RequestType" in event and "ResponseURL" in event


def handle(event: Any, context: Any) -> dict[str, Any] | None:
    """Route ``event``; custom-resource requests are answered to CloudFormation and return None."""
    if is_custom_resource(event):
        _helper()(event, context)
        return None
    if not isinstance(event, dict):
        raise ConfigError("event must be a JSON object")
    settings = load_dashboard_settings()
    if "clusters" in event:
        if not isinstance(event["clusters"], list):
            raise ConfigError("clusters must be a list of cluster names")
        selection = _selection(settings, list(parse_clusters(event["clusters"])))
    else:
        selection = _selection(settings)
    summary = apply(settings, selection.clusters, _cloudwatch(settings), _out_of_time(context),
                    selection.fleet).summary()
    logger.info("dashboard run: %s", summary)
    return summary
