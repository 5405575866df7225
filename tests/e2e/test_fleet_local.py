"""Fleet mode end to end on the built artifact (``make build-local``): the dispatcher and the collector behind
local_lambda's Invoke API, a 12-cluster fleet on the stand-in (3 accounts through roles, 2 regions, one
unreachable and one Auto Mode cluster) and moto, two periods. What CloudWatch (moto) holds is compared with
the stand-in's truth as ``make demo-fleet`` compares it, and the invocations with what the plan says."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cni_demo.fleet import (
    between_periods,
    broken_rows,
    check_health,
    compare,
    expected_statuses,
    fleet_health,
)
from cni_demo.fleet_run import (
    ALIAS,
    COLLECTOR,
    DISPATCHER,
    FleetStandIns,
    dispatch,
    fleet_stand_ins,
)
from cni_demo.truth import TruthTracker
from local_lambda.invoke_api import InvokeApi, PoolConfig

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / ".aws-sam" / "local" / "build"
FLEET_500 = ROOT / "devtools" / "fake_eks" / "scenarios" / "fleet-500.json"


def _scenario(tmp: Path) -> str:
    """fleet-500's accounts, regions and cluster shapes, 12 clusters, two broken (a file: its path)."""
    doc: dict[str, Any] = json.loads(FLEET_500.read_text())
    doc["name"] = "fleet-12"
    (block,) = doc["generate"]
    block.update(count=12, faults={"error_500": [1]},
                 overrides={"fleet-007": {"unreachable": True}, "fleet-010": {"auto_mode": True}})
    path = tmp / "fleet-12.json"
    path.write_text(json.dumps(doc))
    return str(path)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FleetStandIns, InvokeApi, str]]:
    if not (BUILD / "template.yaml").is_file():
        pytest.fail("no build: run `make build-local` (make e2e does)")
    scenario = _scenario(tmp_path_factory.mktemp("scenario"))
    with fleet_stand_ins(scenario) as stand_ins:
        pools = {DISPATCHER: PoolConfig(size=1), COLLECTOR: PoolConfig(size=2)}
        with InvokeApi(BUILD, pools, variables=stand_ins.variables) as api:
            yield stand_ins, api, scenario


@pytest.mark.timeout(600)
def test_two_periods_fan_the_fleet_out_and_publish_the_truth(
    fleet: tuple[FleetStandIns, InvokeApi, str]
) -> None:
    # given the fleet's stand-ins, the built functions behind the Invoke API, and the truth
    stand_ins, api, scenario = fleet
    clusters = sorted(stand_ins.eks.clusters)
    truth = TruthTracker(stand_ins.eks, clusters)
    expected = expected_statuses(scenario)
    assert expected == {"fleet-007": "error", "fleet-010": "no_aws_node_pods"}
    # when the dispatcher runs a first period (baselines), the stand-in moves, and a second period runs
    first = dispatch(api)
    between_periods(stand_ins, truth, clusters, first)
    second = dispatch(api)
    gauges = {name: truth.observe(name) for name in clusters}
    # then the first period invoked the collector once per cluster (sizes unknown), the second packed the
    # small clusters into groups of at most 4, some holding a broken cluster beside healthy ones
    assert (first.dispatch["invocations"], first.dispatch["dispatched"]) == (12, 12)
    groups = [json.loads(record.event)["clusters"] for record in second.records]
    assert sorted(c for group in groups for c in group) == sorted([ALIAS[1], *clusters[1:]])
    assert len(groups) < 12
    assert all(len(group) <= 4 for group in groups)
    mixed = [g for g in groups if set(g) & set(expected) and set(g) - set(expected)]
    assert mixed, groups
    # and every healthy cluster's published gauges, nodesScraped and counter increases (under the alias
    # for fleet-000) equal the truth; the broken ones have their statuses, in the groups they share
    assert compare(stand_ins, truth, second, gauges, expected) == []
    # and collectionFailed: 1 for the broken cluster that could not be collected, 0 for the Auto Mode one
    assert broken_rows(stand_ins, second, expected)[1] == []
    # and the fleet's health says the same
    health = {"period 1": fleet_health(stand_ins, first), "period 2": fleet_health(stand_ins, second)}
    assert check_health(health, len(clusters)) == []
    # and only the first period's lone broken clusters failed their invocations (their only cluster failed)
    failed = sorted(d["requestPayload"]["clusters"][0] for d in api.on_failure)
    assert failed == ["fleet-007"]
