"""The stack's state machine, executed by moto's Step Functions interpreter against moto's Batch.

The Batch resources are created through the API with the names and settings the template
gives them (moto's CloudFormation makes state machines the executor cannot see), and the
state machine gets the exact ASL the stack deploys, from `state_machine_definition`.
moto runs every Batch job to SUCCEEDED at once (no Docker); MOTO_SIMPLE_BATCH_FAIL_AFTER,
read by the in-process server at each submit, makes them fail.

moto gaps the tests cannot cover: StopExecution during a .sync task ends FAILED (not ABORTED)
and never calls TerminateJob, so the app's cancel must terminate known jobs itself; and the
Batch task needs tests/moto_sfn_patch.py (getmoto/moto#10076).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.helpers.aws_fixture import REGION, MotoServer
from vsr_desktop.backends.aws import stack_template as st

boto3 = pytest.importorskip("boto3", reason="boto3 is in the aws extra")

STACK = "vsr-test"
TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Deployed:
    """The Batch resources and the state machine, as the stack would name them."""

    state_machine_arn: str
    queues: dict[str, str]  # gpu / cpu -> ARN
    job_definitions: dict[str, str]  # split / upscale / merge -> ARN
    sfn: Any
    batch: Any


def _resolve(value: Any, refs: dict[str, Any]) -> Any:
    """Resolve the few intrinsic functions the template's Batch properties use."""
    if isinstance(value, list):
        return [_resolve(item, refs) for item in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Ref"}:
        return refs[value["Ref"]]
    if set(value) == {"Fn::GetAtt"}:
        return refs[".".join(value["Fn::GetAtt"])]
    if set(value) == {"Fn::Sub"}:
        return str(value["Fn::Sub"]).replace("${AWS::StackName}", STACK)
    if set(value) == {"Fn::If"}:  # the optional parts stay off (their defaults)
        return _resolve(value["Fn::If"][2], refs)
    return {key: _resolve(item, refs) for key, item in value.items()}


def _api_case(value: Any) -> Any:
    """CloudFormation's PascalCase property names → the Batch API's camelCase."""
    if isinstance(value, list):
        return [_api_case(item) for item in value]
    if isinstance(value, dict):
        return {key[:1].lower() + key[1:]: _api_case(item) for key, item in value.items()}
    return value


def _network_and_roles() -> dict[str, Any]:
    ec2 = boto3.client("ec2")
    iam = boto3.client("iam")
    vpc = ec2.create_vpc(CidrBlock="10.77.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=cidr, AvailabilityZone=f"{REGION}{zone}")["Subnet"][
            "SubnetId"
        ]
        for cidr, zone in (("10.77.0.0/18", "a"), ("10.77.64.0/18", "b"))
    ]
    group = ec2.create_security_group(GroupName="vsr", Description="vsr", VpcId=vpc)["GroupId"]
    template = ec2.create_launch_template(LaunchTemplateName="vsr", LaunchTemplateData={})[
        "LaunchTemplate"
    ]

    def role(name: str, service: str) -> str:
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
            ],
        }
        return str(
            iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"][
                "Arn"
            ]
        )

    refs: dict[str, Any] = {
        "BatchServiceRole.Arn": role("vsr-batch", "batch.amazonaws.com"),
        "JobRole.Arn": role("vsr-job", "ecs-tasks.amazonaws.com"),
        "StateMachineRole.Arn": role("vsr-sfn", "states.amazonaws.com"),
        "SubnetA": subnets[0],
        "SubnetB": subnets[1],
        "InstanceSecurityGroup": group,
        "ContainerImage": "vsr-worker:test",
        "LogGroup": f"/vsr-desktop/{STACK}",
        "InstanceLaunchTemplate": template["LaunchTemplateId"],
        "InstanceLaunchTemplate.LatestVersionNumber": str(template["LatestVersionNumber"]),
    }
    role("vsr-instance", "ec2.amazonaws.com")
    profile = iam.create_instance_profile(InstanceProfileName="vsr-instance")
    iam.add_role_to_instance_profile(InstanceProfileName="vsr-instance", RoleName="vsr-instance")
    refs["InstanceProfile.Arn"] = profile["InstanceProfile"]["Arn"]
    for name, default in st.parameter_defaults().items():
        params = st.load_template()["Parameters"]
        is_list = params[name]["Type"] == "CommaDelimitedList"
        refs.setdefault(name, default.split(",") if is_list else default)
    return refs


def deploy(
    max_concurrency: int | None = None, skip_job_definitions: tuple[str, ...] = ()
) -> Deployed:
    """Create what the stack creates for a job run, through the API, from the template."""
    resources = st.load_template()["Resources"]
    refs = _network_and_roles()
    batch = boto3.client("batch")
    for kind in ("Gpu", "Cpu"):
        props = _resolve(resources[f"{kind}ComputeEnvironment"]["Properties"], refs)
        compute = _api_case(props["ComputeResources"])
        compute["minvCpus"], compute["maxvCpus"] = (
            int(compute["minvCpus"]),
            int(compute["maxvCpus"]),
        )
        env = batch.create_compute_environment(
            computeEnvironmentName=f"{STACK}-{kind.lower()}",
            type=props["Type"],
            state=props["State"],
            computeResources=compute,
            serviceRole=props["ServiceRole"],
        )
        refs[f"{kind}ComputeEnvironment"] = env["computeEnvironmentArn"]
    names = st.resource_names(STACK)
    queues: dict[str, str] = {}
    for role, logical_id in st.JOB_QUEUE_RESOURCES.items():
        props = _resolve(resources[logical_id]["Properties"], refs)
        queues[role] = batch.create_job_queue(
            jobQueueName=names[role],
            state=props["State"],
            priority=props["Priority"],
            computeEnvironmentOrder=_api_case(props["ComputeEnvironmentOrder"]),
        )["jobQueueArn"]
    definitions: dict[str, str] = {}
    for role, logical_id in st.JOB_DEFINITION_RESOURCES.items():
        props = _resolve(resources[logical_id]["Properties"], refs)
        arn = f"arn:aws:batch:{REGION}:123456789012:job-definition/{names[role]}:1"
        if role not in skip_job_definitions:
            arn = batch.register_job_definition(
                jobDefinitionName=names[role],
                type=props["Type"],
                containerProperties=_api_case(props["ContainerProperties"]),
                retryStrategy=_api_case(props["RetryStrategy"]),
                timeout=_api_case(props["Timeout"]),
                platformCapabilities=props["PlatformCapabilities"],
            )["jobDefinitionArn"]
        definitions[role] = arn
    substitutions = {
        st.SUB_CPU_JOB_QUEUE_ARN: queues["cpu"],
        st.SUB_GPU_JOB_QUEUE_ARN: queues["gpu"],
        st.SUB_SPLIT_JOB_DEFINITION_ARN: definitions["split"],
        st.SUB_UPSCALE_JOB_DEFINITION_ARN: definitions["upscale"],
        st.SUB_MERGE_JOB_DEFINITION_ARN: definitions["merge"],
    }
    sfn = boto3.client("stepfunctions")
    machine = sfn.create_state_machine(
        name=f"{STACK}-jobs",
        roleArn=refs["StateMachineRole.Arn"],
        definition=st.state_machine_definition(substitutions, max_concurrency),
    )
    return Deployed(machine["stateMachineArn"], queues, definitions, sfn, batch)


def start(deployed: Deployed, job_id: str, chunks: int) -> str:
    """Start one job as the app does: execution name = job id, contract input."""
    payload = {
        "job_id": job_id,
        "job_uri": f"s3://bucket/jobs/{job_id}",
        "chunks": [str(index) for index in range(chunks)],
    }
    reply = deployed.sfn.start_execution(
        stateMachineArn=deployed.state_machine_arn, name=job_id, input=json.dumps(payload)
    )
    return str(reply["executionArn"])


def wait_for_end(sfn: Any, execution_arn: str, timeout: float = TIMEOUT_S) -> dict[str, Any]:
    """Poll until the execution leaves RUNNING; a hang fails the test instead of blocking it."""
    deadline = time.monotonic() + timeout
    while True:
        described: dict[str, Any] = sfn.describe_execution(executionArn=execution_arn)
        if described["status"] != "RUNNING":
            return described
        if time.monotonic() > deadline:
            pytest.fail(f"execution still RUNNING after {timeout:.0f} s: {execution_arn}")
        time.sleep(0.2)


def jobs_on(deployed: Deployed, queue: str) -> list[dict[str, Any]]:
    """Every job on one queue, whatever its status, fully described."""
    ids = [
        summary["jobId"]
        for status in (
            "SUBMITTED",
            "PENDING",
            "RUNNABLE",
            "STARTING",
            "RUNNING",
            "SUCCEEDED",
            "FAILED",
        )
        for summary in deployed.batch.list_jobs(jobQueue=deployed.queues[queue], jobStatus=status)[
            "jobSummaryList"
        ]
    ]
    if not ids:
        return []
    return list(deployed.batch.describe_jobs(jobs=ids)["jobs"])


def environment(job: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in job["container"]["environment"]}


def history(deployed: Deployed, execution_arn: str) -> list[dict[str, Any]]:
    return list(
        deployed.sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]
    )


@pytest.fixture()
def deployed(aws: MotoServer) -> Iterator[Deployed]:
    yield deploy(max_concurrency=2)


def test_three_chunks_run_split_map_merge_with_contract_names(deployed: Deployed) -> None:
    started = time.monotonic()
    arn = start(deployed, "job-abc123", chunks=3)
    described = wait_for_end(deployed.sfn, arn)
    elapsed = time.monotonic() - started
    assert described["status"] == "SUCCEEDED", described

    # The input survives every step; split and merge leave only a small record.
    output = json.loads(described["output"])
    assert output["job_uri"] == "s3://bucket/jobs/job-abc123"
    assert output["chunks"] == ["0", "1", "2"]
    assert output["config"] == {"max_parallel_chunks": 2}
    assert output["split"]["job_name"] == "vsr-job-abc123-split"
    assert output["merge"]["job_name"] == "vsr-job-abc123-merge"
    assert output["split"]["status"] == output["merge"]["status"] == "SUCCEEDED"
    assert "upscale" not in output and "error" not in output

    cpu = {job["jobName"]: job for job in jobs_on(deployed, "cpu")}
    gpu = {job["jobName"]: job for job in jobs_on(deployed, "gpu")}
    assert set(cpu) == {"vsr-job-abc123-split", "vsr-job-abc123-merge"}
    assert set(gpu) == {f"vsr-job-abc123-chunk-{index}" for index in range(3)}
    for name, job in cpu.items():
        assert environment(job)["VSR_JOB_URI"] == "s3://bucket/jobs/job-abc123"
        assert "VSR_CHUNK_INDEX" not in environment(job)
        stage = name.rsplit("-", 1)[1]
        assert job["jobDefinition"] == deployed.job_definitions[stage]
    for index in range(3):
        job = gpu[f"vsr-job-abc123-chunk-{index}"]
        assert environment(job)["VSR_JOB_URI"] == "s3://bucket/jobs/job-abc123"
        assert environment(job)["VSR_CHUNK_INDEX"] == str(index)
        assert job["jobDefinition"] == deployed.job_definitions["upscale"]
        assert job["status"] == "SUCCEEDED"

    # Split strictly before every chunk, merge strictly after.
    submitted = [
        json.loads(event["taskScheduledEventDetails"]["parameters"])["JobName"]
        for event in history(deployed, arn)
        if event["type"] == "TaskScheduled"
    ]
    assert submitted[0] == "vsr-job-abc123-split"
    assert submitted[-1] == "vsr-job-abc123-merge"
    assert sorted(submitted[1:-1]) == [f"vsr-job-abc123-chunk-{index}" for index in range(3)]
    assert elapsed < 30, f"a 3-chunk execution took {elapsed:.1f} s in moto"


def test_failed_batch_job_fails_the_execution_with_its_cause(
    deployed: Deployed, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Read by moto's Batch at submit time, in this process (the server is in-process).
    monkeypatch.setenv("MOTO_SIMPLE_BATCH_FAIL_AFTER", "0")
    arn = start(deployed, "job-fails", chunks=3)
    described = wait_for_end(deployed.sfn, arn)

    assert described["status"] == "FAILED"
    assert described["error"] == st.ERROR_SPLIT_FAILED
    failed_job = json.loads(described["cause"])  # the Batch job, as DescribeJobs shows it
    assert failed_job["JobName"] == "vsr-job-fails-split"
    assert failed_job["Status"] == "FAILED"
    # Nothing after the failed step was submitted.
    assert [job["jobName"] for job in jobs_on(deployed, "cpu")] == ["vsr-job-fails-split"]
    assert jobs_on(deployed, "gpu") == []
    events = history(deployed, arn)
    assert events[-1]["type"] == "ExecutionFailed"
    assert events[-1]["executionFailedEventDetails"]["error"] == st.ERROR_SPLIT_FAILED
    caught = [
        event["taskFailedEventDetails"]["error"]
        for event in events
        if event["type"] == "TaskFailed"
    ]
    assert caught == ["States.TaskFailed"]
    assert "vsr-job-fails-split" in events[-1]["executionFailedEventDetails"]["cause"]


def test_rejected_chunk_fails_the_execution_without_retry_or_merge(aws: MotoServer) -> None:
    # The upscale job definition is gone (deregistered, or the stack drifted): Batch refuses
    # every chunk with a ClientException, which is not worth retrying.
    deployed = deploy(max_concurrency=2, skip_job_definitions=("upscale",))
    arn = start(deployed, "job-rejected", chunks=3)
    described = wait_for_end(deployed.sfn, arn)

    assert described["status"] == "FAILED"
    assert described["error"] == st.ERROR_UPSCALE_FAILED
    assert "does not exist" in described["cause"]
    assert [job["jobName"] for job in jobs_on(deployed, "cpu")] == ["vsr-job-rejected-split"]
    assert jobs_on(deployed, "gpu") == []
    events = history(deployed, arn)
    failed_submits = [event for event in events if event["type"] == "TaskFailed"]
    # One attempt per started chunk at most: client errors are not in the Retry list.
    assert 1 <= len(failed_submits) <= 2
    assert all(
        event["taskFailedEventDetails"]["error"] == "Batch.ClientException"
        for event in failed_submits
    )


def test_execution_is_named_after_the_job_and_a_repeat_start_is_refused(deployed: Deployed) -> None:
    arn = start(deployed, "job-named", chunks=1)
    described = wait_for_end(deployed.sfn, arn)
    assert described["status"] == "SUCCEEDED"
    assert described["name"] == "job-named"
    assert arn.endswith(":job-named")
    # Starting the finished job again under its own name is refused, not run twice.
    with pytest.raises(deployed.sfn.exceptions.ExecutionAlreadyExists):
        start(deployed, "job-named", chunks=1)
    assert len(jobs_on(deployed, "gpu")) == 1


def test_definition_rejects_concurrency_above_the_inline_map_limit() -> None:
    with pytest.raises(ValueError, match="1…40"):
        st.state_machine_definition({}, max_concurrency=41)
    with pytest.raises(ValueError, match="GpuJobQueueArn"):
        st.state_machine_definition({st.SUB_CPU_JOB_QUEUE_ARN: "arn"}, max_concurrency=4)
