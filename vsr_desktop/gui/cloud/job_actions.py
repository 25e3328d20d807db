"""The cloud side of the app that is not a jobs-panel button: the send-to-AWS dialog's uploads
and auto-download of finished outputs.

One object for the whole app (it outlives the submit dialog, so closing the dialog does not
stop an upload). It holds no thread of its own: every call is a protocol call made by the
jobs panel's JobRunner on the app's one TaskRunner (uploads one after another on their
lane, downloads on theirs), and the panel's Cancel of an uploading row pauses the upload
(Retry resumes it, re-using the parts already sent).
"""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtCore import QObject, Signal, Slot

from vsr_desktop.backends.protocol import Backend
from vsr_desktop.core.errors import VsrError
from vsr_desktop.core.job_spec import JobSpec
from vsr_desktop.core.jobs import JobRecord
from vsr_desktop.gui.cloud.context import CloudContext
from vsr_desktop.gui.jobs.job_runner import JobRunner, Transfer
from vsr_desktop.gui.jobs.jobs_panel import can_download

__all__ = ["CloudJobs", "Transfer"]

AWS = "aws"


class CloudJobs(QObject):
    """Sends jobs to AWS from the submit dialog and downloads finished outputs."""

    transferProgress = Signal(str, object)  # task key, Transfer
    taskEnded = Signal(str, str)  # task key, outcome: "done" | "failed" | "cancelled"
    taskFailed = Signal(str, object)  # task key, the exception (just before its taskEnded)

    def __init__(
        self, context: CloudContext, runner: JobRunner, parent: QObject | None = None
    ) -> None:
        super().__init__(parent)
        self.context = context
        self.runner = runner
        # The runner says why a call failed (callFailed: no task key) just before the same
        # call's taskEnded; the pair gives the send dialog the reason for its own row.
        self._last_error: object = None
        runner.callFailed.connect(self._on_call_failed)
        runner.transfer.connect(self._on_transfer)
        runner.taskEnded.connect(self._on_task_ended)

    # -- queries ------------------------------------------------------------------------

    def busy(self, job_id: str) -> bool:
        return self.runner.owns(job_id)

    def can_download(self, job: JobRecord) -> bool:
        backend = self._backend_or_none(job)
        return can_download(job, backend) and not self.busy(job.id)

    # -- actions (GUI thread; each returns at once) --------------------------------------

    def submit(
        self,
        spec: JobSpec,
        price_per_gpu_hour: float | None = None,
        max_cost_usd: float | None = None,
    ) -> str:
        """Upload the source and start the execution; returns the task key. The Spot price
        the estimate used goes with the job (its cost column is reckoned from it), and so
        does the cost cap, if any (backends/aws/cost_cap.py enforces it)."""
        target = dict(spec.target)
        if price_per_gpu_hour is not None:
            target["price_per_gpu_hour"] = price_per_gpu_hour
        if max_cost_usd:
            target["max_cost_usd"] = max_cost_usd
        spec = replace(spec, backend=AWS, target=target)
        return self.runner.submit(spec, self.runner.registry.for_name(AWS))

    def cancel_task(self, key: str) -> bool:
        """Pause an upload (Retry in the jobs panel resumes it)."""
        return self.runner.cancel_task(key)

    @Slot(str)
    def on_job_finished(self, job_id: str) -> None:
        """Auto-download: a job finished where it ran and its output is not here yet."""
        if not self.context.settings.cloud_auto_download or self.runner.is_closed:
            return
        try:
            job = self.context.store.get(job_id)
        except VsrError:
            return
        if self.can_download(job):
            self.runner.fetch(job)

    def download_pending(self) -> int:
        """Auto-download outputs of jobs that finished while the app was closed."""
        if not self.context.settings.cloud_auto_download or self.runner.is_closed:
            return 0
        pending = [job for job in self.context.store.all_jobs() if self.can_download(job)]
        for job in pending:
            self.runner.fetch(job)
        return len(pending)

    # -- internals ----------------------------------------------------------------------

    def _backend_or_none(self, job: JobRecord) -> Backend | None:
        try:
            return self.runner.backend_for(job)
        except VsrError:
            return None

    @Slot(str, object)
    def _on_transfer(self, key: str, value: object) -> None:
        if isinstance(value, Transfer):
            self.transferProgress.emit(key, value)

    @Slot(str, object)
    def _on_call_failed(self, title: str, error: object) -> None:
        self._last_error = error

    @Slot(str, str)
    def _on_task_ended(self, key: str, outcome: str) -> None:
        error, self._last_error = self._last_error, None
        if outcome == "failed" and error is not None:
            self.taskFailed.emit(key, error)
        self.taskEnded.emit(key, outcome)
