"""The main window: source queue, before/after preview, settings, and the jobs dock.

Torch, PyAV and the model are never imported on the GUI thread at start-up: the preview's
worker loads them on first render, so the window appears at once.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QByteArray, Qt, QThread, QTimer, Signal, Slot
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import (
    QDialog,
    QFileDialog,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from vsr_desktop.core.errors import VsrError
from vsr_desktop.core.jobs import JobStore
from vsr_desktop.core.settings import AppSettings, SettingsFile
from vsr_desktop.core.upscaler import FrameUpscaler
from vsr_desktop.gui.cloud.context import CloudContext, with_cloud_fields
from vsr_desktop.gui.cloud.job_actions import CloudJobs, attach_panel
from vsr_desktop.gui.cloud.preview_endpoint_controller import PreviewEndpointController
from vsr_desktop.gui.errors import show_error
from vsr_desktop.gui.jobs.jobs_panel import JobsPanel
from vsr_desktop.gui.preview.preview_pane import PreviewPane
from vsr_desktop.gui.settings_panel import SettingsPanel

VIDEO_FILTER = "Videos (*.mp4 *.mkv *.mov *.webm *.avi *.m4v *.mpg *.mpeg *.ts *.wmv *.flv)"
PATH_ROLE = Qt.ItemDataRole.UserRole
VIDEO_SUFFIXES = {".mp4", ".mkv", ".mov", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".ts",
                  ".wmv", ".flv", ".m2ts", ".3gp"}


def request_for(settings: AppSettings, source: Path):  # type: ignore[no-untyped-def]
    """The upscale request for one source under the current settings."""
    from vsr_desktop.backends.local import UpscaleRequest
    from vsr_desktop.core.media.encode import EncodeSettings

    denoise = settings.denoise_strength if _has_denoise(settings.model) else None
    return UpscaleRequest(
        source=source, output=settings.output_for(source), model=settings.model,
        outscale=settings.outscale, denoise_strength=denoise,
        encode=EncodeSettings(codec=settings.codec, crf=settings.crf),
        device=settings.device, precision=settings.precision, tile=settings.tile,
        chunk_seconds=settings.chunk_seconds,
    )


def engine_factory_for(settings: AppSettings) -> Callable[[], FrameUpscaler]:
    """Builds the engine later, in the preview's worker thread (torch loads there)."""

    def build() -> FrameUpscaler:
        from vsr_desktop.backends.local import build_engine

        request = request_for(settings, Path("preview"))
        return build_engine(request)

    return build


def _has_denoise(model: str) -> bool:
    from vsr_desktop.core.models.registry import MODEL_REGISTRY

    spec = MODEL_REGISTRY.get(model)
    return spec is not None and spec.denoise_partner is not None


class _DeviceProbe(QThread):
    """Finds the compute device off the GUI thread (importing torch takes seconds)."""

    found = Signal(str)

    def run(self) -> None:
        try:
            from vsr_desktop.core.device import describe_device, select_device

            self.found.emit(describe_device(select_device("auto")))
        except Exception as exc:  # shown to the user, never fatal
            self.found.emit(f"unknown ({exc})")


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

        self.jobs_panel = JobsPanel(self.store, opener=opener, parent=self)
        self.jobs_panel.setObjectName("jobsDock")
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.jobs_panel)
        self.jobs_panel.jobFailed.connect(self._job_failed)
        # Cloud rows: polled like Slurm's; cancel/retry/download run off the GUI thread.
        self.cloud = CloudContext(lambda: self.app_settings, self.store)
        self.cloud_jobs = CloudJobs(self.cloud, dialog_parent=self, parent=self)
        self.cloud_jobs.message.connect(self.statusBar().showMessage)
        self.jobs_panel.set_remote_backends({"slurm": self._slurm_backend_for,
                                             "aws": self.cloud.poll_target_for})
        attach_panel(self.cloud_jobs, self.jobs_panel)
        # Started from the event loop, so the window is up before any transfer begins.
        QTimer.singleShot(0, self.cloud_jobs.download_pending)
        self.cloud_dialog: QDialog | None = None
        # Cloud → Preview in the cloud: a SageMaker endpoint, deleted when idle and on exit.
        self.preview_cloud = PreviewEndpointController(self.cloud, parent=self)
        self.preview_cloud.message.connect(self.statusBar().showMessage)
        self.preview_cloud.upscalerChanged.connect(self._apply_preview_settings)
        self.statusBar().addPermanentWidget(self.preview_cloud.label)
        self.jobs_panel.set_remote_actions({"aws-preview": self.preview_cloud})
        self.submit_dialog: QDialog | None = None
        self.resizeDocks([self.jobs_panel], [190], Qt.Orientation.Vertical)

        self._build_menus()
        self.statusBar().showMessage("Open a video (Ctrl+O) or drop one here")
        self._apply_preview_settings()
        self._restore_geometry()
        self._device_probe: _DeviceProbe | None = None
        if probe_device:
            self._device_probe = _DeviceProbe(self)
            self._device_probe.found.connect(self.settings_panel.set_device_description)
            QTimer.singleShot(0, self._device_probe.start)

    @classmethod
    def in_scratch_folder(cls, folder: Path) -> MainWindow:
        """A window whose settings, jobs and outputs all live in `folder` (benchmarks,
        screenshots, smoke tests): the user's own settings and jobs are never touched."""
        settings = SettingsFile(folder / "settings.json")
        settings.save(AppSettings(output_folder=str(folder)))
        return cls(settings_file=settings, store=JobStore(folder / "jobs.sqlite3"),
                   opener=lambda path: None)

    # ------------------------------------------------------------------ menus
    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        self._add_action(file_menu, "&Open…", QKeySequence.StandardKey.Open, self.open_dialog)
        self.recent_menu = file_menu.addMenu("Open &Recent")
        self._fill_recent_menu()
        self._add_action(file_menu, "&Remove source", QKeySequence.StandardKey.Delete,
                         self.remove_current_source)
        file_menu.addSeparator()
        self._add_action(file_menu, "&Quit", QKeySequence.StandardKey.Quit, self.close)
        view_menu = self.menuBar().addMenu("&View")
        for i, (label, mode) in enumerate((("&Split wipe", "split"),
                                           ("Side &by side", "side-by-side"),
                                           ("&Toggle (hold Space)", "toggle")), start=1):
            self._add_action(view_menu, label, QKeySequence(f"Ctrl+{i}"),
                             lambda checked=False, m=mode: self.set_preview_mode(m))
        view_menu.addAction(self.jobs_panel.toggleViewAction())
        jobs_menu = self.menuBar().addMenu("&Jobs")
        self._add_action(jobs_menu, "&Upscale all sources", QKeySequence("Ctrl+Return"),
                         self.start_jobs)
        self._add_action(jobs_menu, "Send all to &Slurm", QKeySequence("Ctrl+Shift+Return"),
                         self.send_to_slurm)
        self._add_action(jobs_menu, "Send all to &AWS…", QKeySequence("Ctrl+Alt+Return"),
                         self.send_to_aws)
        cloud_menu = self.menuBar().addMenu("&Cloud")
        self._add_action(cloud_menu, "&AWS account and stack…", QKeySequence("Ctrl+Shift+K"),
                         self.open_cloud_dialog)
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
                show_error(self, "Cannot open", VsrError(f"{path} does not exist",
                                                          "check the path"))
                continue
            existing = [self.sources.item(i) for i in range(self.sources.count())
                        if self.sources.item(i).data(PATH_ROLE) == str(path)]
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
            show_error(self, "Not a video", VsrError("none of the dropped files is a video",
                                                     "drop .mp4, .mkv, .mov… files"))
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
                self.preview_cloud.engine_factory(self.app_settings))
        elif self.settings_panel.model_is_ready():
            self.preview.set_engine_factory(self.settings_panel.preview_key(),
                                            engine_factory_for(self.app_settings))

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
            show_error(self, "Nothing to upscale",
                       VsrError("the source list is empty", "open a video first (Ctrl+O)"))
            return
        if not self.settings_panel.model_is_ready():
            show_error(self, "Model missing",
                       VsrError(f"{self.app_settings.model} is not downloaded",
                                "press Download beside the model first"))
            return
        started = 0
        for path in paths:
            try:
                self.jobs_panel.submit(request_for(self.app_settings, path))
                started += 1
            except VsrError as exc:
                show_error(self, f"Cannot upscale {path.name}", exc)
        if started:
            self.jobs_panel.show()
            self.statusBar().showMessage(f"{started} job(s) queued")

    def slurm_backend(self, workdir_root: Path | None = None):  # type: ignore[no-untyped-def]
        """A Slurm backend for the cluster in the settings (imports no Qt, runs sbatch)."""
        import shlex
        from dataclasses import replace
        from pathlib import PurePosixPath

        from vsr_desktop.backends.slurm import SlurmBackend, SlurmTarget
        from vsr_desktop.backends.slurm_remote import SshLogin

        s = self.app_settings
        target = SlurmTarget(
            workdir_root=workdir_root or Path(s.slurm_workdir),
            partition=s.slurm_partition or None, gpus_per_task=s.slurm_gpus_per_task,
            max_parallel=s.slurm_max_parallel,
        )
        if s.slurm_ssh_host:  # the cluster is reached over SSH; its paths are its own
            target = replace(target, ssh=SshLogin(host=s.slurm_ssh_host),
                             workdir_root=PurePosixPath(workdir_root or s.slurm_workdir),
                             vsr_command=tuple(shlex.split(s.slurm_remote_vsr or "vsr")))
        return SlurmBackend(self.store, target)

    def _slurm_backend_for(self, job):  # type: ignore[no-untyped-def]
        return self.slurm_backend(Path(job.work_dir).parent)

    @Slot()
    def send_to_slurm(self) -> None:
        """Submit every source to the Slurm cluster set in the settings."""
        if not self.app_settings.slurm_workdir:
            show_error(self, "Slurm is not set up",
                       VsrError("no shared work folder is set for the Slurm cluster",
                                "fill in Settings → Slurm cluster → Work folder"))
            return
        backend = self.slurm_backend()
        sent = 0
        for path in self.source_paths():
            try:
                backend.submit(request_for(self.app_settings, path))
                sent += 1
            except VsrError as exc:
                show_error(self, f"Cannot send {path.name} to Slurm", exc)
        if sent:
            self.jobs_panel.model.refresh()
            if self.jobs_panel.poller is not None:
                self.jobs_panel.poller.poll_now()
            self.statusBar().showMessage(f"{sent} job(s) sent to Slurm")

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
            show_error(self, "Nothing to send",
                       VsrError("the source list is empty", "open a video first (Ctrl+O)"))
            return
        if self.submit_dialog is not None and self.submit_dialog.isVisible():
            self.submit_dialog.raise_()
            return
        dialog = SubmitDialog([request_for(self.app_settings, p) for p in paths],
                              self.cloud_jobs, self)
        dialog.accepted.connect(self.jobs_panel.show)
        self.submit_dialog = dialog
        dialog.open()

    @Slot(str, str)
    def _job_failed(self, job_id: str, message: str) -> None:
        self.statusBar().showMessage(f"Job {job_id} failed: {message}")
        show_error(self, "The job failed", message)

    # ------------------------------------------------------------------ closing
    def closeEvent(self, event: QCloseEvent) -> None:
        self.app_settings.window_geometry = base64.b64encode(
            bytes(self.saveGeometry().data())).decode()
        self.app_settings.window_state = base64.b64encode(bytes(self.saveState().data())).decode()
        self._save_settings()
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self) -> None:
        """Stop every thread the window owns (jobs are left resumable)."""
        self.preview.shutdown()
        for dialog in (self.cloud_dialog, self.submit_dialog):
            if dialog is not None:
                dialog.done(0)  # joins its worker threads
        self.cloud_jobs.shutdown()  # pauses uploads/downloads (Retry/Download resume them)
        self.preview_cloud.shutdown()  # deletes the preview endpoint: it bills by the hour
        self.jobs_panel.shutdown()
        self.settings_panel.shutdown()
        if self._device_probe is not None:
            self._device_probe.wait()


