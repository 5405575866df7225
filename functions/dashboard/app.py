"""Dashboard Lambda: custom resource, schedule and direct invoke (see cni_metrics.dashboard.handler)."""

from __future__ import annotations

from typing import Any

from cni_metrics.dashboard.handler import handle


def lambda_handler(event: Any, context: Any) -> dict[str, Any] | None:
    """Entry point (Handler: app.lambda_handler)."""
    return handle(event, context)
