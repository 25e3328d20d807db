"""`vsr cloud teardown` leaves nothing billing, on the moto server over HTTP.

The test builds a stack with everything a teardown must deal with: a versioned bucket with
objects, old versions, a delete marker and an unfinished multipart upload; Batch queues with
jobs running on them; a running Step Functions execution; the cloud preview's SageMaker
endpoint with its config and model. It runs the real CLI in a subprocess, then lists every
billable kind of resource that is left — there must be none.

Two things are built around moto's gaps, as in tests/helpers/cloud_infra.py: the stack is a
small template with the real queue and job-definition names (moto cannot delete the full
template's VPC: it deletes it before its subnets), and the state machine is made through the
API (moto's executor cannot see state machines made by its CloudFormation); its ARN is
handed to the stack as a parameter so the stack's output names it, as the real one does. A
state machine costs nothing while no execution runs, so it is not in the list. moto's
CloudFormation cannot delete Batch queues and compute environments (AWS deletes them with
the stack); for those the test checks what would bill: no unfinished job, no instance.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from typing import Any

import boto3
import pytest

from tests.helpers.aws_fixture import REGION, MotoServer
from vsr_desktop.backends.aws import stack_template as tpl
from vsr_desktop.backends.aws.preview_endpoint import PreviewEndpoint, resource_name

STACK = "vsr-gone"
JOB_SECONDS = 30
ACCOUNT = "123456789012"  # moto's account
FINAL = {"SUCCEEDED", "FAILED"}
UNFINISHED = ["SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING"]
TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": "sts:AssumeRole",
            "Principal": {
                "Service": [
                    "states.amazonaws.com",
                    "batch.amazonaws.com",
                    "sagemaker.amazonaws.com",
                ]
            },
        }
    ],
}


def stack_template(names: dict[str, str]) -> dict[str, Any]:
    """Bucket, queues and job definitions under the stack's real names, plus the outputs."""
    resources: dict[str, Any] = {
        "Bucket": {
            "Type": "AWS::S3::Bucket",
            "Properties": {"VersioningConfiguration": {"Status": "Enabled"}},
        },
        "Role": {
            "Type": "AWS::IAM::Role",
            "Properties": {"AssumeRolePolicyDocument": TRUST},
        },
        "Profile": {
            "Type": "AWS::IAM::InstanceProfile",
            "Properties": {"Roles": [{"Ref": "Role"}]},
        },
    }
    for kind in ("gpu", "cpu"):
        env = f"{kind.title()}Env"
        resources[env] = {
            "Type": "AWS::Batch::ComputeEnvironment",
            "Properties": {
                "Type": "MANAGED",
                "State": "ENABLED",
                "ServiceRole": {"Fn::GetAtt": ["Role", "Arn"]},
                "ComputeResources": {
                    "Type": "EC2",
                    "MinvCpus": 0,
                    "MaxvCpus": 8,
                    "InstanceTypes": ["c5.xlarge"],
                    "Subnets": [{"Ref": "Subnet"}],
                    "SecurityGroupIds": [{"Ref": "SecurityGroup"}],
                    "InstanceRole": {"Fn::GetAtt": ["Profile", "Arn"]},
                },
            },
        }
        resources[tpl.JOB_QUEUE_RESOURCES[kind]] = {
            "Type": "AWS::Batch::JobQueue",
            "Properties": {
                "JobQueueName": names[kind],
                "Priority": 1,
                "State": "ENABLED",
                "ComputeEnvironmentOrder": [{"Order": 1, "ComputeEnvironment": {"Ref": env}}],
            },
        }
    for stage, logical_id in tpl.JOB_DEFINITION_RESOURCES.items():
        resources[logical_id] = {
            "Type": "AWS::Batch::JobDefinition",
            "Properties": {
                "JobDefinitionName": names[stage],
                "Type": "container",
                "RetryStrategy": {"Attempts": 1},
                "ContainerProperties": {
                    "Image": "vsr-worker:test",
                    "Command": ["vsr", "worker", stage],
                    "Vcpus": 2,
                    "Memory": 2048,
                },
            },
        }
    return {
        "Parameters": {
            "StateMachineArn": {"Type": "String"},
            "Subnet": {"Type": "String"},
            "SecurityGroup": {"Type": "String"},
        },
        "Resources": resources,
        "Outputs": {
            tpl.OUTPUT_BUCKET_NAME: {"Value": {"Ref": "Bucket"}},
            tpl.OUTPUT_STATE_MACHINE_ARN: {"Value": {"Ref": "StateMachineArn"}},
            tpl.OUTPUT_GPU_JOB_QUEUE_ARN: {"Value": {"Ref": "GpuJobQueue"}},
            tpl.OUTPUT_CPU_JOB_QUEUE_ARN: {"Value": {"Ref": "CpuJobQueue"}},
        },
    }


def default_network() -> list[dict[str, str]]:
    """A subnet and security group of moto's default VPC (not the stack's: see above)."""
    ec2 = boto3.client("ec2")
    subnet = ec2.describe_subnets()["Subnets"][0]["SubnetId"]
    group = ec2.describe_security_groups()["SecurityGroups"][0]["GroupId"]
    return [
        {"ParameterKey": "Subnet", "ParameterValue": subnet},
        {"ParameterKey": "SecurityGroup", "ParameterValue": group},
    ]


def build_stack() -> dict[str, str]:
    """The state machine (API) on the queue ARNs the stack will give, then the stack."""
    names = tpl.resource_names(STACK)
    arn = f"arn:aws:batch:{REGION}:{ACCOUNT}"
    role = boto3.client("iam").create_role(
        RoleName=f"{STACK}-sfn", AssumeRolePolicyDocument=json.dumps(TRUST)
    )["Role"]["Arn"]
    definition = tpl.state_machine_definition(
        {
            tpl.SUB_CPU_JOB_QUEUE_ARN: f"{arn}:job-queue/{names['cpu']}",
            tpl.SUB_GPU_JOB_QUEUE_ARN: f"{arn}:job-queue/{names['gpu']}",
            tpl.SUB_SPLIT_JOB_DEFINITION_ARN: f"{arn}:job-definition/{names['split']}:1",
            tpl.SUB_UPSCALE_JOB_DEFINITION_ARN: f"{arn}:job-definition/{names['upscale']}:1",
            tpl.SUB_MERGE_JOB_DEFINITION_ARN: f"{arn}:job-definition/{names['merge']}:1",
        },
        max_concurrency=4,
    )
    machine = boto3.client("stepfunctions").create_state_machine(
        name=f"{STACK}-jobs", definition=definition, roleArn=role
    )["stateMachineArn"]
    cfn = boto3.client("cloudformation")
    cfn.create_stack(
        StackName=STACK,
        TemplateBody=json.dumps(stack_template(names)),
        Capabilities=["CAPABILITY_IAM"],
        Parameters=[
            {"ParameterKey": "StateMachineArn", "ParameterValue": machine},
            *default_network(),
        ],
    )
    stack = cfn.describe_stacks(StackName=STACK)["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    assert outputs[tpl.OUTPUT_CPU_JOB_QUEUE_ARN] == f"{arn}:job-queue/{names['cpu']}"
    return outputs | {"role": role}


def wait_for(condition: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def unfinished_jobs(batch: Any, queues: list[str]) -> list[str]:
    return [
        item["jobId"]
        for queue in queues
        for status in UNFINISHED
        for item in batch.list_jobs(jobQueue=queue, jobStatus=status)["jobSummaryList"]
    ]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_teardown_stops_and_deletes_everything_that_bills(
    aws: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # moto's Batch (without Docker) holds a job RUNNING for this long inside SubmitJob,
    # then fails it: long enough for the teardown to find them running.
    monkeypatch.setenv("MOTO_SIMPLE_BATCH_FAIL_AFTER", str(JOB_SECONDS))
    outputs = build_stack()
    bucket = outputs[tpl.OUTPUT_BUCKET_NAME]
    queues = [outputs[tpl.OUTPUT_GPU_JOB_QUEUE_ARN], outputs[tpl.OUTPUT_CPU_JOB_QUEUE_ARN]]
    session = boto3.session.Session()

    # Objects in every form a versioned bucket holds them.
    s3 = boto3.client("s3")
    for body in (b"one", b"two"):
        s3.put_object(Bucket=bucket, Key="jobs/a/output/out.mp4", Body=body)
    s3.put_object(Bucket=bucket, Key="jobs/b/progress/split.json", Body=b"{}")
    s3.delete_object(Bucket=bucket, Key="jobs/b/progress/split.json")  # a delete marker
    s3.create_multipart_upload(Bucket=bucket, Key="jobs/c/input/source.mp4")

    # A running execution (its split job runs) and a chunk job on the GPU queue.
    sfn = boto3.client("stepfunctions")
    execution = sfn.start_execution(
        stateMachineArn=outputs[tpl.OUTPUT_STATE_MACHINE_ARN],
        name="job1",
        input=json.dumps(
            {"job_id": "job1", "job_uri": f"s3://{bucket}/jobs/job1", "chunks": ["0"]}
        ),
    )["executionArn"]
    batch = boto3.client("batch")
    names = tpl.resource_names(STACK)
    submitter = threading.Thread(  # SubmitJob returns only when moto's job ends
        target=batch.submit_job,
        kwargs={
            "jobName": "vsr-job1-chunk-7",
            "jobQueue": queues[0],
            "jobDefinition": names["upscale"],
        },
        daemon=True,
    )
    submitter.start()
    wait_for(lambda: len(unfinished_jobs(batch, queues)) == 2)

    # The preview endpoint, as the app makes it.
    endpoint = PreviewEndpoint(session, STACK, image="vsr-worker:test", role_arn=outputs["role"])
    endpoint.create()
    assert endpoint.status() != "absent"

    started = [*unfinished_jobs(batch, queues)]
    teardown = subprocess.run(
        [sys.executable, "-m", "vsr_desktop.cli", "cloud", "teardown", "--yes", "--stack", STACK],
        capture_output=True,
        text=True,
        timeout=240,
        env=dict(os.environ),
    )
    assert teardown.returncode == 0, teardown.stderr
    assert f"stack {STACK} deleted" in teardown.stderr
    for line in (
        "Step Functions executions (teardown): STOPPED 1",
        "Batch jobs (teardown): TERMINATED 2",
    ):
        assert line in teardown.stderr, teardown.stderr
    assert "Preview endpoint (teardown): DELETED" in teardown.stderr

    # Nothing billable is left.
    sagemaker = boto3.client("sagemaker")
    assert sagemaker.list_endpoints()["Endpoints"] == []
    assert sagemaker.list_endpoint_configs()["EndpointConfigs"] == []
    assert sagemaker.list_models()["Models"] == []
    assert resource_name(STACK) not in json.dumps(sagemaker.list_models())
    assert s3.list_buckets()["Buckets"] == []
    for machine in sfn.list_state_machines()["stateMachines"]:
        running = sfn.list_executions(
            stateMachineArn=machine["stateMachineArn"], statusFilter="RUNNING"
        )
        assert running["executions"] == []
    assert sfn.describe_execution(executionArn=execution)["status"] != "RUNNING"
    assert {job["status"] for job in batch.describe_jobs(jobs=started)["jobs"]} <= FINAL
    # moto's CloudFormation has no delete for Batch resources (AWS deletes them with the
    # stack): what is left must at least hold nothing that bills — no job, no instance.
    for queue in batch.describe_job_queues()["jobQueues"]:
        assert queue["jobQueueArn"] in queues
    assert unfinished_jobs(batch, queues) == []
    for environment in batch.describe_compute_environments()["computeEnvironments"]:
        assert environment["computeResources"]["minvCpus"] == 0
    reservations = boto3.client("ec2").describe_instances(
        Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}]
    )["Reservations"]
    assert reservations == []
    live = [
        s
        for s in boto3.client("cloudformation").list_stacks()["StackSummaries"]
        if s["StackStatus"] != "DELETE_COMPLETE"
    ]
    assert live == []
    submitter.join(JOB_SECONDS + 10)
