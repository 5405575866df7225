"""template.yaml, translated by aws-sam-translator (no AWS calls) and evaluated for given parameters.

``Stack`` is a small CloudFormation evaluator: it resolves the transformed template's conditions and
intrinsics for one set of parameter values, so the tests read the effective IAM policies, schedule,
layer wiring and environments exactly as CloudFormation would create them.
"""

from __future__ import annotations

import copy
import re
import tomllib
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml  # type: ignore[import-untyped]
from cni_metrics.dashboard.body import DashboardOptions, build_dashboards, page_name
from local_lambda.built import read_template
from samtranslator.parser.parser import Parser  # type: ignore[import-untyped]
from samtranslator.translator.translator import Translator  # type: ignore[import-untyped]

REPO = Path(__file__).resolve().parents[2]
REGION, ACCOUNT = "us-east-1", "123456789012"
NO_VALUE = object()
STATE_PREFIX = "cni-metrics/state/"
# Actions whose API has no resource type: Resource "*" is the only possible scope.
UNSCOPABLE = {"eks:ListClusters", "cloudwatch:PutMetricData", "cloudwatch:ListDashboards",
              "ec2:DescribeSubnets"}


@cache
def _source() -> dict[str, Any]:
    return read_template(REPO / "template.yaml")


@cache
def _transformed(parameter_values: tuple[tuple[str, str], ...] = ()) -> dict[str, Any]:
    """The translated template; SAM resolves some parameter Refs itself (EventInvokeConfig's), with these
    values as CloudFormation gives them to the transform, else with the defaults."""
    template = copy.deepcopy(_source())
    for resource in template["Resources"].values():  # the translator takes S3 URIs only
        props = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if key in props:
                props[key] = f"s3://bucket/{key}.zip"
    translator = Translator(managed_policy_map={}, sam_parser=Parser(),
                            boto_session=boto3.Session(region_name=REGION))
    result: dict[str, Any] = translator.translate(template, parameter_values=dict(parameter_values))
    return result


class Stack:
    """The transformed template (or another ``template``) as CloudFormation would instantiate it."""

    def __init__(self, template: dict[str, Any] | None = None, /, **parameters: str) -> None:
        template = template or _transformed()
        unknown = set(parameters) - set(template["Parameters"])
        assert not unknown, f"unknown parameters {unknown}"
        self.template = template
        self.parameters = {name: str(spec.get("Default", ""))
                           for name, spec in template["Parameters"].items()}
        self.parameters.update(parameters)
        self._pseudo = {"AWS::Region": REGION, "AWS::AccountId": ACCOUNT, "AWS::Partition": "aws",
                        "AWS::StackName": "cni-metrics"}

    def condition(self, name: str) -> bool:
        return bool(self.eval(self.template["Conditions"][name]))

    def resources(self, type_: str | None = None) -> dict[str, dict[str, Any]]:
        """Resources that exist for these parameters, properties resolved."""
        found = {}
        for logical_id, resource in self.template["Resources"].items():
            if "Condition" in resource and not self.condition(resource["Condition"]):
                continue
            if type_ is None or resource["Type"] == type_:
                found[logical_id] = {**resource, "Properties": self.eval(resource.get("Properties", {}))}
        return found

    def resource(self, logical_id: str) -> dict[str, Any]:
        return self.resources()[logical_id]

    def statements(self, role: str) -> list[dict[str, Any]]:
        """Every statement of the role's inline policies."""
        props = self.resource(role)["Properties"]
        return [statement for policy in props["Policies"]
                for statement in policy["PolicyDocument"]["Statement"]]

    def eval(self, value: Any) -> Any:
        """``value`` with every intrinsic resolved (GetAtt and resource Refs become ``<Id.Attr>``)."""
        if isinstance(value, list):
            return [item for item in (self.eval(v) for v in value) if item is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, arg), = value.items()
            if key == "Ref":
                if arg == "AWS::NoValue":
                    return NO_VALUE
                if self.template["Parameters"].get(arg, {}).get("Type") == "CommaDelimitedList":
                    return self.parameters[arg].split(",")
                return self._pseudo.get(arg) or self.parameters.get(arg, f"<{arg}>")
            if key == "Fn::GetAtt":
                return f"<{arg[0]}.{arg[1]}>"
            if key == "Fn::Sub":
                text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], self.eval(arg[1]))
                return re.sub(r"\$\{([^}]+)\}", lambda m: self._sub(m.group(1), variables), text)
            if key == "Fn::If":
                return self.eval(arg[1] if self.condition(arg[0]) else arg[2])
            if key == "Fn::Split":
                return str(self.eval(arg[1])).split(arg[0])
            if key == "Fn::Join":
                return arg[0].join(str(item) for item in self.eval(arg[1]))
            if key == "Fn::Select":
                return self.eval(arg[1])[int(arg[0])]
            if key == "Fn::FindInMap":
                keys = self.eval(arg)
                return self.template["Mappings"][keys[0]][keys[1]][keys[2]]
            if key == "Fn::Equals":
                left, right = self.eval(arg)
                return str(left) == str(right)
            if key == "Fn::Not":
                return not self.eval(arg[0])
            if key == "Fn::And":
                return all(self.eval(arg))
            if key == "Fn::Or":
                return any(self.eval(arg))
            if key == "Fn::Contains":
                values, value = self.eval(arg)
                return value in values
            if key == "Condition":
                return self.condition(arg)
        return {k: v for k, v in ((k, self.eval(v)) for k, v in value.items()) if v is not NO_VALUE}

    def _sub(self, name: str, variables: Mapping[str, Any]) -> str:
        if name in variables:
            return str(variables[name])
        if "." in name:
            return f"<{name}>"
        return str(self._pseudo.get(name) or self.parameters.get(name, f"<{name}>"))


def _actions(statement: Mapping[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


def _resources(statement: Mapping[str, Any]) -> list[str]:
    resource = statement["Resource"]
    return [resource] if isinstance(resource, str) else list(resource)


def _by_action(stack: Stack, role: str) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for statement in stack.statements(role):
        for action in _actions(statement):
            found.setdefault(action, []).append(statement)
    return found


SCENARIOS = {
    "names": {"ClusterNames": "prod,dev"},
    "discovery": {"ClusterDiscoveryTag": "cni-metrics=enabled"},
    "putmetricdata": {"ClusterNames": "prod", "PublishMode": "putmetricdata",
                      "MetricsNamespace": "Custom/CNI"},
    "cross-account": {"ClustersJson": '[{"name": "x", "role_arn": "arn:aws:iam::210987654321:role/r"}]',
                      "CrossAccountRoleArns": ("arn:aws:iam::210987654321:role/r,"
                                               "arn:aws:iam::210987654321:role/s")},
    "vpc": {"ClusterNames": "prod", "SubnetIds": "subnet-1,subnet-2", "SecurityGroupIds": "sg-1"},
}


def _all_statements() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for scenario, parameters in SCENARIOS.items():
        stack = Stack(**parameters)
        for role in ("CollectorRole", "DashboardRole"):
            for statement in stack.statements(role):
                yield scenario, role, statement


@pytest.mark.parametrize(("scenario", "role", "statement"), list(_all_statements()))
def test_no_wildcard_action_and_star_resource_only_where_unscopable(
        scenario: str, role: str, statement: dict[str, Any]) -> None:
    # Given one effective policy statement of a scenario / Then it names actions and scopes resources
    assert statement["Effect"] == "Allow"
    for action in _actions(statement):
        assert "*" not in action, (scenario, role, action)
    if "*" in _resources(statement):
        assert set(_actions(statement)) <= UNSCOPABLE, (scenario, role, statement)


def test_collector_cluster_permissions_are_the_named_clusters_only() -> None:
    # Given two named clusters, no discovery
    stack = Stack(**SCENARIOS["names"])

    # When the collector's effective policy is read
    actions = _by_action(stack, "CollectorRole")

    # Then DescribeCluster covers exactly those clusters, pinned to this account and region
    (describe,) = actions["eks:DescribeCluster"]
    assert _resources(describe) == ["arn:*:eks:*:*:cluster/prod", "arn:*:eks:*:*:cluster/dev"]
    assert describe["Condition"] == {"StringEquals": {"aws:ResourceAccount": ACCOUNT,
                                                      "aws:RequestedRegion": REGION}}
    # And nothing of discovery, cross-account or PutMetricData (EMF is the default)
    assert "eks:ListClusters" not in actions
    assert "eks:ListTagsForResource" not in actions
    assert "sts:AssumeRole" not in actions
    assert "cloudwatch:PutMetricData" not in actions
    # And subnet headroom reads subnets (an API without resource-level permissions)
    assert _resources(actions["ec2:DescribeSubnets"][0]) == ["*"]


def test_discovery_adds_list_clusters_and_reads_tags_with_describe_cluster() -> None:
    # Given discovery by tag
    stack = Stack(**SCENARIOS["discovery"])

    # When the effective policies are read
    collector, dashboard = _by_action(stack, "CollectorRole"), _by_action(stack, "DashboardRole")

    # Then both may list clusters and describe any cluster of the account
    cluster_arns = f"arn:aws:eks:*:{ACCOUNT}:cluster/*"
    for actions in (collector, dashboard):
        assert _resources(actions["eks:ListClusters"][0]) == ["*"]
        assert _resources(actions["eks:DescribeCluster"][0]) == [cluster_arns]
        assert "Condition" not in actions["eks:DescribeCluster"][0]
    # And nothing else of EKS: discovery reads tags from DescribeCluster, the code never lists them
    assert {a for a in (*collector, *dashboard) if a.startswith("eks:")} == {
        "eks:ListClusters", "eks:DescribeCluster"}
    code = "".join(path.read_text() for path in (REPO / "layers" / "cni_metrics").rglob("*.py"))
    assert "list_tags_for_resource" not in code


def test_put_metric_data_only_in_the_configured_namespace() -> None:
    # Given PublishMode putmetricdata and a custom namespace
    stack = Stack(**SCENARIOS["putmetricdata"])

    # When the collector's policy is read
    (statement,) = _by_action(stack, "CollectorRole")["cloudwatch:PutMetricData"]

    # Then PutMetricData is conditioned on that namespace
    assert statement["Condition"] == {"StringEquals": {"cloudwatch:namespace": "Custom/CNI"}}


def test_assume_role_only_on_the_given_roles() -> None:
    # Given cross-account role ARNs
    stack = Stack(**SCENARIOS["cross-account"])

    # When the collector's policy is read
    (statement,) = _by_action(stack, "CollectorRole")["sts:AssumeRole"]

    # Then only those roles may be assumed
    assert _resources(statement) == ["arn:aws:iam::210987654321:role/r", "arn:aws:iam::210987654321:role/s"]


def test_state_access_is_the_state_prefix_only() -> None:
    # Given the default stack
    actions = _by_action(Stack(**SCENARIOS["names"]), "CollectorRole")

    # Then objects are read and written under the state prefix, and only that prefix is listed
    for action in ("s3:GetObject", "s3:PutObject"):
        (statement,) = actions[action]
        assert _resources(statement) == [f"<StateBucket.Arn>/{STATE_PREFIX}*"]
    (listing,) = actions["s3:ListBucket"]
    assert _resources(listing) == ["<StateBucket.Arn>"]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": f"{STATE_PREFIX}*"}}
    assert not {a for a in actions if a.startswith("s3:")} - {"s3:GetObject", "s3:PutObject", "s3:ListBucket"}


def test_logs_and_failure_queue_are_scoped_to_own_resources() -> None:
    # Given the default stack
    stack = Stack(**SCENARIOS["names"])
    collector, dashboard = _by_action(stack, "CollectorRole"), _by_action(stack, "DashboardRole")

    # Then each function writes only its own log group, and the collector sends only to the failure queue
    assert _resources(collector["logs:PutLogEvents"][0]) == ["<CollectorLogGroup.Arn>"]
    assert _resources(dashboard["logs:PutLogEvents"][0]) == ["<DashboardLogGroup.Arn>"]
    assert "logs:CreateLogGroup" not in collector
    assert _resources(collector["sqs:SendMessage"][0]) == ["<FailureQueue.Arn>"]


def _iam_matches(pattern: str, arn: str) -> bool:
    """IAM's resource wildcards: ``*`` any run of characters, ``?`` exactly one."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, arn) is not None


def test_dashboard_permissions_are_its_dashboards_and_alarms() -> None:
    # Given a dashboard name
    actions = _by_action(Stack(ClusterNames="prod", DashboardName="fleet"), "DashboardRole")

    # Then dashboards are the set's pages: the name itself, or the name, a hyphen and 1-5 characters
    dashboard = f"arn:aws:cloudwatch::{ACCOUNT}:dashboard/"
    for action in ("cloudwatch:PutDashboard", "cloudwatch:GetDashboard", "cloudwatch:DeleteDashboards"):
        assert _resources(actions[action][0]) == [f"{dashboard}fleet"] + [
            f"{dashboard}fleet-{'?' * n}" for n in range(1, 6)]
    # And alarms are scoped by that name
    for action in ("cloudwatch:PutMetricAlarm", "cloudwatch:DeleteAlarms", "cloudwatch:DescribeAlarms"):
        assert _resources(actions[action][0]) == [f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:fleet/*"]
    assert "cloudwatch:PutMetricData" not in actions
    assert "cloudwatch:GetMetricData" not in actions


def test_every_page_the_body_builder_makes_and_only_those_are_allowed() -> None:
    # Given the dashboard statement of a stack named fleet
    (statement,) = _by_action(Stack(ClusterNames="prod", DashboardName="fleet"), "DashboardRole")[
        "cloudwatch:PutDashboard"]
    allowed = _resources(statement)
    arn = f"arn:aws:cloudwatch::{ACCOUNT}:dashboard/"

    def permitted(name: str) -> bool:
        return any(_iam_matches(pattern, arn + name) for pattern in allowed)

    # When the builder splits a fleet over pages, then every page it makes is allowed
    pages = build_dashboards([f"c{i:03d}" for i in range(60)],
                             DashboardOptions(name="fleet", clusters_per_dashboard=1))
    assert len(pages) == 60
    assert all(permitted(page.name) for page in pages)
    # And so is the last page of the largest fleet it accepts (one cluster a page)
    most = 12_100
    with pytest.raises(ValueError, match="too many clusters"):
        build_dashboards([f"c{i:05d}" for i in range(most + 1)], DashboardOptions(name="fleet"))
    assert permitted(page_name("fleet", most - 1))
    # And other dashboards sharing the prefix are not
    for other in ("fleetwide", "fleet-production", "fleet_2", "fleet-", "other-fleet"):
        assert not permitted(other), other


def test_vpc_config_and_eni_policy_only_with_subnets() -> None:
    # Given a stack without and one with subnets
    plain, vpc = Stack(**SCENARIOS["names"]), Stack(**SCENARIOS["vpc"])

    # Then only the VPC stack has a VPC config and the ENI managed policy
    for name in ("CollectorFunction", "DashboardFunction"):
        assert "VpcConfig" not in plain.resource(name)["Properties"]
        assert vpc.resource(name)["Properties"]["VpcConfig"] == {"SubnetIds": ["subnet-1", "subnet-2"],
                                                                 "SecurityGroupIds": ["sg-1"]}
    for role in ("CollectorRole", "DashboardRole"):
        assert "ManagedPolicyArns" not in plain.resource(role)["Properties"]
        assert vpc.resource(role)["Properties"]["ManagedPolicyArns"] == [
            "arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"]


def test_functions_run_python313_arm64_with_the_shared_layer() -> None:
    # Given the source template and its default stack
    source, stack = _source()["Resources"], Stack(**SCENARIOS["names"])
    (layer_id, layer), = stack.resources("AWS::Lambda::LayerVersion").items()

    # Then the layer is built by SAM for python3.13 from layers/cni_metrics, for the functions' architecture
    assert source["CniMetricsLayer"]["Properties"]["ContentUri"] == "layers/cni_metrics"
    assert source["CniMetricsLayer"]["Metadata"]["BuildMethod"] == "python3.13"
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.13"]
    assert layer["Properties"]["CompatibleArchitectures"] == ["arm64"]
    # And both functions use it with their own code dir and handler
    for name, code_dir in (("CollectorFunction", "functions/collector"),
                           ("DashboardFunction", "functions/dashboard")):
        assert source[name]["Properties"]["CodeUri"] == code_dir
        props = stack.resource(name)["Properties"]
        assert props["Runtime"] == "python3.13"
        assert props["Architectures"] == ["arm64"]
        assert props["Handler"] == "app.lambda_handler"
        assert props["Layers"] == [f"<{layer_id}>"]
        assert props["LoggingConfig"]["LogGroup"] == f"<{name.replace('Function', 'LogGroup')}>"


def _documented_variables() -> set[str]:
    """Variable names of the configuration tables in README.md."""
    text = (REPO / "README.md").read_text()
    section = text.split("\n## Configuration", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for line in section.splitlines():
        if line.startswith("|"):
            names.update(re.findall(r"\b[A-Z][A-Z0-9_]{2,}\b", line.split("|")[1]))
    return names


def test_collector_environment_follows_the_contract() -> None:
    # Given a stack with settings that differ from the defaults
    stack = Stack(ClusterNames="prod,dev", PublishMode="putmetricdata", MetricsNamespace="Custom/CNI",
                  LogLevel="DEBUG")

    # When the collector's environment is read
    env = stack.resource("CollectorFunction")["Properties"]["Environment"]["Variables"]

    # Then every variable is a documented one, carrying the parameter's value
    assert set(env) <= _documented_variables()
    assert env == {
        "CLUSTER_NAMES": "prod,dev", "CLUSTER_DISCOVERY_TAG": "", "CLUSTERS_JSON": "",
        "PUBLISH_MODE": "putmetricdata", "METRICS_NAMESPACE": "Custom/CNI", "EXHAUSTION_THRESHOLD_PCT": "90",
        "STATE_BUCKET": "<StateBucket>", "STATE_PREFIX": STATE_PREFIX,
        "POWERTOOLS_SERVICE_NAME": "cni-metrics", "POWERTOOLS_LOG_LEVEL": "DEBUG",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "METRIC_SET": "standard", "METRICS_INCLUDE": "", "METRICS_EXCLUDE": "",
        # empty (the defaults, AWS's endpoints), declared for sam local invoke --env-vars
        "CONNECT_TIMEOUT_SECONDS": "", "READ_TIMEOUT_SECONDS": "", "PUBLISH_MARGIN_SECONDS": "",
        **{f"AWS_ENDPOINT_URL_{service}": "" for service in ("EKS", "STS", "S3", "CLOUDWATCH", "EC2")},
        "FLEET_DOCUMENT": "",  # not fleet mode
    }


def test_dashboard_environment_and_custom_resource_follow_the_contract() -> None:
    # Given a stack with alarms on and a topic
    topic = f"arn:aws:sns:{REGION}:{ACCOUNT}:ops"
    stack = Stack(ClusterNames="prod", DashboardName="fleet", AlarmsEnabled="true", AlarmTopicArn=topic)

    # When the dashboard function's environment and the custom resource are read
    env = stack.resource("DashboardFunction")["Properties"]["Environment"]["Variables"]
    custom = stack.resource("Dashboard")

    # Then the variables are documented ones with the parameters' values
    assert set(env) <= _documented_variables()
    names = ("DASHBOARD_NAME", "ALARMS_ENABLED", "ALARM_TOPIC_ARN", "IP_UTILIZATION_ALARM_PCT",
             "METRICS_NAMESPACE", "CLUSTER_NAMES")
    assert {k: env[k] for k in names} == {
        "DASHBOARD_NAME": "fleet", "ALARMS_ENABLED": "true", "ALARM_TOPIC_ARN": topic,
        "IP_UTILIZATION_ALARM_PCT": "80", "METRICS_NAMESPACE": "Kubernetes", "CLUSTER_NAMES": "prod"}
    assert env["COLLECTOR_LOG_GROUP"] == "<CollectorLogGroup>"  # its Logs Insights table of nearest nodes
    assert "STATE_BUCKET" not in env
    # And the custom resource is served by the dashboard function with the clusters and namespace
    assert custom["Type"] == "Custom::CniDashboard"
    assert custom["Properties"]["ServiceToken"] == "<DashboardFunction.Arn>"
    assert custom["Properties"]["Clusters"] == "prod"
    assert custom["Properties"]["Namespace"] == "Kubernetes"
    assert custom["Properties"]["DashboardName"] == "fleet"


def test_collector_schedule_and_async_failure_handling() -> None:
    # Given the default stack
    stack = Stack(**SCENARIOS["names"])

    # When the schedule rule and the invoke config are read
    (target,) = stack.resource("CollectorFunctionSchedule")["Properties"]["Targets"]
    invoke_config = stack.resource("CollectorFunctionEventInvokeConfig")["Properties"]
    queue_policy = stack.resource("FailureQueuePolicy")["Properties"]["PolicyDocument"]["Statement"][0]

    # Then it runs every minute, delivery retries stay within one period, a failed run is not retried
    assert stack.resource("CollectorFunctionSchedule")["Properties"]["ScheduleExpression"] == "rate(1 minute)"
    assert target["Arn"] == "<CollectorFunction.Arn>"
    assert target["RetryPolicy"] == {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 60}
    assert target["DeadLetterConfig"] == {"Arn": "<FailureQueue.Arn>"}
    assert invoke_config["MaximumRetryAttempts"] == 0
    assert invoke_config["DestinationConfig"] == {"OnFailure": {"Destination": "<FailureQueue.Arn>"}}
    # And the rules (only they) may put undelivered events in the queue
    assert queue_policy["Principal"] == {"Service": "events.amazonaws.com"}
    assert queue_policy["Condition"]["ArnEquals"]["aws:SourceArn"] == [
        "<CollectorFunctionSchedule.Arn>", "<DashboardFunctionSchedule.Arn>"]
    assert stack.resource("DashboardFunctionSchedule")["Properties"]["ScheduleExpression"] == "rate(1 hour)"


def test_state_bucket_is_private_encrypted_and_tls_only() -> None:
    # Given the default stack
    stack = Stack(**SCENARIOS["names"])
    bucket = stack.resource("StateBucket")["Properties"]
    (deny,) = stack.resource("StateBucketPolicy")["Properties"]["PolicyDocument"]["Statement"]

    # Then it is encrypted, blocks public access, keeps no versions and expires abandoned state
    rule = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert set(bucket["PublicAccessBlockConfiguration"].values()) == {True}
    assert len(bucket["PublicAccessBlockConfiguration"]) == 4
    assert "VersioningConfiguration" not in bucket
    expiry = bucket["LifecycleConfiguration"]["Rules"][0]
    assert (expiry["Prefix"], expiry["ExpirationInDays"]) == (STATE_PREFIX, 30)
    # And plain HTTP is refused
    assert deny["Effect"] == "Deny"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_error_alarm_notifies_the_topic_only_when_given() -> None:
    # Given a stack without and one with an alarm topic
    topic = f"arn:aws:sns:{REGION}:{ACCOUNT}:ops"
    quiet, loud = Stack(**SCENARIOS["names"]), Stack(ClusterNames="prod", AlarmTopicArn=topic)

    # Then the collector error alarm watches the function's Errors and notifies only when a topic is given
    alarm = quiet.resource("CollectorErrorsAlarm")["Properties"]
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/Lambda", "Errors")
    assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": "<CollectorFunction>"}]
    assert "AlarmActions" not in alarm
    assert loud.resource("CollectorErrorsAlarm")["Properties"]["AlarmActions"] == [topic]


def test_access_entries_for_listed_clusters_when_asked() -> None:
    # Given three clusters with access entries on, and the same without
    on = Stack(ClusterNames="a,b,c", CreateAccessEntries="true", KubernetesGroup="cni-readers")
    off = Stack(ClusterNames="a,b,c")

    # When the access entries are read
    entries = on.resources("AWS::EKS::AccessEntry")

    # Then one STANDARD entry per cluster maps the collector role to the group, without access policy
    assert sorted(e["Properties"]["ClusterName"] for e in entries.values()) == ["a", "b", "c"]
    for entry in entries.values():
        assert entry["Properties"]["PrincipalArn"] == "<CollectorRole.Arn>"
        assert entry["Properties"]["Type"] == "STANDARD"
        assert entry["Properties"]["KubernetesGroups"] == ["cni-readers"]
        assert "AccessPolicies" not in entry["Properties"]
    assert off.resources("AWS::EKS::AccessEntry") == {}
    # And at most five (one slot per position: CloudFormation cannot loop over a list)
    six = Stack(ClusterNames="a,b,c,d,e,f", CreateAccessEntries="true").resources("AWS::EKS::AccessEntry")
    assert sorted(e["Properties"]["ClusterName"] for e in six.values()) == ["a", "b", "c", "d", "e"]


def _rules_broken(stack: Stack) -> list[str]:
    """Descriptions of the template rules whose assertions fail for the stack's parameters."""
    broken = []
    for rule in stack.template["Rules"].values():
        if "RuleCondition" in rule and not stack.eval(rule["RuleCondition"]):
            continue
        broken += [a["AssertDescription"] for a in rule["Assertions"] if not stack.eval(a["Assert"])]
    return broken


def test_rules_refuse_a_stack_without_clusters_or_with_subnets_but_no_security_group() -> None:
    # Given parameter sets that cannot work, and the scenarios that can
    # Then the template's rules refuse the first and accept the others
    assert _rules_broken(Stack()) == ["Give ClusterNames, ClusterDiscoveryTag or ClustersJson."]
    assert _rules_broken(Stack(ClusterNames="prod", SubnetIds="subnet-1")) == [
        "SubnetIds needs SecurityGroupIds (443 to the cluster security group)."]
    for parameters in SCENARIOS.values():
        assert _rules_broken(Stack(**parameters)) == []


def test_outputs_name_functions_roles_and_dashboard() -> None:
    # Given the default stack / Then its outputs give the ARNs users need and the dashboard URL
    outputs = Stack(**SCENARIOS["names"]).eval(_transformed()["Outputs"])
    assert outputs["CollectorRoleArn"]["Value"] == "<CollectorRole.Arn>"
    assert outputs["CollectorFunctionArn"]["Value"] == "<CollectorFunction.Arn>"
    assert outputs["DashboardFunctionArn"]["Value"] == "<DashboardFunction.Arn>"
    assert outputs["DashboardRoleArn"]["Value"] == "<DashboardRole.Arn>"
    assert outputs["DashboardUrl"]["Value"].endswith(f"region={REGION}#dashboards/dashboard/cni-metrics")


def test_rbac_manifest_grants_read_only_access_to_the_group() -> None:
    # Given deploy/rbac.yaml
    manifest = (REPO / "deploy" / "rbac.yaml").read_text()
    role, binding, cluster_role, cluster_binding = yaml.safe_load_all(manifest)
    group = _source()["Parameters"]["KubernetesGroup"]["Default"]
    subjects = [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}]

    # Then a kube-system Role allows exactly list pods and get pods/proxy, bound to the template's group
    assert (role["kind"], role["metadata"]["namespace"]) == ("Role", "kube-system")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
                             {"apiGroups": [""], "resources": ["pods/proxy"], "verbs": ["get"]}]
    assert (binding["kind"], binding["metadata"]["namespace"]) == ("RoleBinding", "kube-system")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": role["metadata"]["name"]}
    assert binding["subjects"] == subjects
    # And the capacity ClusterRole only lists nodes and ENIConfigs, bound to the same group
    assert cluster_role["kind"] == "ClusterRole"
    assert cluster_role["rules"] == [
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["list"]},
        {"apiGroups": ["crd.k8s.amazonaws.com"], "resources": ["eniconfigs"], "verbs": ["list"]}]
    assert cluster_binding["kind"] == "ClusterRoleBinding"
    assert cluster_binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                          "name": cluster_role["metadata"]["name"]}
    assert cluster_binding["subjects"] == subjects


def _cross_account(**parameters: str) -> Stack:
    return Stack(read_template(REPO / "deploy" / "cross-account-role.yaml"), **parameters)


def test_cross_account_role_trusts_the_collector_and_reads_only_the_given_clusters_and_regions() -> None:
    # Given deploy/cross-account-role.yaml for two clusters in two regions, and for one in the stack's
    collector = "arn:aws:iam::210987654321:role/cni-metrics-CollectorRole"
    two = _cross_account(CollectorRoleArn=collector, ClusterNames="prod,dev",
                         ClusterRegions="eu-west-1,us-west-2")
    one = _cross_account(CollectorRoleArn=collector, ClusterNames="prod")

    # When the role is read
    role = two.resource("ClusterAccessRole")["Properties"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    by_action = {statement["Action"]: statement for statement in two.statements("ClusterAccessRole")}

    # Then only the collector role may assume it, and it may only describe clusters and subnets
    assert (trust["Principal"], trust["Action"]) == ({"AWS": collector}, "sts:AssumeRole")
    assert sorted(by_action) == ["ec2:DescribeSubnets", "eks:DescribeCluster"]
    # And only the named clusters of its own account, in the given regions
    describe = by_action["eks:DescribeCluster"]
    assert _resources(describe) == ["arn:*:eks:*:*:cluster/prod", "arn:*:eks:*:*:cluster/dev"]
    assert describe["Condition"] == {"StringEquals": {"aws:ResourceAccount": ACCOUNT,
                                                      "aws:RequestedRegion": ["eu-west-1", "us-west-2"]}}
    assert by_action["ec2:DescribeSubnets"]["Condition"] == {
        "StringEquals": {"aws:RequestedRegion": ["eu-west-1", "us-west-2"]}}
    # And without regions, the stack's own region only
    (one_describe,) = [s for s in one.statements("ClusterAccessRole") if s["Action"] == "eks:DescribeCluster"]
    assert _resources(one_describe) == ["arn:*:eks:*:*:cluster/prod"]
    assert one_describe["Condition"]["StringEquals"]["aws:RequestedRegion"] == [REGION]
    # And the cluster list is required (unless the account is read by discovery)
    no_names = _cross_account(CollectorRoleArn=collector)
    assert _rules_broken(no_names) == ["Give ClusterNames, or Discovery=true."]


def test_cross_account_access_entry_is_for_a_monitored_cluster_only() -> None:
    # Given the access entry asked for in a listed cluster, in an unlisted one, and not at all
    collector = "arn:aws:iam::210987654321:role/c"
    listed = _cross_account(CollectorRoleArn=collector, ClusterNames="prod,dev", ClusterName="dev")
    unlisted = _cross_account(CollectorRoleArn=collector, ClusterNames="prod", ClusterName="dev")
    none = _cross_account(CollectorRoleArn=collector, ClusterNames="prod")

    # Then the listed one gets a STANDARD entry mapping the role to the group, without access policy
    entry = listed.resource("AccessEntry")["Properties"]
    assert (entry["ClusterName"], entry["Type"]) == ("dev", "STANDARD")
    assert entry["PrincipalArn"] == "<ClusterAccessRole.Arn>"
    assert entry["KubernetesGroups"] == ["cni-metrics"]
    assert "AccessPolicies" not in entry
    # And the rules refuse the unlisted one; no entry is made when none is asked for
    assert _rules_broken(listed) == []
    assert _rules_broken(unlisted) == ["ClusterName must be one of ClusterNames."]
    assert "AccessEntry" not in none.resources()


def _period_seconds(expression: str) -> int:
    match = re.fullmatch(r"rate\((\d+) (minute|minutes|hour|hours)\)", expression)
    assert match, expression
    return int(match.group(1)) * (60 if match.group(2).startswith("minute") else 3600)


def test_collector_timeout_is_below_its_schedule_period() -> None:
    # Given each schedule period the template allows
    for minutes in _source()["Parameters"]["ScheduleMinutes"]["AllowedValues"]:
        stack = Stack(ClusterNames="prod", ScheduleMinutes=minutes)

        # When the function's timeout and the schedule rule are read
        timeout = stack.resource("CollectorFunction")["Properties"]["Timeout"]
        expression = stack.resource("CollectorFunctionSchedule")["Properties"]["ScheduleExpression"]

        # Then the schedule runs every that many minutes and a run ends before the next one is due
        assert _period_seconds(expression) == int(minutes) * 60
        assert 30 <= timeout < int(minutes) * 60, minutes
        assert timeout <= 900  # Lambda's maximum
    # And the default is every minute
    assert Stack(ClusterNames="prod").resource("CollectorFunction")["Properties"]["Timeout"] == 55


def test_collector_concurrency_is_reserved_to_one_run_by_default() -> None:
    # Given the default stack, one reserving 3, and one reserving none
    default, three = Stack(ClusterNames="prod"), Stack(ClusterNames="prod", CollectorReservedConcurrency="3")
    unreserved = Stack(ClusterNames="prod", CollectorReservedConcurrency="0")

    # Then the collector runs one invocation at a time unless told otherwise; 0 leaves it unreserved
    def reserved(stack: Stack) -> Any:
        return stack.resource("CollectorFunction")["Properties"].get("ReservedConcurrentExecutions")

    assert (reserved(default), reserved(three), reserved(unreserved)) == ("1", "3", None)
    # And the dashboard function is left as it is
    assert "ReservedConcurrentExecutions" not in default.resource("DashboardFunction")["Properties"]


def test_custom_resource_times_out_well_under_the_hour_after_what_the_function_can_take() -> None:
    # Given the default stack
    stack = Stack(**SCENARIOS["names"])
    custom = stack.resource("Dashboard")["Properties"]
    function = stack.resource("DashboardFunction")["Properties"]
    retries = stack.resource("DashboardFunctionEventInvokeConfig")["Properties"]["MaximumRetryAttempts"]

    # Then CloudFormation waits for every attempt Lambda makes (plus up to 2 minutes between them),
    # and no more than a quarter of its default hour
    assert int(custom["ServiceTimeout"]) >= function["Timeout"] * (1 + retries) + 120 * retries
    assert int(custom["ServiceTimeout"]) <= 900


def test_metrics_namespace_parameter_refuses_what_cloudwatch_refuses() -> None:
    # Given the MetricsNamespace parameter's pattern (CloudFormation's Java regex; Python's agrees here)
    pattern = re.compile(_source()["Parameters"]["MetricsNamespace"]["AllowedPattern"])
    # Then AWS/ (reserved) and a leading colon are refused; custom namespaces pass
    assert [bool(pattern.fullmatch(n)) for n in ("Kubernetes", "Custom/CNI", "AWS/EKS", ":x", "")] == [
        True, True, False, False, False]


def test_samconfig_default_profile_deploys() -> None:
    # Given samconfig.toml / Then its default profile names the stack, capabilities and resolve_s3
    config = tomllib.loads((REPO / "samconfig.toml").read_text())["default"]
    assert config["global"]["parameters"]["stack_name"] == "cni-metrics"
    deploy = config["deploy"]["parameters"]
    assert deploy["capabilities"] == "CAPABILITY_IAM"
    assert deploy["resolve_s3"] is True
    assert "ClusterNames=" in deploy["parameter_overrides"]


# SAM CLI's own reading of samconfig.toml (.sam-venv: it pins boto3): each environment's deploy
# parameters, global ones merged in, and its parameter_overrides parsed as `sam deploy` parses them.
SAM_CONFIG = """
import json
from samcli.cli.types import CfnParameterOverridesType
from samcli.lib.config.samconfig import SamConfig

config = SamConfig(".")
result = {}
for env in config.get_stage_configuration_names():
    deploy = config.get_all(["deploy"], "parameters", env=env)
    deploy["parameter_overrides"] = CfnParameterOverridesType().convert(
        deploy.get("parameter_overrides", ""), None, None)
    result[env] = deploy
print(json.dumps(result))
"""


def _sam_deploy_environments() -> dict[str, dict[str, Any]]:
    import json
    import os
    import subprocess

    sam_python = REPO / ".sam-venv" / "bin" / "python"
    if not sam_python.exists():
        pytest.skip("SAM CLI not installed (make validate installs .sam-venv)")
    env = {"PATH": os.environ["PATH"], "HOME": str(REPO), "SAM_CLI_TELEMETRY": "0"}
    done = subprocess.run([str(sam_python), "-c", SAM_CONFIG], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=120, check=True)
    result: dict[str, dict[str, Any]] = json.loads(done.stdout)
    return result


def _parameter_problems(parameters: Mapping[str, str]) -> list[str]:
    """What CloudFormation refuses in these values: unknown names, AllowedValues, AllowedPattern, bounds."""
    specs = _source()["Parameters"]
    problems = []
    for name, value in parameters.items():
        spec = specs.get(name)
        if spec is None:
            problems.append(f"{name}: not a parameter")
            continue
        if "AllowedValues" in spec and value not in [str(v) for v in spec["AllowedValues"]]:
            problems.append(f"{name}: {value!r} not in AllowedValues")
        if "AllowedPattern" in spec and not re.fullmatch(spec["AllowedPattern"], value):
            problems.append(f"{name}: {value!r} does not match AllowedPattern")
        low, high = spec.get("MinValue", float("-inf")), spec.get("MaxValue", float("inf"))
        if spec["Type"] == "Number" and not low <= float(value) <= high:
            problems.append(f"{name}: {value} out of bounds")
    return problems


def test_samconfig_environments_deploy_and_none_creates_a_placeholder_access_entry() -> None:
    # Given samconfig.toml's environments as `sam deploy --config-env ENV` reads them
    environments = _sam_deploy_environments()

    # Then there are default, dev and prod, dev and prod in stacks of their own
    assert {"default", "dev", "prod"} <= set(environments)
    assert environments["dev"]["stack_name"] != environments["prod"]["stack_name"]
    for env, deploy in environments.items():
        overrides = deploy["parameter_overrides"]
        # And each deploys: IAM acknowledged, values CloudFormation accepts, the template's rules hold
        assert deploy["capabilities"] == "CAPABILITY_IAM", env
        assert _parameter_problems(overrides) == [], env
        stack = Stack(**overrides)
        assert _rules_broken(stack) == [], env
        # And none names a placeholder cluster or creates an access entry for one (access entries are for
        # clusters you name yourself)
        assert not any("my-cluster" in value for value in overrides.values()), env
        assert stack.resources("AWS::EKS::AccessEntry") == {}, env
    # And dev and prod keep their dashboards and alarms apart, prod with alarms on
    dev, prod = (environments[env]["parameter_overrides"] for env in ("dev", "prod"))
    assert Stack(**dev).parameters["DashboardName"] != Stack(**prod).parameters["DashboardName"]
    assert prod["AlarmsEnabled"] == "true"


# ---------------------------------------------------------------------------------------------------
# Fleet mode: the dispatcher, the collector's async settings, the member-account role

FLEET_OBJECT = "s3://fleet-config/fleets/prod.json"
MEMBER_ROLES = ("arn:aws:iam::222233334444:role/cni-metrics-reader,"
                "arn:aws:iam::333344445555:role/cni-metrics-reader")
FLEET = {"FleetDocument": FLEET_OBJECT, "CollectorReservedConcurrency": "100",
         "CrossAccountRoleArns": MEMBER_ROLES}


def test_fleet_mode_adds_a_dispatcher_with_least_privilege() -> None:
    # Given a fleet-mode stack publishing with PutMetricData, and one without fleet mode
    stack = Stack(**FLEET, PublishMode="putmetricdata", MetricsNamespace="Custom/CNI")
    plain = Stack(**SCENARIOS["names"])

    # When the dispatcher role's effective policy is read
    actions = _by_action(stack, "DispatcherRole")

    # Then it may invoke the collector only, read the one fleet object, list the state prefix, discover
    # (ListClusters, DescribeCluster of its own account), assume the member roles, publish in the namespace
    assert sorted(actions) == [
        "cloudwatch:PutMetricData", "eks:DescribeCluster", "eks:ListClusters", "lambda:InvokeFunction",
        "logs:CreateLogStream", "logs:PutLogEvents", "s3:GetObject", "s3:ListBucket", "sqs:SendMessage",
        "sts:AssumeRole"]
    assert [_resources(s) for s in actions["lambda:InvokeFunction"]] == [["<CollectorFunction.Arn>"]]
    assert [_resources(s) for s in actions["s3:GetObject"]] == [[f"arn:aws:s3:::{FLEET_OBJECT[5:]}"]]
    (listing,) = actions["s3:ListBucket"]
    assert (_resources(listing), listing["Condition"]) == (
        ["<StateBucket.Arn>"], {"StringLike": {"s3:prefix": f"{STATE_PREFIX}*"}})
    assert [_resources(s) for s in actions["eks:DescribeCluster"]] == [[f"arn:aws:eks:*:{ACCOUNT}:cluster/*"]]
    assert [_resources(s) for s in actions["sts:AssumeRole"]] == [MEMBER_ROLES.split(",")]
    assert actions["cloudwatch:PutMetricData"][0]["Condition"] == {
        "StringEquals": {"cloudwatch:namespace": "Custom/CNI"}}
    assert [_resources(s) for s in actions["logs:PutLogEvents"]] == [["<DispatcherLogGroup.Arn>"]]
    assert [_resources(s) for s in actions["sqs:SendMessage"]] == [["<FailureQueue.Arn>"]]
    # And no wildcard action; "*" only where the API has no resource type
    for statement in stack.statements("DispatcherRole"):
        assert all("*" not in action for action in _actions(statement)), statement
        if "*" in _resources(statement):
            assert set(_actions(statement)) <= UNSCOPABLE, statement
    # And without fleet mode there is no dispatcher at all
    assert not {"DispatcherRole", "DispatcherFunction", "DispatcherLogGroup"} & set(plain.resources())


def test_fleet_mode_replaces_the_collectors_schedule_by_the_dispatchers() -> None:
    # Given a fleet-mode stack every 5 minutes, fanned out 48 Invoke calls at a time, and the default stack
    stack = Stack(**FLEET, ScheduleMinutes="5", FleetMode="fanout", DispatchConcurrency="48")
    plain = Stack(**SCENARIOS["names"])

    # When the schedules, the dispatcher's settings and the failure queue's policy are read
    collector_rule = stack.resource("CollectorFunctionSchedule")["Properties"]
    dispatcher_rule = stack.resource("DispatcherFunctionSchedule")["Properties"]
    dispatcher = stack.resource("DispatcherFunction")["Properties"]
    queue_policy = stack.resource("FailureQueuePolicy")["Properties"]["PolicyDocument"]["Statement"][0]

    # Then the collector's rule is disabled and the dispatcher's runs on the period instead
    assert (collector_rule["State"], dispatcher_rule.get("State", "ENABLED")) == ("DISABLED", "ENABLED")
    assert plain.resource("CollectorFunctionSchedule")["Properties"]["State"] == "ENABLED"
    assert dispatcher_rule["ScheduleExpression"] == "rate(5 minutes)"
    (target,) = dispatcher_rule["Targets"]
    assert target["Arn"] == "<DispatcherFunction.Arn>"
    assert target["DeadLetterConfig"] == {"Arn": "<FailureQueue.Arn>"}
    # And it names the collector, the period, the mode, its concurrency and the state objects it lists
    env = dispatcher["Environment"]["Variables"]
    named = ("FLEET_DOCUMENT", "COLLECTOR_FUNCTION", "FLEET_MODE", "DISPATCH_CONCURRENCY", "PERIOD_SECONDS",
             "STATE_BUCKET", "STATE_PREFIX", "AWS_ENDPOINT_URL_LAMBDA")
    assert {key: env[key] for key in named} == {
        "FLEET_DOCUMENT": FLEET_OBJECT, "COLLECTOR_FUNCTION": "<CollectorFunction>", "FLEET_MODE": "fanout",
        "DISPATCH_CONCURRENCY": "48", "PERIOD_SECONDS": 300, "STATE_BUCKET": "<StateBucket>",
        "STATE_PREFIX": STATE_PREFIX, "AWS_ENDPOINT_URL_LAMBDA": ""}
    # And one dispatch at a time, ending before the next one is due, never retried
    assert dispatcher["ReservedConcurrentExecutions"] == 1
    assert dispatcher["Timeout"] < 300
    assert stack.resource("DispatcherFunctionEventInvokeConfig")["Properties"]["MaximumRetryAttempts"] == 0
    # And the dispatcher's rule may put undelivered events in the failure queue, only in fleet mode
    assert queue_policy["Condition"]["ArnEquals"]["aws:SourceArn"] == [
        "<CollectorFunctionSchedule.Arn>", "<DashboardFunctionSchedule.Arn>",
        "<DispatcherFunctionSchedule.Arn>"]


def test_dispatched_period_and_timeout_follow_the_schedule() -> None:
    # Given each schedule period the template allows, in fleet mode
    for minutes in _source()["Parameters"]["ScheduleMinutes"]["AllowedValues"]:
        stack = Stack(**FLEET, ScheduleMinutes=minutes)
        dispatcher = stack.resource("DispatcherFunction")["Properties"]
        # Then the events name the schedule's period and a dispatch ends before the next is due
        assert dispatcher["Environment"]["Variables"]["PERIOD_SECONDS"] == int(minutes) * 60
        assert dispatcher["Timeout"] < int(minutes) * 60


def test_collector_async_settings_and_fleet_reads_in_fleet_mode() -> None:
    # Given a fleet-mode stack with a 2-minute maximum event age and one retry (as CloudFormation gives the
    # values to the transform)
    parameters = {**FLEET, "CollectorMaxEventAgeSeconds": "120", "CollectorMaxRetryAttempts": "1"}
    stack = Stack(_transformed(tuple(parameters.items())), **parameters)

    # When the collector's invoke config, environment and policy are read
    config = stack.resource("CollectorFunctionEventInvokeConfig")["Properties"]
    function = stack.resource("CollectorFunction")["Properties"]
    actions = _by_action(stack, "CollectorRole")

    # Then the async settings are the parameters', failures still go to the queue
    assert (config["MaximumEventAgeInSeconds"], config["MaximumRetryAttempts"]) == ("120", "1")
    assert config["DestinationConfig"] == {"OnFailure": {"Destination": "<FailureQueue.Arn>"}}
    assert function["ReservedConcurrentExecutions"] == "100"
    # And the worker reads the fleet document (that object only) besides its state objects
    assert function["Environment"]["Variables"]["FLEET_DOCUMENT"] == FLEET_OBJECT
    assert sorted(r for s in actions["s3:GetObject"] for r in _resources(s)) == [
        f"<StateBucket.Arn>/{STATE_PREFIX}*", f"arn:aws:s3:::{FLEET_OBJECT[5:]}"]
    # And describes the clusters of its account (fleet entries and discovered ones), lists none
    assert [_resources(s) for s in actions["eks:DescribeCluster"]] == [[f"arn:aws:eks:*:{ACCOUNT}:cluster/*"]]
    assert "eks:ListClusters" not in actions
    # And by default the collector is not retried and drops what waits more than one period; without fleet
    # mode it reads its state objects only
    plain = Stack(**SCENARIOS["names"])
    default = plain.resource("CollectorFunctionEventInvokeConfig")["Properties"]
    assert (default["MaximumEventAgeInSeconds"], default["MaximumRetryAttempts"]) == (60, 0)
    reads = [r for s in _by_action(plain, "CollectorRole")["s3:GetObject"] for r in _resources(s)]
    assert reads == [f"<StateBucket.Arn>/{STATE_PREFIX}*"]


def test_rules_keep_fleet_mode_alone_and_fanned_out() -> None:
    # Given fleet mode beside cluster names, with one collector invocation at a time, and as it should be
    both = Stack(**FLEET, ClusterNames="prod")
    serial = Stack(FleetDocument=FLEET_OBJECT)
    # Then the rules refuse the first two and accept the last (and fleet mode alone gives the clusters)
    assert _rules_broken(both) == [
        "FleetDocument lists the clusters; leave ClusterNames, ClusterDiscoveryTag and ClustersJson empty."]
    assert _rules_broken(serial) == [
        "Fleet mode invokes the collector per cluster or group; set CollectorReservedConcurrency to the "
        "invocations that may run at once (e.g. 100), or 0."]
    assert _rules_broken(Stack(**FLEET)) == []
    # And the location must be an S3 object
    assert _parameter_problems({"FleetDocument": FLEET_OBJECT}) == []
    assert _parameter_problems({"FleetDocument": "https://fleet-config/x.json"}) == [
        "FleetDocument: 'https://fleet-config/x.json' does not match AllowedPattern"]
    assert _parameter_problems({"FleetDocument": "s3://fleet-config/"}) != []


def test_member_account_role_for_discovery_trusts_the_dispatcher_and_reads_its_regions() -> None:
    # Given deploy/cross-account-role.yaml for discovery in two regions, as a StackSet deploys it (no names)
    collector = "arn:aws:iam::210987654321:role/cni-metrics-CollectorRole"
    dispatcher = "arn:aws:iam::210987654321:role/cni-metrics-DispatcherRole"
    stack = _cross_account(CollectorRoleArn=collector, DispatcherRoleArn=dispatcher, Discovery="true",
                           ClusterRegions="us-east-1,eu-west-1")

    # When the role is read
    (trust,) = stack.resource("ClusterAccessRole")["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    by_action = {statement["Action"]: statement for statement in stack.statements("ClusterAccessRole")}

    # Then the collector and the dispatcher may assume it
    assert trust["Principal"] == {"AWS": [collector, dispatcher]}
    # And it lists the clusters of the regions, and describes any of its account's clusters there
    assert sorted(by_action) == ["ec2:DescribeSubnets", "eks:DescribeCluster", "eks:ListClusters"]
    regions = ["us-east-1", "eu-west-1"]
    assert by_action["eks:ListClusters"]["Condition"] == {"StringEquals": {"aws:RequestedRegion": regions}}
    describe = by_action["eks:DescribeCluster"]
    assert _resources(describe) == [f"arn:aws:eks:*:{ACCOUNT}:cluster/*"]
    assert describe["Condition"]["StringEquals"] == {"aws:ResourceAccount": ACCOUNT,
                                                     "aws:RequestedRegion": regions}
    assert _rules_broken(stack) == []
