"""Submit and resume: check and record the job, send its inputs (upload.py), start an
execution of the stack's state machine named after the job (a repeated start is harmless).

Split out of backend.py: functions of the AwsBackend they act for, which keeps thin methods
of the same names (the public protocol calls) that land here.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from vsr_desktop.backends.aws import cost_cap
from vsr_desktop.backends.aws.cost_cap import CAP_KEY
from vsr_desktop.backends.aws.errors import CloudError, cloud_error
from vsr_desktop.backends.aws.job_cleanup import abort_upload, delete_objects
from vsr_desktop.backends.aws.transfer import BytesProgress
from vsr_desktop.backends.aws.upload import put_spec, upload_inputs, uploaded
from vsr_desktop.backends.protocol import Progress, ProgressCallback
from vsr_desktop.core.errors import InputError
from vsr_desktop.core.job_spec import JobSpec
from vsr_desktop.core.jobs import JobRecord, JobState, JobStore
from vsr_desktop.core.trim import plan_for
from vsr_desktop.worker.job_setup import spec_of, user_model_files, validate_spec
from vsr_desktop.worker.s3_layout import WORKER_MADE, JobLocation

if TYPE_CHECKING:
    from vsr_desktop.backends.aws.backend import AwsBackend


def create_job(
    backend: AwsBackend,
    spec: JobSpec,
    price_per_gpu_hour: float | None = None,
    max_cost_usd: float | None = None,
) -> JobRecord:
    """Check the spec here and record the job; nothing is sent yet.

    A spec that cannot run is refused with no record; once recorded, a failure (no
    stack, say) leaves the record FAILED with its reason, resumable and removable.
    `max_cost_usd` (else the spec's target's) is the job's cost cap (cost_cap.py).
    """
    media = validate_spec(spec)
    user_model_files(spec.engine.model)  # a .param without its .bin fails here, not on Batch
    plan = plan_for(spec, media)  # the split stage cuts the same chunks (and trim)
    if price_per_gpu_hour is None:  # the app's dialog hands it over with the spec
        price = spec.target.get("price_per_gpu_hour")
        price_per_gpu_hour = float(price) if isinstance(price, (int, float)) else None
    cap = cost_cap.checked_cap(
        max_cost_usd if max_cost_usd is not None else spec.target.get(CAP_KEY)
    )
    if cap is not None and not price_per_gpu_hour:
        raise InputError(
            "a cost cap needs the Spot price the estimate uses",
            "submit through the estimate (the app's dialog, or `vsr cloud submit`)",
        )
    backend.preflight()
    spec = replace(
        spec,
        backend=backend.name,
        source=spec.source.expanduser().resolve(),
        output=spec.output.expanduser().resolve(),
        target=backend.target(),
    )
    if spec.source_identity is None:
        spec = spec.with_source_identity()
    job = backend.store.add(
        JobRecord(
            id=JobStore.new_id(),
            name=spec.source.name,
            backend=backend.name,
            source=str(spec.source),
            output=str(spec.output),
            spec=spec,
            settings={
                "aws": {
                    "region": backend.session.region_name,
                    "stack": backend.stack_name,
                    "price_per_gpu_hour": price_per_gpu_hour,
                    CAP_KEY: cap,
                    "downloaded": False,
                }
            },
            state=JobState.RUNNING,
            phase="preparing",
            pid=os.getpid(),  # a crash: INTERRUPTED
            frames_total=plan.frame_count,
            chunks_total=len(plan.chunks),
        )
    )
    try:
        locate(backend, job)
    except Exception as exc:
        backend._fail(job.id, exc)
        raise
    backend._remember(
        job.id,
        chunk_timeout_seconds=chunk_timeout(
            backend,
            media.video.width,
            media.video.height,
            [c.frame_count for c in plan.chunks],
            spec,
        ),
    )
    return backend.store.get(job.id)


def chunk_timeout(
    backend: AwsBackend, width: int, height: int, frame_counts: list[int], spec: JobSpec
) -> int:
    """Each chunk job's time limit, from the throughput table and the stack's GPU types
    (cost.chunk_timeout_seconds; the state machine passes it to SubmitJob)."""
    from vsr_desktop.backends.aws import stack_template as tpl
    from vsr_desktop.backends.aws.cost import chunk_timeout_for

    stack = backend.stack()
    types = stack.list_parameter(tpl.PARAM_GPU_INSTANCE_TYPES) or tpl.parameter_defaults()[
        tpl.PARAM_GPU_INSTANCE_TYPES
    ].split(",")
    return chunk_timeout_for(width, height, frame_counts, spec.engine, types)


def locate(backend: AwsBackend, job: JobRecord) -> None:
    """Record the stack's bucket and state machine for the job (its S3 prefix)."""
    stack = backend.stack()
    where = JobLocation.for_job(stack.output("BucketName"), job.id)
    backend._remember(job.id, bucket=where.bucket, state_machine=stack.output("StateMachineArn"))
    backend.store.update(job.id, work_dir=where.uri)


def send(
    backend: AwsBackend,
    job: JobRecord,
    progress: ProgressCallback | None,
    cancel: threading.Event | None,
    on_upload: BytesProgress | None,
) -> JobRecord:
    """Upload what is not in S3 yet, write the spec, start an execution."""
    uploading = not uploaded(backend, job)
    if progress is not None:  # at once: the caller learns the job's id before any upload
        size = Path(job.source).stat().st_size if uploading and Path(job.source).is_file() else 0
        progress(
            Progress(
                job.id,
                "uploading" if uploading else "starting",
                0,
                size,
                0,
                job.chunks_total,
                0.0,
                None,
            )
        )
    try:
        if not backend.aws_state(job).get("bucket"):
            locate(backend, job)
        if uploading:
            upload_inputs(backend, backend.store.get(job.id), progress, cancel, on_upload)
        put_spec(backend, backend.store.get(job.id))
        return backend.start(backend.store.get(job.id))
    except Exception as exc:  # CancelledError included: a paused upload
        backend._fail(job.id, exc)
        raise
    except BaseException:  # the process is going away: resumable, as after a crash
        backend.store.update(
            job.id,
            state=JobState.INTERRUPTED,
            phase="",
            pid=None,
            message="interrupted while sending; resume to continue",
        )
        raise


def start(backend: AwsBackend, job: JobRecord) -> JobRecord:
    """Start (or find) the execution for this try of the job."""
    state = backend.aws_state(job)
    tries = int(state.get("tries", 0))
    name = job.id if tries == 0 else f"{job.id}-retry{tries}"
    where = backend.location(job)
    chunks = [str(i) for i in range(job.chunks_total)]
    sfn = backend.client("stepfunctions")
    machine = str(state.get("state_machine") or backend.stack().output("StateMachineArn"))
    execution_input: dict[str, Any] = {"job_id": job.id, "job_uri": where.uri, "chunks": chunks}
    limit = backend.chunk_time_limit(job)
    if limit:  # else the state machine's default applies
        execution_input["chunk_timeout_seconds"] = limit
    payload = json.dumps(execution_input)
    try:
        arn = sfn.start_execution(stateMachineArn=machine, name=name, input=payload)["executionArn"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ExecutionAlreadyExists":
            raise cloud_error("starting the job", exc) from exc
        arn = machine.replace(":stateMachine:", ":execution:") + f":{name}"
    except BotoCoreError as exc:
        raise cloud_error("starting the job", exc) from exc
    backend._remember(job.id, execution_arn=arn, tries=tries + 1, started_at=time.time())
    backend.store.update(
        job.id, state=JobState.RUNNING, phase="waiting for capacity", message="", pid=None
    )
    return backend.store.get(job.id)


def chunk_time_limit(backend: AwsBackend, job: JobRecord) -> int | None:
    """The chunk jobs' Batch time limit: the throughput table's, lowered to the job's
    share of its cost cap (the bound that holds with the app closed; cost_cap.py)."""
    state = backend.aws_state(job)
    table = state.get(cost_cap.TABLE_TIMEOUT_KEY)
    price = state.get("price_per_gpu_hour")
    return cost_cap.chunk_time_limit(
        int(table) if table else None,
        state.get(CAP_KEY),
        float(price) if price else None,
        job.chunks_total,
    )


def set_cost_cap(backend: AwsBackend, job: JobRecord, max_cost_usd: float | None) -> JobRecord:
    """A new cap (None: none) for the job's next execution (`vsr cloud retry --max-cost`)."""
    cap = cost_cap.checked_cap(max_cost_usd)
    if cap is not None and not backend.aws_state(job).get("price_per_gpu_hour"):
        raise InputError(
            f"job {job.id} has no Spot price recorded, so no cap can be reckoned",
            "submit it again through the estimate",
        )
    backend._remember(job.id, **{CAP_KEY: cap})
    return backend.store.get(job.id)


def preflight(backend: AwsBackend) -> None:
    """The account checks before anything is recorded or spent (preflight.py): the GPU
    Spot quota and the worker image in ECR. Once per backend: they do not change
    between the jobs of one submit."""
    if backend._preflight_done:
        return
    from vsr_desktop.backends.aws.preflight import check_account

    try:
        stack = backend.stack()
    except CloudError:
        return  # no stack: the job is recorded FAILED with that reason (create_job)
    check_account(backend.session, stack)
    backend._preflight_done = True


def resume(
    backend: AwsBackend,
    job: JobRecord,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    *,
    restart: bool = False,
    overwrite: bool = False,
    on_upload: BytesProgress | None = None,
) -> JobRecord:
    """Finish a paused upload, or run a failed/cancelled job again in a new execution
    (the workers skip chunks already in S3). restart: forget the finished chunks (and
    upload the source again if it changed); overwrite: the download may replace an
    existing output."""
    job = backend.poll(job)
    spec = spec_of(job)
    if overwrite and not spec.overwrite:
        # A finished job too: its download may now replace an existing output.
        backend.store.update(job.id, spec=replace(spec, overwrite=True))
        job = backend.store.get(job.id)
    if job.state is JobState.COMPLETED and not restart:
        return job
    backend._refuse_if_running(job)
    if restart:
        forget_work(backend, backend.store.get(job.id))
    return send(backend, backend.store.get(job.id), progress, cancel, on_upload)


def forget_work(backend: AwsBackend, job: JobRecord) -> None:
    """What a restart forgets: every object the workers made (chunks, plan, progress,
    output). A source changed here since the upload is recorded and sent again."""
    spec = spec_of(job)
    if job.work_dir and backend.aws_state(job).get("bucket"):
        delete_objects(backend, backend.location(job), WORKER_MADE)
    changes: dict[str, Any] = {"downloaded": False}
    source = spec.source.expanduser()
    if source.is_file():
        fresh = spec.with_source_identity()
        if spec.source_identity is None or spec.source_identity.differences(
            source, check_mtime=True
        ):
            backend.store.update(job.id, spec=fresh)
            abort_upload(backend, job)
            changes.update(uploaded=False, upload_id=None, execution_arn=None)
    backend._remember(job.id, **changes)
    backend.store.update(job.id, frames_done=0, chunks_done=0, cost_usd=None)
