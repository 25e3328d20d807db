"""Runs local jobs one at a time on a worker QThread, reporting back through signals.

Design (the "worker object" pattern): one long-lived QThread per runner, started on the
first job, with a `_Worker` QObject moved onto it. The runner (GUI thread) owns the queue;
it hands one task at a time to the worker through a queued signal, and the worker reports
back through its own signals, which Qt delivers to the runner's slots on the GUI thread.
Only one job runs at a time because a local job already uses every core (or the GPU).

Rules this keeps:
- the worker never touches a widget or the model; it only emits signals;
- worker signals are connected to *slots of the runner* (a GUI-thread QObject), never to
  lambdas, which would run in the worker thread;
- payloads are `object`/`str`, so frame counts past 2**31 survive;
- `prepare` (validation: probe the source, check the output) runs on the GUI thread so a bad
  request raises straight to the caller, who can show a dialog;
- cancel is cooperative: the backend checks a threading.Event between batches;
- `shutdown()` cancels, quits the thread and waits: no thread outlives the runner.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from PySide6.QtCore import QObject, QThread, Signal, Slot

from vsr_desktop.backends.local import LocalBackend, Progress, UpscaleRequest, request_from_job
from vsr_desktop.core.errors import CancelledError, VsrError
from vsr_desktop.core.jobs import JobRecord, JobState

BackendFactory = Callable[[], LocalBackend]


@dataclass
class _Task:
    job: JobRecord
    request: UpscaleRequest
    cancel: threading.Event = field(default_factory=threading.Event)


class _Worker(QObject):
    """Lives on the worker thread; runs one task per `run_task` call."""

    taskStarted = Signal(str)
    taskProgress = Signal(object)
    taskFinished = Signal(str)
    taskFailed = Signal(str, str)
    taskCancelled = Signal(str)

    def __init__(self, backend: LocalBackend) -> None:
        super().__init__()
        self._backend = backend

    @Slot(object)
    def run_task(self, task: _Task) -> None:
        job_id = task.job.id
        self.taskStarted.emit(job_id)
        try:
            # progress.emit is called on this thread; Qt queues it to the runner's slot.
            self._backend.run(
                task.request, progress=self.taskProgress.emit, cancel=task.cancel, job=task.job
            )
        except CancelledError:
            self.taskCancelled.emit(job_id)
        except VsrError as exc:
            self.taskFailed.emit(job_id, exc.user_message())
        except Exception as exc:  # a bug or an OS error outside the backend's own handling
            message = f"the job failed unexpectedly: {exc}"
            with contextlib.suppress(VsrError, OSError):
                self._backend.store.update(job_id, state=JobState.FAILED, phase="", message=message)
            self.taskFailed.emit(job_id, message)
        else:
            self.taskFinished.emit(job_id)


class JobRunner(QObject):
    """A queue of local jobs run one at a time off the GUI thread."""

    jobStarted = Signal(str)
    progress = Signal(object)  # backends.local.Progress
    jobFinished = Signal(str)
    jobFailed = Signal(str, str)  # job id, message for the user
    jobCancelled = Signal(str)
    jobQueued = Signal(str)

    _runTask = Signal(object)  # runner -> worker (queued across threads)

    def __init__(self, backend_factory: BackendFactory, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._backend_factory = backend_factory
        self._backend: LocalBackend | None = None
        self._queue: deque[_Task] = deque()
        self._current: _Task | None = None
        self._thread: QThread | None = None
        self._worker: _Worker | None = None
        self._closed = False

    # -- public API (GUI thread) --------------------------------------------------------

    @property
    def backend(self) -> LocalBackend:
        """Created on first use: building it must not slow the window's start."""
        if self._backend is None:
            self._backend = self._backend_factory()
        return self._backend

    @property
    def running_job_id(self) -> str | None:
        return self._current.job.id if self._current is not None else None

    @property
    def is_closed(self) -> bool:
        return self._closed

    @property
    def queued_job_ids(self) -> list[str]:
        return [task.job.id for task in self._queue]

    def owns(self, job_id: str) -> bool:
        """True when this runner is running or holding the job in its queue."""
        return job_id == self.running_job_id or job_id in self.queued_job_ids

    def submit(self, request: UpscaleRequest) -> str:
        """Validate and queue a request; returns the job id (an unfinished twin is resumed).

        Raises VsrError for bad input, before anything is queued or written.
        """
        self._check_open()
        job = self.backend.prepare(request)
        if self.owns(job.id):
            return job.id  # the same request twice: it is already on its way
        self._enqueue(_Task(job, request))
        return job.id

    def resume(self, job_id: str) -> str:
        """Continue a stopped job from its last finished chunk."""
        self._check_open()
        if self.owns(job_id):
            return job_id
        job = self.backend.store.get(job_id)
        self._enqueue(_Task(job, request_from_job(job)))
        return job_id

    def retry(self, job_id: str) -> str:
        """Run a stopped job again from the start (its finished chunks are forgotten)."""
        self._check_open()
        if self.owns(job_id):
            return job_id
        store = self.backend.store
        job = store.get(job_id)
        request = request_from_job(job)
        store.forget_chunks(job_id)
        store.update(job_id, frames_done=0, chunks_done=0, fps=0.0, eta_seconds=None)
        self._enqueue(_Task(store.get(job_id), request))
        return job_id

    def cancel(self, job_id: str) -> bool:
        """Stop a running job (cooperatively) or drop a queued one; False if not ours.

        A queued job is marked cancelled at once; a stale QUEUED row left by a crash is
        marked cancelled too, which makes it resumable.
        """
        if self._current is not None and self._current.job.id == job_id:
            self._current.cancel.set()
            return True
        for task in list(self._queue):
            if task.job.id == job_id:
                self._queue.remove(task)
                self._mark_cancelled(job_id, "cancelled before it started")
                self.jobCancelled.emit(job_id)
                return True
        with contextlib.suppress(VsrError):
            if self.backend.store.get(job_id).state is JobState.QUEUED:
                self._mark_cancelled(job_id, "cancelled before it started")
                self.jobCancelled.emit(job_id)
                return True
        return False

    def shutdown(self) -> None:
        """Cancel everything, stop the thread and wait for it (safe to call twice)."""
        if self._closed:
            return
        self._closed = True
        while self._queue:
            task = self._queue.popleft()
            self._mark_cancelled(task.job.id, "cancelled when the app closed; resume to run it")
        if self._current is not None:
            self._current.cancel.set()
        if self._thread is not None:
            self._thread.quit()  # handled after the running task returns
            self._thread.wait()
            self._thread = None
        self._worker = None
        self._current = None

    # -- internals ----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the job runner was shut down")

    def _enqueue(self, task: _Task) -> None:
        self.backend.store.update(task.job.id, state=JobState.QUEUED, phase="", message="")
        self._queue.append(task)
        self.jobQueued.emit(task.job.id)
        self._start_next()

    def _mark_cancelled(self, job_id: str, message: str) -> None:
        with contextlib.suppress(VsrError):
            self.backend.store.update(job_id, state=JobState.CANCELLED, phase="", message=message)

    def _ensure_thread(self) -> None:
        if self._thread is not None:
            return
        self._thread = QThread(self)
        self._thread.setObjectName("vsr-job-runner")
        self._worker = _Worker(self.backend)
        self._worker.moveToThread(self._thread)
        self._thread.finished.connect(self._worker.deleteLater)
        self._runTask.connect(self._worker.run_task)
        self._worker.taskStarted.connect(self._on_started)
        self._worker.taskProgress.connect(self._on_progress)
        self._worker.taskFinished.connect(self._on_finished)
        self._worker.taskFailed.connect(self._on_failed)
        self._worker.taskCancelled.connect(self._on_cancelled)
        self._thread.start()

    def _start_next(self) -> None:
        if self._closed or self._current is not None or not self._queue:
            return
        self._ensure_thread()
        self._current = self._queue.popleft()
        self._runTask.emit(self._current)

    def _done(self, job_id: str) -> bool:
        """Clear the running task; False when the event belongs to a closed runner."""
        if self._current is not None and self._current.job.id == job_id:
            self._current = None
        return not self._closed

    @Slot(str)
    def _on_started(self, job_id: str) -> None:
        if not self._closed:
            self.jobStarted.emit(job_id)

    @Slot(object)
    def _on_progress(self, progress: Progress) -> None:
        if not self._closed:
            self.progress.emit(progress)

    @Slot(str)
    def _on_finished(self, job_id: str) -> None:
        if self._done(job_id):
            self.jobFinished.emit(job_id)
            self._start_next()

    @Slot(str, str)
    def _on_failed(self, job_id: str, message: str) -> None:
        if self._done(job_id):
            self.jobFailed.emit(job_id, message)
            self._start_next()

    @Slot(str)
    def _on_cancelled(self, job_id: str) -> None:
        if self._done(job_id):
            self.jobCancelled.emit(job_id)
            self._start_next()
