"""A real moto server over HTTP for the AWS tests, shared by the whole session.

Why a server rather than `mock_aws`: the app, the worker subprocesses and Step Functions'
interpreter (which calls Batch back over HTTP on MOTO_PORT) must all talk to the same AWS,
as they would to the real one. Each test gets fake credentials, a region and
AWS_ENDPOINT_URL (honoured by boto3 and inherited by subprocesses); the server's state is
reset after every test. The fake is the boundary: nothing here can reach a real account.

Use it from conftest.py: ``from tests.helpers.aws_fixture import aws, moto_server  # noqa: F401``.
"""

from __future__ import annotations

import json
import os
import socket
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import pytest

# moto reads this when it is first imported. AWS's 5 MiB minimum part size would make the
# resumable-upload tests move tens of megabytes; the uploader's part size is a parameter and
# the tests use small parts on small real clips. (A setting of the emulator, test-only.)
os.environ.setdefault("S3_UPLOAD_PART_MIN_SIZE", str(64 * 1024))

REGION = "eu-west-1"
# Step Functions must execute for real; Batch jobs succeed at once without Docker.
MOTO_CONFIG = {"stepfunctions": {"execute_state_machine": True}, "batch": {"use_docker": False}}


#: Service quotas the server answers GetServiceQuota with: moto's Service Quotas knows only
#: VPC quotas and has no API to set one, so the server (in this process) is taught these.
#: The default is an account that has asked for GPU Spot capacity (64 vCPUs);
#: cloud_infra.seed_spot_quota changes it for one test. The app's request still goes over
#: HTTP through botocore and moto's Service Quotas handler, as to AWS.
SEEDED_QUOTAS: dict[tuple[str, str], float] = {("ec2", "L-3819A6DF"): 64.0}


def _teach_service_quotas() -> None:
    from moto.servicequotas.models import ServiceQuotasBackend

    original = ServiceQuotasBackend.get_service_quota

    def get_service_quota(self: object, service_code: str, quota_code: str) -> dict[str, object]:
        value = SEEDED_QUOTAS.get((service_code, quota_code))
        if value is None:
            return original(self, service_code, quota_code)  # type: ignore[arg-type]
        return {
            "ServiceCode": service_code,
            "QuotaCode": quota_code,
            "QuotaName": quota_code,
            "Value": value,
            "Unit": "None",
            "Adjustable": True,
            "GlobalQuota": False,
        }

    ServiceQuotasBackend.get_service_quota = get_service_quota  # type: ignore[method-assign]


@dataclass(frozen=True)
class MotoServer:
    """Where the server listens."""

    url: str

    def post(self, path: str, body: Mapping[str, object] | None = None) -> None:
        data = json.dumps(body or {}).encode()
        request = urllib.request.Request(
            self.url + path, data=data, method="POST", headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as reply:
            reply.read()

    def reset(self) -> None:
        """Forget every resource, and switch execution back on."""
        self.post("/moto-api/reset")
        self.post("/moto-api/config", MOTO_CONFIG)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    pytest.importorskip("moto.server", reason="moto[server] is in the dev extra")
    from moto.server import ThreadedMotoServer

    port = _free_port()
    os.environ["MOTO_PORT"] = str(port)  # the Step Functions interpreter calls back here
    try:
        import tests.helpers.moto_sfn_patch as sfn_patch  # getmoto/moto#10076, see that module
    except ImportError:
        sfn_patch = None  # type: ignore[assignment]
    if sfn_patch is not None:
        sfn_patch.apply()
    _teach_service_quotas()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    moto = MotoServer(f"http://127.0.0.1:{port}")
    moto.reset()
    yield moto
    server.stop()


@pytest.fixture()
def aws(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoServer]:
    """Fake credentials and the moto endpoint for this test (and its subprocesses)."""
    for var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.url)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    yield moto_server
    _wait_for_executions(moto_server.url)
    moto_server.reset()


def _wait_for_executions(url: str, timeout: float = 30.0) -> None:
    """Let the test's Step Functions executions end: their interpreter threads run in this
    process, and a reset under a running one leaves it working on vanished resources."""
    import time

    import boto3

    # Explicit settings: the test may have removed the region or keys from the environment.
    sfn = boto3.client(
        "stepfunctions",
        region_name=REGION,
        endpoint_url=url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    deadline = time.monotonic() + timeout
    for machine in sfn.list_state_machines()["stateMachines"]:
        arn = machine["stateMachineArn"]
        while (
            time.monotonic() < deadline
            and sfn.list_executions(stateMachineArn=arn, statusFilter="RUNNING")["executions"]
        ):
            time.sleep(0.2)
