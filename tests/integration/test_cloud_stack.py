"""Deploying and tearing down the real template through moto's CloudFormation over HTTP."""

from __future__ import annotations

import boto3
import pytest

from tests.helpers.aws_fixture import MotoServer
from vsr_desktop.backends.aws import stack_template as tpl
from vsr_desktop.backends.aws.errors import CloudError
from vsr_desktop.backends.aws.stack import StackEvent, delete_stack, deploy_stack, describe_stack

# moto's CloudFormation does not split a CommaDelimitedList default (see test_cloud_template).
LISTS = {
    key: tpl.parameter_defaults()[key]
    for key in (tpl.PARAM_GPU_INSTANCE_TYPES, tpl.PARAM_CPU_INSTANCE_TYPES)
}


@pytest.mark.filterwarnings("ignore:Tried to parse AWS.*:UserWarning")
def test_deploy_reports_events_and_a_second_deploy_changes_nothing(aws: MotoServer) -> None:
    session = boto3.session.Session()
    assert describe_stack(session, "vsr-life") is None
    events: list[StackEvent] = []
    info = deploy_stack(
        session, tpl.template_body(), LISTS, "vsr-life", on_event=events.append, poll_seconds=0.1
    )
    assert info.status == "CREATE_COMPLETE" and set(info.outputs) == set(tpl.OUTPUT_KEYS)
    assert info.list_parameter(tpl.PARAM_GPU_INSTANCE_TYPES) == LISTS[
        tpl.PARAM_GPU_INSTANCE_TYPES
    ].split(",")
    # moto records stack-level events only (AWS adds one per resource): in order, once each.
    assert [(e.resource, e.status) for e in events] == [
        ("vsr-life", "CREATE_IN_PROGRESS"),
        ("vsr-life", "CREATE_COMPLETE"),
    ]

    again: list[StackEvent] = []
    same = deploy_stack(
        session, tpl.template_body(), LISTS, "vsr-life", on_event=again.append, poll_seconds=0.1
    )
    assert same.outputs == info.outputs
    assert not [e for e in again if e.resource == "vsr-life" and "CREATE" in e.status]


BUCKET_STACK = """{"Resources": {"Bucket": {"Type": "AWS::S3::Bucket"}},
 "Outputs": {"BucketName": {"Value": {"Ref": "Bucket"}}}}"""


def test_teardown_empties_the_bucket_then_deletes_the_stack(aws: MotoServer) -> None:
    """CloudFormation refuses to delete a bucket that holds files, so teardown empties it.

    A bucket-only stack: moto deletes the real template's VPC before its subnets and fails
    (DependencyViolation), an ordering real CloudFormation gets right.
    """
    session = boto3.session.Session()
    info = deploy_stack(session, BUCKET_STACK, {}, "vsr-bye", poll_seconds=0.1)
    bucket = info.output("BucketName")
    s3 = session.client("s3")
    s3.put_object(Bucket=bucket, Key="jobs/x/output/a.mp4", Body=b"video")
    s3.create_multipart_upload(Bucket=bucket, Key="jobs/y/input/source.mp4")
    delete_stack(session, "vsr-bye", poll_seconds=0.1)
    assert describe_stack(session, "vsr-bye") is None
    assert bucket not in {b["Name"] for b in s3.list_buckets()["Buckets"]}
    delete_stack(session, "vsr-bye", poll_seconds=0.1)  # gone already: nothing to do


def test_stack_outputs_missing_is_a_clear_error(aws: MotoServer) -> None:
    session = boto3.session.Session()
    session.client("cloudformation").create_stack(
        StackName="bare", TemplateBody='{"Resources": {"L": {"Type": "AWS::Logs::LogGroup"}}}'
    )
    info = describe_stack(session, "bare")
    assert info is not None and info.ready
    with pytest.raises(CloudError, match="no output BucketName"):
        info.output("BucketName")


@pytest.mark.filterwarnings("ignore:Tried to parse AWS.*:UserWarning")
def test_an_update_keeps_every_parameter_it_was_not_given(aws: MotoServer) -> None:
    """`vsr cloud setup --max-parallel 40` once put the worker image back to its placeholder:
    an update now sends UsePreviousValue for each parameter the caller left out."""
    session = boto3.session.Session()
    image = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/vsr-worker:7"
    chosen = {
        tpl.PARAM_CONTAINER_IMAGE: image,
        tpl.PARAM_GPU_INSTANCE_TYPES: "g5.xlarge,g6.xlarge",
        tpl.PARAM_MAX_GPU_VCPUS: "32",
        tpl.PARAM_MAX_CAPACITY_WAIT_SECONDS: "1800",
    }
    first = deploy_stack(session, tpl.template_body(), chosen, "vsr-keep", poll_seconds=0.1)
    assert first.parameters[tpl.PARAM_CONTAINER_IMAGE] == image
    assert first.parameters[tpl.PARAM_MAX_PARALLEL_CHUNKS] == "16"

    deploy_stack(
        session,
        tpl.template_body(),
        {tpl.PARAM_MAX_PARALLEL_CHUNKS: "40"},
        "vsr-keep",
        poll_seconds=0.1,
    )
    stack = session.client("cloudformation").describe_stacks(StackName="vsr-keep")["Stacks"][0]
    values = {p["ParameterKey"]: p.get("ParameterValue") for p in stack["Parameters"]}
    assert values[tpl.PARAM_MAX_PARALLEL_CHUNKS] == "40"
    assert values[tpl.PARAM_CONTAINER_IMAGE] == image
    assert values[tpl.PARAM_MAX_GPU_VCPUS] == "32"
    assert values[tpl.PARAM_MAX_CAPACITY_WAIT_SECONDS] == "1800"
    after = describe_stack(session, "vsr-keep")
    assert after is not None
    assert after.list_parameter(tpl.PARAM_GPU_INSTANCE_TYPES) == ["g5.xlarge", "g6.xlarge"]
    assert after.outputs[tpl.OUTPUT_MAX_PARALLEL_CHUNKS] == "40"


def test_update_parameters_name_each_parameter_once() -> None:
    """The request itself: given values, UsePreviousValue for the rest the stack has, and
    nothing for a parameter new in this template (it has no previous value to keep)."""
    from vsr_desktop.backends.aws.stack import StackInfo, update_parameters

    existing = StackInfo(
        "s", "UPDATE_COMPLETE", {}, {tpl.PARAM_CONTAINER_IMAGE: "img", tpl.PARAM_VPC_CIDR: "x"}
    )
    params = update_parameters(tpl.template_body(), {tpl.PARAM_MAX_PARALLEL_CHUNKS: "8"}, existing)
    assert params == [
        {"ParameterKey": tpl.PARAM_MAX_PARALLEL_CHUNKS, "ParameterValue": "8"},
        {"ParameterKey": tpl.PARAM_CONTAINER_IMAGE, "UsePreviousValue": True},
        {"ParameterKey": tpl.PARAM_VPC_CIDR, "UsePreviousValue": True},
    ]


@pytest.mark.filterwarnings("ignore:Tried to parse AWS.*:UserWarning")
def test_the_optional_parts_deploy_when_asked(aws: MotoServer) -> None:
    """On-Demand fallback, job-end email and budget alarm, switched on, on moto's
    CloudFormation (what moto models of them: the second environment in the GPU queue,
    the SNS topic with its email subscription, the EventBridge rule)."""
    session = boto3.session.Session()
    info = deploy_stack(
        session,
        tpl.template_body(),
        {
            tpl.PARAM_ON_DEMAND_GPU_FALLBACK: "true",
            tpl.PARAM_NOTIFICATION_EMAIL: "me@example.com",
            tpl.PARAM_MONTHLY_BUDGET_USD: "50",
        },
        "vsr-opts",
        poll_seconds=0.1,
    )
    batch = session.client("batch")
    (queue,) = batch.describe_job_queues(jobQueues=[info.outputs[tpl.OUTPUT_GPU_JOB_QUEUE_ARN]])[
        "jobQueues"
    ]
    order = sorted(queue["computeEnvironmentOrder"], key=lambda item: item["order"])
    assert [item["order"] for item in order] == [1, 2]
    environments = {
        env["computeEnvironmentArn"]: env
        for env in batch.describe_compute_environments()["computeEnvironments"]
    }
    assert environments[order[0]["computeEnvironment"]]["computeResources"]["type"] == "SPOT"
    assert environments[order[1]["computeEnvironment"]]["computeResources"]["type"] == "EC2"
    sns = session.client("sns")
    (topic,) = sns.list_topics()["Topics"]
    (subscription,) = sns.list_subscriptions_by_topic(TopicArn=topic["TopicArn"])["Subscriptions"]
    assert (subscription["Protocol"], subscription["Endpoint"]) == ("email", "me@example.com")
    rules = session.client("events").list_rules()["Rules"]
    assert any('"aws.states"' in rule.get("EventPattern", "") for rule in rules)


def test_each_chunk_job_gets_the_time_limit_the_app_sends(aws: MotoServer) -> None:
    """The state machine hands `chunk_timeout_seconds` to SubmitJob as the chunk job's
    attemptDurationSeconds; an input without it gets the template's default."""
    import json
    import time

    from tests.helpers.cloud_infra import create_cloud_stack

    stack = create_cloud_stack()
    sfn, batch = boto3.client("stepfunctions"), boto3.client("batch")
    for name, extra, expected in (
        ("timed", {"chunk_timeout_seconds": 1741}, 1741),
        ("plain", {}, tpl.DEFAULT_CHUNK_TIMEOUT_SECONDS),
    ):
        payload = {"job_id": name, "job_uri": f"s3://b/jobs/{name}", "chunks": ["0"], **extra}
        arn = sfn.start_execution(
            stateMachineArn=stack.outputs[tpl.OUTPUT_STATE_MACHINE_ARN],
            name=name,
            input=json.dumps(payload),
        )["executionArn"]
        deadline = time.monotonic() + 60
        while sfn.describe_execution(executionArn=arn)["status"] == "RUNNING":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        (summary,) = batch.list_jobs(
            jobQueue=stack.outputs[tpl.OUTPUT_GPU_JOB_QUEUE_ARN],
            filters=[{"name": "JOB_NAME", "values": [f"vsr-{name}-chunk-0"]}],
        )["jobSummaryList"]
        (job,) = batch.describe_jobs(jobs=[summary["jobId"]])["jobs"]
        assert job["timeout"] == {"attemptDurationSeconds": expected}, job.get("timeout")


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_job_cancelled_for_capacity_says_so_in_the_jobs_row(
    aws: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batch's queue action cancels a job stuck RUNNABLE with the statusReason AWS documents;
    moto does not run the action, so the test sets that exact reason on the running job
    (TerminateJob) and the rest is real: the .sync task fails, the Fail state keeps the
    cause, poll words it for the row."""
    import time

    from tests.helpers.cloud_infra import create_cloud_stack
    from vsr_desktop.backends.aws.backend import AwsBackend
    from vsr_desktop.core.jobs import JobStore

    monkeypatch.setenv("MOTO_SIMPLE_BATCH_FAIL_AFTER", "15")
    stack = create_cloud_stack()
    store = JobStore()
    backend = AwsBackend(store, boto3.session.Session(), stack=stack)
    sfn, batch = boto3.client("stepfunctions"), boto3.client("batch")
    arn = sfn.start_execution(
        stateMachineArn=stack.outputs[tpl.OUTPUT_STATE_MACHINE_ARN],
        name="stuck",
        input='{"job_id": "stuck", "job_uri": "s3://vsr-test-bucket/jobs/stuck", "chunks": ["0"]}',
    )["executionArn"]
    cpu_queue = stack.outputs[tpl.OUTPUT_CPU_JOB_QUEUE_ARN]
    deadline = time.monotonic() + 30

    def unfinished() -> list[dict[str, str]]:
        return [
            item
            for status in ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING")
            for item in batch.list_jobs(jobQueue=cpu_queue, jobStatus=status)["jobSummaryList"]
        ]

    while not (jobs := unfinished()):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    reason = (
        "Canceled by JobStateTimeLimit action due to reason: "
        "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY"
    )
    batch.terminate_job(jobId=jobs[0]["jobId"], reason=reason)
    while sfn.describe_execution(executionArn=arn)["status"] == "RUNNING":
        assert time.monotonic() < deadline + 30
        time.sleep(0.2)
    message = backend._failure(sfn.describe_execution(executionArn=arn), {})
    assert message.startswith("SplitFailed: cancelled after waiting")
    assert "for capacity" in message and "Spot quota" in message
