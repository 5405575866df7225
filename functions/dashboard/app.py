"""Dashboard Lambda: custom resource, schedule and direct invoke (see cni_metrics.dashboard.handler).

Logs are JSON lines through Powertools Logger (every ``cni_metrics`` logger shares its configuration, so
a scheduled run's INFO lines are kept), with the request context and a correlation id: the EventBridge
event's ``id`` or the CloudFormation ``RequestId``. The event itself is never logged: a custom-resource
event carries a pre-signed ResponseURL.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from cni_metrics.dashboard.handler import handle

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME") or "cni-metrics")
copy_config_to_registered_loggers(source_logger=logger, include={"cni_metrics"})
CORRELATION_ID_PATH = "id || RequestId"
"""JMESPath of the correlation id: EventBridge event id, else CloudFormation RequestId."""


@logger.inject_lambda_context(clear_state=True, correlation_id_path=CORRELATION_ID_PATH, log_event=False)
def lambda_handler(event: Any, context: Any) -> dict[str, Any] | None:
    """Entry point (Handler: app.lambda_handler)."""
    return handle(event, context)
