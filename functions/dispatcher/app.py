"""Fleet dispatcher Lambda: on the schedule, fan the fleet out to the collector (``cni_metrics.fleet.job``).

1. ``load_dispatcher_settings``: the environment (FLEET_DOCUMENT, COLLECTOR_FUNCTION, FLEET_MODE, ...);
   its schedule's event only; invalid -> ``ConfigError``, nothing done.
2. ``build_dispatch_deps``: S3, Lambda and the publisher, kept across warm invocations.
3. ``run_dispatch``: read and resolve the fleet, plan, invoke the collector asynchronously per group,
   publish the fleet's health; ``DispatchFailed`` when nothing could be dispatched.

Logs are structured (Powertools Logger, the EventBridge event id as correlation id; never the event).
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.utilities.typing import LambdaContext
from cni_metrics.fleet.job import DispatchDeps, build_dispatch_deps, run_dispatch
from cni_metrics.fleet.settings import load_dispatcher_settings

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME") or "cni-metrics")
copy_config_to_registered_loggers(source_logger=logger, include={"cni_metrics"})

_deps: dict[str, DispatchDeps] = {}


@logger.inject_lambda_context(clear_state=True, correlation_id_path="id", log_event=False)
def lambda_handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    """Entry point (Handler: app.lambda_handler)."""
    settings = load_dispatcher_settings(os.environ, event)
    logger.setLevel(settings.log_level)
    key = settings.model_dump_json()
    deps = _deps.get(key) or _deps.setdefault(key, build_dispatch_deps(settings))
    remaining = context.get_remaining_time_in_millis() / 1000
    summary = run_dispatch(settings, deps=deps, remaining_seconds=remaining)
    logger.info("dispatch finished", extra={"summary": summary.to_dict()})
    return summary.to_dict()
