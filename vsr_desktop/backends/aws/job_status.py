"""Polling a job: the execution's status plus the workers' progress objects in S3 (no Batch
calls on the common path, so polling a dozen jobs stays cheap), the cost so far, and the
monitor's half of the cost cap.

Split out of backend.py; AwsBackend.poll and read_progress land here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from vsr_desktop.backends.aws import cost_cap
from vsr_desktop.backends.aws.cost_cap import CAP_KEY
from vsr_desktop.backends.aws.errors import CloudError, cloud_error
from vsr_desktop.core.jobs import JobRecord, JobState
from vsr_desktop.worker.s3_layout import PROGRESS_FOLDER, progress_stage

if TYPE_CHECKING:
    from vsr_desktop.backends.aws.backend import AwsBackend

_EXECUTION_FINISHED = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}


@dataclass(frozen=True)
class ChunkProgress:
    """One worker's progress object (a chunk, or the split or merge stage)."""

    state: str
    frames_done: int
    seconds: float
    message: str


def poll(backend: AwsBackend, job: JobRecord) -> JobRecord:
    """Refresh one row from the execution and the progress objects."""
    job = backend.store.get(job.id)  # the caller's copy may predate a cancel
    if job.state.is_finished:
        return job
    arn = backend.aws_state(job).get("execution_arn")
    if not arn:
        return job  # still uploading (or the upload was interrupted)
    try:
        execution = backend.client("stepfunctions").describe_execution(executionArn=arn)
    except (ClientError, BotoCoreError) as exc:
        raise cloud_error("reading the job's progress", exc) from exc
    status = execution["status"]
    progress = backend.read_progress(job)
    chunk_states = {i: p for i, p in progress.items() if isinstance(i, int)}
    frames = sum(p.frames_done for p in chunk_states.values())
    done = sum(p.state == "done" for p in chunk_states.values())
    changes: dict[str, Any] = {
        "frames_done": min(frames, job.frames_total),
        "chunks_done": done,
        "cost_usd": cost_so_far(backend, job, chunk_states),
    }
    if status == "SUCCEEDED":
        changes.update(
            state=JobState.COMPLETED,
            phase="",
            frames_done=job.frames_total,
            chunks_done=job.chunks_total,
            message="finished in the cloud; download to get the output",
        )
    elif status in _EXECUTION_FINISHED:
        changes.update(
            state=JobState.FAILED if status != "ABORTED" else JobState.CANCELLED,
            phase="",
            message=backend._failure(execution, chunk_states),
        )
    else:
        changes.update(state=JobState.RUNNING, phase=phase_of(progress, done, job.chunks_total))
    cap = backend.aws_state(job).get(CAP_KEY)
    cost = changes["cost_usd"]
    if status not in _EXECUTION_FINISHED and cap is not None and cost_cap.over_cap(cost, cap):
        return stop_over_cap(backend, job, float(cost), float(cap))
    if "message" in changes and status != "SUCCEEDED":
        changes["message"] = cost_cap.explain_timeout(
            changes["message"], cap, backend.chunk_time_limit(job)
        )
    backend.store.update(job.id, unless_finished=True, **changes)
    return backend.store.get(job.id)


def stop_over_cap(backend: AwsBackend, job: JobRecord, cost: float, cap: float) -> JobRecord:
    """The monitor's half of the cost cap: stop the execution and terminate the job's
    Batch jobs at once; FAILED, with the reason in the row."""
    terminated = backend.stop(job, reason=f"vsr_desktop cost cap ${cap:.2f} reached")
    backend.store.update(
        job.id,
        state=JobState.FAILED,
        cost_usd=cost,
        message=cost_cap.stopped_message(cost, cap, len(terminated)),
    )
    return backend.store.get(job.id)


def read_progress(backend: AwsBackend, job: JobRecord) -> dict[int | str, ChunkProgress]:
    """The workers' progress objects: chunk index (or 'split'/'merge') → progress."""
    where = backend.location(job)
    s3 = backend.client("s3")
    found: dict[int | str, ChunkProgress] = {}
    try:
        pages = s3.get_paginator("list_objects_v2").paginate(
            Bucket=where.bucket, Prefix=where.key(PROGRESS_FOLDER)
        )
        keys = [item["Key"] for page in pages for item in page.get("Contents", [])]
        for key in keys:
            name = progress_stage(key)
            if name is None:
                continue
            data = json.loads(s3.get_object(Bucket=where.bucket, Key=key)["Body"].read())
            fps = float(data.get("fps") or 0.0)
            frames = int(data.get("frames_done", 0))
            found[name] = ChunkProgress(
                state=str(data.get("state", "")),
                frames_done=frames,
                seconds=frames / fps if fps > 0 else 0.0,
                message=str(data.get("message", "")),
            )
    except (ClientError, BotoCoreError) as exc:
        raise cloud_error("reading the job's progress", exc) from exc
    except (ValueError, IndexError, TypeError):
        pass  # a half-written or foreign object: the next poll reads it again
    return found


def phase_of(progress: dict[int | str, ChunkProgress], done: int, total: int) -> str:
    merge, split = progress.get("merge"), progress.get("split")
    if merge is not None:
        return "merging"
    if split is None:
        return "waiting for capacity"
    if split.state != "done":
        return "splitting"
    if not any(p.state == "running" for k, p in progress.items() if isinstance(k, int)):
        return f"waiting for GPU capacity ({done}/{total} chunks)"
    return f"running {done}/{total} chunks"


def cost_so_far(
    backend: AwsBackend, job: JobRecord, chunks: dict[int, ChunkProgress]
) -> float | None:
    """The job's Batch jobs' real start-to-stop times × the Spot price recorded at submit
    (running_cost), never less than the workers' reported GPU seconds × that price (all
    there is when Batch cannot be read)."""
    from vsr_desktop.backends.aws.running_cost import batch_cost_so_far

    price = backend.aws_state(job).get("price_per_gpu_hour")
    if price is None:
        return job.cost_usd
    reported = float(price) * sum(p.seconds for p in chunks.values()) / 3600.0
    try:
        queues = [
            q
            for q in (backend.stack().outputs.get(k) for k in ("GpuJobQueueArn", "CpuJobQueueArn"))
            if q
        ]
        billed = batch_cost_so_far(backend.client("batch"), queues, job.id, float(price))
    except (ClientError, BotoCoreError, CloudError):
        return reported
    return max(billed, reported)


def failure_text(
    backend: AwsBackend, execution: dict[str, Any], chunks: dict[int, ChunkProgress]
) -> str:
    failed = [(i, p) for i, p in sorted(chunks.items()) if p.state == "failed"]
    if failed:
        index, chunk = failed[0]
        return f"chunk {index} failed: {chunk.message}"
    cause = str(execution.get("cause") or "")
    error = str(execution.get("error") or execution.get("status"))
    try:  # a Batch failure's cause is the job description as JSON
        detail = json.loads(cause)
        cause = str(
            detail.get("StatusReason") or detail.get("statusReason") or detail.get("Cause") or cause
        )
    except (ValueError, AttributeError):
        pass
    from vsr_desktop.backends.aws.stack_template import capacity_wait_message

    waited = capacity_wait_message(cause, stack_parameter(backend, "MaxCapacityWaitSeconds"))
    if waited:  # the queue's jobStateTimeLimitActions cancelled a job that never started
        return f"{error}: {waited}"[:500]
    return f"{error}: {cause}"[:500] if cause else error


def stack_parameter(backend: AwsBackend, key: str) -> str | None:
    try:
        return backend.stack().parameters.get(key) or None
    except CloudError:
        return None
