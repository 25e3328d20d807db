"""What a teardown stops and deletes before CloudFormation deletes the stack.

Deleting the stack alone leaves money running: a Step Functions execution keeps submitting
chunk jobs until its Batch queue disappears, Batch jobs already on instances keep those
instances, and the cloud preview's SageMaker endpoint (made by the app, not the stack)
bills by the hour until someone deletes it. CloudFormation also refuses to delete a bucket
that still holds objects (or object versions). So, in this order: stop the executions,
terminate the Batch jobs on the stack's queues (and wait until Batch says they ended),
delete the preview endpoint with its config and model, empty the bucket of every version.
CloudFormation then deletes the stack with its bucket; delete_stack deletes the bucket
itself afterwards should it still exist (delete_bucket). Each step is reported as a
StackEvent, so the CLI and the app show it in the same list as the stack's own events.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from vsr_desktop.backends.aws import stack_template as tpl
from vsr_desktop.backends.aws.errors import cloud_error

# Batch states a job can still leave (it may hold or ask for an instance in each of them).
UNFINISHED_BATCH_STATES = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING")
REASON = "vsr cloud teardown: the stack is being deleted"


@dataclass
class TeardownReport:
    """What a teardown stopped and deleted (the CLI prints it; tests check it)."""

    executions: list[str] = field(default_factory=list)
    batch_jobs: list[str] = field(default_factory=list)
    preview_endpoint: bool = False
    objects_removed: int = 0


def release_billables(
    session: Any,
    stack_name: str,
    outputs: dict[str, str],
    on_event: Callable[[Any], None] | None = None,
    job_wait_seconds: float = 300.0,
    poll_seconds: float = 5.0,
) -> TeardownReport:
    """Stop and delete everything of the stack that bills outside CloudFormation's own
    deletion (see the module docstring); the stack itself is left for the caller."""
    from vsr_desktop.backends.aws.stack import StackEvent, empty_bucket

    report = TeardownReport()

    def step(resource: str, status: str, reason: str = "") -> None:
        if on_event is not None:
            on_event(StackEvent(datetime.now(timezone.utc), resource, "teardown", status, reason))

    machine = outputs.get(tpl.OUTPUT_STATE_MACHINE_ARN)
    if machine:
        report.executions = stop_executions(session, machine)
        step("Step Functions executions", f"STOPPED {len(report.executions)}")
    queues = [
        outputs[key]
        for key in (tpl.OUTPUT_GPU_JOB_QUEUE_ARN, tpl.OUTPUT_CPU_JOB_QUEUE_ARN)
        if outputs.get(key)
    ]
    report.batch_jobs = terminate_queue_jobs(session, queues)
    left = wait_until_ended(session, report.batch_jobs, job_wait_seconds, poll_seconds)
    step(
        "Batch jobs",
        f"TERMINATED {len(report.batch_jobs)}",
        f"{len(left)} still ending; Batch finishes them as the queues go" if left else "",
    )
    report.preview_endpoint = delete_preview_endpoint(session, stack_name)
    step("Preview endpoint", "DELETED" if report.preview_endpoint else "NONE")
    bucket = outputs.get(tpl.OUTPUT_BUCKET_NAME)
    if bucket:
        report.objects_removed = empty_bucket(session, bucket)
        step(f"Bucket {bucket}", "EMPTIED", f"{report.objects_removed} object version(s) removed")
    return report


def stop_executions(session: Any, state_machine_arn: str) -> list[str]:
    """Stop every running execution of the state machine; returns their ARNs."""
    sfn = session.client("stepfunctions")
    stopped: list[str] = []
    try:
        pages = sfn.get_paginator("list_executions").paginate(
            stateMachineArn=state_machine_arn, statusFilter="RUNNING"
        )
        running = [item["executionArn"] for page in pages for item in page.get("executions", [])]
        for arn in running:
            try:
                sfn.stop_execution(executionArn=arn, error="TornDown", cause=REASON)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ExecutionDoesNotExist":
                    raise
            stopped.append(arn)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "StateMachineDoesNotExist":
            return stopped
        raise cloud_error("stopping the running jobs", exc) from exc
    except BotoCoreError as exc:
        raise cloud_error("stopping the running jobs", exc) from exc
    return stopped


def terminate_queue_jobs(session: Any, queues: list[str]) -> list[str]:
    """Terminate every unfinished Batch job on these queues (Step Functions' StopExecution
    leaves them running); returns their ids."""
    batch = session.client("batch")
    ids: list[str] = []
    try:
        for queue in queues:
            for status in UNFINISHED_BATCH_STATES:
                pages = batch.get_paginator("list_jobs").paginate(jobQueue=queue, jobStatus=status)
                ids.extend(item["jobId"] for page in pages for item in page["jobSummaryList"])
        for job_id in dict.fromkeys(ids):
            batch.terminate_job(jobId=job_id, reason=REASON)
    except ClientError as exc:
        if "does not exist" in str(exc):
            return list(dict.fromkeys(ids))
        raise cloud_error("stopping the Batch jobs", exc) from exc
    except BotoCoreError as exc:
        raise cloud_error("stopping the Batch jobs", exc) from exc
    return list(dict.fromkeys(ids))


def wait_until_ended(
    session: Any, job_ids: list[str], timeout: float, poll_seconds: float
) -> list[str]:
    """Wait (bounded) until Batch reports the jobs SUCCEEDED or FAILED; returns the others."""
    batch = session.client("batch")
    left = list(job_ids)
    deadline = time.monotonic() + timeout
    while left:
        still: list[str] = []
        try:
            for start in range(0, len(left), 100):
                jobs = batch.describe_jobs(jobs=left[start : start + 100])["jobs"]
                still.extend(j["jobId"] for j in jobs if j["status"] in UNFINISHED_BATCH_STATES)
        except (ClientError, BotoCoreError) as exc:
            raise cloud_error("checking that the Batch jobs ended", exc) from exc
        left = still
        if not left or time.monotonic() > deadline:
            break
        time.sleep(poll_seconds)
    return left


def delete_preview_endpoint(session: Any, stack_name: str) -> bool:
    """Delete the app's SageMaker preview endpoint of this stack, its config and model;
    True when an endpoint existed."""
    from vsr_desktop.backends.aws.preview_endpoint import PreviewEndpoint

    return PreviewEndpoint(session, stack_name, image="", role_arn="").delete()


def delete_bucket(session: Any, bucket: str) -> bool:
    """Delete the (emptied) bucket; True when it existed."""
    try:
        session.client("s3").delete_bucket(Bucket=bucket)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "NoSuchBucket":
            return False
        raise cloud_error("deleting the bucket", exc) from exc
    except BotoCoreError as exc:
        raise cloud_error("deleting the bucket", exc) from exc
    return True
