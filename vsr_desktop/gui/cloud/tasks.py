"""Runs slow AWS calls (deploy, upload, download, estimate, SSO wait, cancel) off the GUI thread.

Each task is a plain function of a TaskContext; it runs on its own QThread inside a worker
QObject and reports through the worker's signals, which Qt queues to the runner's slots on
the GUI thread. So a task never touches a widget, and callers only ever see GUI-thread
signals. Why lanes: an upload and a download may overlap, but two uploads should not fight
for the user's uplink, so tasks in the same lane run one after another.

Cancel is cooperative: the task's threading.Event is handed to the backend call, which
checks it between parts / polls and raises CancelledError.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from PySide6.QtCore import QObject, QThread, Signal, Slot

from vsr_desktop.core.errors import CancelledError


@dataclass
class Task:
    """One unit of work; `job_id` is set once the task knows which job it works on."""

    key: str
    lane: str
    fn: Callable[[TaskContext], object]
    label: str = ""
    job_id: str = ""
    cancel: threading.Event = field(default_factory=threading.Event)


class TaskContext:
    """What a running task may do besides its work: check cancel, report, name its job."""

    def __init__(self, task: Task, worker: _Worker) -> None:
        self._task = task
        self._worker = worker

    @property
    def cancel(self) -> threading.Event:
        return self._task.cancel

    def report(self, value: object) -> None:
        """Send a progress value to the GUI thread (queued; safe from any thread)."""
        self._worker.progress.emit(self._task.key, value)

    def attach_job(self, job_id: str) -> None:
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
        try:
            result = self._task.fn(TaskContext(self._task, self))
        except Exception as exc:  # reported to the GUI thread, which shows a dialog
            self.done.emit(self._task.key, None, exc)
        else:
            self.done.emit(self._task.key, result, None)


class TaskRunner(QObject):
    """Queues tasks per lane and runs each lane's head on a thread of its own."""

    started = Signal(str)
    progress = Signal(str, object)
    jobAttached = Signal(str, str)
    finished = Signal(str, object)  # key, result
    failed = Signal(str, object)  # key, exception
    cancelled = Signal(str)
    ended = Signal(str)  # after finished/failed/cancelled: the task is gone

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._queued: dict[str, deque[Task]] = {}
        self._running: dict[str, tuple[Task, QThread, _Worker]] = {}  # lane → …
        self._closed = False

    # -- queries (GUI thread) -----------------------------------------------------------

    def tasks(self) -> list[Task]:
        running = [entry[0] for entry in self._running.values()]
        return running + [task for queue in self._queued.values() for task in queue]

    def task(self, key: str) -> Task | None:
        return next((t for t in self.tasks() if t.key == key), None)

    def for_job(self, job_id: str) -> list[Task]:
        return [t for t in self.tasks() if job_id and t.job_id == job_id]

    def is_busy(self) -> bool:
        return bool(self._running)

    # -- control ------------------------------------------------------------------------

    def start(self, task: Task) -> str:
        """Queue a task in its lane; it starts at once when the lane is free."""
        if self._closed:
            raise RuntimeError("the task runner was shut down")
        self._queued.setdefault(task.lane, deque()).append(task)
        self._start_next(task.lane)
        return task.key

    def cancel(self, key: str) -> bool:
        """Ask a running task to stop, or drop a queued one; False when there is none."""
        for lane, queue in self._queued.items():
            for task in list(queue):
                if task.key == key:
                    queue.remove(task)
                    self.cancelled.emit(key)
                    self.ended.emit(key)
                    self._start_next(lane)
                    return True
        for task, _thread, _worker in self._running.values():
            if task.key == key:
                task.cancel.set()
                return True
        return False

    def shutdown(self) -> None:
        """Cancel everything and wait for every thread (safe to call twice)."""
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
        thread = QThread(self)
        thread.setObjectName(f"vsr-cloud-{lane}")
        worker = _Worker(task)
        worker.moveToThread(thread)
        thread.started.connect(worker.run)
        worker.progress.connect(self._on_progress)
        worker.jobAttached.connect(self._on_job_attached)
        worker.done.connect(self._on_done)
        self._running[lane] = (task, thread, worker)
        self.started.emit(task.key)
        thread.start()

    @Slot(str, object)
    def _on_progress(self, key: str, value: object) -> None:
        if not self._closed:
            self.progress.emit(key, value)

    @Slot(str, str)
    def _on_job_attached(self, key: str, job_id: str) -> None:
        if not self._closed:
            self.jobAttached.emit(key, job_id)

    @Slot(str, object, object)
    def _on_done(self, key: str, result: object, error: object) -> None:
        lane = next((name for name, entry in self._running.items() if entry[0].key == key),
                    None)
        if lane is None:
            return  # shut down meanwhile; the thread was waited for there
        _task, thread, worker = self._running.pop(lane)
        thread.quit()
        thread.wait()
        worker.deleteLater()
        thread.deleteLater()
        if self._closed:
            return
        if isinstance(error, CancelledError):
            self.cancelled.emit(key)
        elif isinstance(error, BaseException):
            self.failed.emit(key, error)
        else:
            self.finished.emit(key, result)
        self.ended.emit(key)
        self._start_next(lane)
