"""Every backend call the app makes for a job, as tasks on the one TaskRunner.

The jobs panel never asks which backend a job is on: it asks the registry for the job's
backend and this runner decides *where* each protocol call runs from what the backend says
of itself:

- a backend that ``runs_in_process`` (local) runs its jobs here, one at a time, on the
  "jobs" lane; its other calls (cancel, remove) are quick and local and answer at once;
- every call of any other backend (Slurm, AWS, …) may block on the network, so each runs as
  a background task: submits and resumes on the "upload" lane (one uplink), fetches on the
  "downloads" lane, cancels and removes on a lane of the job's own.

State is never invented here: rows change because a backend wrote the store. Quitting with
"Keep for later" stops an in-process run the way a quitting process would — mid-run, writing
nothing — so the store sees its runner gone and reads the job INTERRUPTED (resumable).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from PySide6.QtCore import QObject, Signal, Slot

from vsr_desktop.backends.protocol import Backend, Progress
from vsr_desktop.backends.registry import BackendRegistry
from vsr_desktop.core.errors import VsrError
from vsr_desktop.core.job_spec import JobSpec
from vsr_desktop.core.jobs import JobRecord
from vsr_desktop.gui.tasks import CANCELLED, DONE, Task, TaskContext, TaskResult, TaskRunner

JOBS_LANE = "jobs"
UPLOAD_LANE = "upload"
DOWNLOAD_LANE = "downloads"
INTERRUPTED = "interrupted"  # a TaskResult outcome of our own: stopped as if the app quit


@runtime_checkable
class RecordsBeforeRunning(Protocol):
    """An in-process backend that can record a job without running it (LocalBackend's
    `prepare`): the row appears as Queued while the job waits for the one before it, and a
    bad input is refused on the spot, before anything is queued."""

    def prepare(self, spec: JobSpec) -> JobRecord: ...


class AppClosing(BaseException):
    """Raised from a run's progress callback when the app quits with "Keep for later".

    Not an Exception, so the backend's handlers record nothing: the run stops as it would
    if the process ended here, its lock is released, and the store reads it INTERRUPTED.
    """


@dataclass(frozen=True)
class Transfer:
    """Progress of one upload or download (or a remote submit), as dialogs show it."""

    name: str
    done: int
    total: int
    phase: str = ""

    @property
    def percent(self) -> int:
        return self.done * 100 // self.total if self.total else 0


class JobRunner(QObject):
    """Runs the protocol calls of the jobs panel (and the cloud dialog) off the GUI thread."""

    jobQueued = Signal(str)
    jobStarted = Signal(str)
    progress = Signal(object)  # backends.protocol.Progress of an in-process run
    jobFinished = Signal(str)
    jobFailed = Signal(str, str)  # job id, message for the user
    jobCancelled = Signal(str)
    jobChanged = Signal(str)  # a call about the job started or ended: re-read its row
    transfer = Signal(str, object)  # task key, Transfer
    taskEnded = Signal(str, str)  # task key, "done" | "failed" | "cancelled" | "interrupted"
    callFailed = Signal(str, object)  # what failed (a dialog title), the exception
    message = Signal(str)  # one line for the status bar

    def __init__(
        self,
        registry: BackendRegistry,
        tasks: TaskRunner | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.registry = registry
        self._owns_tasks = tasks is None
        self.tasks = tasks if tasks is not None else TaskRunner(self)
        self._ids = itertools.count(1)
        #: Cancel events of this runner's in-process runs (the user's Cancel: CANCELLED).
        self._run_cancels: dict[str, threading.Event] = {}
        #: Set when the app quits with "Keep for later": runs stop at their next report.
        self._closing = threading.Event()
        self._closed = False
        self.tasks.started.connect(self._on_task_started)
        self.tasks.jobAttached.connect(self._on_job_attached)

    # -- queries (GUI thread) -----------------------------------------------------------

    @property
    def is_closed(self) -> bool:
        return self._closed

    @property
    def running_job_id(self) -> str | None:
        task = self.tasks.running_in(JOBS_LANE)
        return task.job_id if task is not None else None

    @property
    def queued_job_ids(self) -> list[str]:
        return [task.job_id for task in self.tasks.queued_in(JOBS_LANE)]

    def owns(self, job_id: str) -> bool:
        """True while a run, transfer or call of this runner works on the job."""
        return bool(self._own_tasks(job_id))

    def busy_job_ids(self) -> list[str]:
        """Jobs this app is working on now (runs, queued runs, transfers, calls)."""
        ids = [t.job_id for t in self.tasks.tasks() if t.job_id and t.key.startswith(_OURS)]
        return list(dict.fromkeys(ids))

    def is_busy(self) -> bool:
        return any(t.key.startswith(_OURS) for t in self.tasks.tasks())

    def backend_for(self, job: JobRecord) -> Backend:
        """The job's backend from the registry (JobError: none of that name)."""
        return self.registry.for_job(job)

    # -- actions (GUI thread; each returns at once) --------------------------------------

    def submit(self, spec: JobSpec, backend: Backend | None = None) -> str:
        """Send a new job; returns its id (in-process) or the submit task's key.

        An in-process backend records the job first, so a bad input raises VsrError here,
        before anything is queued; a remote submit's errors come back as `callFailed`.
        """
        self._check_open()
        backend = backend if backend is not None else self.registry.for_name(spec.backend)
        if backend.runs_in_process and isinstance(backend, RecordsBeforeRunning):
            job = backend.prepare(spec)
            if not self.owns(job.id):
                self._queue_run(backend, job, restart=False)
            return job.id
        key = f"submit-{next(self._ids)}"
        name = spec.source.name

        def run(ctx: TaskContext) -> object:
            return backend.submit(
                spec, progress=self._transfer_reporter(ctx, name), cancel=ctx.cancel
            )

        lane = JOBS_LANE if backend.runs_in_process else UPLOAD_LANE
        self._start(Task(key, lane, run, label=name), f"Cannot send {name}")
        return key

    def resume(self, job: JobRecord, *, restart: bool = False) -> str:
        """Continue a stopped job from its finished chunks (restart: from nothing)."""
        self._check_open()
        backend = self.backend_for(job)
        if backend.runs_in_process:
            if not self.owns(job.id):
                self._queue_run(backend, job, restart=restart)
            return job.id
        store = self.registry.store

        def run(ctx: TaskContext) -> object:
            return backend.resume(
                store.get(job.id),
                progress=self._transfer_reporter(ctx, job.name),
                cancel=ctx.cancel,
                restart=restart,
            )

        verb = "restart" if restart else "resume"
        return self._start(
            Task(f"{verb}-{job.id}", UPLOAD_LANE, run, label=job.name, job_id=job.id),
            f"Cannot {verb} {job.name}",
        )

    def cancel(self, job: JobRecord) -> None:
        """Stop the job: this app's own run or transfer of it if there is one, else
        wherever it runs (a local run in another process, a cluster, the cloud)."""
        backend = self.backend_for(job)
        own = self._own_tasks(job.id)
        if backend.runs_in_process:
            event = self._run_cancels.get(job.id)
            if event is not None and any(self.tasks.is_running(t.key) for t in own):
                event.set()
            backend.cancel(job)  # the backend records the state (CANCELLED)
            for task in own:
                if not self.tasks.is_running(task.key):
                    self.tasks.cancel(task.key)  # dropped before it started
            self.jobChanged.emit(job.id)
            return
        if own:  # an upload or download of ours: pausing it is the cancel (resume goes on)
            for task in own:
                self.tasks.cancel(task.key)
            return
        store = self.registry.store
        self._start(
            Task(
                f"cancel-{job.id}",
                f"call-{job.id}",
                lambda ctx: backend.cancel(store.get(job.id)),
                label=job.name,
                job_id=job.id,
            ),
            f"Cannot cancel {job.name}",
        )

    def fetch(self, job: JobRecord) -> str:
        """Bring a remotely finished output here (resumes a partial download)."""
        self._check_open()
        backend = self.backend_for(job)
        store = self.registry.store

        def run(ctx: TaskContext) -> object:
            def on_bytes(done: int, total: int) -> None:
                ctx.report(Transfer(job.name, done, total, "downloading"))

            return backend.fetch_output(store.get(job.id), on_bytes=on_bytes, cancel=ctx.cancel)

        return self._start(
            Task(f"fetch-{job.id}", DOWNLOAD_LANE, run, label=job.name, job_id=job.id),
            f"Cannot download {job.name}",
        )

    def remove(self, job: JobRecord) -> None:
        """Delete the job's work files wherever they are, then its row (never the output)."""
        backend = self.backend_for(job)
        if backend.runs_in_process:
            backend.remove(job)
            self.message.emit(f"Removed “{job.name}” and its work files; its output was kept.")
            self.jobChanged.emit(job.id)
            return
        self._start(
            Task(
                f"remove-{job.id}",
                f"call-{job.id}",
                lambda ctx: backend.remove(job),
                label=job.name,
                job_id=job.id,
            ),
            f"Cannot remove {job.name}",
        )

    def cancel_task(self, key: str) -> bool:
        """Stop one task of ours (the submit dialog's Pause)."""
        return self.tasks.cancel(key)

    def stop_all(self, *, cancel_jobs: bool) -> None:
        """The app is quitting: runs stop (kept resumable, or cancelled), transfers pause.

        Returns at once; `TaskRunner.idle` (or `is_busy()`) says when everything stopped.
        """
        self._closed = True
        if not cancel_jobs:
            self._closing.set()
        for task in self.tasks.tasks():
            if not task.key.startswith(_OURS):
                continue
            running = self.tasks.is_running(task.key)
            if task.lane == JOBS_LANE and running:
                if cancel_jobs:
                    self._run_cancels.get(task.job_id, threading.Event()).set()
                continue  # keep: stops at its next progress report, writing nothing
            if task.lane == JOBS_LANE and not cancel_jobs:
                task.on_done = None  # a queued run stays as the store has it: resumable
                self.taskEnded.emit(task.key, INTERRUPTED)
            self.tasks.cancel(task.key)
            if task.lane == JOBS_LANE and cancel_jobs and task.job_id:
                self._cancel_recorded(task.job_id)  # a queued run: record it cancelled

    def shutdown(self, *, cancel_jobs: bool = False) -> None:
        """Stop everything and wait for the threads this runner owns (idempotent)."""
        if not self._closed:
            self.stop_all(cancel_jobs=cancel_jobs)
        if self._owns_tasks:
            self.tasks.shutdown()

    # -- internals ----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the job runner was shut down")

    def _own_tasks(self, job_id: str) -> list[Task]:
        return [t for t in self.tasks.for_job(job_id) if t.key.startswith(_OURS)]

    def _cancel_recorded(self, job_id: str) -> None:
        try:
            job = self.registry.store.get(job_id)
            self.backend_for(job).cancel(job)
        except VsrError:
            pass

    def _start(self, task: Task, title: str) -> str:
        task.on_done = lambda result: self._on_call_done(task, title, result)
        if task.on_progress is None:
            task.on_progress = lambda value: self._on_call_progress(task, value)
        key = self.tasks.start(task)
        if task.job_id:
            self.jobChanged.emit(task.job_id)
        return key

    def _queue_run(self, backend: Backend, job: JobRecord, *, restart: bool) -> None:
        cancel = threading.Event()
        closing = self._closing
        store = self.registry.store

        def run(ctx: TaskContext) -> object:
            def report(progress: Progress) -> None:
                if closing.is_set():
                    raise AppClosing
                ctx.report(progress)

            if closing.is_set():
                return INTERRUPTED
            try:
                return backend.resume(
                    store.get(job.id), progress=report, cancel=cancel, restart=restart
                )
            except AppClosing:
                return INTERRUPTED

        task = Task(f"run-{job.id}", JOBS_LANE, run, label=job.name, job_id=job.id)
        task.on_progress = self._on_run_progress
        task.on_done = lambda result: self._on_run_done(job.id, result)
        self._run_cancels[job.id] = cancel
        self.tasks.start(task)
        self.jobQueued.emit(job.id)

    @staticmethod
    def _transfer_reporter(ctx: TaskContext, name: str) -> Callable[[Progress], None]:
        def report(progress: Progress) -> None:
            ctx.attach_job(progress.job_id)
            ctx.report(Transfer(name, progress.frames_done, progress.frames_total, progress.phase))

        return report

    @Slot(str)
    def _on_task_started(self, key: str) -> None:
        task = self.tasks.task(key)
        if task is not None and task.lane == JOBS_LANE and key.startswith("run-"):
            self.jobStarted.emit(task.job_id)

    @Slot(str, str)
    def _on_job_attached(self, key: str, job_id: str) -> None:
        if key.startswith(_OURS):
            self.jobChanged.emit(job_id)

    def _on_run_progress(self, value: object) -> None:
        if isinstance(value, Progress):
            self.progress.emit(value)

    def _on_run_done(self, job_id: str, result: TaskResult) -> None:
        self._run_cancels.pop(job_id, None)
        if result.outcome == DONE and result.value == INTERRUPTED:
            self.jobChanged.emit(job_id)
            self.taskEnded.emit(f"run-{job_id}", INTERRUPTED)
            return
        if result.outcome == DONE:
            self.jobFinished.emit(job_id)
        elif result.outcome == CANCELLED:
            self.jobCancelled.emit(job_id)
        else:
            self.jobFailed.emit(job_id, _message(result.value))
        self.taskEnded.emit(f"run-{job_id}", result.outcome)

    def _on_call_progress(self, task: Task, value: object) -> None:
        self.transfer.emit(task.key, value)

    def _on_call_done(self, task: Task, title: str, result: TaskResult) -> None:
        value = result.value
        if result.outcome == DONE:
            if isinstance(value, JobRecord):
                self.message.emit(f"“{value.name}”: {_state_words(value)}")
                task.job_id = task.job_id or value.id
            elif isinstance(value, Path):
                self.message.emit(f"Downloaded {value}")
            elif task.key.startswith("remove-"):
                self.message.emit(
                    f"Removed “{task.label}” and its work files; its output was kept."
                )
        elif result.outcome == CANCELLED:
            self.message.emit(
                f"Paused “{task.label}”; Retry (or Download) continues where it stopped"
            )
        elif not self._closed:
            self.callFailed.emit(title, value)
        if task.job_id:
            self.jobChanged.emit(task.job_id)
        self.taskEnded.emit(task.key, result.outcome)


#: Key prefixes of this runner's tasks (others share the TaskRunner: polls, probes).
_OURS = ("run-", "submit-", "resume-", "restart-", "cancel-", "fetch-", "remove-")


def _message(error: object) -> str:
    if isinstance(error, VsrError):
        return error.user_message()
    return f"the job failed unexpectedly: {type(error).__name__}: {error}"


def _state_words(job: JobRecord) -> str:
    detail = f" — {job.phase}" if job.phase else ""
    return f"{job.state.value}{detail}"
