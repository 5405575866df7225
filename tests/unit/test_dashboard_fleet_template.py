"""template.yaml in fleet mode, for the dashboard function: its environment names the fleet document and
the state objects, its role reads that one object and lists that one prefix, and may put NAME-fleet."""

from __future__ import annotations

from test_template import (
    ACCOUNT,
    FLEET,
    FLEET_OBJECT,
    SCENARIOS,
    STATE_PREFIX,
    UNSCOPABLE,
    Stack,
    _actions,
    _by_action,
    _iam_matches,
    _resources,
)


def test_fleet_mode_gives_the_dashboard_function_the_fleet_and_the_state_objects() -> None:
    # given a fleet-mode stack and one without fleet mode
    fleet, plain = Stack(**FLEET), Stack(**SCENARIOS["names"])
    # when the dashboard function's environments are read
    env = fleet.resource("DashboardFunction")["Properties"]["Environment"]["Variables"]
    plain_env = plain.resource("DashboardFunction")["Properties"]["Environment"]["Variables"]
    # then in fleet mode it names the fleet document and the collector's state objects
    assert {key: env[key] for key in ("FLEET_DOCUMENT", "STATE_BUCKET", "STATE_PREFIX")} == {
        "FLEET_DOCUMENT": FLEET_OBJECT, "STATE_BUCKET": "<StateBucket>", "STATE_PREFIX": STATE_PREFIX}
    # and without it none of the three is set
    assert not {"FLEET_DOCUMENT", "STATE_BUCKET", "STATE_PREFIX"} & set(plain_env)


def test_fleet_mode_lets_the_dashboard_role_read_the_document_and_list_the_state_prefix_only() -> None:
    # given a fleet-mode stack
    stack = Stack(**FLEET)
    actions = _by_action(stack, "DashboardRole")
    # then it may get the one fleet-document object, nothing else of S3
    assert [_resources(s) for s in actions["s3:GetObject"]] == [[f"arn:aws:s3:::{FLEET_OBJECT[5:]}"]]
    (listing,) = actions["s3:ListBucket"]
    assert (_resources(listing), listing["Condition"]) == (
        ["<StateBucket.Arn>"], {"StringLike": {"s3:prefix": f"{STATE_PREFIX}*"}})
    assert sorted(a for a in actions if a.startswith("s3:")) == ["s3:GetObject", "s3:ListBucket"]
    # and it assumes no role (the state listing tells which clusters were collected)
    assert "sts:AssumeRole" not in actions
    # and no wildcard action; "*" only where the API has no resource type
    for statement in stack.statements("DashboardRole"):
        assert all("*" not in action for action in _actions(statement)), statement
        if "*" in _resources(statement):
            assert set(_actions(statement)) <= UNSCOPABLE, statement
    # and without fleet mode the dashboard role has no S3 permission at all
    plain = _by_action(Stack(**SCENARIOS["names"]), "DashboardRole")
    assert not [a for a in plain if a.startswith("s3:")]


def test_the_dashboard_role_may_put_and_delete_the_fleet_page() -> None:
    # given the dashboard statement of a fleet-mode stack named fleet-ops
    stack = Stack(**FLEET, DashboardName="fleet-ops")
    actions = _by_action(stack, "DashboardRole")
    arn = f"arn:aws:cloudwatch::{ACCOUNT}:dashboard/"
    for action in ("cloudwatch:PutDashboard", "cloudwatch:GetDashboard", "cloudwatch:DeleteDashboards"):
        (statement,) = actions[action]
        # then the overview page is one of the set's pages, and a longer suffix is not
        assert any(_iam_matches(pattern, arn + "fleet-ops-fleet") for pattern in _resources(statement))
        assert not any(_iam_matches(pattern, arn + "fleet-ops-fleets") for pattern in _resources(statement))
