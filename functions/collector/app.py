"""Collector Lambda: event + environment -> ``cni_metrics.collector.job.run_collection`` -> summary.

Reads like a table of contents; the work is in the ``cni_metrics`` layer (``/opt/python`` in Lambda):

1. ``load_settings``: one validated model from the environment and the event (EventBridge scheduled
   event, or a direct invoke ``{"clusters": ["name", ...]}`` choosing among the configured or discovered
   clusters by name only); invalid, or PUBLISH_MARGIN_SECONDS not below the invocation's time ->
   ``ConfigError``, nothing done.
2. ``build_deps``: S3 state store, EMF or PutMetricData publisher, cluster collection (kept across warm
   invocations that share a configuration).
3. ``run_collection``: every cluster, concurrently and isolated, within the invocation's remaining time.
   When no cluster at all could be collected, or some cluster's publishing is stuck, the invocation
   fails (``CollectionFailed``), so the template's Errors alarm and on-failure queue see it; other
   partial failures are in the returned summary.

Logs are structured (Powertools Logger, request context, the EventBridge event id as correlation id, a
``cluster`` key per cluster message; never a payload body or a credential). X-Ray tracing is off unless
``POWERTOOLS_TRACE_DISABLED=false``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.utilities.typing import LambdaContext
from cni_metrics.collector.job import Deps, run_collection
from cni_metrics.collector.settings import ConfigError, load_settings
from cni_metrics.collector.wiring import build_deps

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME") or "cni-metrics")
copy_config_to_registered_loggers(source_logger=logger, include={"cni_metrics"})

_deps: dict[str, Deps] = {}


class CollectionFailed(RuntimeError):
    """Nothing could be collected, or publishing is stuck: fail the invocation so the Errors alarm fires."""


CORRELATION_ID_PATH = "id"
"""JMESPath of the correlation id: the EventBridge event's id (a direct invoke has none)."""


@logger.inject_lambda_context(clear_state=True, correlation_id_path=CORRELATION_ID_PATH, log_event=False)
def _handle(event: Any, context: LambdaContext) -> dict[str, Any]:
    remaining = context.get_remaining_time_in_millis() / 1000.0
    try:
        settings = load_settings(os.environ, event)
        settings.check_time(remaining)
    except ConfigError as exc:
        logger.error("rejected: %s", exc)
        raise
    logger.setLevel(settings.log_level)
    key = settings.model_dump_json()  # the event's choice is not part of it: per invocation
    deps = _deps.get(key) or _deps.setdefault(key, build_deps(settings))
    summary = run_collection(settings, deps=deps, remaining_seconds=remaining)
    logger.info("run finished", extra={"summary": summary.to_dict()})
    if summary.alarming:
        raise CollectionFailed(
            "; ".join(f"{c.cluster}: {c.status}: {c.error or 'no detail'}" for c in summary.clusters)
        )
    return summary.to_dict()


def _traced(handler: Callable[[Any, LambdaContext], dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """The handler, wrapped by the Powertools Tracer only when tracing is enabled (it costs ~250 ms)."""
    if os.environ.get("POWERTOOLS_TRACE_DISABLED", "true").lower() != "false":
        return handler
    try:
        from aws_lambda_powertools import Tracer

        tracer = Tracer()
    except ImportError:  # the layer installs aws-lambda-powertools[parser] only
        logger.warning("tracing requested but aws-xray-sdk is not installed; running untraced")
        return handler
    wrapped: Callable[..., dict[str, Any]] = tracer.capture_lambda_handler(handler)
    return wrapped


lambda_handler = _traced(_handle)
"""Entry point (Handler: app.lambda_handler)."""
