"""Collector Lambda: event + environment -> ``cni_metrics.collector.job.run_collection`` -> summary.

Reads like a table of contents; the work is in the ``cni_metrics`` layer (``/opt/python`` in Lambda):

1. ``load_settings``: one validated model from the environment and the event (EventBridge scheduled
   event, or a direct invoke ``{"clusters": ["name", ...]}`` choosing among the configured or discovered
   clusters by name only); invalid, or PUBLISH_MARGIN_SECONDS not below the invocation's time ->
   ``ConfigError``, nothing done.
2. ``build_deps``: S3 state store, EMF or PutMetricData publisher, cluster collection (kept across warm
   invocations that share a configuration).
3. ``run_collection``: every cluster, concurrently and isolated, within the invocation's remaining time.
   When no cluster at all could be collected the invocation fails (``CollectionFailed``), so the
   template's Errors alarm and on-failure queue see it; partial failures are in the returned summary.

Logs are structured (Powertools Logger, request context, a ``cluster`` key per cluster message; never a
payload body or a credential). X-Ray tracing is off unless ``POWERTOOLS_TRACE_DISABLED=false``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.utilities.typing import LambdaContext
from cni_metrics.collector.job import ClusterOutcome, Deps, RunSummary, run_collection
from cni_metrics.collector.settings import ClusterSpec, ConfigError, Settings, load_settings
from cni_metrics.collector.wiring import build_deps

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME") or "cni-metrics")
copy_config_to_registered_loggers(source_logger=logger, include={"cni_metrics"})

_deps: dict[str, Deps] = {}


class CollectionFailed(RuntimeError):
    """No cluster could be collected: fail the invocation so the Errors alarm fires."""


@logger.inject_lambda_context(clear_state=True)
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
    summary = run_collection(settings, deps=_for_event(settings, deps), remaining_seconds=remaining)
    _report_not_found(settings, summary)
    logger.info("run finished", extra={"summary": summary.to_dict()})
    if summary.failed_everywhere:
        raise CollectionFailed(
            "; ".join(f"{c.cluster}: {c.status}: {c.error or 'no detail'}" for c in summary.clusters)
        )
    return summary.to_dict()


def _for_event(settings: Settings, deps: Deps) -> Deps:
    """The dependencies of this invocation: discovery keeps only the clusters the event named."""
    discover = deps.discover
    if settings.requested is None or discover is None:
        return deps

    def chosen(*args: Any, **kwargs: Any) -> list[ClusterSpec]:
        return settings.chosen(discover(*args, **kwargs))

    return replace(deps, discover=chosen)


def _report_not_found(settings: Settings, summary: RunSummary) -> None:
    """A name the event gave that is neither configured nor discovered is an error of this run."""
    seen = {outcome.cluster for outcome in summary.clusters}
    tag = "=".join(settings.discovery_tag or ())
    for name in dict.fromkeys(settings.requested or ()):
        if name not in seen:
            error = f"not configured, and discovery by tag {tag} did not find it"
            summary.clusters.append(ClusterOutcome(name, "error", error=error))


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
