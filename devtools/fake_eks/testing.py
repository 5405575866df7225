"""Start the stand-in from tests: ``with start_fake_eks("demo") as eks: ...``."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fake_eks.runner import ThreadedFakeEks
from fake_eks.scenario import load_scenario


class RunningFakeEks:
    """A started stand-in: its connection document, truth access and AWS environment."""

    def __init__(self, connection: dict[str, Any], connection_file: Path) -> None:
        self.connection = connection
        self.connection_file = connection_file
        self._tokens: dict[str, tuple[str, float]] = {}

    @property
    def clusters(self) -> list[str]:
        """Cluster names."""
        return sorted(self.connection["clusters"])

    def endpoint(self, cluster: str) -> str:
        """The https URL of a cluster's Kubernetes API."""
        return str(self.connection["clusters"][cluster]["endpoint"])

    def account(self, cluster: str) -> str:
        """The account a cluster is in (the scenario's unless the cluster says)."""
        return str(self.connection["clusters"][cluster].get("account", self.connection["account"]))

    def region(self, cluster: str) -> str:
        """The region a cluster is in (the scenario's unless the cluster says)."""
        return str(self.connection["clusters"][cluster].get("region", self.connection["region"]))

    def roles(self, account: str) -> list[str]:
        """The role ARNs AssumeRole may assume in ``account`` (empty: the scenario lists none: any role)."""
        return list(self.connection.get("accounts", {}).get(account, {}).get("roles", []))

    def ca_pem(self, cluster: str) -> str:
        """The cluster's CA certificate (PEM)."""
        return str(self.connection["clusters"][cluster]["ca_pem"])

    def ca_file(self, cluster: str) -> str:
        """A file holding the cluster's CA (for ssl_ca_cert / verify=)."""
        path = self.connection_file.with_name(f"ca-{cluster}.pem")
        if not path.exists() or path.read_text() != self.ca_pem(cluster):
            path.write_text(self.ca_pem(cluster))
        return str(path)

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        url = self.connection["truth_url"] + path
        if not url.startswith("http://"):
            raise ValueError(f"unexpected truth URL {url}")
        req = urllib.request.Request(  # noqa: S310 (http only, checked above)
            url,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=60) as resp:  # noqa: S310
            return json.loads(resp.read())

    def truth(self, cluster: str) -> dict[str, Any]:
        """GET {truth_url}/clusters/{cluster}."""
        return dict(self._call("GET", f"/clusters/{cluster}"))

    def advance(self, cluster: str, steps: int = 1) -> dict[str, Any]:
        """POST {truth_url}/clusters/{cluster}/advance; returns the pods restarted, left and joined."""
        return dict(self._call("POST", f"/clusters/{cluster}/advance", {"steps": steps}))

    def set_fault(self, cluster: str, pod: str, kind: str | None, **params: Any) -> None:
        """Give one pod a fault kind (see SCENARIOS.md) with its parameters from now on; None heals it."""
        self._call("POST", f"/clusters/{cluster}/pods/{pod}/fault", {"kind": kind, **params})

    def attach_network(self, cluster: str, doc: dict[str, Any]) -> dict[str, Any]:
        """POST {truth_url}/clusters/{cluster}/network: subnet IDs and ENIConfigs (see fake_eks.network)."""
        return dict(self._call("POST", f"/clusters/{cluster}/network", doc))

    def auth_failures(self, cluster: str) -> list[dict[str, Any]]:
        """Which token rule refused each failed authentication (401s), oldest first."""
        return list(self._call("GET", f"/clusters/{cluster}/auth-failures"))

    def token(self, cluster: str, *, for_cluster: str | None = None) -> str:
        """A botocore-made token with the connection credentials (signed for ``for_cluster`` if given).

        Tokens are reused for up to five minutes, as clients do.
        """
        signed_for = for_cluster or cluster
        cached = self._tokens.get(signed_for)
        if cached is not None and time.monotonic() - cached[1] < 300:
            return cached[0]
        cred = self.connection["credentials"]
        token = make_token(
            for_cluster or cluster,
            access_key_id=cred["access_key_id"],
            secret_access_key=cred["secret_access_key"],
            region=self.connection["region"],
        )
        self._tokens[signed_for] = (token, time.monotonic())
        return token

    def env(self) -> dict[str, str]:
        """Environment variables that point boto3 at the stand-in with its credentials."""
        c = self.connection
        return {
            "AWS_ENDPOINT_URL_EKS": c["eks_endpoint_url"],
            "AWS_ENDPOINT_URL_STS": c["sts_endpoint_url"],
            "AWS_ACCESS_KEY_ID": c["credentials"]["access_key_id"],
            "AWS_SECRET_ACCESS_KEY": c["credentials"]["secret_access_key"],
            "AWS_DEFAULT_REGION": c["region"],
            "AWS_REGION": c["region"],
            "AWS_EC2_METADATA_DISABLED": "true",
        }


@contextmanager
def start_fake_eks(
    scenario: str | dict[str, Any],
    *,
    seed: int | None = None,
    subprocess_mode: bool = False,
    workdir: Path | None = None,
) -> Iterator[RunningFakeEks]:
    """Run the stand-in for the duration of the block (in a thread, or a ``fake-eks`` child process)."""
    with tempfile.TemporaryDirectory(prefix="fake-eks-") as tmp:
        folder = workdir or Path(tmp)
        conn_file = folder / "connection.json"
        if subprocess_mode:
            with _child(scenario, seed, folder, conn_file) as conn:
                yield RunningFakeEks(conn, conn_file)
            return
        server = ThreadedFakeEks(load_scenario(scenario, seed=seed))
        try:
            conn = server.start()
            conn_file.write_text(json.dumps(conn, indent=2))
            yield RunningFakeEks(conn, conn_file)
        finally:
            server.stop()


def make_token(
    cluster: str,
    *,
    access_key_id: str,
    secret_access_key: str,
    session_token: str | None = None,
    region: str = "us-east-1",
) -> str:
    """An EKS token made with botocore exactly as ``aws eks get-token`` makes it (no network call)."""
    import boto3
    from botocore.signers import RequestSigner

    session = boto3.session.Session(
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
        aws_session_token=session_token,
        region_name=region,
    )
    sts_url = f"https://sts.{region}.amazonaws.com"
    sts = session.client("sts", region_name=region, endpoint_url=sts_url)
    creds = session.get_credentials()
    if creds is None:
        raise ValueError("no credentials")
    signer = RequestSigner(sts.meta.service_model.service_id, region, "sts", "v4", creds, sts.meta.events)
    params = {
        "method": "GET",
        "url": f"{sts_url}/?Action=GetCallerIdentity&Version=2011-06-15",
        "body": {},
        "headers": {"x-k8s-aws-id": cluster},
        "context": {},
    }
    url = signer.generate_presigned_url(params, region_name=region, expires_in=60, operation_name="")
    return "k8s-aws-v1." + base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")


@contextmanager
def _child(
    scenario: str | dict[str, Any], seed: int | None, folder: Path, conn_file: Path
) -> Iterator[dict[str, Any]]:
    if isinstance(scenario, dict):
        path = folder / "scenario.json"
        path.write_text(json.dumps(scenario))
        scenario = str(path)
    cmd = [sys.executable, "-m", "fake_eks", "--scenario", scenario, "--connection-file", str(conn_file)]
    if seed is not None:
        cmd += ["--seed", str(seed)]
    proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 120
        while not conn_file.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"fake-eks did not start (exit code {proc.returncode})")
            time.sleep(0.05)
        yield json.loads(conn_file.read_text())
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
