"""When a run must fail its invocation (so the collector's Errors alarm sees it)."""

from __future__ import annotations

import pytest
from cni_metrics.collector.job import ClusterOutcome, RunSummary, Status


@pytest.mark.parametrize(
    ("statuses", "alarming"),
    [
        (["ok", "ok"], False),
        (["ok", "publish_failed"], False),  # a short publish failure: the outbox keeps the datums
        (["ok", "skipped_busy"], False),  # another run holds the lease and counts the interval
        (["ok", "error"], False),  # partial: reported in the summary
        (["error", "timeout"], True),  # nothing collected at all
        (["ok", "ok", "publish_stuck"], True),  # one cluster's publishing stuck while the others publish
    ],
)
def test_a_run_alarms_when_nothing_was_collected_or_a_cluster_is_stuck(
    statuses: list[Status], alarming: bool
) -> None:
    # given the outcomes of one run's clusters
    summary = RunSummary("run", [ClusterOutcome(f"c{i}", status) for i, status in enumerate(statuses)])
    # then the invocation fails exactly when nothing was collected or some cluster's publishing is stuck
    assert summary.alarming is alarming
