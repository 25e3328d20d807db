"""The app's one runner for background work: keyed tasks in lanes, answers on the GUI thread.

Every slow thing the app does — a local job, a backend call that may block on the network,
an upload or download, a poll, a model download, the device probe — is a `Task`: a plain
function of a `TaskContext`. The rules live here once instead of in six thread set-ups:

- a task runs on a QThread of its own inside a worker QObject and never touches a widget;
  it reports through the worker's signals, which Qt queues to the runner's slots on the GUI
  thread, so callers (signals or a task's own callbacks) only ever run on the GUI thread;
- payloads are ``object``: frame and byte counts past 2**31 survive;
- a lane runs one task at a time, in order ("jobs": one local job uses every core;
  "upload": uploads do not fight for the user's uplink); different lanes run side by side;
- a key names the work: starting a key that is already queued or running does nothing;
- cancel is cooperative: the task's threading.Event is handed to the call, which checks it;
- ``shutdown()`` cancels everything and waits for every thread.

The runner holds each task until it has reported on the GUI thread, so a task's function
and callbacks (which may reach Qt objects) lose their last reference there, never on the
task's thread; cyclic garbage is collected on the GUI thread only (gui_thread_gc).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from PySide6.QtCore import QObject, QThread, Signal, Slot

from vsr_desktop.core.errors import CancelledError
from vsr_desktop.gui.lanes import set_lane

DONE, FAILED, CANCELLED = "done", "failed", "cancelled"


@dataclass(frozen=True)
class TaskResult:
    """How a task ended: DONE with its return value, FAILED with the exception, or
    CANCELLED (it raised CancelledError, or was dropped before it started)."""

    key: str
    outcome: str
    value: object = None


@dataclass(eq=False)
class Task:
    """One unit of work; `job_id` is set once the task knows which job it works on.

    `on_progress` and `on_done` are called on the GUI thread (bind them to GUI objects)."""

    key: str
    lane: str
    fn: Callable[[TaskContext], object]
    label: str = ""
    job_id: str = ""
    cancel: threading.Event = field(default_factory=threading.Event)
    on_progress: Callable[[object], None] | None = None
    on_done: Callable[[TaskResult], None] | None = None


class TaskContext:
    """What a running task may do besides its work: check cancel, report, name its job."""

    def __init__(self, task: Task, worker: _Worker) -> None:
        self._task = task
        self._worker = worker

    @property
    def cancel(self) -> threading.Event:
        return self._task.cancel

    @property
    def job_id(self) -> str:
        return self._task.job_id

    def report(self, value: object) -> None:
        """Send a progress value to the GUI thread (queued; safe from any thread)."""
        self._worker.progress.emit(self._task.key, value)

    def attach_job(self, job_id: str) -> None:
        """Say which job this task works on (a submit learns it part-way)."""
        if job_id and job_id != self._task.job_id:
            self._task.job_id = job_id
            self._worker.jobAttached.emit(self._task.key, job_id)


class _Worker(QObject):
    """Lives on the task's thread; runs the function once."""

    progress = Signal(str, object)
    jobAttached = Signal(str, str)
    done = Signal(str, object, object)  # key, result, exception (None on success)

    def __init__(self, task: Task) -> None:
        super().__init__()
        self._task = task

    @Slot()
    def run(self) -> None:
        set_lane(self._task.lane)
        try:
            result = self._task.fn(TaskContext(self._task, self))
        except BaseException as exc:  # reported on the GUI thread; a lane must never stall
            self.done.emit(self._task.key, None, exc)
        else:
            self.done.emit(self._task.key, result, None)
        finally:
            set_lane(None)


class TaskRunner(QObject):
    """Queues tasks per lane and runs each lane's head on a thread of its own."""

    started = Signal(str)
    progress = Signal(str, object)
    jobAttached = Signal(str, str)
    finished = Signal(str, object)  # key, result
    failed = Signal(str, object)  # key, exception
    cancelled = Signal(str)
    ended = Signal(str)  # after finished/failed/cancelled: the task is gone
    idle = Signal()  # nothing runs or waits any more

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._queued: dict[str, deque[Task]] = {}
        self._running: dict[str, tuple[Task, QThread, _Worker]] = {}  # lane → …
        self._closed = False

    # -- queries (GUI thread) -----------------------------------------------------------

    @property
    def is_closed(self) -> bool:
        return self._closed

    def tasks(self) -> list[Task]:
        running = [entry[0] for entry in self._running.values()]
        return running + [task for queue in self._queued.values() for task in queue]

    def task(self, key: str) -> Task | None:
        return next((t for t in self.tasks() if t.key == key), None)

    def for_job(self, job_id: str) -> list[Task]:
        return [t for t in self.tasks() if job_id and t.job_id == job_id]

    def is_running(self, key: str) -> bool:
        return any(entry[0].key == key for entry in self._running.values())

    def running_in(self, lane: str) -> Task | None:
        entry = self._running.get(lane)
        return entry[0] if entry is not None else None

    def queued_in(self, lane: str) -> list[Task]:
        return list(self._queued.get(lane, ()))

    def is_busy(self) -> bool:
        return bool(self._running) or any(self._queued.values())

    # -- control ------------------------------------------------------------------------

    def start(self, task: Task) -> str:
        """Queue a task in its lane; it starts at once when the lane is free. A key already
        queued or running is not started twice."""
        if self._closed:
            raise RuntimeError("the task runner was shut down")
        if self.task(task.key) is not None:
            return task.key
        self._queued.setdefault(task.lane, deque()).append(task)
        self._start_next(task.lane)
        return task.key

    def cancel(self, key: str) -> bool:
        """Ask a running task to stop, or drop a queued one; False when there is none."""
        for lane, queue in self._queued.items():
            for task in list(queue):
                if task.key == key:
                    queue.remove(task)
                    self._report(task, TaskResult(key, CANCELLED))
                    self._start_next(lane)
                    self._check_idle()
                    return True
        for task, _thread, _worker in self._running.values():
            if task.key == key:
                task.cancel.set()
                return True
        return False

    def shutdown(self) -> None:
        """Cancel everything and wait for every thread (safe to call twice). Dropped and
        unfinished tasks report nothing: their owners are closing too."""
        self._closed = True
        self._queued.clear()
        for task, _thread, _worker in self._running.values():
            task.cancel.set()
        for _task, thread, _worker in list(self._running.values()):
            thread.quit()
            thread.wait()
        self._running.clear()

    # -- internals ----------------------------------------------------------------------

    def _start_next(self, lane: str) -> None:
        queue = self._queued.get(lane)
        if self._closed or lane in self._running or not queue:
            return
        task = queue.popleft()
        if not queue:
            del self._queued[lane]
        thread = QThread(self)
        thread.setObjectName(f"vsr-task-{lane}")
        worker = _Worker(task)
        worker.moveToThread(thread)
        thread.started.connect(worker.run)
        worker.progress.connect(self._on_progress)
        worker.jobAttached.connect(self._on_job_attached)
        worker.done.connect(self._on_done)
        self._running[lane] = (task, thread, worker)
        self.started.emit(task.key)
        thread.start()

    def _find_running(self, key: str) -> Task | None:
        return next((entry[0] for entry in self._running.values() if entry[0].key == key), None)

    @Slot(str, object)
    def _on_progress(self, key: str, value: object) -> None:
        task = self._find_running(key)
        if self._closed or task is None:
            return
        self.progress.emit(key, value)
        if task.on_progress is not None:
            task.on_progress(value)

    @Slot(str, str)
    def _on_job_attached(self, key: str, job_id: str) -> None:
        if not self._closed:
            self.jobAttached.emit(key, job_id)

    @Slot(str, object, object)
    def _on_done(self, key: str, result: object, error: object) -> None:
        lane = next((name for name, entry in self._running.items() if entry[0].key == key), None)
        if lane is None:
            return  # shut down meanwhile; the thread was waited for there
        task, thread, worker = self._running.pop(lane)
        thread.quit()
        thread.wait()
        worker.deleteLater()
        thread.deleteLater()
        if self._closed:
            return
        if isinstance(error, CancelledError):
            outcome = TaskResult(key, CANCELLED, error)
        elif isinstance(error, BaseException):
            outcome = TaskResult(key, FAILED, error)
        else:
            outcome = TaskResult(key, DONE, result)
        try:
            self._report(task, outcome)
        finally:
            self._start_next(lane)
            self._check_idle()

    def _report(self, task: Task, result: TaskResult) -> None:
        try:
            if result.outcome == DONE:
                self.finished.emit(task.key, result.value)
            elif result.outcome == FAILED:
                self.failed.emit(task.key, result.value)
            else:
                self.cancelled.emit(task.key)
            if task.on_done is not None:
                task.on_done(result)
        finally:
            self.ended.emit(task.key)

    def _check_idle(self) -> None:
        if not self._closed and not self.is_busy():
            self.idle.emit()
