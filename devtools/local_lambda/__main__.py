"""Command line: ``python -m local_lambda invoke --function NAME --event FILE [--env-vars FILE]``, and
``python -m local_lambda stand-ins [--env-vars FILE]``: the stand-ins in the foreground, on its ports.

The fleet dispatcher (a function whose env-vars section names FLEET_DOCUMENT and COLLECTOR_FUNCTION): with
``--stand-ins``, the stand-ins hold a fleet document of the scenario's clusters and the Invoke API
(``invoke_api``) serves the collector on a pool of ``--collector-workers``; the output is the dispatcher's
result with every collector invocation it made and the on-failure records. ``stand-ins`` serves the
collector the same way on the section's AWS_ENDPOINT_URL_LAMBDA port (for ``sam local invoke
DispatcherFunction``).
"""

from __future__ import annotations

import argparse
import json
import platform
import signal
import sys
import threading
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

from local_lambda.built import BuildError
from local_lambda.invoke_api import InvokeApi, PoolConfig
from local_lambda.runner import invoke_built, read_env_file

# How long a custom-resource invocation's answer may take to reach the receiver after the function ended.
ANSWER_SECONDS = 10.0
# How long the dispatcher's collector invocations may take to drain after it returned.
FLEET_DRAIN_SECONDS = 120.0
# The collector's warm workers behind `stand-ins`' Invoke API (its reserved concurrency).
STAND_IN_WORKERS = 2


def _pairs(items: Sequence[str]) -> dict[str, str]:
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BuildError(f"--env {item!r}: expected KEY=VALUE")
        pairs[key] = value
    return pairs


def _is_custom_resource(event: Any) -> bool:
    return isinstance(event, dict) and "RequestType" in event and "ResponseURL" in event


def _invoke(args: argparse.Namespace) -> int:
    """Invoke once; print the result JSON (for a custom-resource event with stand-ins: the answer the
    receiver got; for the fleet dispatcher with stand-ins: its result and its collector invocations');
    0 on success, 1 on a function error or an answer other than SUCCESS."""
    overrides = _pairs(args.env)
    declared = read_env_file(args.env_vars, args.function)
    event = args.event.read_bytes()
    with ExitStack() as stack:
        local: dict[str, str] = {}
        receiver = fleet = None
        if args.stand_ins:
            from local_lambda.stand_ins import started  # moto and the fake EKS: only when asked

            dispatching = bool(declared.get("FLEET_DOCUMENT") and declared.get("COLLECTOR_FUNCTION"))
            running = stack.enter_context(started(args.stand_ins, declared.get("STATE_BUCKET"),
                                                  fleet=declared["FLEET_DOCUMENT"] if dispatching else None))
            local, receiver, event = running.variables, running.receiver, running.local_event(event)
            if dispatching:
                fleet = stack.enter_context(_collector_api(
                    args.build_dir, args.env_vars, declared, local, workers=args.collector_workers,
                    log=None if args.quiet else sys.stderr))
                local = {**local, "AWS_ENDPOINT_URL_LAMBDA": fleet.url}
        result = invoke_built(args.build_dir, args.function, event, args.env_vars, {**local, **overrides},
                              log_stream=None if args.quiet else sys.stderr)
        print(f"REPORT RequestId: {result.request_id} Duration: {result.duration_ms:.0f} ms", file=sys.stderr)
        if not result.ok:
            print(json.dumps(result.error, indent=2, default=str))
            return 1
        if fleet is not None:
            return _fleet_report(fleet, declared["COLLECTOR_FUNCTION"], result.payload)
        if receiver is None or not _is_custom_resource(json.loads(event)):
            print(json.dumps(result.payload, indent=2, default=str))
            return 0
        answer = receiver.next_answer(ANSWER_SECONDS)
        if answer is None:
            print(f"local_lambda: no answer reached the CloudFormation receiver in {ANSWER_SECONDS:g} s",
                  file=sys.stderr)
            return 1
        print(json.dumps(answer["body"], indent=2))
        return 0 if answer["body"].get("Status") == "SUCCESS" else 1


def _collector_api(build_dir: Path, env_file: Path | None, dispatcher: dict[str, str], local: dict[str, str],
                   *, workers: int, port: int = 0, log: TextIO | None = None) -> InvokeApi:
    """The Invoke API serving the dispatcher's collector: its env-vars section, the stand-ins, fleet mode
    (the dispatcher's fleet document, no CLUSTER_NAMES), ``workers`` warm workers, events kept a period."""
    config = PoolConfig(size=workers, max_event_age_seconds=float(dispatcher.get("PERIOD_SECONDS") or 60))
    variables = {**local, "FLEET_DOCUMENT": dispatcher["FLEET_DOCUMENT"], "CLUSTER_NAMES": ""}
    return InvokeApi(build_dir, {dispatcher["COLLECTOR_FUNCTION"]: config}, env_file=env_file,
                     variables=variables, log=log, port=port)


def _fleet_report(api: InvokeApi, collector: str, dispatched: Any) -> int:
    """Wait for the dispatched collector invocations; print them with the dispatcher's result; 0 when every
    one ran and collected its clusters."""
    drained = api.wait_idle(FLEET_DRAIN_SECONDS)
    records = api.records(collector)
    report = {
        "dispatcher": dispatched,
        "collector": [record.payload if record.error is None else record.error for record in records],
        "onFailure": api.on_failure,
    }
    print(json.dumps(report, indent=2, default=str))
    if not drained:
        print(f"local_lambda: collector invocations still running after {FLEET_DRAIN_SECONDS:g} s",
              file=sys.stderr)
    ok = all(record.error is None and record.condition is None for record in records)
    return 0 if drained and records and ok and not api.on_failure else 1


def _host_architecture() -> str:
    return "arm64" if platform.machine().lower() in ("aarch64", "arm64") else "x86_64"


def _instructions(variables: dict[str, str], env_file: Path, docker_env_file: Path, ca_file: Path) -> str:
    """What to export and run in another shell to call the stand-ins with `sam local invoke`."""
    arch = _host_architecture()
    options = f"-t .aws-sam/local/build/template.yaml --parameter-overrides Architecture={arch}"
    return "\n".join([
        "In another shell (sam local invoke gives the function the shell's credentials and region):",
        f"  export AWS_ACCESS_KEY_ID={variables['AWS_ACCESS_KEY_ID']}"
        f" AWS_SECRET_ACCESS_KEY={variables['AWS_SECRET_ACCESS_KEY']}"
        f" AWS_DEFAULT_REGION={variables['AWS_REGION']}",
        "  unset AWS_SESSION_TOKEN AWS_PROFILE",
        "  make build-local",
        "Linux (the container shares the host's network):",
        f"  sam local invoke CollectorFunction {options} -e events/scheduled.json --env-vars {env_file} "
        "--docker-network host",
        f"  sam local invoke DashboardFunction {options} -e events/dashboard-direct-invoke.json "
        f"--env-vars {env_file} --docker-network host",
        f"  sam local invoke DispatcherFunction {options} -e events/fleet/dispatcher-scheduled.json "
        f"--env-vars {env_file} --docker-network host",
        "Docker Desktop (macOS, Windows: the host's loopback as host.docker.internal; the fake EKS's cluster "
        "API servers answer on 127.0.0.1 only, so the collector can reach EKS but not the clusters):",
        f"  sam local invoke DashboardFunction {options} -e events/dashboard-direct-invoke.json "
        f"--env-vars {docker_env_file}",
        "Custom-resource events (crhelper trusts the receiver's CA only through AWS_CA_BUNDLE, which "
        "sam local invoke cannot pass), with the runtime client instead of a container:",
        f"  .venv/bin/python -m local_lambda invoke --function DashboardFunction --event "
        f"events/dashboard-create.json --env-vars {env_file} --env AWS_CA_BUNDLE={ca_file}",
        "",
    ])


def _stand_ins(args: argparse.Namespace) -> int:
    """Run the stand-ins on the env-vars file's ports until SIGINT/SIGTERM, printing each CloudFormation
    answer the receiver gets."""
    from local_lambda.stand_ins import fixed_ports, started

    document = json.loads(args.env_vars.read_text())
    functions = [name for name in document if name != "Parameters"] or ["Parameters"]
    named = {fixed_ports(read_env_file(args.env_vars, function)) for function in functions}
    if len(named) != 1:
        raise ValueError(f"{args.env_vars}: the functions' endpoints name different ports: {named}")
    (ports,) = named
    buckets = sorted({str(section["STATE_BUCKET"]) for section in document.values()
                      if isinstance(section, dict) and section.get("STATE_BUCKET")})
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    dispatcher = read_env_file(args.env_vars, "DispatcherFunction")
    fleet = dispatcher.get("FLEET_DOCUMENT")
    with ExitStack() as stack:
        running = stack.enter_context(started(args.scenario, None, ports=ports, fleet=fleet))
        for bucket in buckets:
            running.client("s3").create_bucket(Bucket=bucket)
        invoke = _serve_collector(stack, args, dispatcher, running.variables)
        print(f"Stand-ins of scenario {args.scenario} (Ctrl-C stops them):\n"
              f"  fake EKS (EKS, STS)         http://127.0.0.1:{ports.eks}   "
              f"clusters {', '.join(running.eks.clusters)}\n"
              f"  moto (S3, CloudWatch, EC2)  {running.moto_url}   buckets {', '.join(buckets) or '-'}, "
              "the clusters' subnets\n"
              f"  CloudFormation receiver     https://{running.receiver.netloc}  "
              f"CA {running.receiver.ca_file}\n"
              f"  Lambda Invoke API           {invoke}\n",
              flush=True)
        print(_instructions(running.variables, args.env_vars, args.docker_env_vars, running.receiver.ca_file),
              flush=True)
        while not stop.is_set():
            answer = running.receiver.next_answer(0.5)
            if answer is not None:
                print(f"CloudFormation answer to {answer['path']}: {json.dumps(answer['body'])}", flush=True)
    return 0


def _serve_collector(stack: ExitStack, args: argparse.Namespace, dispatcher: dict[str, str],
                     local: dict[str, str]) -> str:
    """With the env-vars file's DispatcherFunction section and a local build: the Invoke API on its
    AWS_ENDPOINT_URL_LAMBDA port serving the collector, for `sam local invoke DispatcherFunction`."""
    url, collector = dispatcher.get("AWS_ENDPOINT_URL_LAMBDA"), dispatcher.get("COLLECTOR_FUNCTION")
    if not (url and collector and dispatcher.get("FLEET_DOCUMENT")):
        return "- (no DispatcherFunction section)"
    port = urlsplit(url).port
    if port is None:
        raise ValueError(f"{args.env_vars}: DispatcherFunction AWS_ENDPOINT_URL_LAMBDA names no port: {url}")
    try:
        api = stack.enter_context(_collector_api(args.build_dir, args.env_vars, dispatcher, local,
                                                 workers=STAND_IN_WORKERS, port=port))
    except BuildError as error:
        return f"- (not served: {error}; run `make build-local`)"
    return (f"{api.url}   {collector} ({STAND_IN_WORKERS} warm workers), "
            f"fleet document {dispatcher['FLEET_DOCUMENT']}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run a subcommand; 2 on a usage error."""
    parser = argparse.ArgumentParser(prog="python -m local_lambda", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("invoke", help="run one event through the built function")
    run.add_argument("--function", required=True, help="logical id, e.g. CollectorFunction")
    run.add_argument("--event", required=True, type=Path, help="JSON event file")
    run.add_argument("--env-vars", type=Path,
                     help="`sam local invoke --env-vars` JSON file (as there, only declared variables apply)")
    run.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                     help="set any variable after the env-vars file (repeatable)")
    run.add_argument("--stand-ins", metavar="SCENARIO",
                     help="start moto, the fake EKS (this scenario) and a CloudFormation receiver on free "
                          "ports and point the function at them (their endpoints, credentials and CA replace "
                          "the env-vars file's; a custom-resource event's answer is printed)")
    run.add_argument("--build-dir", type=Path, default=Path(".aws-sam/local/build"),
                     help="sam build output (default .aws-sam/local/build: `make build-local`)")
    run.add_argument("--quiet", action="store_true", help="do not echo the function's log lines")
    run.add_argument("--collector-workers", type=int, default=2, metavar="N",
                     help="with --stand-ins and the fleet dispatcher: warm collector workers behind the "
                          "local Invoke API (its reserved concurrency; default 2)")
    serve = commands.add_parser("stand-ins", help="the stand-ins in the foreground, for sam local invoke")
    serve.add_argument("--scenario", default="demo", help="fake EKS scenario (default demo)")
    serve.add_argument("--env-vars", type=Path, default=Path("events/env.json"),
                       help="env-vars file whose endpoints name the ports (default events/env.json)")
    serve.add_argument("--build-dir", type=Path, default=Path(".aws-sam/local/build"),
                       help="sam build output whose collector the Invoke API serves (`make build-local`)")
    serve.add_argument("--docker-env-vars", type=Path, default=Path("events/env.docker.json"),
                       help="its host.docker.internal variant, for the printed commands")
    args = parser.parse_args(argv)
    try:
        return _invoke(args) if args.command == "invoke" else _stand_ins(args)
    except (BuildError, OSError, ValueError) as error:
        print(f"local_lambda: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
