"""Keeps remote rows current: asks their backends for news off the GUI thread, gently.

The jobs panel redraws from the store; this only calls `poll(job)` on the backend of every
unfinished job that does not run in this process, as one task on the "poll" lane of the
app's TaskRunner, and lets the backend write the store. It backs off while nothing changes,
so a queue of idle jobs costs a few scheduler calls a minute, not an API storm.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from PySide6.QtCore import QObject, QTimer, Signal

from vsr_desktop.backends.protocol import Backend
from vsr_desktop.core.errors import VsrError
from vsr_desktop.core.jobs import JobRecord, JobStore
from vsr_desktop.gui.tasks import DONE, Task, TaskContext, TaskResult, TaskRunner

MIN_INTERVAL_S = 2.0
MAX_INTERVAL_S = 30.0
POLL_LANE = "poll"
POLL_KEY = "poll"

#: The backend of a job, or None when this app has none for it (the row is drawn only).
BackendFor = Callable[[JobRecord], Backend | None]


@dataclass
class _PollReport:
    changed: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


class RemotePoller(QObject):
    """Schedules polls on a timer with backoff; `poll_now()` after a submit skips it."""

    jobChanged = Signal(str)
    pollFailed = Signal(str, str)  # job id, message

    def __init__(
        self,
        store: JobStore,
        backend_for: BackendFor,
        tasks: TaskRunner,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._store = store
        self._backend_for = backend_for
        self._tasks = tasks
        self._interval = MIN_INTERVAL_S
        self._again = False
        self._stopped = False
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._poll)
        self._timer.start(0)

    @property
    def interval_s(self) -> float:
        return self._interval

    def poll_now(self) -> None:
        """Poll at once (or right after the poll in flight)."""
        if self._stopped:
            return
        self._interval = MIN_INTERVAL_S
        if self._tasks.task(POLL_KEY) is not None:
            self._again = True
        else:
            self._timer.start(0)

    def stop(self) -> None:
        self._stopped = True
        self._timer.stop()
        self._tasks.cancel(POLL_KEY)

    def _targets(self) -> list[tuple[JobRecord, Backend]]:
        """Unfinished jobs whose backend runs them elsewhere (built on the GUI thread)."""
        targets = []
        for job in self._store.all_jobs():
            if job.state.is_finished:
                continue
            backend = self._backend_for(job)
            if backend is not None and not backend.runs_in_process:
                targets.append((job, backend))
        return targets

    def _poll(self) -> None:
        if self._stopped or self._tasks.is_closed or self._tasks.task(POLL_KEY) is not None:
            return
        try:
            targets = self._targets()
        except VsrError as exc:  # the store itself is unreadable: say so, try later
            self.pollFailed.emit("", exc.user_message())
            targets = []
        if not targets:
            self._schedule(changed=False)
            return

        def run(ctx: TaskContext) -> object:
            report = _PollReport()
            for job, backend in targets:
                if ctx.cancel.is_set():
                    break
                try:
                    after = backend.poll(job)
                except VsrError as exc:
                    report.failed.append((job.id, exc.user_message()))
                    continue
                if (after.state, after.frames_done, after.phase, after.chunks_done) != (
                    job.state,
                    job.frames_done,
                    job.phase,
                    job.chunks_done,
                ):
                    report.changed.append(job.id)
            return report

        self._tasks.start(
            Task(POLL_KEY, POLL_LANE, run, label="poll remote jobs", on_done=self._on_done)
        )

    def _on_done(self, result: TaskResult) -> None:
        report = result.value if result.outcome == DONE else None
        if isinstance(report, _PollReport):
            for job_id, message in report.failed:
                self.pollFailed.emit(job_id, message)
            for job_id in report.changed:
                self.jobChanged.emit(job_id)
            self._schedule(changed=bool(report.changed))
        elif result.outcome != DONE and result.value is not None:
            self.pollFailed.emit("", f"{type(result.value).__name__}: {result.value}")
            self._schedule(changed=False)
        else:
            self._schedule(changed=False)

    def _schedule(self, *, changed: bool) -> None:
        if self._stopped:
            return
        if self._again:
            self._again = False
            self._timer.start(0)
            return
        self._interval = MIN_INTERVAL_S if changed else min(self._interval * 1.5, MAX_INTERVAL_S)
        self._timer.start(int(self._interval * 1000))
