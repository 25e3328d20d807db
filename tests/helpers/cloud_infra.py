"""The stack's resources made in the moto server through the API, for backend and GUI tests.

Why not through CloudFormation: moto's executor cannot see state machines that moto's
CloudFormation created (FACTS.md), so the tests build what the template would — same queue
and job-definition names, the real state-machine definition from the template — and hand
the backend a StackInfo with the outputs the real stack has.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import boto3

from tests.helpers.aws_fixture import REGION
from vsr_desktop.backends.aws import stack_template as tpl
from vsr_desktop.backends.aws.stack import StackInfo

STACK_NAME = "vsr-test"
BUCKET = "vsr-test-bucket"
_TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": "sts:AssumeRole",
            "Principal": {"Service": ["states.amazonaws.com", "batch.amazonaws.com"]},
        }
    ],
}


def create_cloud_stack(max_parallel: int = 4) -> StackInfo:
    """Bucket, Batch queues and job definitions, and the state machine, as the stack has them."""
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})  # type: ignore[typeddict-item]
    iam = boto3.client("iam")
    role = iam.create_role(
        RoleName=f"{STACK_NAME}-role", AssumeRolePolicyDocument=json.dumps(_TRUST)
    )["Role"]["Arn"]
    batch: Any = boto3.client("batch")
    names = tpl.resource_names(STACK_NAME)
    queues: dict[str, str] = {}
    for kind in ("gpu", "cpu"):
        env = batch.create_compute_environment(
            computeEnvironmentName=f"{STACK_NAME}-{kind}-env",
            type="UNMANAGED",
            state="ENABLED",
            serviceRole=role,
        )["computeEnvironmentArn"]
        queues[kind] = batch.create_job_queue(
            jobQueueName=names[kind],
            state="ENABLED",
            priority=1,
            computeEnvironmentOrder=[{"order": 1, "computeEnvironment": env}],
        )["jobQueueArn"]
    definitions: dict[str, str] = {}
    for stage in ("split", "upscale", "merge"):
        definitions[stage] = batch.register_job_definition(
            jobDefinitionName=names[stage],
            type="container",
            containerProperties={
                "image": "vsr-worker:test",
                "command": ["worker", stage],
                "resourceRequirements": [
                    {"type": "VCPU", "value": "2"},
                    {"type": "MEMORY", "value": "4000"},
                ],
            },
        )["jobDefinitionArn"]
    definition = tpl.state_machine_definition(
        {
            tpl.SUB_CPU_JOB_QUEUE_ARN: queues["cpu"],
            tpl.SUB_GPU_JOB_QUEUE_ARN: queues["gpu"],
            tpl.SUB_SPLIT_JOB_DEFINITION_ARN: definitions["split"],
            tpl.SUB_UPSCALE_JOB_DEFINITION_ARN: definitions["upscale"],
            tpl.SUB_MERGE_JOB_DEFINITION_ARN: definitions["merge"],
        },
        max_concurrency=max_parallel,
    )
    machine = boto3.client("stepfunctions").create_state_machine(
        name=f"{STACK_NAME}-jobs", definition=definition, roleArn=role
    )["stateMachineArn"]
    outputs = {
        tpl.OUTPUT_BUCKET_NAME: BUCKET,
        tpl.OUTPUT_STATE_MACHINE_ARN: machine,
        tpl.OUTPUT_GPU_JOB_QUEUE_ARN: queues["gpu"],
        tpl.OUTPUT_CPU_JOB_QUEUE_ARN: queues["cpu"],
        tpl.OUTPUT_LOG_GROUP_NAME: f"/aws/batch/{STACK_NAME}",
        tpl.OUTPUT_MAX_PARALLEL_CHUNKS: str(max_parallel),
    }
    _stand_in_stack(outputs, max_parallel)
    return StackInfo(name=STACK_NAME, status="CREATE_COMPLETE", outputs=outputs)


def _stand_in_stack(outputs: dict[str, str], max_parallel: int) -> None:
    """A CloudFormation stack of that name whose outputs point at the resources above, so
    code that looks the stack up (the CLI, the app) finds it as it would in a real account."""
    template = {
        "Parameters": {key: {"Type": "String"} for key in outputs}
        | {
            tpl.PARAM_GPU_INSTANCE_TYPES: {"Type": "String"},
            tpl.PARAM_MAX_PARALLEL_CHUNKS: {"Type": "String"},
        },
        "Resources": {
            "Logs": {
                "Type": "AWS::Logs::LogGroup",
                "Properties": {"LogGroupName": outputs["LogGroupName"]},
            }
        },
        "Outputs": {key: {"Value": {"Ref": key}} for key in outputs},
    }
    parameters = {
        **outputs,
        tpl.PARAM_MAX_PARALLEL_CHUNKS: str(max_parallel),
        tpl.PARAM_GPU_INSTANCE_TYPES: "g4dn.xlarge,g5.xlarge",
    }
    boto3.client("cloudformation").create_stack(
        StackName=STACK_NAME,
        TemplateBody=json.dumps(template),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
    )


ACCOUNT = "123456789012"  # moto's default account
WORKER_REPO = "vsr-worker"


def push_worker_image(tag: str = "test") -> str:
    """An ECR repository holding a worker image manifest under `tag` (what `docker push`
    leaves in ECR; moto stores the manifest, no layers): returns the image URI."""
    ecr = boto3.client("ecr")
    with contextlib.suppress(ecr.exceptions.RepositoryAlreadyExistsException):
        ecr.create_repository(repositoryName=WORKER_REPO)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "size": 7023,
            "digest": "sha256:" + "a" * 64,
        },
        "layers": [],
    }
    ecr.put_image(repositoryName=WORKER_REPO, imageManifest=json.dumps(manifest), imageTag=tag)
    return worker_image_uri(tag)


def worker_image_uri(tag: str = "test") -> str:
    return f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{WORKER_REPO}:{tag}"


def seed_spot_quota(monkeypatch: Any, vcpus: float) -> None:
    """Give the moto server an EC2 GPU Spot quota (L-3819A6DF) of `vcpus` for this test
    (aws_fixture.SEEDED_QUOTAS: moto's Service Quotas knows no EC2 quota; see there)."""
    from tests.helpers.aws_fixture import SEEDED_QUOTAS

    monkeypatch.setitem(SEEDED_QUOTAS, ("ec2", "L-3819A6DF"), float(vcpus))
