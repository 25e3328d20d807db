"""Stopping and removing a job's resources: cancel (StopExecution, then TerminateJob for
every chunk job the execution started — Step Functions alone leaves them running), and
remove (every object under the job's prefix, and an unfinished multipart upload).

Split out of backend.py; AwsBackend.cancel, stop and remove land here.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from vsr_desktop.backends.aws.errors import cloud_error
from vsr_desktop.core.errors import JobError
from vsr_desktop.core.jobs import JobRecord, JobState
from vsr_desktop.worker.s3_layout import JobLocation

if TYPE_CHECKING:
    from vsr_desktop.backends.aws.backend import AwsBackend

_BATCH_FINISHED = {"SUCCEEDED", "FAILED"}


def cancel(backend: AwsBackend, job: JobRecord) -> JobRecord:
    """Stop the execution and its Batch jobs; finished chunks stay in S3 for a resume."""
    job = backend.store.get(job.id)
    if job.state.is_finished:
        return job
    if (
        not backend.aws_state(job).get("execution_arn")
        and job.pid is not None
        and job.pid != os.getpid()
    ):
        raise JobError(
            f"job {job.id} is being sent to AWS by process {job.pid}",
            "stop the upload there (Cancel in the app, or Ctrl+C)",
        )
    backend.stop(job)
    return backend.store.get(job.id)


def stop(
    backend: AwsBackend, job: JobRecord, reason: str = "cancelled from vsr_desktop"
) -> list[str]:
    """cancel, returning the Batch jobs it terminated (the CLI and the app count them)."""
    arn = backend.aws_state(job).get("execution_arn")
    terminated: list[str] = []
    if arn:
        sfn = backend.client("stepfunctions")
        try:
            sfn.stop_execution(executionArn=arn, error="Cancelled", cause=reason)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ExecutionDoesNotExist":
                raise cloud_error("cancelling the job", exc) from exc
        except BotoCoreError as exc:
            raise cloud_error("cancelling the job", exc) from exc
        terminated = terminate_batch_jobs(backend, job, arn, reason)
    stopped = f"; stopped {len(terminated)} Batch job(s)" if terminated else ""
    backend.store.update(
        job.id,
        state=JobState.CANCELLED,
        phase="",
        pid=None,
        message=f"cancelled{stopped}; resume to continue from the finished chunks",
    )
    return terminated


def batch_job_ids(backend: AwsBackend, execution_arn: str) -> list[str]:
    """Batch jobs this execution submitted, from its history (TaskSubmitted events)."""
    sfn = backend.client("stepfunctions")
    ids: list[str] = []
    try:
        pages = sfn.get_paginator("get_execution_history").paginate(executionArn=execution_arn)
        for page in pages:
            for event in page.get("events", []):
                details = event.get("taskSubmittedEventDetails") or {}
                if details.get("resourceType") != "batch":
                    continue
                try:
                    output = json.loads(details.get("output") or "{}")
                except ValueError:
                    continue
                job_id = output.get("JobId") or output.get("jobId")
                if job_id:
                    ids.append(str(job_id))
    except (ClientError, BotoCoreError) as exc:
        raise cloud_error("listing the job's Batch jobs", exc) from exc
    return ids


def queued_batch_job_ids(backend: AwsBackend, job: JobRecord) -> list[str]:
    """Unfinished Batch jobs named after this job on the stack's queues.

    The history only lists a job once its submission returned; a job caught mid-submit
    (or one the history has not shown yet) is found here by its name.
    """
    batch = backend.client("batch")
    stack = backend.stack()
    ids: list[str] = []
    for queue_key in ("GpuJobQueueArn", "CpuJobQueueArn"):
        queue = stack.outputs.get(queue_key)
        if not queue:
            continue
        try:
            pages = batch.get_paginator("list_jobs").paginate(
                jobQueue=queue, filters=[{"name": "JOB_NAME", "values": [f"vsr-{job.id}-*"]}]
            )
            for page in pages:
                ids.extend(
                    item["jobId"]
                    for item in page.get("jobSummaryList", [])
                    if item.get("status") not in _BATCH_FINISHED
                )
        except (ClientError, BotoCoreError) as exc:
            raise cloud_error("listing the job's Batch jobs", exc) from exc
    return ids


def terminate_batch_jobs(
    backend: AwsBackend,
    job: JobRecord,
    execution_arn: str,
    reason: str = "cancelled from vsr_desktop",
) -> list[str]:
    batch = backend.client("batch")
    ids = list(
        dict.fromkeys(backend.batch_job_ids(execution_arn) + backend.queued_batch_job_ids(job))
    )
    terminated = []
    for start in range(0, len(ids), 100):
        try:
            described = batch.describe_jobs(jobs=ids[start : start + 100])["jobs"]
        except (ClientError, BotoCoreError) as exc:
            raise cloud_error("reading the job's Batch jobs", exc) from exc
        for item in described:
            if item["status"] in _BATCH_FINISHED:
                continue
            try:
                batch.terminate_job(jobId=item["jobId"], reason=reason)
            except (ClientError, BotoCoreError) as exc:
                raise cloud_error("stopping a Batch job", exc) from exc
            terminated.append(item["jobId"])
    return terminated


def remove(backend: AwsBackend, job: JobRecord) -> None:
    """Delete every object under the job's prefix (and an unfinished upload), then its
    record; never the local output. A job still running is refused: cancel it first."""
    job = backend.store.get(job.id)
    if backend.aws_state(job).get("execution_arn") and not job.state.is_finished:
        job = backend.poll(job)  # the facts: it may have ended since the last look
    backend._refuse_if_running(job)
    if backend.aws_state(job).get("bucket"):
        abort_upload(backend, job)
        delete_objects(backend, backend.location(job), ("",))
    backend.store.delete(job.id)


def abort_upload(backend: AwsBackend, job: JobRecord) -> None:
    """Abort the job's unfinished multipart uploads (S3 bills their parts until then)."""
    where = backend.location(job)
    s3 = backend.client("s3")
    try:
        pages = s3.get_paginator("list_multipart_uploads").paginate(
            Bucket=where.bucket, Prefix=where.folder
        )
        for page in pages:
            for upload in page.get("Uploads", []):
                s3.abort_multipart_upload(
                    Bucket=where.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in {"NoSuchUpload", "NoSuchBucket"}:
            raise cloud_error("abandoning the job's upload", exc) from exc
    except BotoCoreError as exc:
        raise cloud_error("abandoning the job's upload", exc) from exc


def delete_objects(backend: AwsBackend, where: JobLocation, names: tuple[str, ...]) -> int:
    """Delete the objects under each of `names` (relative to the job prefix, "" for all
    of them); returns how many went."""
    s3 = backend.client("s3")
    removed = 0
    try:
        for name in names:
            pages = s3.get_paginator("list_objects_v2").paginate(
                Bucket=where.bucket, Prefix=where.key(name) if name else where.folder
            )
            for page in pages:
                keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
                for start in range(0, len(keys), 1000):
                    s3.delete_objects(
                        Bucket=where.bucket,
                        Delete={"Objects": keys[start : start + 1000], "Quiet": True},
                    )
                removed += len(keys)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "NoSuchBucket":
            return removed
        raise cloud_error("deleting the job's files in S3", exc) from exc
    except BotoCoreError as exc:
        raise cloud_error("deleting the job's files in S3", exc) from exc
    return removed


def refuse_if_running(backend: AwsBackend, job: JobRecord) -> None:
    if job.state is not JobState.RUNNING:
        return
    if job.pid is not None:  # alive: the store marks a dead uploader's job INTERRUPTED
        raise JobError(
            f"job {job.id} is being sent to AWS by process {job.pid}",
            "wait for the upload, or stop it there (Cancel, or Ctrl+C)",
        )
    raise JobError(
        f"job {job.id} is running in the cloud", "wait for it to finish, or cancel it first"
    )
