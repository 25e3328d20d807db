"""The cloud path in a REAL AWS account: deploy, one tiny job, a cancel, teardown, nothing left.

Opt-in: it runs only with VSR_AWS_LIVE=1 and is skipped otherwise. It has NOT run where it
was written: that machine has no AWS account and no route to AWS (the rest of the cloud
tests use the moto server, and tests/integration/test_worker_container.py runs the image
in real containers). Only this suite shows what moto cannot: that AWS accepts the template
(AL2023 images, quotas, IAM), that Spot capacity arrives, that the image runs on a GPU
instance, and that teardown leaves nothing billing.

It uses the app's own functions (stack.deploy_stack / delete_stack, AwsBackend.submit /
poll / cancel / download, the teardown module), so it tests what `vsr cloud setup`,
`vsr cloud submit` and `vsr cloud teardown` do. It deploys its OWN stack
(VSR_AWS_LIVE_STACK, default `vsr-live-<random>`), never the user's `vsr-desktop` one,
and deletes it at the end even when a test fails.

Needs: credentials in boto3's default chain (AWS_PROFILE, SSO or keys) with rights to
create the stack (CloudFormation, IAM roles, Batch, EC2 VPC, S3, Step Functions, Logs),
AWS_REGION, a GPU Spot quota above 0 in that region ("All G and VT Spot Instance
Requests"), and the worker image pushed to ECR (packaging/docker/README.md) in
VSR_AWS_LIVE_IMAGE. It costs a few US cents to about a dollar (a g4dn Spot instance for
some minutes, a CPU instance for split and merge, S3 requests) and takes 20–40 minutes,
most of it CloudFormation and instance start-up. Run it with:

    VSR_AWS_LIVE=1 AWS_PROFILE=… AWS_REGION=eu-west-1 \
    VSR_AWS_LIVE_IMAGE=ACCOUNT.dkr.ecr.eu-west-1.amazonaws.com/vsr-worker:TAG \
    .venv/bin/python -m pytest tests/live -v
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ClipFactory

LIVE = os.environ.get("VSR_AWS_LIVE") == "1"
pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(
        not LIVE, reason="real AWS account: opt in with VSR_AWS_LIVE=1 (costs money; docs/cloud.md)"
    ),
]

STACK = os.environ.get("VSR_AWS_LIVE_STACK") or f"vsr-live-{secrets.token_hex(3)}"
JOB_WAIT = 60 * 60  # Spot capacity and instance start-up can take a while
BATCH_ENDED = {"SUCCEEDED", "FAILED"}


def wait(check: Callable[[], Any], what: str, timeout: float, every: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(every)


@pytest.fixture(scope="module")
def session() -> Any:
    from vsr_desktop.backends.aws.session import CloudCredentials, check_credentials, open_session

    image = os.environ.get("VSR_AWS_LIVE_IMAGE")
    if not image:
        pytest.fail(
            "set VSR_AWS_LIVE_IMAGE to the worker image in ECR (packaging/docker/README.md)"
        )
    creds = CloudCredentials(
        region=os.environ.get("AWS_REGION", ""), profile=os.environ.get("AWS_PROFILE") or None
    )
    boto = open_session(creds)
    print(f"live AWS as {check_credentials(boto)} in {boto.region_name}, stack {STACK}")
    return boto


@pytest.fixture(scope="module")
def stack(session: Any) -> Iterator[Any]:
    """The stack, deployed as `vsr cloud setup` does; deleted afterwards whatever happened."""
    from vsr_desktop.backends.aws.stack import delete_stack, deploy_stack, describe_stack
    from vsr_desktop.backends.aws.stack_template import template_body

    parameters = {
        "ContainerImage": os.environ["VSR_AWS_LIVE_IMAGE"],
        "MaxParallelChunks": "2",
        "MaxGpuVcpus": "8",  # at most two g4dn.xlarge
        "MaxCapacityWaitSeconds": "1800",
    }
    try:
        info = deploy_stack(session, template_body(), parameters, STACK, on_event=print)
        assert info.ready, info.status
        yield info
    finally:
        if describe_stack(session, STACK) is not None:  # the teardown test did not run or failed
            delete_stack(session, STACK, on_event=print)


@pytest.fixture(scope="module")
def backend(session: Any, stack: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    from vsr_desktop.backends.aws.backend import AwsBackend
    from vsr_desktop.core.jobs import JobStore

    return AwsBackend(JobStore(tmp_path_factory.mktemp("live") / "jobs.db"), session, STACK)


def spec_for(source: Path, out: Path) -> Any:
    from vsr_desktop.core.job_spec import EngineSettings, JobSpec
    from vsr_desktop.core.media.encode import EncodeSettings

    out.parent.mkdir(parents=True, exist_ok=True)
    return JobSpec(
        source=source,
        output=out,
        engine=EngineSettings(outscale=2),
        encode=EncodeSettings(preset="ultrafast"),
        chunk_seconds=0.5,
    )


def test_stack_deployed_with_the_image(stack: Any) -> None:
    assert stack.parameters.get("ContainerImage") == os.environ["VSR_AWS_LIVE_IMAGE"]
    for key in ("BucketName", "StateMachineArn", "GpuJobQueueArn", "CpuJobQueueArn"):
        assert stack.outputs.get(key), key


def test_tiny_job_runs_on_batch_and_comes_back(
    backend: Any, clip_factory: ClipFactory, tmp_path: Path
) -> None:
    from vsr_desktop.core.jobs import JobState
    from vsr_desktop.core.media import probe

    source = clip_factory(frames=24, gop=12, width=96, height=64)
    job = backend.submit(spec_for(source, tmp_path / "out" / "tiny.mp4"))
    assert job.chunks_total == 2
    job = wait(
        lambda: (j := backend.poll(backend.store.get(job.id))).state.is_finished and j,
        "the tiny job",
        JOB_WAIT,
    )
    assert job.state == JobState.COMPLETED, job.message
    assert job.cost_usd is not None and job.cost_usd > 0
    path = backend.download(job)
    info = probe(path)
    assert info.video.frame_count == 24
    assert (info.video.width, info.video.height) == (192, 128)
    done = backend.store.get(job.id)
    assert done.verify_report is not None and done.verify_report["ok"], done.verify_report


def test_cancel_stops_the_execution_and_its_batch_jobs(
    backend: Any, session: Any, clip_factory: ClipFactory, tmp_path: Path
) -> None:
    from vsr_desktop.core.jobs import JobState

    source = clip_factory(frames=240, gop=12, width=96, height=64)  # ten seconds, 20 chunks
    job = backend.submit(spec_for(source, tmp_path / "out" / "cancelled.mp4"))
    arn = backend.aws_state(backend.store.get(job.id))["execution_arn"]
    # Cancel once Batch has jobs of it: the case that leaves instances billing if done wrong.
    wait(lambda: backend.batch_job_ids(arn), "the first Batch job", JOB_WAIT)
    terminated = backend.stop(backend.store.get(job.id))
    assert backend.store.get(job.id).state == JobState.CANCELLED
    sfn = session.client("stepfunctions")
    assert sfn.describe_execution(executionArn=arn)["status"] in {"ABORTED", "SUCCEEDED", "FAILED"}
    batch = session.client("batch")
    ids = backend.batch_job_ids(arn)
    assert set(terminated) <= set(ids)
    wait(
        lambda: {j["status"] for j in batch.describe_jobs(jobs=ids)["jobs"]} <= BATCH_ENDED,
        "the cancelled job's Batch jobs to end",
        15 * 60,
    )


def test_teardown_leaves_nothing_billing(session: Any, stack: Any) -> None:
    from vsr_desktop.backends.aws.preview_endpoint import resource_name
    from vsr_desktop.backends.aws.stack import delete_stack, describe_stack
    from vsr_desktop.backends.aws.stack_template import resource_names

    events: list[str] = []
    delete_stack(session, STACK, on_event=lambda e: events.append(e.describe()))
    print("\n".join(events))
    assert describe_stack(session, STACK) is None

    # The bucket, with every object version.
    s3 = session.client("s3")
    assert stack.outputs["BucketName"] not in {b["Name"] for b in s3.list_buckets()["Buckets"]}
    # Batch: the queues and compute environments went with the stack (and their instances).
    batch = session.client("batch")
    names = resource_names(STACK)
    queues = batch.describe_job_queues(jobQueues=[names["gpu"], names["cpu"]])["jobQueues"]
    assert [q for q in queues if q["status"] != "DELETED"] == []
    environments = batch.describe_compute_environments()["computeEnvironments"]
    assert [
        e["computeEnvironmentName"] for e in environments if STACK in e["computeEnvironmentName"]
    ] == []

    # No instance of the stack's compute environments (Batch tags them with their Name)
    # is left running; they may take a few minutes to terminate.
    ec2 = session.client("ec2")

    def no_instances() -> bool:
        reservations = ec2.describe_instances(
            Filters=[
                {
                    "Name": "tag:Name",
                    "Values": [f"{STACK}-gpu", f"{STACK}-cpu", f"{STACK}-gpu-ondemand"],
                },
                {
                    "Name": "instance-state-name",
                    "Values": ["pending", "running", "stopping", "stopped"],
                },
            ]
        )["Reservations"]
        return reservations == []

    wait(no_instances, "the stack's instances to terminate", 15 * 60)
    # Nor its VPC (its S3 gateway endpoint is free, but nothing of the stack may remain).
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "tag:Name", "Values": [f"{STACK}-vpc"]}])["Vpcs"]
    assert vpcs == []
    # The preview endpoint (made by the app, outside the stack): none, nor its config or model.
    sagemaker = session.client("sagemaker")
    name = resource_name(STACK)
    assert sagemaker.list_endpoints(NameContains=name)["Endpoints"] == []
    assert sagemaker.list_endpoint_configs(NameContains=name)["EndpointConfigs"] == []
    assert sagemaker.list_models(NameContains=name)["Models"] == []
    # The state machine went with the stack, so no execution can keep submitting jobs.
    machine = stack.outputs["StateMachineArn"]
    sfn = session.client("stepfunctions")
    assert machine not in {m["stateMachineArn"] for m in sfn.list_state_machines()["stateMachines"]}
