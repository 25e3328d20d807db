"""The "Jobs" dock: every job from the store, with the actions that apply to the selected one.

The panel glues three parts together: the table model (what the store says), the runner
(what this process is running), and the user's actions. Actions are enabled from the
selected row's state alone, so AWS and Slurm rows will get the same buttons for free;
only the runner decides what "cancel" means for the job it owns.
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

from vsr_desktop.backends.local import LocalBackend, Progress, UpscaleRequest, request_from_job
from vsr_desktop.core.errors import VsrError
from vsr_desktop.core.jobs import JobRecord, JobState, JobStore
from vsr_desktop.gui.jobs.job_runner import JobRunner
from vsr_desktop.gui.jobs.jobs_model import Column, JobsTableModel, Roles
from vsr_desktop.gui.jobs.log_dialog import LogDialog
from vsr_desktop.gui.jobs.progress_delegate import ProgressBarDelegate

Opener = Callable[[Path], None]
REFRESH_MS = 500


def open_with_desktop(path: Path) -> None:
    """Open a file or folder with the user's default application."""
    QDesktopServices.openUrl(QUrl.fromLocalFile(str(path)))


# Which action applies to which job: pure functions of the row, so every backend's rows
# behave the same and tests can check the rules without clicking.


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


def can_download(job: JobRecord) -> bool:
    """A remote job finished and its output is still remote: its backend keeps a
    `downloaded` flag in its own settings section (AWS does; local and Slurm write in place)."""
    state = job.settings.get(job.backend)
    return (job.state is JobState.COMPLETED and isinstance(state, dict)
            and state.get("downloaded") is False)


def can_remove(job: JobRecord) -> bool:
    return job.state not in (JobState.QUEUED, JobState.RUNNING)


def work_lost_on_remove(job: JobRecord) -> str:
    """What removing ``job`` would throw away, said for a confirmation; "" when nothing.

    Removing deletes the job's work folder (on the cluster too, for a Slurm job): finished
    chunks of an unfinished job (its resume), an undownloaded cluster output, or the record
    of where a cloud job's undownloaded output is.
    """
    cluster = job.settings.get("slurm")
    if (job.state is JobState.COMPLETED and isinstance(cluster, dict) and cluster.get("ssh")
            and not cluster.get("fetched")):
        return ("Its output is still on the cluster and has not been downloaded. Removing the "
                "job deletes its folder there, output included.")
    if can_download(job):
        return ("Its output is still in the cloud and has not been downloaded. Without the "
                "job in the list the app no longer fetches it: download it first.")
    if job.state is not JobState.COMPLETED and job.chunks_done > 0:
        return (f"{job.chunks_done} of {job.chunks_total} chunks are finished. Removing the "
                "job deletes them: it can no longer be resumed, only started again.")
    return ""


class _ElideLeftDelegate(QStyledItemDelegate):
    """Paths lose their start, not their file name, when the column is narrow."""

    def initStyleOption(
        self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> None:
        super().initStyleOption(option, index)
        option.textElideMode = Qt.TextElideMode.ElideLeft


class JobsPanel(QDockWidget):
    """Dock widget listing jobs; `submit` queues a request on its local runner."""

    jobFinished = Signal(str)
    jobFailed = Signal(str, str)  # job id, message for the user
    jobCancelled = Signal(str)

    def __init__(
        self,
        store: JobStore,
        backend_factory: Callable[[], LocalBackend] | None = None,
        opener: Opener | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__("Jobs", parent)
        self.setObjectName("jobsPanel")  # QMainWindow.saveState needs a name
        self._opener: Opener = opener or open_with_desktop
        self.model = JobsTableModel(store, self)
        self.runner = JobRunner(backend_factory or (lambda: LocalBackend(store)), self)
        self._remote: dict[str, Callable[[JobRecord], Any]] = {}
        # Backends whose actions run off the GUI thread (cloud transfers and calls).
        self._remote_actions: dict[str, Any] = {}
        self.poller: Any = None
        #: The open "Remove the job?" confirmation, if any (tests answer it).
        self.remove_box: QMessageBox | None = None
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
            "Download", "Fetch the finished output from the cloud (Ctrl+Shift+D)", self._download
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
            "Show log", "Show the end of the job's log, following it while the job runs",
            self._show_log,
        )
        self.toolbar.addSeparator()
        self.remove_action = self._action(
            "Remove", "Remove the job from the list (keeps the output)", self._remove
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

        # Poll the store while visible: other processes (CLI, remote backends) write to it.
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

    def submit(self, request: UpscaleRequest) -> str:
        """Queue a request; raises VsrError (show it in a dialog) when the input is bad."""
        job_id = self.runner.submit(request)
        self.model.refresh()
        self.select_job(job_id)
        return job_id

    def selected_job(self) -> JobRecord | None:
        rows = self.view.selectionModel().selectedRows()
        return rows[0].data(Roles.JobRole) if rows else None

    def select_job(self, job_id: str) -> None:
        index = self.model.index_of(job_id)
        if index.isValid():
            self.view.selectRow(index.row())

    @Slot()
    def set_remote_backends(self, backends: dict[str, Callable[[JobRecord], Any]]) -> None:
        """Rows of these backends (e.g. "slurm") are cancelled, resumed and retried through
        their own backend, and polled in the background by a RemotePoller."""
        from vsr_desktop.gui.jobs.remote_poller import RemotePoller

        self._remote = dict(backends)
        if self.poller is not None:
            self.poller.shutdown()
        self.poller = RemotePoller(self.model.store, self._remote, self)
        self.poller.jobChanged.connect(self._on_remote_changed)
        self.poller.pollFailed.connect(self._on_remote_failed)

    @Slot(str)
    def _on_remote_changed(self, job_id: str) -> None:
        self.model.refresh()
        job = self.model.job(job_id)
        if job is not None and job.state is JobState.COMPLETED:
            self.jobFinished.emit(job_id)
        elif job is not None and job.state is JobState.FAILED:
            self.jobFailed.emit(job_id, job.message)

    @Slot(str, str)
    def _on_remote_failed(self, job_id: str, message: str) -> None:
        self._set_status(f"cannot reach the backend of job {job_id}: {message}")

    def set_remote_actions(self, actions: dict[str, Any]) -> None:
        """Rows of these backends get cancel, retry, resume and download from an object
        that runs them off the GUI thread: `cancel/retry/download(job)` return at once,
        `busy(job_id)` says a transfer runs, and its `jobChanged(str)` signal redraws."""
        for backend, handler in actions.items():
            self._remote_actions[backend] = handler
            handler.jobChanged.connect(self._on_remote_action)

    @Slot(str)
    def _on_remote_action(self, job_id: str) -> None:
        """A cloud action started or ended: redraw now and let the poller look at once
        (after a submit the execution moves, and the poller may be deep in its backoff)."""
        self._on_job_event(job_id)
        if self.poller is not None:
            self.poller.poll_now()

    def _actions_for(self, job: JobRecord) -> Any | None:
        return self._remote_actions.get(job.backend)

    def _busy(self, job: JobRecord) -> bool:
        actions = self._actions_for(job)
        return actions is not None and bool(actions.busy(job.id))

    def _remote_for(self, job: JobRecord) -> Any | None:
        factory = self._remote.get(job.backend)
        return None if factory is None else factory(job)

    def shutdown(self) -> None:
        """Stop polling, cancel running work and wait for the worker thread (idempotent)."""
        self._timer.stop()
        if self.poller is not None:
            self.poller.shutdown()
        self.runner.shutdown()
        with contextlib.suppress(VsrError):
            self.model.refresh()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.model.refresh()
        if not self.runner.is_closed:
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

    def _update_actions(self) -> None:
        job = self.selected_job()
        busy = job is not None and self._busy(job)
        rules = (
            (self.cancel_action, lambda j: can_cancel(j) or busy),
            (self.resume_action, lambda j: can_resume(j) and not busy),
            (self.retry_action, lambda j: can_retry(j) and not busy),
            (self.download_action,
             lambda j: can_download(j) and self._actions_for(j) is not None and not busy),
            (self.open_output_action, can_open_output),
            (self.reveal_action, can_reveal),
            (self.show_log_action, can_show_log),
            (self.remove_action,
             lambda j: can_remove(j) and not self.runner.owns(j.id) and not busy),
        )
        for action, rule in rules:
            action.setEnabled(job is not None and rule(job))

    def _with_selected(self, act: Callable[[JobRecord], None]) -> None:
        job = self.selected_job()
        if job is None:
            return
        try:
            act(job)
        except VsrError as exc:
            self._set_status(exc.user_message())
        self.model.refresh()
        self._update_actions()

    def _cancel(self) -> None:
        def act(job: JobRecord) -> None:
            actions = self._actions_for(job)
            if actions is not None:  # off the GUI thread: a cloud cancel makes many calls
                actions.cancel(job)
                return
            remote = self._remote_for(job)
            if remote is not None:
                self._remote_call(lambda: remote.cancel(job))
                return
            if not self.runner.cancel(job.id):
                where = f" (pid {job.pid})" if job.pid else ""
                self._set_status(f"“{job.name}” runs in another process{where}; stop it there.")

        self._with_selected(act)

    def _resume(self) -> None:
        def act(job: JobRecord) -> None:
            actions = self._actions_for(job)
            if actions is not None:  # finished chunks are kept: a retry is the resume
                actions.retry(job)
                return
            remote = self._remote_for(job)
            if remote is not None:
                self._remote_call(lambda: remote.submit(request_from_job(job), job=job))
                return
            self.runner.resume(job.id)

        self._with_selected(act)

    def _retry(self) -> None:
        def act(job: JobRecord) -> None:
            actions = self._actions_for(job)
            if actions is not None:  # may upload (a paused upload resumes): off the thread
                actions.retry(job)
                return
            remote = self._remote_for(job)
            if remote is not None:  # finished chunks are reused: resubmit is the retry
                self._remote_call(lambda: remote.submit(request_from_job(job), job=job))
                return
            self.runner.retry(job.id)

        self._with_selected(act)

    def _download(self) -> None:
        def act(job: JobRecord) -> None:
            actions = self._actions_for(job)
            if actions is not None and can_download(job):
                actions.download(job)
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
        """Remove at once when nothing is lost, else after a confirmation (non-modal)."""
        job = self.selected_job()
        if job is None:
            return
        lost = work_lost_on_remove(job)
        if not lost:
            self._remove_job(job)
            return
        box = QMessageBox(QMessageBox.Icon.Warning, "Remove the job?",
                          f"Remove “{job.name}” from the list?", parent=self)
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
            self.model.remove_job(job.id)
            _remove_work_files(job)
            status = f"Removed “{job.name}” from the list; its output was kept."
            remote = self._remote_for(job)
            if remote is not None and hasattr(remote, "remove_work_folder"):
                try:  # a cluster job's folder: source copy, scripts, chunks, logs
                    remote.remove_work_folder(job)
                    status = (f"Removed “{job.name}” from the list and deleted its folder "
                              f"{job.work_dir} on the cluster; its output was kept.")
                except VsrError as exc:
                    status = (f"Removed “{job.name}” from the list, but its folder "
                              f"{job.work_dir} on the cluster was not deleted: "
                              f"{exc.user_message()}")
            self._set_status(status)
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

    def _remote_call(self, call: Callable[[], Any]) -> None:
        try:
            call()
        except VsrError as exc:
            self._set_status(exc.user_message())
        self.model.refresh()
        if self.poller is not None:
            self.poller.poll_now()

    def _set_status(self, text: str) -> None:
        self.status_label.setText(text)


def _remove_work_files(job: JobRecord) -> None:
    """Delete the job's own temporary files (chunks, plan, log), never anything else.

    The folder comes from the database, so only names the backend writes are removed
    and the folder itself only when that leaves it empty.
    """
    if not job.work_dir:
        return
    work_dir = Path(job.work_dir)
    if not work_dir.is_dir():
        return
    for path in [*work_dir.glob("chunk_*"), work_dir / "plan.json", work_dir / "job.log"]:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        work_dir.rmdir()
