"""What the app does with cloud jobs: send, cancel, retry and download — never on the GUI thread.

One object for the whole app (it outlives the submit dialog, so closing the dialog does not
stop an upload). Uploads share one lane and run one after another; downloads share another;
each cancel call gets a lane of its own. The jobs panel asks `busy(job_id)` to grey out
actions while a transfer of that job is in flight, and routes Cancel to the transfer first:
cancelling an upload pauses it (Retry resumes it, re-using the parts already sent).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtWidgets import QWidget

from vsr_desktop.core.errors import VsrError
from vsr_desktop.core.jobs import JobRecord
from vsr_desktop.gui.cloud.context import CloudContext
from vsr_desktop.gui.cloud.tasks import Task, TaskContext, TaskRunner
from vsr_desktop.gui.errors import show_error
from vsr_desktop.gui.jobs.jobs_panel import can_download

if TYPE_CHECKING:
    from vsr_desktop.worker.request import UpscaleRequest

UPLOAD_LANE = "upload"
DOWNLOAD_LANE = "download"


@dataclass(frozen=True)
class Transfer:
    """Progress of one upload or download, as the dialog and status bar show it."""

    name: str
    done: int
    total: int

    @property
    def percent(self) -> int:
        return self.done * 100 // self.total if self.total else 0


class CloudJobs(QObject):
    """Runs the cloud actions of the jobs panel and the submit dialog off the GUI thread."""

    jobChanged = Signal(str)  # the panel refreshes the row and its actions
    submitStarted = Signal(str, str)  # task key, job id
    transferProgress = Signal(str, object)  # task key, Transfer
    taskEnded = Signal(str, str)  # task key, outcome: "done" | "failed" | "cancelled"
    message = Signal(str)  # one line for the status bar

    def __init__(self, context: CloudContext, dialog_parent: QWidget | None = None,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.context = context
        self._dialog_parent = dialog_parent
        self.runner = TaskRunner(self)
        self._ids = itertools.count(1)
        self._titles: dict[str, str] = {}
        self._job_ids: dict[str, str] = {}  # task key → job id (kept until the task ends)
        self.runner.progress.connect(self._on_progress)
        self.runner.jobAttached.connect(self._on_job_attached)
        self.runner.started.connect(self._on_started)
        self.runner.finished.connect(self._on_finished)
        self.runner.failed.connect(self._on_failed)
        self.runner.cancelled.connect(self._on_cancelled)

    # -- queries ------------------------------------------------------------------------

    def busy(self, job_id: str) -> bool:
        return bool(self.runner.for_job(job_id))

    def can_download(self, job: JobRecord) -> bool:
        return can_download(job) and not self.busy(job.id)

    # -- actions (GUI thread; each returns at once) --------------------------------------

    def submit(self, request: UpscaleRequest, price_per_gpu_hour: float | None = None) -> str:
        """Create the job, upload the source and start the execution; returns the task key."""
        context = self.context

        def run(ctx: TaskContext) -> object:
            backend = context.backend()
            job = backend.create_job(request, price_per_gpu_hour)
            ctx.attach_job(job.id)
            return backend.submit(request, job, on_upload=self._reporter(ctx, job.name),
                                  cancel=ctx.cancel, price_per_gpu_hour=price_per_gpu_hour)

        return self._start(f"submit-{next(self._ids)}", UPLOAD_LANE, run,
                           f"Cannot send {request.source.name} to AWS", request.source.name)

    def retry(self, job: JobRecord) -> str:
        """Resume a paused upload, or run a failed/cancelled job again (keeps its chunks)."""
        from vsr_desktop.worker.request import request_from_job

        context = self.context
        request = request_from_job(job)

        def run(ctx: TaskContext) -> object:
            backend = context.backend_for_job(job)
            fresh = context.store.get(job.id)
            return backend.submit(request, fresh, on_upload=self._reporter(ctx, job.name),
                                  cancel=ctx.cancel)

        return self._start(f"retry-{job.id}", UPLOAD_LANE, run, f"Cannot retry {job.name}",
                           job.name, job.id)

    def cancel(self, job: JobRecord) -> str:
        """Pause the job's transfer if one runs here; otherwise stop it in the cloud."""
        for task in self.runner.for_job(job.id):
            if task.lane in (UPLOAD_LANE, DOWNLOAD_LANE):
                self.runner.cancel(task.key)
                return task.key
        context = self.context

        def run(ctx: TaskContext) -> object:
            backend = context.backend_for_job(job)
            with context.job_lock(job.id):  # a poll in flight must not undo the cancel
                fresh = context.store.get(job.id)
                return backend.cancel(fresh)

        return self._start(f"cancel-{job.id}", f"cancel-{job.id}", run,
                           f"Cannot cancel {job.name}", job.name, job.id)

    def download(self, job: JobRecord) -> str:
        """Fetch the finished output to the job's output path (resumes a partial file)."""
        context = self.context

        def run(ctx: TaskContext) -> object:
            fresh = context.store.get(job.id)
            return context.backend_for_job(fresh).download(
                fresh, on_progress=self._reporter(ctx, job.name), cancel=ctx.cancel)

        return self._start(f"download-{job.id}", DOWNLOAD_LANE, run,
                           f"Cannot download {job.name}", job.name, job.id)

    def cancel_task(self, key: str) -> bool:
        return self.runner.cancel(key)

    @Slot(str)
    def on_job_finished(self, job_id: str) -> None:
        """Auto-download: the poller saw a cloud job complete."""
        if not self.context.settings.cloud_auto_download:
            return
        try:
            job = self.context.store.get(job_id)
        except VsrError:
            return
        if job.backend == "aws" and self.can_download(job):
            self.download(job)

    def download_pending(self) -> int:
        """Auto-download jobs that finished in the cloud while the app was closed."""
        if not self.context.settings.cloud_auto_download:
            return 0
        pending = [job for job in self.context.store.all_jobs()
                   if job.backend == "aws" and self.can_download(job)]
        for job in pending:
            self.download(job)
        return len(pending)

    def shutdown(self) -> None:
        """Pause transfers and wait for their threads (a paused upload resumes on Retry)."""
        self.runner.shutdown()

    # -- internals ----------------------------------------------------------------------

    def _start(self, key: str, lane: str, run: Callable[[TaskContext], object], title: str,
               label: str, job_id: str = "") -> str:
        if self.runner.task(key) is not None:
            return key  # the same action twice: already on its way
        self._titles[key] = title
        self._job_ids[key] = job_id
        self.runner.start(Task(key=key, lane=lane, fn=run, label=label, job_id=job_id))
        return key

    @staticmethod
    def _reporter(ctx: TaskContext, name: str) -> Callable[[int, int], None]:
        def report(done: int, total: int) -> None:
            ctx.report(Transfer(name, done, total))

        return report

    @Slot(str)
    def _on_started(self, key: str) -> None:
        job_id = self._job_ids.get(key, "")
        if job_id:
            self.jobChanged.emit(job_id)

    @Slot(str, str)
    def _on_job_attached(self, key: str, job_id: str) -> None:
        self._job_ids[key] = job_id
        self.submitStarted.emit(key, job_id)
        self.jobChanged.emit(job_id)

    @Slot(str, object)
    def _on_progress(self, key: str, value: object) -> None:
        self.transferProgress.emit(key, value)

    @Slot(str, object)
    def _on_finished(self, key: str, result: object) -> None:
        if isinstance(result, JobRecord):
            self.message.emit(f"“{result.name}” is running in the cloud "
                              f"({result.chunks_total} chunks)")
            self.jobChanged.emit(result.id)
        elif isinstance(result, Path):
            self.message.emit(f"Downloaded {result}")
        elif isinstance(result, list):
            self.message.emit(f"Cancelled; stopped {len(result)} Batch job(s)")
        self._ended(key, "done")

    @Slot(str, object)
    def _on_failed(self, key: str, error: object) -> None:
        title = self._titles.get(key, "Cloud job")
        if isinstance(error, VsrError):
            show_error(self._dialog_parent, title, error)
        else:  # a bug or an unexpected library error: still a dialog, with a next step
            show_error(self._dialog_parent, title, VsrError(
                f"{type(error).__name__}: {error}",
                "try again; if it keeps failing, report it with the log file"))
        self._ended(key, "failed")

    @Slot(str)
    def _on_cancelled(self, key: str) -> None:
        self.message.emit("Paused; Retry (or Download) continues where it stopped")
        self._ended(key, "cancelled")

    def _ended(self, key: str, outcome: str) -> None:
        self._titles.pop(key, None)
        job_id = self._job_ids.pop(key, "")
        self.taskEnded.emit(key, outcome)
        if job_id:
            self.jobChanged.emit(job_id)


def attach_panel(jobs: CloudJobs, panel: Any) -> None:
    """Register the cloud actions with a jobs panel (which draws every backend alike)."""
    panel.set_remote_actions({"aws": jobs})
    panel.jobFinished.connect(jobs.on_job_finished)
