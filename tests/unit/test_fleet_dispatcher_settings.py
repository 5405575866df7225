"""The dispatcher's settings: documented defaults, every mistake named after its variable, its event."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cni_metrics.fleet.location import FleetLocation
from cni_metrics.fleet.settings import load_dispatcher_settings
from cni_metrics.settings_fields import ConfigError

ROOT = Path(__file__).resolve().parents[2]
BASE = {"FLEET_DOCUMENT": "s3://fleet/prod.json", "COLLECTOR_FUNCTION": "cni-metrics-collector",
        "STATE_BUCKET": "state-bucket"}


def test_defaults() -> None:
    # given only the required variables
    settings = load_dispatcher_settings(BASE)
    # then every default is the documented one
    assert settings.fleet_document == FleetLocation("fleet", "prod.json")
    assert (settings.mode, settings.dispatch_concurrency, settings.period_seconds) == ("auto", 32, 60)
    assert (settings.stale_periods, settings.state_prefix) == (3, "cni-metrics/state/")
    assert (settings.publish_mode, settings.namespace, settings.log_level) == ("emf", "Kubernetes", "INFO")


@pytest.mark.parametrize(
    "function",
    ["cni-metrics-collector", "arn:aws:lambda:us-east-1:123456789012:function:cni-metrics-collector",
     "arn:aws:lambda:eu-west-1:123456789012:function:c:live", "123456789012:function:c"],
)
def test_the_collector_is_a_function_name_or_arn(function: str) -> None:
    # given the collector named as Invoke accepts it, then it is taken as given
    assert load_dispatcher_settings({**BASE, "COLLECTOR_FUNCTION": function}).collector_function == function


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({**BASE, "FLEET_DOCUMENT": ""}, "FLEET_DOCUMENT: Field required"),
        ({**BASE, "COLLECTOR_FUNCTION": "https://lambda/x"}, "COLLECTOR_FUNCTION: a Lambda function name"),
        ({**BASE, "FLEET_MODE": "sometimes"}, "FLEET_MODE: Input should be 'auto', 'inline' or 'fanout'"),
        ({**BASE, "DISPATCH_CONCURRENCY": "65"}, "DISPATCH_CONCURRENCY: Input should be less than or equal"),
        ({**BASE, "PERIOD_SECONDS": "30"}, "PERIOD_SECONDS: Input should be greater than or equal to 60"),
        ({**BASE, "STATE_PREFIX": "/abs/"}, "STATE_PREFIX: must not start with '/'"),
    ],
)
def test_bad_configuration_is_a_clear_error(env: dict[str, str], message: str) -> None:
    # given a missing or invalid variable, when loaded, then the error names it
    with pytest.raises(ConfigError) as raised:
        load_dispatcher_settings(env)
    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("event", "accepted"),
    [
        (json.loads((ROOT / "events" / "fleet" / "dispatcher-scheduled.json").read_text()), True),
        ({}, True),
        (None, True),
        ({"clusters": ["a"]}, False),
        ({"clusters": [{"name": "a", "endpoint": "https://evil"}]}, False),
        ("go", False),
    ],
)
def test_the_dispatcher_takes_its_schedules_event_only(event: Any, accepted: bool) -> None:
    # given the scheduled event, an empty one, or one naming clusters (or saying how to reach them)
    # when loaded, then only the first ones are accepted
    if accepted:
        load_dispatcher_settings(BASE, event)
    else:
        with pytest.raises(ConfigError, match="invalid event"):
            load_dispatcher_settings(BASE, event)
