"""The fleet document: every bad entry or rule reported (which, which field, why) and skipped, never fatal
to the fleet; a document that cannot be used at all refused as a whole; a worker's lookup by id."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cni_metrics.collector.settings import ClusterSpec
from cni_metrics.fleet.document import (
    MAX_DOCUMENT_BYTES,
    DiscoveryRule,
    FleetCluster,
    FleetDocumentError,
    Problem,
    parse_fleet,
)
from cni_metrics.fleet.location import FleetLocation, parse_location
from cni_metrics.fleet.resolve import lookup, resolve_name

ROLE_B = "arn:aws:iam::222233334444:role/cni-metrics-reader"
CA = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nc2VjcmV0\n-----END CERTIFICATE-----\n").decode()
GOOD = [
    {"name": "alpha", "region": "us-east-1"},
    {"name": "beta", "region": "eu-west-1", "role_arn": ROLE_B, "alias": "prod-beta"},
    {"name": "gamma", "region": "us-east-1", "endpoint": "https://gamma.example:443", "ca_data": CA},
]
# (a bad entry, the field named, words of the reason): each is skipped alone
BAD: list[tuple[Any, str | None, str]] = [
    ({"region": "us-east-1"}, "name", "Field required"),
    ({"name": "-dash-first", "region": "us-east-1"}, "name", "pattern"),
    ({"name": "x" * 101, "region": "us-east-1"}, "name", "pattern"),
    ({"name": "no-region"}, "region", "Field required"),
    ({"name": "bad-region", "region": "mars"}, "region", "pattern"),
    ({"name": "bad-role", "region": "us-east-1", "role_arn": "arn:aws:iam::12:user/x"}, "role_arn",
     "pattern"),
    ({"name": "plain-http", "region": "us-east-1", "endpoint": "http://10.0.0.1", "ca_data": CA}, "endpoint",
     "https://"),
    ({"name": "empty-ca", "region": "us-east-1", "ca_data": ""}, "ca_data", "at least 1"),
    ({"name": "not-a-ca", "region": "us-east-1", "ca_data": "bm90IGEgY2VydA=="}, "ca_data", "PEM"),
    ({"name": "garbled-ca", "region": "us-east-1", "ca_data": "%%%"}, "ca_data", "PEM certificate"),
    ({"name": "bad-alias", "region": "us-east-1", "alias": "has space"}, "alias", "pattern"),
    ({"name": "typo", "region": "us-east-1", "rolearn": ROLE_B}, "rolearn", "Extra inputs"),
    ({"name": 42, "region": "us-east-1"}, "name", "valid string"),
    ("just-a-name", None, "expected a JSON object"),
]


def _doc(clusters: list[Any], discovery: list[Any] | None = None, **extra: Any) -> bytes:
    return json.dumps({"version": 1, "clusters": clusters, "discovery": discovery or [], **extra}).encode()


@pytest.mark.parametrize(("entry", "field", "reason"), BAD)
def test_a_bad_entry_is_reported_with_its_field_and_skipped(
    entry: Any, field: str | None, reason: str
) -> None:
    # given the good entries with one bad entry among them (third)
    body = _doc([GOOD[0], GOOD[1], entry, GOOD[2]])
    # when the document is parsed
    fleet = parse_fleet(body)
    # then only the bad entry is skipped, and its problem says where, which field and why
    assert [cluster.id for cluster in fleet.clusters] == ["alpha", "prod-beta", "gamma"]
    (problem,) = fleet.problems
    assert (problem.where, problem.field, problem.kind) == ("clusters[2]", field, "entry")
    assert reason in problem.reason
    name = entry.get("name") if isinstance(entry, dict) else None
    assert problem.cluster == (name[:100] if isinstance(name, str) else None)
    assert CA not in str(problem)


def test_several_bad_fields_of_one_entry_are_each_reported() -> None:
    # given an entry wrong in three fields
    body = _doc([{"name": "multi", "region": "x", "endpoint": "ftp://a", "alias": "a b"}])
    # when parsed
    fleet = parse_fleet(body)
    # then one problem per field, in the entry's place
    assert fleet.clusters == ()
    assert {(p.where, p.field) for p in fleet.problems} == {
        ("clusters[0]", "region"), ("clusters[0]", "endpoint"), ("clusters[0]", "alias")
    }
    assert str(fleet.problems[0]).startswith("clusters[0] (multi): ")


def test_a_ca_in_a_bad_entry_never_appears_in_a_problem() -> None:
    # given a bad entry whose CA is a (secret-looking) string and whose endpoint is refused
    body = _doc([{"name": "leaky", "region": "us-east-1", "endpoint": CA, "ca_data": CA}])
    # when parsed
    fleet = parse_fleet(body)
    # then the problem names the field, never the value
    assert [p.field for p in fleet.problems] == ["endpoint"]
    assert all(CA not in str(problem) for problem in fleet.problems)


def test_ids_and_physical_clusters_given_twice_keep_the_first() -> None:
    # given the same name twice in two regions (same id), and one cluster twice under two aliases
    body = _doc([
        {"name": "web", "region": "us-east-1"},
        {"name": "web", "region": "eu-west-1"},
        {"name": "api", "region": "us-east-1", "role_arn": ROLE_B, "alias": "api-1"},
        {"name": "api", "region": "us-east-1", "role_arn": ROLE_B, "alias": "api-2"},
        {"name": "web", "region": "eu-west-1", "alias": "web-eu"},
    ])
    # when parsed
    fleet = parse_fleet(body)
    # then the first of each stands, the later ones are reported; an alias resolves the name clash
    assert [c.id for c in fleet.clusters] == ["web", "api-1", "web-eu"]
    assert [(p.where, p.field) for p in fleet.problems] == [("clusters[1]", "name"), ("clusters[3]", None)]
    assert "clusters[0]" in fleet.problems[0].reason
    assert "same cluster" in fleet.problems[1].reason


@pytest.mark.parametrize(
    ("rule", "field", "reason"),
    [
        ({"regions": ["us-east-1"]}, "tag", "Field required"),
        ({"regions": ["us-east-1"], "tag": "no-equals"}, "tag", "key=value"),
        ({"regions": ["us-east-1"], "tag": ""}, "tag", "required"),
        ({"regions": [], "tag": "a=b"}, "regions", "at least one"),
        ({"regions": ["us-east-1", "us-east-1"], "tag": "a=b"}, "regions", "twice"),
        ({"regions": ["moon-1"], "tag": "a=b"}, "regions.0", "pattern"),
        ({"regions": ["us-east-1"], "tag": "a=b", "role_arn": "role"}, "role_arn", "pattern"),
        ({"regions": ["us-east-1"], "tag": "a=b", "accounts": []}, "accounts", "Extra inputs"),
    ],
)
def test_a_bad_discovery_rule_is_reported_and_skipped(rule: dict[str, Any], field: str, reason: str) -> None:
    # given a good rule and a bad one
    good = {"role_arn": ROLE_B, "regions": ["us-east-1", "eu-west-1"], "tag": "cni-metrics=enabled"}
    fleet = parse_fleet(_doc([], [good, rule]))
    # then the good rule stands, the bad one is reported by place and field
    assert fleet.discovery == (DiscoveryRule(role_arn=ROLE_B, regions=("us-east-1", "eu-west-1"),
                                             tag=("cni-metrics", "enabled")),)
    (problem,) = fleet.problems
    assert (problem.where, problem.field) == ("discovery[1]", field)
    assert reason in problem.reason


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "not JSON"),
        (b'{"version": 1, "clusters": [], "x": NaN}', "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b"[]", "expected a JSON object"),
        (b'{"version": 1, "cluster": []}', "unknown keys ['cluster']"),
        (b'{"clusters": []}', "version: must be 1"),
        (b'{"version": 2, "clusters": []}', "version: must be 1"),
        (b'{"version": 1, "name": "a b"}', "name:"),
        (b'{"version": 1, "clusters": {"name": "a"}}', "clusters: expected a list"),
        (b'{"version": 1, "discovery": "tag=x"}', "discovery: expected a list"),
        (b" " * (MAX_DOCUMENT_BYTES + 1), "more than"),
    ],
)
def test_a_document_that_cannot_be_used_is_an_error(body: bytes, reason: str) -> None:
    # when / then: the whole document is refused, with the reason
    with pytest.raises(FleetDocumentError, match=reason.replace("[", r"\[").replace("]", r"\]")):
        parse_fleet(body)


def test_an_empty_fleet_is_valid() -> None:
    # given only the version
    fleet = parse_fleet(b'{"version": 1}')
    # then there is nothing to collect and nothing wrong
    assert (fleet.name, fleet.clusters, fleet.discovery, fleet.problems) == ("fleet", (), (), ())


def test_an_entry_is_the_collectors_cluster_spec_plus_an_alias() -> None:
    # given the good entries
    fleet = parse_fleet(_doc(GOOD, name="prod"))
    # then each is a ClusterSpec the collector takes as it is, the alias being the published id
    beta = fleet.clusters[1]
    assert isinstance(beta, ClusterSpec)
    assert (beta.name, beta.id, beta.region, beta.role_arn, beta.account) == (
        "beta", "prod-beta", "eu-west-1", ROLE_B, "222233334444"
    )
    assert (fleet.clusters[0].account, fleet.clusters[0].place) == (None, ("", "us-east-1", "alpha"))
    assert "ca_data" not in repr(fleet.clusters[2])
    assert fleet.name == "prod"


def test_a_worker_looks_a_name_up_among_the_fleets_ids() -> None:
    # given a fleet of entries only (no discovery rule: no AWS call can happen)
    fleet = parse_fleet(_doc(GOOD))
    # when a worker is given ids and other names
    # then an id is its entry; a cluster's own name behind an alias, or a name not in the fleet, is refused
    assert lookup(fleet, "alpha") == FleetCluster(name="alpha", region="us-east-1")
    assert lookup(fleet, "prod-beta") is fleet.clusters[1]
    assert lookup(fleet, "beta") is None
    assert lookup(fleet, "not-in-fleet") is None
    assert resolve_name(fleet, "prod-beta") is fleet.clusters[1]
    assert resolve_name(fleet, "not-in-fleet") is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("s3://fleet-bucket/fleet.json", FleetLocation("fleet-bucket", "fleet.json")),
        ("s3://a.b-c/deep/path/fleet.json", FleetLocation("a.b-c", "deep/path/fleet.json")),
        ("https://fleet-bucket/fleet.json", None),
        ("s3://fleet-bucket/", None),
        ("s3://Fleet_Bucket/fleet.json", None),
        ("s3://ab/fleet.json", None),
        ("fleet-bucket/fleet.json", None),
        ("s3://fleet-bucket/" + "k" * 1025, None),
    ],
)
def test_the_fleet_location_is_an_s3_object(value: str, expected: FleetLocation | None) -> None:
    # when / then
    if expected is None:
        with pytest.raises(ValueError, match="s3://bucket/key"):
            parse_location(value)
    else:
        assert parse_location(value) == expected
        assert str(expected) == value


def test_a_problem_reads_as_one_line() -> None:
    # given / when / then
    problem = Problem("clusters[3]", "x", "endpoint", "must be https")
    assert str(problem) == "clusters[3] (x): endpoint: must be https"
    assert str(Problem("discovery[0] eu-west-1", None, None, "AssumeRole failed", "discovery")) == (
        "discovery[0] eu-west-1: AssumeRole failed"
    )
