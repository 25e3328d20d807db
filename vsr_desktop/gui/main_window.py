"""The main window: source queue, before/after preview, settings, and the jobs dock.

Torch, PyAV and the model are never imported on the GUI thread at start-up: the preview's
worker loads them on first render, so the window appears at once.

One TaskRunner (gui/tasks.py) carries the window's background work: local jobs, backend
calls, transfers, polls and the device probe. Every job goes to its backend through one
BackendRegistry: the default one, with the app's own "local" (the one backend the runner
runs jobs on), "aws" (the signed-in session) and "aws-preview" (the endpoint's row).
Quitting while jobs run asks whether to keep them for later or cancel them; the next start
offers to resume the ones kept.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, Qt, QTimer, Slot
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import (
    QDialog,
    QFileDialog,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMessageBox,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from vsr_desktop.backends.registry import default_registry
from vsr_desktop.core.errors import VsrError
from vsr_desktop.core.job_spec import EngineSettings, JobSpec
from vsr_desktop.core.jobs import JobStore
from vsr_desktop.core.media.encode import EncodeSettings
from vsr_desktop.core.settings import AppSettings, SettingsFile
from vsr_desktop.core.upscaler import FrameUpscaler
from vsr_desktop.gui.cloud.context import CloudContext, with_cloud_fields
from vsr_desktop.gui.cloud.job_actions import CloudJobs
from vsr_desktop.gui.cloud.preview_endpoint_controller import (
    ENDPOINT_BACKEND,
    PreviewEndpointController,
)
from vsr_desktop.gui.errors import show_error
from vsr_desktop.gui.jobs.jobs_panel import JobsPanel
from vsr_desktop.gui.preview.preview_pane import PreviewPane
from vsr_desktop.gui.settings_panel import SettingsPanel
from vsr_desktop.gui.tasks import DONE, Task, TaskContext, TaskResult, TaskRunner

VIDEO_FILTER = "Videos (*.mp4 *.mkv *.mov *.webm *.avi *.m4v *.mpg *.mpeg *.ts *.wmv *.flv)"
PATH_ROLE = Qt.ItemDataRole.UserRole
#: How long quitting waits (without blocking) for jobs to stop before it waits blocking.
STOP_WAIT_MS = 30_000
VIDEO_SUFFIXES = {
    ".mp4",
    ".mkv",
    ".mov",
    ".webm",
    ".avi",
    ".m4v",
    ".mpg",
    ".mpeg",
    ".ts",
    ".wmv",
    ".flv",
    ".m2ts",
    ".3gp",
}


def engine_settings_for(settings: AppSettings) -> EngineSettings:
    """How the engine runs under the current settings (jobs and the preview alike)."""
    denoise = settings.denoise_strength if _has_denoise(settings.model) else None
    return EngineSettings(
        model=settings.model,
        outscale=settings.outscale,
        denoise_strength=denoise,
        device=settings.device,
        precision=settings.precision,
        tile=settings.tile,
    )


def encode_settings_for(settings: AppSettings) -> EncodeSettings:
    """The output choices of the settings panel (codec, quality, preset, target size)."""
    from vsr_desktop.core.media.geometry import parse_size

    width, height = parse_size(settings.target_size) if settings.target_size else (None, None)
    return EncodeSettings(
        codec=settings.codec,
        crf=settings.crf,
        preset=settings.preset,
        width=width,
        height=height,
        fit=settings.fit if width is not None else "fit",
    )


def spec_for(settings: AppSettings, source: Path, backend: str = "local") -> JobSpec:
    """The job spec for one source under the current settings, for `backend`."""
    return JobSpec(
        source=source,
        output=settings.output_for(source),
        engine=engine_settings_for(settings),
        encode=encode_settings_for(settings),
        chunk_seconds=settings.chunk_seconds,
        deinterlace=settings.deinterlace,
        double_rate=settings.double_rate,
        backend=backend,
    )


def engine_factory_for(settings: AppSettings) -> Callable[[], FrameUpscaler]:
    """Builds the engine later, in the preview's worker thread (torch loads there)."""
    engine = engine_settings_for(settings)

    def build() -> FrameUpscaler:
        from vsr_desktop.worker.job_setup import build_engine

        return build_engine(engine)

    return build


def _has_denoise(model: str) -> bool:
    from vsr_desktop.core.models.registry import MODEL_REGISTRY

    spec = MODEL_REGISTRY.get(model)
    return spec is not None and spec.denoise_partner is not None


def _probe_device(_ctx: TaskContext) -> object:
    """Find the compute device (a task: importing torch takes seconds)."""
    from vsr_desktop.core.device import describe_device, select_device

    return describe_device(select_device("auto"))


class MainWindow(QMainWindow):
    """Sources on the left, preview in the middle, settings on the right, jobs below."""

    def __init__(
        self,
        settings_file: SettingsFile | None = None,
        store: JobStore | None = None,
        opener: Callable[[Path], None] | None = None,
        probe_device: bool = True,
    ) -> None:
        super().__init__()
        self.setWindowTitle("vsr_desktop — video super-resolution")
        self.setObjectName("mainWindow")
        self.setAcceptDrops(True)
        self.settings_file = settings_file or SettingsFile()
        self.app_settings = self.settings_file.load()
        self.store = store or JobStore()

        self.sources = QListWidget()
        self.sources.setObjectName("sourceList")
        self.sources.currentItemChanged.connect(self._source_selected)
        self.start_button = QPushButton("Upscale all")
        self.start_button.setObjectName("startButton")
        self.start_button.setToolTip("Queue every source as a job (Ctrl+Return)")
        self.start_button.clicked.connect(self.start_jobs)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(4, 4, 4, 4)
        left_layout.addWidget(QLabel("Sources"))
        left_layout.addWidget(self.sources, 1)
        left_layout.addWidget(self.start_button)

        self.preview = PreviewPane()
        self.preview.sourceFailed.connect(self._preview_failed)
        self.preview.modeChanged.connect(self._remember_mode)
        self.settings_panel = SettingsPanel(self.app_settings)
        self.settings_panel.settingsChanged.connect(self._settings_changed)

        splitter = QSplitter()
        splitter.addWidget(left)
        splitter.addWidget(self.preview)
        splitter.addWidget(self.settings_panel)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([200, 800, 280])
        self.setCentralWidget(splitter)

        self.tasks = TaskRunner(self)  # the window's one runner for background work
        self.cloud = CloudContext(lambda: self.app_settings, self.store)
        self.registry = default_registry(self.store)
        self.registry.register("aws", self.cloud.registry_factory())
        self.jobs_panel = JobsPanel(
            self.store, opener=opener, parent=self, registry=self.registry, tasks=self.tasks
        )
        self.jobs_panel.setObjectName("jobsDock")
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.jobs_panel)
        self.jobs_panel.jobFailed.connect(self._job_failed)
        self.jobs_panel.actionFailed.connect(self._action_failed)
        self.jobs_panel.runner.message.connect(self.statusBar().showMessage)
        # Cloud: the send-to-AWS dialog's uploads and auto-download, through the panel's runner.
        self.cloud_jobs = CloudJobs(self.cloud, self.jobs_panel.runner, parent=self)
        self.jobs_panel.jobFinished.connect(self.cloud_jobs.on_job_finished)
        # Started from the event loop, so the window is up before any transfer begins.
        QTimer.singleShot(0, self, self.cloud_jobs.download_pending)
        self.cloud_dialog: QDialog | None = None
        # Cloud → Preview in the cloud: a SageMaker endpoint, deleted when idle and on exit.
        self.preview_cloud = PreviewEndpointController(self.cloud, parent=self)
        self.preview_cloud.message.connect(self.statusBar().showMessage)
        self.preview_cloud.upscalerChanged.connect(self._apply_preview_settings)
        self.preview_cloud.jobChanged.connect(self.jobs_panel.refresh_job)
        endpoint_row = self.preview_cloud.row_backend()
        self.registry.register(ENDPOINT_BACKEND, lambda _store, _job: endpoint_row)
        self.statusBar().addPermanentWidget(self.preview_cloud.label)
        self.submit_dialog: QDialog | None = None
        #: The open "Quit while jobs run?" question, if any (tests answer it).
        self.quit_box: QMessageBox | None = None
        self._quitting = False  # answered: stopping the jobs, then closing
        self._shut_down = False
        self.resizeDocks([self.jobs_panel], [190], Qt.Orientation.Vertical)

        self._build_menus()
        self.statusBar().showMessage("Open a video (Ctrl+O) or drop one here")
        self._apply_preview_settings()
        self._restore_geometry()
        if probe_device:
            QTimer.singleShot(0, self, self._start_device_probe)
        # Jobs a quit (or a crash) stopped: offer to go on with them, without blocking.
        QTimer.singleShot(0, self, self.jobs_panel.offer_resume)

    def _start_device_probe(self) -> None:
        if not self.tasks.is_closed:
            self.tasks.start(
                Task(
                    "device-probe",
                    "probe",
                    _probe_device,
                    label="find the compute device",
                    on_done=self._device_found,
                )
            )

    def _device_found(self, result: TaskResult) -> None:
        if self._shut_down:
            return
        text = str(result.value) if result.outcome == DONE else f"unknown ({result.value})"
        self.settings_panel.set_device_description(text)

    @classmethod
    def in_scratch_folder(cls, folder: Path) -> MainWindow:
        """A window whose settings, jobs and outputs all live in `folder` (benchmarks,
        screenshots, smoke tests): the user's own settings and jobs are never touched."""
        settings = SettingsFile(folder / "settings.json")
        settings.save(AppSettings(output_folder=str(folder)))
        return cls(
            settings_file=settings,
            store=JobStore(folder / "jobs.sqlite3"),
            opener=lambda path: None,
        )

    # ------------------------------------------------------------------ menus
    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        self._add_action(file_menu, "&Open…", QKeySequence.StandardKey.Open, self.open_dialog)
        self.recent_menu = file_menu.addMenu("Open &Recent")
        self._fill_recent_menu()
        self._add_action(
            file_menu, "&Remove source", QKeySequence.StandardKey.Delete, self.remove_current_source
        )
        file_menu.addSeparator()
        self._add_action(file_menu, "&Quit", QKeySequence.StandardKey.Quit, self.close)
        view_menu = self.menuBar().addMenu("&View")
        for i, (label, mode) in enumerate(
            (
                ("&Split wipe", "split"),
                ("Side &by side", "side-by-side"),
                ("&Toggle (hold Space)", "toggle"),
            ),
            start=1,
        ):
            self._add_action(
                view_menu,
                label,
                QKeySequence(f"Ctrl+{i}"),
                lambda checked=False, m=mode: self.set_preview_mode(m),
            )
        view_menu.addAction(self.jobs_panel.toggleViewAction())
        jobs_menu = self.menuBar().addMenu("&Jobs")
        self._add_action(
            jobs_menu, "&Upscale all sources", QKeySequence("Ctrl+Return"), self.start_jobs
        )
        self._add_action(
            jobs_menu, "Send all to &Slurm", QKeySequence("Ctrl+Shift+Return"), self.send_to_slurm
        )
        self._add_action(
            jobs_menu, "Send all to &AWS…", QKeySequence("Ctrl+Alt+Return"), self.send_to_aws
        )
        cloud_menu = self.menuBar().addMenu("&Cloud")
        self._add_action(
            cloud_menu,
            "&AWS account and stack…",
            QKeySequence("Ctrl+Shift+K"),
            self.open_cloud_dialog,
        )
        cloud_menu.addAction(self.preview_cloud.action)

    def _add_action(self, menu, text, shortcut, slot) -> QAction:  # type: ignore[no-untyped-def]
        action = QAction(text, self)
        action.setShortcut(shortcut)
        action.triggered.connect(slot)
        menu.addAction(action)
        self.addAction(action)
        return action

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        for path in self.app_settings.recent_files:
            action = self.recent_menu.addAction(path)
            action.triggered.connect(lambda checked=False, p=path: self.open_files([Path(p)]))
        self.recent_menu.setEnabled(bool(self.app_settings.recent_files))

    # ------------------------------------------------------------------ sources
    @Slot()
    def open_dialog(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Open videos", "", VIDEO_FILTER)
        self.open_files([Path(p) for p in paths])

    def open_files(self, paths: list[Path]) -> None:
        """Add files to the queue and preview the last one."""
        added = None
        for path in paths:
            if not path.is_file():
                show_error(
                    self, "Cannot open", VsrError(f"{path} does not exist", "check the path")
                )
                continue
            existing = [
                self.sources.item(i)
                for i in range(self.sources.count())
                if self.sources.item(i).data(PATH_ROLE) == str(path)
            ]
            item = existing[0] if existing else QListWidgetItem(path.name)
            if not existing:
                item.setData(PATH_ROLE, str(path))
                item.setToolTip(str(path))
                self.sources.addItem(item)
            added = item
            self.app_settings.remember(path)
        if added is not None:
            self.sources.setCurrentItem(added)
            self._fill_recent_menu()
            self._save_settings()

    def source_paths(self) -> list[Path]:
        return [Path(self.sources.item(i).data(PATH_ROLE)) for i in range(self.sources.count())]

    @Slot()
    def remove_current_source(self) -> None:
        row = self.sources.currentRow()
        if row >= 0:
            self.sources.takeItem(row)

    @Slot(object, object)
    def _source_selected(self, current: QListWidgetItem | None, _previous: object) -> None:
        if current is not None:
            path = current.data(PATH_ROLE)
            self.preview.set_source(Path(path))
            self.statusBar().showMessage(path)

    @Slot(str)
    def _preview_failed(self, message: str) -> None:
        self.statusBar().showMessage(message)
        show_error(self, "Cannot preview this file", message)

    # ------------------------------------------------------------------ drag and drop
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = [Path(url.toLocalFile()) for url in event.mimeData().urls() if url.isLocalFile()]
        videos = [p for p in paths if p.suffix.lower() in VIDEO_SUFFIXES]
        if paths and not videos:
            show_error(
                self,
                "Not a video",
                VsrError("none of the dropped files is a video", "drop .mp4, .mkv, .mov… files"),
            )
        self.open_files(videos)
        event.acceptProposedAction()

    # ------------------------------------------------------------------ settings
    @Slot(object)
    def _settings_changed(self, settings: AppSettings) -> None:
        settings.recent_files = self.app_settings.recent_files
        settings = with_cloud_fields(settings, self.app_settings)  # the cloud dialog owns them
        self.app_settings = settings
        self._apply_preview_settings()
        self._save_settings()

    def _apply_preview_settings(self) -> None:
        self.preview.set_mode(self.app_settings.preview_mode)
        if self.preview_cloud.ready:  # the model runs on the endpoint: nothing to download
            self.preview.set_engine_factory(
                self.preview_cloud.settings_key(self.settings_panel.preview_key()),
                self.preview_cloud.engine_factory(self.app_settings),
            )
        elif self.settings_panel.model_is_ready():
            self.preview.set_engine_factory(
                self.settings_panel.preview_key(), engine_factory_for(self.app_settings)
            )

    @Slot(str)
    def _remember_mode(self, mode: str) -> None:
        if mode != self.app_settings.preview_mode:
            self.app_settings.preview_mode = mode
            self._save_settings()

    def set_preview_mode(self, mode: str) -> None:
        self.app_settings.preview_mode = mode
        self.preview.set_mode(mode)
        self._save_settings()

    def _save_settings(self) -> None:
        try:
            self.settings_file.save(self.app_settings)
        except OSError as exc:
            self.statusBar().showMessage(f"Settings not saved: {exc}")

    def _restore_geometry(self) -> None:
        if self.app_settings.window_geometry:
            self.restoreGeometry(QByteArray(base64.b64decode(self.app_settings.window_geometry)))
        else:
            self.resize(1280, 820)
        if self.app_settings.window_state:
            self.restoreState(QByteArray(base64.b64decode(self.app_settings.window_state)))

    # ------------------------------------------------------------------ jobs
    @Slot()
    def start_jobs(self) -> None:
        """Queue every source as a job; bad ones are reported, the rest still start."""
        paths = self.source_paths()
        if not paths:
            show_error(
                self,
                "Nothing to upscale",
                VsrError("the source list is empty", "open a video first (Ctrl+O)"),
            )
            return
        if not self.settings_panel.model_is_ready():
            show_error(
                self,
                "Model missing",
                VsrError(
                    f"{self.app_settings.model} is not downloaded",
                    "press Download beside the model first",
                ),
            )
            return
        started = 0
        for path in paths:
            try:
                self.jobs_panel.submit(spec_for(self.app_settings, path))
                started += 1
            except VsrError as exc:
                show_error(self, f"Cannot upscale {path.name}", exc)
        if started:
            self.jobs_panel.show()
            self.statusBar().showMessage(f"{started} job(s) queued")

    def slurm_backend(self) -> Any:
        """A Slurm backend for the cluster in the settings (InputError when none is set)."""
        from vsr_desktop.backends.slurm import SlurmBackend, SlurmTarget

        return SlurmBackend(self.store, SlurmTarget.from_settings(self.app_settings))

    @Slot()
    def send_to_slurm(self) -> None:
        """Submit every source to the Slurm cluster set in the settings, in the background
        (a submit may copy the source over SSH); a failed one is a FAILED row saying why."""
        try:
            backend = self.slurm_backend()
        except VsrError as exc:
            show_error(self, "Slurm is not set up", exc)
            return
        paths = self.source_paths()
        if not paths:
            show_error(
                self,
                "Nothing to send",
                VsrError("the source list is empty", "open a video first (Ctrl+O)"),
            )
            return
        for path in paths:
            self.jobs_panel.submit(spec_for(self.app_settings, path, backend.name), backend)
        self.jobs_panel.show()
        self.statusBar().showMessage(f"Sending {len(paths)} job(s) to Slurm…")

    @Slot()
    def open_cloud_dialog(self) -> None:
        """Cloud → AWS account and stack…: credentials, identity check, deploy/tear down."""
        from vsr_desktop.gui.cloud.account_dialog import CloudAccountDialog

        if self.cloud_dialog is not None and self.cloud_dialog.isVisible():
            self.cloud_dialog.raise_()
            return
        dialog = CloudAccountDialog(self.app_settings, self)
        dialog.settingsSaved.connect(self._cloud_settings_saved)
        self.cloud_dialog = dialog
        dialog.open()

    @Slot(object)
    def _cloud_settings_saved(self, settings: AppSettings) -> None:
        self.app_settings = with_cloud_fields(self.app_settings, settings)
        self.cloud.forget()
        self._save_settings()
        self.statusBar().showMessage("Cloud settings saved")

    @Slot()
    def send_to_aws(self) -> None:
        """Estimate every source's cloud cost, then (on Submit) upload and start them."""
        from vsr_desktop.gui.cloud.submit_dialog import SubmitDialog

        paths = self.source_paths()
        if not paths:
            show_error(
                self,
                "Nothing to send",
                VsrError("the source list is empty", "open a video first (Ctrl+O)"),
            )
            return
        if self.submit_dialog is not None and self.submit_dialog.isVisible():
            self.submit_dialog.raise_()
            return
        dialog = SubmitDialog(
            [spec_for(self.app_settings, p, "aws") for p in paths], self.cloud_jobs, self
        )
        dialog.accepted.connect(self.jobs_panel.show)
        self.submit_dialog = dialog
        dialog.open()

    @Slot(str, str)
    def _job_failed(self, job_id: str, message: str) -> None:
        self.statusBar().showMessage(f"Job {job_id} failed: {message}")
        show_error(self, "The job failed", message)

    @Slot(str, object)
    def _action_failed(self, title: str, error: object) -> None:
        """A backend call made for the user failed (a submit, a cancel, a download)."""
        if isinstance(error, VsrError):
            show_error(self, title, error)
        else:  # a bug or an unexpected library error: still a dialog, with a next step
            show_error(
                self,
                title,
                VsrError(
                    f"{type(error).__name__}: {error}",
                    "try again; if it keeps failing, report it with the log file",
                ),
            )

    # ------------------------------------------------------------------ closing
    def closeEvent(self, event: QCloseEvent) -> None:
        """Quitting with jobs running here asks first (keep them for later, or cancel
        them); once answered, the window closes when they have stopped."""
        if not self._quitting and not self._shut_down and self.jobs_panel.work_in_progress():
            event.ignore()
            self._ask_before_quitting()
            return
        self.app_settings.window_geometry = base64.b64encode(
            bytes(self.saveGeometry().data())
        ).decode()
        self.app_settings.window_state = base64.b64encode(bytes(self.saveState().data())).decode()
        self._save_settings()
        self.shutdown()
        super().closeEvent(event)

    def _ask_before_quitting(self) -> None:
        if self.quit_box is not None:
            self.quit_box.raise_()
            return
        jobs = self.jobs_panel.work_in_progress()
        elsewhere = self.jobs_panel.running_elsewhere()
        box = QMessageBox(
            QMessageBox.Icon.Question,
            "Quit while jobs run?",
            f"{len(jobs)} job(s) are running or waiting in this app.",
            parent=self,
        )
        box.setObjectName("quitQuestion")
        lines = [f"• {job.name}" for job in jobs[:8]]
        if len(jobs) > 8:
            lines.append(f"… and {len(jobs) - 8} more")
        lines += [
            "",
            "Keep for later stops them where they are; the next start offers to "
            "resume them from their last finished chunk. Cancel jobs cancels them.",
        ]
        if elsewhere:
            lines.append(
                f"{len(elsewhere)} job(s) on a cluster or in the cloud keep running "
                "there either way."
            )
        box.setInformativeText("\n".join(lines))
        keep = box.addButton("Keep for later", QMessageBox.ButtonRole.AcceptRole)
        cancel_jobs = box.addButton("Cancel jobs", QMessageBox.ButtonRole.DestructiveRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(keep)
        box.finished.connect(lambda _result: self._quit_answered(box, keep, cancel_jobs))
        self.quit_box = box
        box.open()

    def _quit_answered(self, box: QMessageBox, keep: Any, cancel_jobs: Any) -> None:
        self.quit_box = None
        box.deleteLater()
        clicked = box.clickedButton()
        if clicked is keep:
            self._stop_jobs_then_close(cancel_jobs=False)
        elif clicked is cancel_jobs:
            self._stop_jobs_then_close(cancel_jobs=True)

    def _stop_jobs_then_close(self, *, cancel_jobs: bool) -> None:
        """Stop the jobs without blocking the window, then close once all stopped."""
        self._quitting = True
        self.statusBar().showMessage(
            "Cancelling jobs…" if cancel_jobs else "Stopping jobs; they resume at the next start…"
        )
        self.jobs_panel.stop_jobs(cancel_jobs=cancel_jobs)
        if not self.tasks.is_busy():
            QTimer.singleShot(0, self, self.close)
            return
        self.tasks.idle.connect(self.close)
        QTimer.singleShot(STOP_WAIT_MS, self, self.close)  # then shutdown() waits for the rest

    def shutdown(self, *, cancel_jobs: bool = False) -> None:
        """Stop every thread the window owns (idempotent). Jobs still running here are
        kept resumable (INTERRUPTED) unless `cancel_jobs`; remote jobs run on."""
        if self._shut_down:
            return
        self._shut_down = True
        self.preview.shutdown()
        for dialog in (self.cloud_dialog, self.submit_dialog):
            if dialog is not None:
                dialog.done(0)  # joins its worker threads
        self.preview_cloud.shutdown()  # deletes the preview endpoint: it bills by the hour
        self.jobs_panel.shutdown(cancel_jobs=cancel_jobs)
        self.settings_panel.shutdown()
        self.tasks.shutdown()  # waits for every task thread (runs stop at their next report)
