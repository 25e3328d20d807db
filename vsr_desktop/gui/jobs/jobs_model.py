"""A Qt table model over the job store: one row per job, whatever backend runs it.

The store is the single source of truth (the CLI, other app instances and remote backends
write to it too), so the model re-reads it on a timer and applies only the *difference* —
inserted rows, removed rows, changed cells — instead of resetting. A reset every half
second would drop the user's selection and scroll position. Live progress events from the
runner patch their row in memory so the bar moves without waiting for the next poll.

Nothing here asks which backend a row belongs to: every field drawn is one that every
backend fills in (state, frames, chunks, fps, ETA, cost, message), and "ready to download"
is the row's backend's own answer (`needs_fetch`), asked through a function the panel gives.
A state is never made up here: what a row says is what the store says.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from enum import IntEnum
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QByteArray,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    Qt,
)

from vsr_desktop.backends.protocol import Progress
from vsr_desktop.core.jobs import JobRecord, JobState, JobStore

AnyIndex = QModelIndex | QPersistentModelIndex


class Column(IntEnum):
    """Columns in display order (cost is the design's "cost" field, empty for local jobs)."""

    NAME = 0
    BACKEND = 1
    STATE = 2
    PROGRESS = 3
    FPS = 4
    ETA = 5
    COST = 6
    OUTPUT = 7


_HEADERS = {
    Column.NAME: "Name",
    Column.BACKEND: "Backend",
    Column.STATE: "State",
    Column.PROGRESS: "Progress",
    Column.FPS: "FPS",
    Column.ETA: "ETA",
    Column.COST: "Cost",
    Column.OUTPUT: "Output",
}


class Roles(IntEnum):
    """Custom data roles: views and the panel read these instead of parsing display text."""

    JobIdRole = Qt.ItemDataRole.UserRole + 1
    ProgressRole = Qt.ItemDataRole.UserRole + 2  # float 0..1, for the progress delegate
    StateRole = Qt.ItemDataRole.UserRole + 3  # JobState value str (Qt turns str enums to str)
    JobRole = Qt.ItemDataRole.UserRole + 4  # the JobRecord itself


JobIdRole = Roles.JobIdRole
ProgressRole = Roles.ProgressRole
StateRole = Roles.StateRole
JobRole = Roles.JobRole

_BACKEND_LABELS = {
    "local": "This computer",
    "aws": "AWS",
    "slurm": "Slurm",
    "aws-preview": "AWS (preview)",
}


#: Whether a finished job's output is still where it ran (its backend's `needs_fetch`).
NeedsFetch = Callable[[JobRecord], bool]


def state_text(job: JobRecord, ready_to_download: bool = False) -> str:
    """The state in words a user understands, including what they can do about it."""
    if job.state is JobState.RUNNING:
        return f"Running — {job.phase}" if job.phase else "Running"
    if job.state is JobState.INTERRUPTED:
        return "Interrupted — resumable"
    if job.state is JobState.CANCELLED and job.chunks_done > 0:
        return "Cancelled — resumable"
    if job.state is JobState.COMPLETED and job.phase:  # e.g. fetching a cloud output
        return f"Completed — {job.phase}"
    if job.state is JobState.COMPLETED and ready_to_download:
        return "Completed — ready to download"
    report = job.verify_report
    if job.state is JobState.COMPLETED and report is not None:
        return "Completed ✓" if report.get("ok") else "Completed ⚠ check the details"
    return {
        JobState.QUEUED: "Queued",
        JobState.COMPLETED: "Completed",
        JobState.FAILED: "Failed",
        JobState.CANCELLED: "Cancelled",
    }[job.state]


def job_progress(job: JobRecord) -> float:
    """0..1; a completed job is full even if its last frame count was never stored."""
    if job.state is JobState.COMPLETED:
        return 1.0
    return max(0.0, min(1.0, job.progress))


def format_duration(seconds: float | None) -> str:
    """h:mm:ss (hours grow past 24 rather than wrapping into days)."""
    if seconds is None or seconds < 0:
        return ""
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def _sorted_newest_first(jobs: list[JobRecord]) -> list[JobRecord]:
    """Newest first, ties broken by id so the order is the same on every poll."""
    return sorted(jobs, key=lambda j: (-j.created_at, j.id))


class JobsTableModel(QAbstractTableModel):
    """Rows are JobRecords from the store, newest first; refresh() applies differences."""

    def __init__(
        self, store: JobStore, parent: QObject | None = None, needs_fetch: NeedsFetch | None = None
    ) -> None:
        super().__init__(parent)
        self._store = store
        self._needs_fetch = needs_fetch
        #: (job id, updated_at) → needs_fetch: asked once per version of a row, not per paint.
        self._fetch_answers: dict[tuple[str, float], bool] = {}
        self._jobs: list[JobRecord] = []
        self.refresh()

    @property
    def store(self) -> JobStore:
        return self._store

    # -- Qt model API --------------------------------------------------------------------

    def rowCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._jobs)

    def columnCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(Column)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if orientation == Qt.Orientation.Horizontal and 0 <= section < len(Column):
            if role == Qt.ItemDataRole.DisplayRole:
                return _HEADERS[Column(section)]
            if role == Qt.ItemDataRole.TextAlignmentRole and section in (
                Column.FPS,
                Column.ETA,
                Column.COST,
            ):
                return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def flags(self, index: AnyIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return (
            Qt.ItemFlag.ItemIsEnabled
            | Qt.ItemFlag.ItemIsSelectable
            | Qt.ItemFlag.ItemNeverHasChildren
        )

    def roleNames(self) -> dict[int, QByteArray]:
        names = dict(super().roleNames())
        for role in Roles:
            names[int(role)] = QByteArray(role.name[0].lower().encode() + role.name[1:].encode())
        return names

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._jobs):
            return None
        if not 0 <= index.column() < len(Column):
            return None
        job = self._jobs[index.row()]
        column = Column(index.column())
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display(job, column, self.ready_to_download(job))
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(job, column)
        if role == Qt.ItemDataRole.TextAlignmentRole and column in (
            Column.FPS,
            Column.ETA,
            Column.COST,
        ):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Roles.JobIdRole:
            return job.id
        if role == Roles.ProgressRole:
            return job_progress(job)
        if role == Roles.StateRole:
            return job.state.value  # JobState(value) gives the enum back
        if role == Roles.JobRole:
            return job
        return None

    @staticmethod
    def _display(job: JobRecord, column: Column, ready_to_download: bool) -> str:
        if column is Column.NAME:
            return job.name
        if column is Column.BACKEND:
            return _BACKEND_LABELS.get(job.backend, job.backend)
        if column is Column.STATE:
            return state_text(job, ready_to_download)
        if column is Column.PROGRESS:
            return f"{int(job_progress(job) * 100)} %"
        if column is Column.FPS:
            return f"{job.fps:.1f}" if job.fps > 0 and job.state is JobState.RUNNING else ""
        if column is Column.ETA:
            return format_duration(job.eta_seconds) if job.state is JobState.RUNNING else ""
        if column is Column.COST:
            # Reckoned from reported GPU time × the Spot price at submit: the bill decides.
            return f"~${job.cost_usd:.2f}" if job.cost_usd is not None else ""
        return job.output

    @staticmethod
    def _tooltip(job: JobRecord, column: Column) -> str:
        """The job's message (why it failed, warnings); the verify report's lines on the
        state; otherwise what the cell abbreviates."""
        report = job.verify_report
        if column is Column.STATE and report is not None:
            lines = report.get("lines") or ["Nothing but the picture changed."]
            return "\n".join(str(line) for line in lines)
        if job.message:
            return job.message
        if column is Column.OUTPUT:
            return job.output
        if column is Column.NAME:
            return job.source
        if column is Column.PROGRESS and job.chunks_total:
            return (
                f"{job.frames_done}/{job.frames_total} frames, "
                f"chunk {job.chunks_done}/{job.chunks_total}"
            )
        return ""

    # -- lookups -------------------------------------------------------------------------

    def ready_to_download(self, job: JobRecord) -> bool:
        """The backend says the finished output is still where the job ran."""
        if job.state is not JobState.COMPLETED or self._needs_fetch is None:
            return False
        key = (job.id, job.updated_at)
        if key not in self._fetch_answers:
            if len(self._fetch_answers) > 4096:
                self._fetch_answers.clear()
            self._fetch_answers[key] = self._needs_fetch(job)
        return self._fetch_answers[key]

    def job_at(self, row: int) -> JobRecord | None:
        return self._jobs[row] if 0 <= row < len(self._jobs) else None

    def row_of(self, job_id: str) -> int:
        """Row of a job, or -1 (a linear scan: a jobs list is tens to hundreds of rows)."""
        for row, job in enumerate(self._jobs):
            if job.id == job_id:
                return row
        return -1

    def index_of(self, job_id: str, column: int = 0) -> QModelIndex:
        row = self.row_of(job_id)
        return self.index(row, column) if row >= 0 else QModelIndex()

    def job(self, job_id: str) -> JobRecord | None:
        row = self.row_of(job_id)
        return self._jobs[row] if row >= 0 else None

    # -- updates -------------------------------------------------------------------------

    def refresh(self) -> None:
        """Re-read the store and apply inserted, removed and changed rows (never a reset)."""
        fresh = _sorted_newest_first(self._store.all_jobs())
        wanted = {job.id for job in fresh}
        # Removals, bottom-up so row numbers above stay valid; contiguous runs in one call.
        row = len(self._jobs) - 1
        while row >= 0:
            if self._jobs[row].id in wanted:
                row -= 1
                continue
            last = row
            while row - 1 >= 0 and self._jobs[row - 1].id not in wanted:
                row -= 1
            self.beginRemoveRows(QModelIndex(), row, last)
            del self._jobs[row : last + 1]
            self.endRemoveRows()
            row -= 1
        # created_at never changes, so survivors keep their relative order and each new
        # job slots in at its final position.
        for row, job in enumerate(fresh):
            current = self._jobs[row] if row < len(self._jobs) else None
            if current is not None and current.id == job.id:
                if current != job:
                    self._jobs[row] = job
                    self._row_changed(row)
                continue
            if any(existing.id == job.id for existing in self._jobs):
                self._resync(fresh)  # order changed behind our back: rebuild once
                return
            self.beginInsertRows(QModelIndex(), row, row)
            self._jobs.insert(row, job)
            self.endInsertRows()

    def apply_progress(self, progress: Progress) -> None:
        """Show a live progress event at once (the store poll would lag by up to 500 ms).

        Only the numbers are taken: the state and phase shown come from the store ("chunk
        2/3", "merging"). A row that the store had not shown running yet is re-read (the
        backend wrote RUNNING before its first event), never set running here.
        """
        row = self.row_of(progress.job_id)
        if row < 0 or self._jobs[row].state is not JobState.RUNNING:
            self.refresh()
            row = self.row_of(progress.job_id)
            if row < 0:
                return
        job = self._jobs[row]
        updated = dataclasses.replace(
            job,
            frames_done=progress.frames_done,
            frames_total=progress.frames_total,
            chunks_done=progress.chunks_done,
            chunks_total=progress.chunks_total,
            fps=progress.fps,
            eta_seconds=progress.eta_seconds,
        )
        if updated != job:
            self._jobs[row] = updated
            self._row_changed(row)

    def remove_job(self, job_id: str) -> None:
        """Delete a job from the store and drop its row."""
        self._store.delete(job_id)
        row = self.row_of(job_id)
        if row >= 0:
            self.beginRemoveRows(QModelIndex(), row, row)
            del self._jobs[row]
            self.endRemoveRows()

    def _row_changed(self, row: int) -> None:
        self.dataChanged.emit(self.index(row, 0), self.index(row, len(Column) - 1))

    def _resync(self, fresh: list[JobRecord]) -> None:
        """Fallback for a reorder that created_at ordering rules out: one honest reset."""
        self.beginResetModel()
        self._jobs = fresh
        self.endResetModel()
