"""The main window: source queue, before/after preview, settings, and the jobs dock.

Torch, PyAV and the model are never imported on the GUI thread at start-up: the preview's
worker loads them on first render, so the window appears at once.

One TaskRunner (gui/tasks.py) carries the window's background work: local jobs, backend
calls, transfers, polls and the device probe. Every job goes to its backend through one
BackendRegistry: the default one, with the app's own "local" (the one backend the runner
runs jobs on), "aws" (the signed-in session) and "aws-preview" (the endpoint's row).
Quitting while jobs run asks whether to keep them for later or cancel them; the next start
offers to resume the ones kept.

The parts live beside it: window_sources.py (open, select, remove; bad sources marked
once), window_jobs.py (Upscale all where Run on… says; failures in the error dialog),
window_closing.py (quit while jobs run; shutdown), menus.py (every command an action),
theme.py (light/dark following the system, icons recoloured), run_on_dialog.py (Local /
Slurm / AWS), help_dialogs.py (shortcuts sheet, About), source_queue.py, notice_banner.py
(`show_notice`), error_dialog.py (wrapped errors with Details), jobs/existing_output.py
(Overwrite / Rename / Skip) and job_specs.py (settings → JobSpec; the sample's output goes to
the user's Videos folder). The settings column scrolls and the preview's toolbar shrinks,
so the window fits 1366×768 and 1920×1080 at 200 % scaling.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import QByteArray, Qt, QTimer, Slot
from PySide6.QtGui import QAction, QCloseEvent
from PySide6.QtWidgets import (
    QApplication,
    QDialog,
    QFrame,
    QLabel,
    QMainWindow,
    QMenu,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from vsr_desktop.backends.registry import default_registry
from vsr_desktop.core.jobs import JobStore
from vsr_desktop.core.settings import AppSettings, SettingsFile
from vsr_desktop.core.upscaler import FrameUpscaler
from vsr_desktop.gui import window_closing, window_jobs, window_sources
from vsr_desktop.gui.cloud.context import CloudContext, with_cloud_fields
from vsr_desktop.gui.cloud.job_actions import CloudJobs
from vsr_desktop.gui.cloud.preview_endpoint_controller import (
    ENDPOINT_BACKEND,
    PreviewEndpointController,
)
from vsr_desktop.gui.focus_ring import FocusRing
from vsr_desktop.gui.help_dialogs import PRODUCT_NAME, AboutDialog, ShortcutsDialog
from vsr_desktop.gui.job_specs import (  # noqa: F401 - re-exported (tests, tools)
    encode_settings_for,
    engine_factory_for,
    engine_settings_for,
    spec_for,
)
from vsr_desktop.gui.jobs.existing_output import ExistingOutputs
from vsr_desktop.gui.jobs.jobs_panel import JobsPanel
from vsr_desktop.gui.menus import build_menus
from vsr_desktop.gui.notice_banner import NoticeBanner
from vsr_desktop.gui.preview.preview_pane import PreviewPane
from vsr_desktop.gui.run_on_dialog import TARGET_SHORT, RunOnDialog, with_run_on_fields
from vsr_desktop.gui.settings_panel import SettingsPanel
from vsr_desktop.gui.source_queue import SourceQueue
from vsr_desktop.gui.tasks import DONE, Task, TaskContext, TaskResult, TaskRunner
from vsr_desktop.gui.theme import ThemeController

#: The window's size on first start (clamped to the screen) and the settings column's width.
DEFAULT_SIZE = (1280, 760)
SETTINGS_WIDTH = 330


def _probe_device(_ctx: TaskContext) -> object:
    """Find the compute device (a task: importing torch takes seconds)."""
    from vsr_desktop.core.device import describe_device, select_device

    return describe_device(select_device("auto"))


class MainWindow(QMainWindow):
    """Sources on the left, preview in the middle, settings on the right, jobs below."""

    # Sources, jobs and quitting: functions of window_sources, window_jobs and
    # window_closing, methods here.
    open_dialog = window_sources.open_dialog
    open_files = window_sources.open_files
    source_paths = window_sources.source_paths
    remove_current_source = window_sources.remove_current_source
    _source_selected = window_sources._source_selected
    _preview_failed = window_sources._preview_failed
    _source_opened = window_sources._source_opened
    dragEnterEvent = window_sources.dragEnterEvent
    dropEvent = window_sources.dropEvent
    start_jobs = window_jobs.start_jobs
    _readable_sources = window_jobs._readable_sources
    _then_submit = window_jobs._then_submit
    start_local_jobs = window_jobs.start_local_jobs
    _submit_local = window_jobs._submit_local
    slurm_backend = window_jobs.slurm_backend
    send_to_slurm = window_jobs.send_to_slurm
    open_cloud_dialog = window_jobs.open_cloud_dialog
    _cloud_settings_saved = window_jobs._cloud_settings_saved
    send_to_aws = window_jobs.send_to_aws
    open_run_on = window_jobs.open_run_on
    _run_on_changed = window_jobs._run_on_changed
    _job_failed = window_jobs._job_failed
    _action_failed = window_jobs._action_failed
    _ask_before_quitting = window_closing._ask_before_quitting
    _quit_answered = window_closing._quit_answered
    _stop_jobs_then_close = window_closing._stop_jobs_then_close
    shutdown = window_closing.shutdown

    def __init__(
        self,
        settings_file: SettingsFile | None = None,
        store: JobStore | None = None,
        opener: Callable[[Path], None] | None = None,
        probe_device: bool = True,
    ) -> None:
        super().__init__()
        self.setWindowTitle(PRODUCT_NAME)
        self.setObjectName("mainWindow")
        self.setAcceptDrops(True)
        self.settings_file = settings_file or SettingsFile()
        self.app_settings = self.settings_file.load()
        self.store = store or JobStore()
        app = QApplication.instance()
        self.theme = (
            ThemeController.install(app, self.app_settings.theme)
            if isinstance(app, QApplication)
            else None
        )

        self.sources = SourceQueue()
        self.sources.currentItemChanged.connect(self._source_selected)
        self.sources.removeRequested.connect(self.remove_current_source)
        self.start_button = QPushButton("Upscale all")
        self.start_button.setObjectName("startButton")
        self.start_button.setToolTip("Queue every source as a job (Ctrl+Return)")
        self.start_button.clicked.connect(self.start_jobs)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(4, 4, 4, 4)
        sources_label = QLabel("&Sources")
        sources_label.setBuddy(self.sources)
        left_layout.addWidget(sources_label)
        left_layout.addWidget(self.sources, 1)
        left_layout.addWidget(self.start_button)

        self.preview = PreviewPane()
        self.preview.sourceFailed.connect(self._preview_failed)
        self.preview.modeChanged.connect(self._remember_mode)
        self.preview.renderStarted.connect(lambda: self.notice.clear("render"))
        self.preview.renderFailed.connect(
            lambda message: self.show_notice(message, "error", kind="render", details=message)
        )
        self.preview.renderer.sourceOpened.connect(self._source_opened)
        FocusRing.attach(self.preview.view)
        FocusRing.attach(self.preview.timeline)
        self.preview.set_model_provider(self._preview_model)  # Model A/B: any model per side
        self.notice: NoticeBanner = NoticeBanner()
        preview_area = QWidget()
        preview_layout = QVBoxLayout(preview_area)
        preview_layout.setContentsMargins(0, 0, 0, 0)
        preview_layout.setSpacing(4)
        preview_layout.addWidget(self.notice)
        preview_layout.addWidget(self.preview, 1)
        self.settings_panel = SettingsPanel(self.app_settings)
        self.settings_panel.settingsChanged.connect(self._settings_changed)
        self.settings_panel.runOnRequested.connect(self.open_run_on)
        self.settings_panel.set_run_on(TARGET_SHORT.get(self.app_settings.run_on, "Local"))
        # The settings scroll rather than set the window's height (it fits a 768-px screen).
        settings_scroll = QScrollArea()
        settings_scroll.setObjectName("settingsScroll")
        settings_scroll.setWidget(self.settings_panel)
        settings_scroll.setWidgetResizable(True)
        settings_scroll.setFrameShape(QFrame.Shape.NoFrame)
        settings_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        settings_scroll.setMinimumWidth(260)

        splitter = QSplitter()
        splitter.addWidget(left)
        splitter.addWidget(preview_area)
        splitter.addWidget(settings_scroll)
        splitter.setStretchFactor(1, 1)
        splitter.setCollapsible(1, False)
        splitter.setSizes([180, 800, SETTINGS_WIDTH])
        self.setCentralWidget(splitter)
        self.run_on: RunOnDialog | None = None
        self._help: dict[str, QDialog] = {}
        self.recent_menu: QMenu  # made by build_menus, with these:
        self.theme_actions: dict[str, QAction] = {}

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
        self.output_question: ExistingOutputs | None = None  # the open Overwrite/Rename/Skip
        self.job_error: QMessageBox | None = None  # the last failed job's dialog
        #: The open "Quit while jobs run?" question, if any (tests answer it).
        self.quit_box: QMessageBox | None = None
        self._quitting = False  # answered: stopping the jobs, then closing
        self._shut_down = False
        # The jobs dock leaves the preview most of a small screen (960×540 at 200 %).
        dock_height = min(170, self.screen().availableGeometry().height() // 5)
        self.resizeDocks([self.jobs_panel], [dock_height], Qt.Orientation.Vertical)

        build_menus(self)
        self._add_playback_menu()
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

    # ------------------------------------------------------------------ menus, help
    def fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        for path in self.app_settings.recent_files:
            action = self.recent_menu.addAction(path)
            action.triggered.connect(lambda checked=False, p=path: self.open_files([Path(p)]))
        self.recent_menu.setEnabled(bool(self.app_settings.recent_files))

    @Slot()
    def show_shortcuts(self) -> ShortcutsDialog:
        """Help → Keyboard shortcuts (made from the actions each time it opens)."""
        dialog = ShortcutsDialog(self)
        self._open_help("shortcuts", dialog)
        return dialog

    @Slot()
    def show_about(self) -> AboutDialog:
        dialog = AboutDialog(self)
        self._open_help("about", dialog)
        return dialog

    def _open_help(self, key: str, dialog: QDialog) -> None:
        old = self._help.pop(key, None)
        if old is not None:
            old.close()
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.destroyed.connect(lambda *_: self._help.pop(key, None))
        self._help[key] = dialog
        dialog.show()

    def set_theme(self, theme: str) -> None:
        """View → Theme: system (follows the OS), light or dark; kept in the settings."""
        self.app_settings.theme = theme
        if self.theme is not None:
            self.theme.apply(theme)
        action = self.theme_actions.get(theme)
        if action is not None:
            action.setChecked(True)
        self._save_settings()

    def show_notice(
        self, text: str, level: str = "warning", kind: str = "", details: str = ""
    ) -> None:
        """A non-modal, word-wrapped banner above the preview (damaged or unreadable
        sources, failed renders, with Details… for a failure); the next source or a
        successful render hides it."""
        self.notice.show_notice(text, level, kind, details)

    # ------------------------------------------------------------------ settings
    @Slot(object)
    def _settings_changed(self, settings: AppSettings) -> None:
        settings.recent_files = self.app_settings.recent_files
        settings.theme = self.app_settings.theme  # the View menu owns it
        settings = with_cloud_fields(settings, self.app_settings)  # the cloud dialog owns them
        settings = with_run_on_fields(settings, self.app_settings)  # and Run on… these
        self.app_settings = settings
        self._apply_preview_settings()
        self._save_settings()

    def _add_playback_menu(self) -> None:
        """Playback: the preview's keys (active while focus is in the preview), before Help."""
        menu = QMenu("&Playback", self)
        menu.addActions(self.preview.playback_actions())
        bar = self.menuBar()
        help_action = next((a for a in bar.actions() if a.text() == "&Help"), None)
        if help_action is not None:
            bar.insertMenu(help_action, menu)
        else:
            bar.addMenu(menu)

    def _preview_model(self, name: str) -> tuple[str, Callable[[], FrameUpscaler]]:
        """One side of the A/B comparison: the current settings with another model (the key
        has the settings panel's form, so the settings' own model shares its cache)."""
        settings = replace(self.app_settings, model=name)
        from vsr_desktop.core.models.registry import MODEL_REGISTRY

        spec = MODEL_REGISTRY.get(name)
        denoise = settings.denoise_strength if spec and spec.denoise_partner else None
        s = settings
        key = f"{name}|{s.outscale}|{denoise}|{s.device}|{s.precision}|{s.tile}"
        return key, engine_factory_for(settings)

    def _apply_preview_settings(self) -> None:
        self.preview.set_mode(self.app_settings.preview_mode)
        self.preview.set_deinterlace(self.app_settings.deinterlace)  # as the job will see it
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
            screen = self.screen().availableGeometry()
            self.resize(
                min(DEFAULT_SIZE[0], screen.width() - 40),
                min(DEFAULT_SIZE[1], screen.height() - 60),
            )
        if self.app_settings.window_state:
            self.restoreState(QByteArray(base64.b64decode(self.app_settings.window_state)))

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
