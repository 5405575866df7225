"""What the local EKS stand-in says the collector should have published, accumulated over cycles.

The stand-in's truth lists the current aws-node pods with what each last served and its counter
increments (across restarts) as of that serve. ``TruthTracker.observe`` is called once per cluster
after every collection: it remembers pods that have since left and returns the gauge sums over the pods
served in that collection (a pod whose scrape failed did not serve). Counter increases count from the
first collection, which only records baselines.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any, Protocol

from cni_metrics.core import catalogue

GAUGES: dict[str, str] = {f.name: f.metric for f in catalogue.GAUGES if f.metric is not None}
COUNTERS: dict[str, str] = {f.name: f.metric for f in catalogue.COUNTERS if f.metric is not None}


class TruthSource(Protocol):
    """The stand-in's truth API (``fake_eks.testing.RunningFakeEks``)."""

    def truth(self, cluster: str) -> dict[str, Any]:
        """GET {truth_url}/clusters/{cluster}."""
        ...


class TruthTracker:
    """Per cluster: every pod's latest increments, the baseline totals, the pods' scrape counts."""

    def __init__(self, eks: TruthSource, clusters: Iterable[str]) -> None:
        self.eks = eks
        self.clusters = list(clusters)
        self.increments: dict[str, dict[str, dict[str, float]]] = {c: {} for c in self.clusters}
        self.scrapes: dict[str, dict[str, int]] = {c: {} for c in self.clusters}
        self.baseline: dict[str, dict[str, float]] = {}
        self.served: dict[str, int] = {}

    def observe(self, cluster: str) -> dict[str, float]:
        """Record a snapshot; the gauge sums (CloudWatch names) over the pods served since the last one."""
        gauges: dict[str, float] = defaultdict(float)
        served = 0
        for pod in self.eks.truth(cluster)["pods"]:
            uid = pod["uid"]
            self.increments[cluster][uid] = dict(pod["increments"])
            if pod["scrapes"] > self.scrapes[cluster].get(uid, 0) and pod["served"] is not None:
                served += 1
                for family, value in pod["served"]["gauges"].items():
                    gauges[family] += value
            self.scrapes[cluster][uid] = pod["scrapes"]
        self.served[cluster] = served
        return {GAUGES[family]: value for family, value in gauges.items() if family in GAUGES}

    def start_counting(self) -> None:
        """Call after the first collection: increases are counted from here."""
        for cluster in self.clusters:
            self.baseline[cluster] = self.totals(cluster)

    def totals(self, cluster: str) -> dict[str, float]:
        """Σ over every pod seen of its increments, by CloudWatch counter name."""
        out: dict[str, float] = dict.fromkeys(COUNTERS.values(), 0.0)
        for increments in self.increments[cluster].values():
            for family, value in increments.items():
                if family in COUNTERS:
                    out[COUNTERS[family]] += value
        return out

    def increases(self, cluster: str) -> dict[str, float]:
        """True counter increases since the first collection, by CloudWatch name."""
        now, before = self.totals(cluster), self.baseline[cluster]
        return {name: now[name] - before.get(name, 0.0) for name in now}
