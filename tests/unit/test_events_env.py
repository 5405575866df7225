"""The sample events and env-vars files against template.yaml, read with SAM's own rules.

`sam local invoke --env-vars FILE` sets, per function, only the variables the function declares: those of
the file's ``Parameters`` section, then of the section named by the function's logical id; the
credentials and region are the shell's. SAM CLI's own code (``.sam-venv``: it pins boto3, so it runs in
its own interpreter) resolves each function's environment here, exactly as `sam local invoke` would hand it
to the container. Each event is then parsed by its function's own code with that environment:
``events/dashboard-*.json`` are the dashboard function's (as ``make invoke`` assumes), the others the
collector's.
"""

from __future__ import annotations

import json
import os
import subprocess
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import cfnlint  # type: ignore[import-untyped]
import pytest
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import (
    CloudFormationCustomResourceCreateModel,
    CloudFormationCustomResourceDeleteModel,
    CloudFormationCustomResourceUpdateModel,
    EventBridgeModel,
)
from cni_metrics.collector.settings import load_settings
from cni_metrics.dashboard.handler import is_custom_resource
from cni_metrics.dashboard.settings import load_dashboard_settings, parse_clusters
from cni_metrics.settings_fields import ConfigError
from local_lambda.built import load_function, read_template
from local_lambda.receiver import RECEIVER_PORT
from local_lambda.runner import declared_overrides, read_env_file

REPO = Path(__file__).resolve().parents[2]
SAM_PYTHON = REPO / ".sam-venv" / "bin" / "python"
ENV_FILES = {"linux": REPO / "events" / "env.json", "docker": REPO / "events" / "env.docker.json"}
EVENTS = sorted(path for path in (REPO / "events").glob("*.json") if not path.name.startswith("env"))
DASHBOARD_EVENTS = [path for path in EVENTS if path.name.startswith("dashboard-")]
COLLECTOR_EVENTS = [path for path in EVENTS if path not in DASHBOARD_EVENTS]
CUSTOM_RESOURCE_MODELS = {"Create": CloudFormationCustomResourceCreateModel,
                          "Update": CloudFormationCustomResourceUpdateModel,
                          "Delete": CloudFormationCustomResourceDeleteModel}
# botocore's client name of each AWS_ENDPOINT_URL_<SERVICE> variable the template declares.
ENDPOINT_CLIENTS = {"EKS": "eks", "STS": "sts", "S3": "s3", "CLOUDWATCH": "cloudwatch", "EC2": "ec2"}

# SAM CLI's `sam local invoke` path: its template and function providers, then the invoke configuration of
# each function (LocalLambdaRunner.get_invoke_config) with the env-vars file's values ("" = no file).
SAM_ENVIRONMENTS = """
import json, sys
from samcli.commands.local.lib.local_lambda import LocalLambdaRunner
from samcli.lib.providers.sam_function_provider import SamFunctionProvider
from samcli.lib.providers.sam_stack_provider import SamLocalStackProvider

stacks, _ = SamLocalStackProvider.get_stacks(sys.argv[1])
provider = SamFunctionProvider(stacks)
result = {}
for path in sys.argv[2:]:
    values = json.load(open(path)) if path else {}
    runner = LocalLambdaRunner(local_runtime=None, function_provider=provider, cwd=".", real_path=".",
                               env_vars_values=values, aws_region="us-east-1")
    result[path] = {f.name: runner.get_invoke_config(f).env_vars.resolve() for f in provider.get_all()}
print(json.dumps(result))
"""


@cache
def _sam_environments() -> dict[str, dict[str, dict[str, str]]]:
    """{env file ("" for none): {function: the environment `sam local invoke` gives it}}."""
    if not SAM_PYTHON.exists():
        pytest.skip("SAM CLI not installed (make validate installs .sam-venv)")
    # A clean shell: sam lets the shell's values of declared variables through, and its credentials.
    env = {"PATH": os.environ["PATH"], "HOME": str(REPO), "SAM_CLI_TELEMETRY": "0",
           "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": os.devnull,
           "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
    files = [str(path) for path in ENV_FILES.values()] + [""]
    done = subprocess.run([str(SAM_PYTHON), "-c", SAM_ENVIRONMENTS, str(REPO / "template.yaml"), *files],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=120, check=True)
    result: dict[str, dict[str, dict[str, str]]] = json.loads(done.stdout)
    return result


def _sam_environment(env_file: Path | None, function: str) -> dict[str, str]:
    return _sam_environments()["" if env_file is None else str(env_file)][function]


def _file_sections(env_file: Path) -> dict[str, dict[str, str]]:
    document: dict[str, dict[str, str]] = json.loads(env_file.read_text())
    return document


@pytest.mark.parametrize("variant", sorted(ENV_FILES))
def test_every_variable_of_the_env_file_reaches_its_function_under_sam(variant: str) -> None:
    # Given an env-vars file and the template's functions
    env_file = ENV_FILES[variant]
    sections = _file_sections(env_file)
    functions = set(_sam_environments()[str(env_file)])

    # Then every section other than Parameters names a function of the template
    assert set(sections) - {"Parameters"} <= functions

    # And for every function, each variable the file sets for it (Parameters, then its own section) is in
    # the environment SAM CLI resolves, with the file's value: none is dropped as undeclared
    for function in functions:
        expected = {**sections.get("Parameters", {}), **sections.get(function, {})}
        resolved = _sam_environment(env_file, function)
        missing = sorted(name for name in expected if name not in resolved)
        assert not missing, f"{function} does not declare {missing}: sam local invoke drops them"
        assert {name: resolved[name] for name in expected} == expected, function


@pytest.mark.parametrize("variant", sorted(ENV_FILES))
def test_local_lambda_gives_each_function_the_environment_sam_gives(variant: str, tmp_path: Path) -> None:
    # Given template.yaml where `sam build` would put it, with its code and layer directories
    env_file = ENV_FILES[variant]
    template = read_template(REPO / "template.yaml")
    (tmp_path / "template.yaml").write_text((REPO / "template.yaml").read_text())
    for resource in template["Resources"].values():
        properties = resource.get("Properties", {})
        code = properties.get("CodeUri") or properties.get("ContentUri")
        if isinstance(code, str):
            (tmp_path / code).mkdir(parents=True, exist_ok=True)

    for function, sam in _sam_environments()[str(env_file)].items():
        # When local_lambda (make invoke) resolves the function's environment with the env file
        built = load_function(tmp_path, function)
        applied, dropped = declared_overrides(built, read_env_file(env_file, function))
        local = {**built.environment, **applied}

        # Then it is SAM's for every declared variable, and nothing of the file is dropped
        assert local == {name: sam[name] for name in built.environment}, function
        assert dropped == [], function


def test_env_files_and_template_set_no_lambda_reserved_variable() -> None:
    # Given the names Lambda reserves, as cfn-lint (which `make validate` runs) lists them from the
    # Lambda documentation (credentials, region, handler, runtime paths)
    schema = (Path(cfnlint.__file__).parent / "data" / "schemas" / "extensions" / "aws_lambda_function"
              / "environment_variable_keys.json")
    reserved = set(json.loads(schema.read_text())["propertyNames"]["not"]["enum"])
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION"} <= reserved

    # When the env files' variables and the template's declarations are collected
    template = read_template(REPO / "template.yaml")
    declared = set(template["Globals"]["Function"]["Environment"]["Variables"])
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            declared |= set(resource["Properties"].get("Environment", {}).get("Variables", {}))
    in_files = {name for env_file in ENV_FILES.values() for section in _file_sections(env_file).values()
                for name in section}

    # Then neither sets a reserved one (sam takes those from the shell: `make stand-ins` prints them)
    assert not in_files & reserved
    assert not declared & reserved


def test_docker_env_file_is_the_linux_one_through_host_docker_internal() -> None:
    # Given the two env files
    linux, docker = (_file_sections(ENV_FILES[variant]) for variant in ("linux", "docker"))

    # Then they set the same variables; the endpoints differ by host only: 127.0.0.1 (the container
    # shares the host's network) against host.docker.internal, on the same ports
    assert {k: set(v) for k, v in linux.items()} == {k: set(v) for k, v in docker.items()}
    for section, variables in linux.items():
        for name, value in variables.items():
            other = docker[section][name]
            if name.startswith("AWS_ENDPOINT_URL_"):
                here, there = urlsplit(value), urlsplit(other)
                assert (here.hostname, there.hostname) == ("127.0.0.1", "host.docker.internal"), name
                assert (here.scheme, here.port) == (there.scheme, there.port), name
            else:
                assert other == value, name


@pytest.mark.parametrize("service", sorted(ENDPOINT_CLIENTS))
def test_empty_endpoint_variable_leaves_botocore_on_the_aws_endpoint(
        service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the template's value of AWS_ENDPOINT_URL_<SERVICE> (what a deployed function gets)
    name = f"AWS_ENDPOINT_URL_{service}"
    deployed = read_template(REPO / "template.yaml")["Globals"]["Function"]["Environment"]["Variables"][name]
    client_name: Any = ENDPOINT_CLIENTS[service]
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)

    # When botocore builds a client without the variable, with the deployed value and with env.json's
    monkeypatch.delenv(name, raising=False)
    unset = boto3.session.Session(region_name="us-east-1").client(client_name).meta.endpoint_url
    monkeypatch.setenv(name, deployed)
    empty = boto3.session.Session(region_name="us-east-1").client(client_name).meta.endpoint_url
    local = _file_sections(ENV_FILES["linux"])["Parameters"][name]
    monkeypatch.setenv(name, local)
    pointed = boto3.session.Session(region_name="us-east-1").client(client_name).meta.endpoint_url

    # Then the empty value is botocore's "unset": the AWS endpoint; env.json's value is the stand-in
    assert deployed == ""
    assert empty == unset
    assert str(urlsplit(unset).hostname).endswith(".amazonaws.com")
    assert pointed == local


@pytest.mark.parametrize("variant", sorted(ENV_FILES))
@pytest.mark.parametrize("event", COLLECTOR_EVENTS, ids=[path.stem for path in COLLECTOR_EVENTS])
def test_collector_event_parses_with_the_environment_sam_gives(variant: str, event: Path) -> None:
    # Given the collector's environment under sam local invoke with the env file, and the event
    environment = _sam_environment(ENV_FILES[variant], "CollectorFunction")
    document = json.loads(event.read_text())

    # When the collector's own settings loader reads both
    settings = load_settings(environment, document)

    # Then the configuration is valid (the state bucket is the file's), and the clusters the event names
    # are configured ones (the file's CLUSTER_NAMES): those the run collects, else all the file names
    sections = _file_sections(ENV_FILES[variant])
    configured = sections["Parameters"]["CLUSTER_NAMES"].split(",")
    named = document.get("clusters")
    assert settings.state_bucket == sections["CollectorFunction"]["STATE_BUCKET"]
    assert named is None or set(named) <= set(configured)
    assert [spec.name for spec in settings.clusters] == (named or configured)


def test_without_the_env_file_sam_gives_the_collector_a_bucket_name_it_refuses() -> None:
    # Given the collector's environment under sam local invoke without --env-vars
    environment = _sam_environment(None, "CollectorFunction")

    # Then STATE_BUCKET is the bucket's logical id (SAM's Ref to a resource), which the settings refuse
    assert environment["STATE_BUCKET"] == "StateBucket"
    with pytest.raises(ConfigError, match="STATE_BUCKET"):
        load_settings({**environment, "CLUSTER_NAMES": "demo-prod"}, None)


@pytest.mark.parametrize("variant", sorted(ENV_FILES))
@pytest.mark.parametrize("event", DASHBOARD_EVENTS, ids=[path.stem for path in DASHBOARD_EVENTS])
def test_dashboard_event_parses_for_the_dashboard_function(variant: str, event: Path) -> None:
    # Given the dashboard function's environment under sam local invoke, the event, and the properties the
    # template's custom resource sets
    environment = _sam_environment(ENV_FILES[variant], "DashboardFunction")
    document = json.loads(event.read_text())
    template = read_template(REPO / "template.yaml")
    template_properties = set(template["Resources"]["Dashboard"]["Properties"])

    # When the handler's routing and settings read it
    if is_custom_resource(document):
        # Then a custom-resource request is what CloudFormation sends (Powertools' models), for the
        # template's Custom::CniDashboard, answered to the local receiver over HTTPS
        model: Any = CUSTOM_RESOURCE_MODELS[document["RequestType"]]
        request: Any = parse(event=document, model=model)
        assert (request.resource_type, request.logical_resource_id) == ("Custom::CniDashboard", "Dashboard")
        url = urlsplit(document["ResponseURL"])
        assert (url.scheme, url.hostname, url.port) == ("https", "127.0.0.1", RECEIVER_PORT)
        properties = document["ResourceProperties"]
        assert set(properties) == template_properties
        assert set(document.get("OldResourceProperties", properties)) == template_properties
        # And the settings load from the environment and its properties, naming the set it answers for
        settings = load_dashboard_settings(environment, properties)
        assert settings.name == properties["DashboardName"]
        assert document.get("PhysicalResourceId", settings.name) == settings.name
        assert settings.cluster_names == tuple(sorted(properties["Clusters"].split(",")))
    else:
        settings = load_dashboard_settings(environment)
        if "clusters" in document:
            # Then a direct invoke names valid clusters
            assert parse_clusters(document["clusters"])
        else:
            # Then anything else is a schedule: an EventBridge scheduled event, the env file's clusters
            parse(event=document, model=EventBridgeModel)
            assert document["detail-type"] == "Scheduled Event"
            clusters = _file_sections(ENV_FILES[variant])["Parameters"]["CLUSTER_NAMES"]
            assert settings.cluster_names == tuple(sorted(clusters.split(",")))
