"""A finished job's output: the download (resumable; image sequences through a staging
folder, image_download.py), the "nothing lost" check against the local source, and what a
remove would lose.

Split out of backend.py; AwsBackend.download, fetch_output and needs_fetch land here.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from vsr_desktop.backends.aws.errors import CloudError
from vsr_desktop.backends.aws.image_download import check_output_free, download_result
from vsr_desktop.backends.aws.transfer import BytesProgress
from vsr_desktop.core.errors import VsrError
from vsr_desktop.core.jobs import VERIFY_REPORT_KEY, JobRecord, JobState
from vsr_desktop.core.media.probe import probe
from vsr_desktop.worker.job_report import summary, verify_output
from vsr_desktop.worker.job_setup import spec_of

if TYPE_CHECKING:
    from vsr_desktop.backends.aws.backend import AwsBackend


def download(
    backend: AwsBackend,
    job: JobRecord,
    *,
    on_progress: BytesProgress | None = None,
    cancel: threading.Event | None = None,
    target: Path | None = None,
) -> Path:
    """fetch_output, by its older name; `target` downloads a copy elsewhere."""
    job = backend.store.get(job.id)
    if job.state != JobState.COMPLETED:
        raise CloudError(
            f"job {job.id} has not finished ({job.state.value})", "wait until it completes"
        )
    output = Path(job.output) if target is None else target
    if target is None:
        check_output_free(output, spec_of(job), job.id)
    where = backend.location(job)
    backend.store.update(job.id, phase="downloading")

    def progress(done: int, total: int) -> None:
        backend.store.update(job.id, phase=f"downloading {done * 100 // max(total, 1)}%")
        if on_progress is not None:
            on_progress(done, total)

    try:
        download_result(
            backend.client("s3"),
            where.bucket,
            where.output_key(job.output),
            output,
            spec_of(job).encode.codec,
            on_progress=progress,
            cancel=cancel,
        )
    finally:
        backend.store.update(job.id, phase="")
    if target is None:
        backend._remember(job.id, downloaded=True)
    backend.store.update(job.id, message=f"downloaded to {output}")
    verify_download(backend, job, output)
    return output


def verify_download(backend: AwsBackend, job: JobRecord, output: Path) -> None:
    """The "nothing lost" check, here where the source is (the cloud merge has only the
    chunks and the side file): stored with the job like every backend's report."""
    spec = spec_of(job)
    if not spec.source.expanduser().is_file():
        return  # moved or deleted since: the worker's note stays
    try:
        info = probe(spec.source.expanduser())
    except VsrError:
        return
    report = verify_output(info, spec, output)
    settings = {**backend.store.get(job.id).settings, VERIFY_REPORT_KEY: report}
    message = f"downloaded to {output}; {summary(report)}"
    backend.store.update(job.id, message=message, settings=settings)


def needs_fetch(backend: AwsBackend, job: JobRecord) -> bool:
    return job.state is JobState.COMPLETED and backend.aws_state(job).get("downloaded") is False


def work_lost_on_remove(backend: AwsBackend, job: JobRecord) -> str:
    if backend.needs_fetch(job):
        return (
            "The output is still in the cloud, not downloaded. Removing the job deletes it there."
        )
    if job.state is not JobState.COMPLETED and job.chunks_done > 0:
        return (
            f"{job.chunks_done} of {job.chunks_total} chunks are finished in the cloud. "
            "Removing the job deletes them: it can no longer be resumed, only "
            "submitted again."
        )
    return ""
