"""Keeps cluster and cloud rows current: polls their backends off the GUI thread, gently.

The jobs panel redraws from the store; this only asks each remote backend for news and lets
it write the store. It backs off while nothing changes, so a queue of idle jobs costs a few
scheduler calls a minute, not an API storm.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal, Slot

from vsr_desktop.core.errors import VsrError
from vsr_desktop.core.jobs import JobRecord, JobStore

MIN_INTERVAL_S = 2.0
MAX_INTERVAL_S = 30.0

BackendFor = Callable[[JobRecord], Any]


class _PollWorker(QObject):
    """Runs in the poller's thread: loop, poll active remote jobs, sleep with backoff."""

    polled = Signal(str)
    failed = Signal(str, str)

    def __init__(self, store: JobStore, backends: dict[str, BackendFor],
                 stop: threading.Event, wake: threading.Event) -> None:
        super().__init__()
        self._store = store
        self._backends = backends
        self._stop = stop
        self._wake = wake

    @Slot()
    def run(self) -> None:
        interval = MIN_INTERVAL_S
        while not self._stop.is_set():
            changed = False
            for job in self._store.all_jobs():
                if job.state.is_finished or job.backend not in self._backends:
                    continue
                try:
                    after = self._backends[job.backend](job).poll(job)
                except VsrError as exc:
                    self.failed.emit(job.id, exc.user_message())
                    continue
                if (after.state, after.frames_done, after.phase) != (
                        job.state, job.frames_done, job.phase):
                    changed = True
                    self.polled.emit(job.id)
            interval = MIN_INTERVAL_S if changed else min(interval * 1.5, MAX_INTERVAL_S)
            self._wake.wait(interval)
            self._wake.clear()


class RemotePoller(QObject):
    """Owns the polling thread; `poll_now()` after a submit skips the current backoff."""

    jobChanged = Signal(str)
    pollFailed = Signal(str, str)

    def __init__(self, store: JobStore, backends: dict[str, BackendFor],
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = QThread(self)
        self._worker = _PollWorker(store, backends, self._stop, self._wake)
        self._worker.moveToThread(self._thread)
        self._thread.started.connect(self._worker.run)
        self._worker.polled.connect(self._on_polled)
        self._worker.failed.connect(self._on_failed)
        self._thread.start()

    @Slot(str)
    def _on_polled(self, job_id: str) -> None:
        self.jobChanged.emit(job_id)

    @Slot(str, str)
    def _on_failed(self, job_id: str, message: str) -> None:
        self.pollFailed.emit(job_id, message)

    def poll_now(self) -> None:
        self._wake.set()

    def shutdown(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.quit()
        self._thread.wait()
