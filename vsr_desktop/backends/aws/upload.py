"""Sending a job's inputs to S3: the user's model file(s), the source (multipart, resumable)
and spec.json, written last so a job whose spec is in S3 has its whole input there.

Split out of backend.py; AwsBackend's submit and resume call these (submission.py).
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from vsr_desktop.backends.aws.errors import cloud_error
from vsr_desktop.backends.aws.transfer import BytesProgress, upload_file
from vsr_desktop.backends.protocol import Progress, ProgressCallback
from vsr_desktop.core.errors import InputError
from vsr_desktop.core.jobs import JobRecord, JobState
from vsr_desktop.worker.job_setup import check_source_unchanged, spec_of, user_model_files
from vsr_desktop.worker.s3_layout import SPEC_FILE, model_name

if TYPE_CHECKING:
    from vsr_desktop.backends.aws.backend import AwsBackend


def uploaded(backend: AwsBackend, job: JobRecord) -> bool:
    state = backend.aws_state(job)
    return bool(state.get("uploaded") or state.get("execution_arn"))


def upload_inputs(
    backend: AwsBackend,
    job: JobRecord,
    progress: ProgressCallback | None,
    cancel: threading.Event | None,
    on_upload: BytesProgress | None,
) -> None:
    """The model file(s), then the source (multipart, resumable); spec.json follows."""
    spec = spec_of(job)
    where = backend.location(job)
    s3 = backend.client("s3")
    backend.store.update(
        job.id, state=JobState.RUNNING, phase="uploading", message="", pid=os.getpid()
    )  # an upload cut off by a crash reads INTERRUPTED
    # An upload resumed over a replaced file would splice two sources: refuse it.
    check_source_unchanged(spec, job_id=job.id)
    try:
        # The user's own model file goes with the job: workers cannot read this disk.
        for path in user_model_files(spec.engine.model):
            with open(path, "rb") as model_file:
                s3.put_object(
                    Bucket=where.bucket, Key=where.key(model_name(path.name)), Body=model_file
                )
    except (ClientError, BotoCoreError) as exc:
        raise cloud_error("sending the model file", exc) from exc
    except OSError as exc:
        raise InputError(
            f"cannot read the model file: {exc}", "check the model file, then resume the job"
        ) from exc

    def report(done: int, total: int) -> None:
        backend.store.update(job.id, phase=f"uploading {done * 100 // max(total, 1)}%")
        if on_upload is not None:
            on_upload(done, total)
        if progress is not None:  # a transfer phase: the counts are bytes
            progress(Progress(job.id, "uploading", done, total, 0, job.chunks_total, 0.0, None))

    upload_file(
        s3,
        spec.source,
        where.bucket,
        where.source_key(spec.source),
        upload_id=backend.aws_state(job).get("upload_id"),
        on_upload_id=lambda uid: backend._remember(job.id, upload_id=uid),
        on_progress=report,
        cancel=cancel,
        part_size=backend.part_size,
    )
    backend._remember(job.id, upload_id=None, uploaded=True)


def put_spec(backend: AwsBackend, job: JobRecord) -> None:
    """The job's spec as the one object the workers read (written after the inputs, so
    a job whose spec exists in S3 has its whole input there; again on every resume, so
    it is always the stored spec)."""
    where = backend.location(job)
    try:
        backend.client("s3").put_object(
            Bucket=where.bucket,
            Key=where.key(SPEC_FILE),
            Body=spec_of(job).to_json().encode(),
            ContentType="application/json",
        )
    except (ClientError, BotoCoreError) as exc:
        raise cloud_error("sending the job spec", exc) from exc
