"""The "Jobs" dock: every job from the store, with the actions that apply to the selected one.

The panel glues three parts together: the table model (what the store says), the runner
(what this app is doing about a job), and the user's actions. It never asks which backend a
job is on: every action goes through the protocol of the backend the registry has for the
job (cancel, resume, retry = resume from nothing, download = fetch_output, remove), and an
action is enabled from the row and from what that backend says (`needs_fetch`), so a new
backend gets the same buttons for free.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import (
    QCoreApplication,
    QItemSelection,
    QModelIndex,
    QPersistentModelIndex,
    QPoint,
    Qt,
    QTimer,
    QUrl,
    Signal,
    Slot,
)
from PySide6.QtGui import QAction, QDesktopServices, QHideEvent, QKeySequence, QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDockWidget,
    QHeaderView,
    QLabel,
    QMenu,
    QMessageBox,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTableView,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from vsr_desktop.backends.local import LocalBackend
from vsr_desktop.backends.protocol import Backend, Progress
from vsr_desktop.backends.registry import BackendRegistry, default_registry
from vsr_desktop.core.errors import VsrError
from vsr_desktop.core.job_spec import JobSpec
from vsr_desktop.core.jobs import JobRecord, JobState, JobStore
from vsr_desktop.gui.jobs.job_runner import JobRunner
from vsr_desktop.gui.jobs.jobs_model import Column, JobsTableModel, Roles
from vsr_desktop.gui.jobs.log_dialog import LogDialog
from vsr_desktop.gui.jobs.progress_delegate import ProgressBarDelegate
from vsr_desktop.gui.jobs.remote_poller import RemotePoller
from vsr_desktop.gui.tasks import TaskRunner

Opener = Callable[[Path], None]
REFRESH_MS = 500


def open_with_desktop(path: Path) -> None:
    """Open a file or folder with the user's default application."""
    QDesktopServices.openUrl(QUrl.fromLocalFile(str(path)))


# Which action applies to which job: pure functions of the row (and of what its backend
# says), so every backend's rows behave the same and tests can check the rules without
# clicking.


def can_cancel(job: JobRecord) -> bool:
    return job.state in (JobState.QUEUED, JobState.RUNNING)


def can_resume(job: JobRecord) -> bool:
    """Resume continues from finished chunks, so it needs at least one."""
    return job.state.is_resumable and job.chunks_done > 0


def can_retry(job: JobRecord) -> bool:
    return job.state.is_resumable


def can_open_output(job: JobRecord) -> bool:
    return job.state is JobState.COMPLETED and Path(job.output).is_file()


def can_reveal(job: JobRecord) -> bool:
    return bool(job.output) and Path(job.output).parent.is_dir()


def can_show_log(job: JobRecord) -> bool:
    return bool(job.log_path) and Path(job.log_path).is_file()


def can_download(job: JobRecord, backend: Backend | None) -> bool:
    """The job finished where it ran and its backend says the output is not here yet."""
    if backend is None or job.state is not JobState.COMPLETED:
        return False
    try:
        return bool(backend.needs_fetch(job))
    except VsrError:
        return False


def can_remove(job: JobRecord) -> bool:
    """Anything not running or waiting: a failed submit included (FAILED with its reason)."""
    return job.state not in (JobState.QUEUED, JobState.RUNNING)


class _ElideLeftDelegate(QStyledItemDelegate):
    """Paths lose their start, not their file name, when the column is narrow."""

    def initStyleOption(
        self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> None:
        super().initStyleOption(option, index)
        option.textElideMode = Qt.TextElideMode.ElideLeft


class JobsPanel(QDockWidget):
    """Dock widget listing jobs; `submit` sends a job spec to its backend."""

    jobFinished = Signal(str)
    jobFailed = Signal(str, str)  # job id, message for the user
    jobCancelled = Signal(str)
    actionFailed = Signal(str, object)  # a dialog title, the exception (the window shows it)

    def __init__(
        self,
        store: JobStore,
        backend_factory: Callable[[], LocalBackend] | None = None,
        opener: Opener | None = None,
        parent: QWidget | None = None,
        *,
        registry: BackendRegistry | None = None,
        tasks: TaskRunner | None = None,
    ) -> None:
        super().__init__("Jobs", parent)
        self.setObjectName("jobsPanel")  # QMainWindow.saveState needs a name
        self._opener: Opener = opener or open_with_desktop
        self._local_factory = backend_factory or (lambda: LocalBackend(store))
        self._local: LocalBackend | None = None
        self.registry = registry if registry is not None else default_registry(store)
        # The one local backend the runner uses, so Cancel reaches the run in this process.
        self.registry.register("local", lambda _store, _job: self.local_backend)
        self.model = JobsTableModel(store, self, needs_fetch=self._needs_fetch)
        self.runner = JobRunner(self.registry, tasks, self)
        self.poller = RemotePoller(store, self.backend_or_none, self.runner.tasks, self)
        self._closed = False
        #: The open "Remove the job?" confirmation, if any (tests answer it).
        self.remove_box: QMessageBox | None = None
        #: The open "Resume interrupted jobs?" offer, if any.
        self.resume_box: QMessageBox | None = None
        #: The open log viewer, if any (one at a time).
        self.log_dialog: LogDialog | None = None

        body = QWidget(self)
        layout = QVBoxLayout(body)
        layout.setContentsMargins(4, 2, 4, 4)
        layout.setSpacing(2)
        self.toolbar = QToolBar("Job actions", body)
        self.toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        layout.addWidget(self.toolbar)
        self.cancel_action = self._action("Cancel", "Stop the selected job", self._cancel)
        self.resume_action = self._action(
            "Resume", "Continue from the last finished chunk", self._resume
        )
        self.retry_action = self._action("Retry", "Run the job again from the start", self._retry)
        self.download_action = self._action(
            "Download",
            "Fetch the finished output to this computer (Ctrl+Shift+D)",
            self._download,
        )
        self.download_action.setShortcut(QKeySequence("Ctrl+Shift+D"))
        self.toolbar.addSeparator()
        self.open_output_action = self._action(
            "Open output", "Open the finished video", self._open_output
        )
        self.reveal_action = self._action(
            "Reveal in folder", "Open the folder holding the output", self._reveal
        )
        self.show_log_action = self._action(
            "Show log",
            "Show the end of the job's log, following it while the job runs",
            self._show_log,
        )
        self.toolbar.addSeparator()
        self.remove_action = self._action(
            "Remove",
            "Remove the job and its work files from the list (keeps the output)",
            self._remove,
        )

        self.view = QTableView(body)
        self.view.setModel(self.model)
        self.view.setItemDelegateForColumn(Column.PROGRESS, ProgressBarDelegate(self.view))
        self.view.setItemDelegateForColumn(Column.OUTPUT, _ElideLeftDelegate(self.view))
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.view.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.view.setAlternatingRowColors(True)
        self.view.setShowGrid(False)
        self.view.setWordWrap(False)
        # Tab and Shift+Tab leave the table (arrows move between rows): no keyboard trap.
        self.view.setTabKeyNavigation(False)
        self.view.verticalHeader().hide()
        header = self.view.horizontalHeader()
        header.setStretchLastSection(True)
        header.setHighlightSections(False)
        for column, width in (
            (Column.NAME, 160),
            (Column.BACKEND, 100),
            (Column.STATE, 170),
            (Column.PROGRESS, 120),
            (Column.FPS, 50),
            (Column.ETA, 64),
            (Column.COST, 50),
        ):
            header.resizeSection(column, width)
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.view.customContextMenuRequested.connect(self._show_context_menu)
        self.view.doubleClicked.connect(self._on_double_clicked)
        self.view.selectionModel().selectionChanged.connect(self._on_selection_changed)
        layout.addWidget(self.view, 1)

        self.status_label = QLabel(body)
        self.status_label.setObjectName("jobsStatus")
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.status_label)
        self.setWidget(body)

        self.model.dataChanged.connect(self._on_rows_changed)
        self.model.rowsRemoved.connect(self._on_rows_changed)
        self.model.modelReset.connect(self._on_rows_changed)
        self.runner.progress.connect(self._on_progress)
        self.runner.jobQueued.connect(self._on_job_event)
        self.runner.jobStarted.connect(self._on_job_event)
        self.runner.jobFinished.connect(self._on_finished)
        self.runner.jobFailed.connect(self._on_failed)
        self.runner.jobCancelled.connect(self._on_cancelled)
        self.runner.jobChanged.connect(self._on_job_changed)
        self.runner.message.connect(self._set_status)
        self.runner.callFailed.connect(self._on_call_failed)
        self.poller.jobChanged.connect(self._on_remote_changed)
        self.poller.pollFailed.connect(self._on_poll_failed)

        # Re-read the store while visible: other processes (CLI, remote backends) write it.
        self._timer = QTimer(self)
        self._timer.setInterval(REFRESH_MS)
        self._timer.timeout.connect(self.model.refresh)
        # A safety net: the main window calls shutdown() on close; a QThread still running
        # when Qt tears the objects down would abort the process.
        app = QCoreApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.shutdown)
        self._update_actions()

    # -- public API ---------------------------------------------------------------------

    @property
    def local_backend(self) -> LocalBackend:
        """Created on first use: building it must not slow the window's start."""
        if self._local is None:
            self._local = self._local_factory()
        return self._local

    def backend_or_none(self, job: JobRecord) -> Backend | None:
        """The job's backend, or None when this version knows no backend of that name."""
        try:
            return self.runner.backend_for(job)
        except VsrError:
            return None

    def submit(self, spec: JobSpec, backend: Backend | None = None) -> str:
        """Send a job (to `backend`, else to the registry's backend of `spec.backend`).

        Returns the job id of an in-process job (a bad input raises VsrError here, before
        anything is recorded: show it in a dialog), or the task key of a remote submit.
        """
        key = self.runner.submit(spec, backend)
        self.model.refresh()
        self.select_job(key)
        self.poller.poll_now()
        return key

    def selected_job(self) -> JobRecord | None:
        rows = self.view.selectionModel().selectedRows()
        return rows[0].data(Roles.JobRole) if rows else None

    def select_job(self, job_id: str) -> None:
        index = self.model.index_of(job_id)
        if index.isValid():
            self.view.selectRow(index.row())

    def work_in_progress(self) -> list[JobRecord]:
        """Jobs this app is running, has queued, or moves bytes for: what quitting stops."""
        jobs = []
        for job_id in self.runner.busy_job_ids():
            with contextlib.suppress(VsrError):
                jobs.append(self.model.store.get(job_id))
        return jobs

    def running_elsewhere(self) -> list[JobRecord]:
        """Unfinished jobs that run outside this app (a cluster, the cloud): quitting leaves
        them running there."""
        found = []
        for job in self.model.store.all_jobs():
            if job.state.is_finished or job.state is JobState.INTERRUPTED:
                continue
            backend = self.backend_or_none(job)
            if backend is not None and not backend.runs_in_process and not self.runner.owns(job.id):
                found.append(job)
        return found

    def interrupted_jobs(self) -> list[JobRecord]:
        """Jobs this app runs itself that a quit or a crash stopped before they finished:
        INTERRUPTED ones, and ones still queued here when the app went away."""
        found = []
        for job in self.model.store.all_jobs():
            if job.state not in (JobState.INTERRUPTED, JobState.QUEUED):
                continue
            backend = self.backend_or_none(job)
            if backend is not None and backend.runs_in_process and not self.runner.owns(job.id):
                found.append(job)
        return found

    def offer_resume(self) -> QMessageBox | None:
        """At start: offer to resume interrupted jobs (non-modal; "Not now" asks again at
        the next start). Returns the question, or None when there is nothing to offer."""
        with contextlib.suppress(VsrError, OSError):  # half-merged outputs of dead runs
            self.local_backend.clean_stale_outputs()
        jobs = self.interrupted_jobs()
        if not jobs or self._closed:
            return None
        box = QMessageBox(
            QMessageBox.Icon.Question,
            "Resume interrupted jobs?",
            f"{len(jobs)} job(s) stopped before they finished when the app last closed.",
            parent=self,
        )
        box.setObjectName("resumeOffer")
        box.setWindowModality(Qt.WindowModality.NonModal)
        lines = [
            f"• {job.name} — {job.chunks_done} of {job.chunks_total or '?'} chunks done"
            for job in jobs[:10]
        ]
        if len(jobs) > 10:
            lines.append(f"… and {len(jobs) - 10} more")
        box.setInformativeText(
            "\n".join([*lines, "", "Resume continues each from its last finished chunk."])
        )
        resume = box.addButton("Resume", QMessageBox.ButtonRole.AcceptRole)
        box.addButton("Not now", QMessageBox.ButtonRole.RejectRole)
        box.setDefaultButton(resume)
        ids = [job.id for job in jobs]
        box.finished.connect(lambda _result: self._resume_answered(box, resume, ids))
        self.resume_box = box
        box.show()
        return box

    def _resume_answered(self, box: QMessageBox, resume: Any, job_ids: list[str]) -> None:
        self.resume_box = None
        box.deleteLater()
        if box.clickedButton() is not resume or self._closed:
            return
        resumed = 0
        for job_id in job_ids:
            try:
                self.runner.resume(self.model.store.get(job_id))
                resumed += 1
            except VsrError as exc:
                self._set_status(exc.user_message())
        self.model.refresh()
        if resumed:
            self._set_status(f"Resuming {resumed} job(s)")
            self._update_actions()

    def is_busy(self) -> bool:
        """Anything of the app's background work still running or waiting."""
        return self.runner.tasks.is_busy()

    def stop_jobs(self, *, cancel_jobs: bool) -> None:
        """Quitting: stop polling; runs stop (kept resumable, or cancelled), transfers
        pause. Returns at once; the runner's TaskRunner says `idle` once all stopped."""
        self._closed = True
        self._timer.stop()
        self.poller.stop()
        self.runner.stop_all(cancel_jobs=cancel_jobs)

    def shutdown(self, *, cancel_jobs: bool = False) -> None:
        """Stop polling and the jobs (kept resumable unless `cancel_jobs`), and wait for
        the threads this panel owns (idempotent)."""
        if not self._closed:
            self.stop_jobs(cancel_jobs=cancel_jobs)
        self.runner.shutdown(cancel_jobs=cancel_jobs)
        with contextlib.suppress(VsrError):
            self.model.refresh()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.model.refresh()
        if not self._closed:
            self._timer.start()

    def hideEvent(self, event: QHideEvent) -> None:
        self._timer.stop()
        super().hideEvent(event)

    # -- actions ------------------------------------------------------------------------

    def _action(self, text: str, tip: str, slot: Callable[[], None]) -> QAction:
        action = QAction(text, self)
        action.setToolTip(tip)
        action.setStatusTip(tip)
        action.triggered.connect(slot)
        self.toolbar.addAction(action)
        return action

    def _needs_fetch(self, job: JobRecord) -> bool:
        return can_download(job, self.backend_or_none(job))

    def _update_actions(self) -> None:
        job = self.selected_job()
        if job is None:
            for action in self.toolbar.actions():
                action.setEnabled(False)
            return
        backend = self.backend_or_none(job)
        known = backend is not None
        ours = self.runner.owns(job.id)
        rules = (
            (self.cancel_action, known and (can_cancel(job) or ours)),
            (self.resume_action, known and can_resume(job) and not ours),
            (self.retry_action, known and can_retry(job) and not ours),
            (self.download_action, can_download(job, backend) and not ours),
            (self.open_output_action, can_open_output(job)),
            (self.reveal_action, can_reveal(job)),
            (self.show_log_action, can_show_log(job)),
            (self.remove_action, can_remove(job) and not ours),
        )
        for action, enabled in rules:
            action.setEnabled(bool(enabled) and not self._closed)

    def _with_selected(self, act: Callable[[JobRecord], None]) -> None:
        job = self.selected_job()
        if job is None:
            return
        try:
            act(job)
        except VsrError as exc:
            self._set_status(exc.user_message())
        except RuntimeError as exc:  # the runner was shut down: the app is closing
            self._set_status(str(exc))
        self.model.refresh()
        self._update_actions()

    def _cancel(self) -> None:
        self._with_selected(self.runner.cancel)

    def _resume(self) -> None:
        self._with_selected(lambda job: self._queued_note(job, self.runner.resume(job)))

    def _retry(self) -> None:
        self._with_selected(
            lambda job: self._queued_note(job, self.runner.resume(job, restart=True))
        )

    def _queued_note(self, job: JobRecord, _key: str) -> None:
        if job.id in self.runner.queued_job_ids:
            self._set_status(f"“{job.name}” waits for the job running now; it starts next.")

    def _download(self) -> None:
        def act(job: JobRecord) -> None:
            if can_download(job, self.backend_or_none(job)):
                self.runner.fetch(job)
                self._set_status(f"Downloading “{job.name}” to {job.output}…")

        self._with_selected(act)

    def _open_output(self) -> None:
        self._with_selected(lambda job: self._opener(Path(job.output)))

    def _reveal(self) -> None:
        self._with_selected(lambda job: self._opener(Path(job.output).parent))

    def _show_log(self) -> None:
        job = self.selected_job()
        if job is None:
            return
        if self.log_dialog is not None:
            self.log_dialog.close()
        dialog = LogDialog(job.name, Path(job.log_path), self._opener, self)
        dialog.finished.connect(dialog.deleteLater)
        dialog.finished.connect(lambda _r: self._log_closed(dialog))
        self.log_dialog = dialog
        dialog.show()

    def _log_closed(self, dialog: LogDialog) -> None:
        if self.log_dialog is dialog:
            self.log_dialog = None

    def _remove(self) -> None:
        """Remove at once when nothing is lost, else after a confirmation (non-modal) that
        says what the job's backend would delete."""
        job = self.selected_job()
        if job is None:
            return
        backend = self.backend_or_none(job)
        if backend is None:
            lost = (
                f"This version of the app does not know the backend “{job.backend}”: only "
                "the row is removed; the job's work files are left where they are."
            )
        else:
            try:
                lost = backend.work_lost_on_remove(job)
            except VsrError as exc:
                lost = f"What it would delete is unknown: {exc.user_message()}"
        if not lost:
            self._remove_job(job)
            return
        box = QMessageBox(
            QMessageBox.Icon.Warning,
            "Remove the job?",
            f"Remove “{job.name}” from the list?",
            parent=self,
        )
        box.setObjectName("removeConfirm")
        box.setInformativeText(lost)
        confirm = box.addButton("Remove", QMessageBox.ButtonRole.DestructiveRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        box.finished.connect(lambda _result: self._remove_answered(box, confirm, job.id))
        self.remove_box = box
        box.open()

    def _remove_answered(self, box: QMessageBox, confirm: Any, job_id: str) -> None:
        self.remove_box = None
        box.deleteLater()
        job = self.model.job(job_id)  # as it is now: it may have been resumed meanwhile
        if box.clickedButton() is not confirm or job is None:
            return
        if not can_remove(job) or self.runner.owns(job.id):
            self._set_status(f"“{job.name}” is running again: cancel it before removing it.")
            return
        self._remove_job(job)

    def _remove_job(self, job: JobRecord) -> None:
        try:
            if self.backend_or_none(job) is None:
                self.model.remove_job(job.id)
                self._set_status(f"Removed “{job.name}” from the list.")
            else:
                self._set_status(f"Removing “{job.name}”…")
                self.runner.remove(job)  # the backend says when it is done
        except VsrError as exc:
            self._set_status(exc.user_message())
        self.model.refresh()
        self._update_actions()

    # -- slots --------------------------------------------------------------------------

    @Slot(QPoint)
    def _show_context_menu(self, pos: QPoint) -> None:
        index = self.view.indexAt(pos)
        if not index.isValid():
            return
        self.view.selectRow(index.row())
        menu = QMenu(self)
        for action in self.toolbar.actions():
            if action.isSeparator():
                menu.addSeparator()
            elif action.isEnabled():
                menu.addAction(action)
        menu.exec(self.view.viewport().mapToGlobal(pos))

    @Slot(QModelIndex)
    def _on_double_clicked(self, index: QModelIndex) -> None:
        if self.open_output_action.isEnabled():
            self._open_output()

    @Slot(QItemSelection, QItemSelection)
    def _on_selection_changed(self, selected: QItemSelection, deselected: QItemSelection) -> None:
        self._update_actions()
        job = self.selected_job()
        if job is not None:  # the message says why it failed; else where it goes
            detail = job.message or f"{job.source} → {job.output}"
            self._set_status(f"“{job.name}”: {detail}")

    @Slot()
    def _on_rows_changed(self) -> None:
        self._update_actions()

    @Slot(object)
    def _on_progress(self, progress: Progress) -> None:
        self.model.apply_progress(progress)

    @Slot(str)
    def _on_job_event(self, job_id: str) -> None:
        self.model.refresh()
        self._update_actions()

    @Slot(str)
    def refresh_job(self, job_id: str) -> None:
        """Someone changed the job's row (a controller, a call): redraw and poll now."""
        self._on_job_changed(job_id)

    @Slot(str)
    def _on_job_changed(self, job_id: str) -> None:
        """A call about the job started or ended: redraw now and let the poller look at
        once (after a submit the remote job moves; the poller may be deep in its backoff)."""
        self._on_job_event(job_id)
        self.poller.poll_now()

    @Slot(str)
    def _on_finished(self, job_id: str) -> None:
        self._on_job_event(job_id)
        job = self.model.job(job_id)
        if job is not None:
            self._set_status(f"“{job.name}” finished: {job.output}")
        self.jobFinished.emit(job_id)

    @Slot(str, str)
    def _on_failed(self, job_id: str, message: str) -> None:
        self._on_job_event(job_id)
        job = self.model.job(job_id)
        self._set_status(f"“{job.name if job else job_id}” failed: {message}")
        self.jobFailed.emit(job_id, message)

    @Slot(str)
    def _on_cancelled(self, job_id: str) -> None:
        self._on_job_event(job_id)
        self.jobCancelled.emit(job_id)

    @Slot(str)
    def _on_remote_changed(self, job_id: str) -> None:
        """The poller saw a remote job move: a finish or failure is announced like a local
        one (the window shows failures; auto-download listens for finishes)."""
        self._on_job_event(job_id)
        job = self.model.job(job_id)
        if job is not None and job.state is JobState.COMPLETED:
            self.jobFinished.emit(job_id)
        elif job is not None and job.state is JobState.FAILED:
            self.jobFailed.emit(job_id, job.message)

    @Slot(str, str)
    def _on_poll_failed(self, job_id: str, message: str) -> None:
        what = f"job {job_id}" if job_id else "remote jobs"
        self._set_status(f"cannot reach the backend of {what}: {message}")

    @Slot(str, object)
    def _on_call_failed(self, title: str, error: object) -> None:
        text = (
            error.user_message()
            if isinstance(error, VsrError)
            else f"{type(error).__name__}: {error}"
        )
        self._set_status(f"{title}: {text}")
        self.model.refresh()
        self.actionFailed.emit(title, error)

    def _set_status(self, text: str) -> None:
        self.status_label.setText(text)
