"""Help → GPU add-on: install, follow and remove the Windows CUDA add-on.

Why a dialog of its own: the download is ~2.5 GB and takes minutes, so it runs as a task on
the window's TaskRunner ("downloads" lane, cancel honoured between blocks) while the user
keeps working; the dialog only shows progress and the outcome. The work is in
core/gpu_addon*.py; the add-on is used from the next start.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Slot
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QMenu,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from vsr_desktop.core import gpu_addon
from vsr_desktop.core.errors import VsrError
from vsr_desktop.gui.tasks import CANCELLED, DONE, Task, TaskContext, TaskResult, TaskRunner

if TYPE_CHECKING:
    from vsr_desktop.gui.main_window import MainWindow

TASK_KEY = "gpu-addon-install"


def _install(manifest: gpu_addon.Manifest, root: Path | None, ctx: TaskContext) -> str:
    """The task: never on the GUI thread."""
    from vsr_desktop.core.gpu_addon_install import install

    folder = install(
        manifest, root, lambda done, total, what: ctx.report((done, total, what)), ctx.cancel
    )
    return str(folder)


class GpuAddonDialog(QDialog):
    """Status line, progress bar, Install / Cancel / Remove."""

    def __init__(
        self,
        tasks: TaskRunner,
        parent: QWidget | None = None,
        manifest: gpu_addon.Manifest | None = None,
        root: Path | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("GPU add-on (NVIDIA CUDA)")
        self._tasks = tasks
        self._root = root
        self._error = ""
        try:
            self._manifest = manifest or gpu_addon.load_manifest()
        except gpu_addon.GpuAddonError as exc:
            self._manifest, self._error = None, exc.user_message()
        self.status_label = QLabel(wordWrap=True)
        self.step_label = QLabel(wordWrap=True)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.install_button = QPushButton("&Install")
        self.cancel_button = QPushButton("&Cancel download")
        self.remove_button = QPushButton("&Remove")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        for button in (self.install_button, self.cancel_button, self.remove_button):
            buttons.addButton(button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.reject)
        self.install_button.clicked.connect(self.install)
        self.cancel_button.clicked.connect(self.cancel)
        self.remove_button.clicked.connect(self.remove)
        layout = QVBoxLayout(self)
        note = QLabel(
            "Downloads PyTorch's CUDA build (~2.5 GB) into your user folder, checks every "
            "file's checksum and uses it from the next start. Needs an NVIDIA GPU and driver.",
            wordWrap=True,
        )
        for widget in (note, self.status_label, self.progress, self.step_label, buttons):
            layout.addWidget(widget)
        self._refresh()

    def _running(self) -> bool:
        return self._tasks.task(TASK_KEY) is not None

    def _refresh(self) -> None:
        state = gpu_addon.status(self._manifest, self._root)
        running = self._running()
        self.status_label.setText(self._error or state.message)
        self.install_button.setEnabled(state.available and not state.installed and not running)
        self.install_button.setText("&Resume" if state.partial_bytes else "&Install")
        self.cancel_button.setEnabled(running)
        self.remove_button.setEnabled(
            not running and (state.installed or bool(state.stale) or state.partial_bytes > 0)
        )
        self.progress.setVisible(running)

    @Slot()
    def install(self) -> None:
        if self._manifest is None or self._running():
            return
        manifest, root = self._manifest, self._root
        self._error = ""
        self._tasks.start(
            Task(
                TASK_KEY,
                "downloads",
                lambda ctx: _install(manifest, root, ctx),
                label="GPU add-on",
                on_progress=self._on_progress,
                on_done=self._on_done,
            )
        )
        self._refresh()

    @Slot()
    def cancel(self) -> None:
        self._tasks.cancel(TASK_KEY)

    @Slot()
    def remove(self) -> None:
        try:
            removed = gpu_addon.remove(self._root)
            self._error = (
                "Removed; the app uses the CPU build from the next start" if removed else ""
            )
        except gpu_addon.GpuAddonError as exc:
            self._error = exc.user_message()
        self._refresh()

    def _on_progress(self, value: object) -> None:
        if isinstance(value, tuple) and len(value) == 3:
            done, total, what = value
            self.progress.setValue(int(1000 * done / total) if total else 0)
            self.step_label.setText(f"{what}: {done / 1e6:,.0f} of {total / 1e6:,.0f} MB")

    def _on_done(self, result: TaskResult) -> None:
        if result.outcome == DONE:
            self._error = "Installed: restart vsr-desktop to use the GPU"
        elif result.outcome == CANCELLED:
            self._error = "Cancelled: Resume continues the download where it stopped"
        else:
            error = result.value
            self._error = (
                error.user_message() if isinstance(error, VsrError) else f"Failed: {error}"
            )
        self.step_label.setText("")
        self._refresh()


def open_gpu_addon_dialog(window: QWidget, tasks: TaskRunner) -> GpuAddonDialog:
    """Open (non-modal, kept on the window) so the download goes on while the user works."""
    dialog = getattr(window, "_gpu_addon_dialog", None)
    if not isinstance(dialog, GpuAddonDialog):
        dialog = GpuAddonDialog(tasks, window)
        window._gpu_addon_dialog = dialog  # type: ignore[attr-defined]
    dialog._refresh()
    dialog.show()
    dialog.raise_()
    return dialog


def add_gpu_addon_action(window: MainWindow, menu: QMenu) -> QAction | None:
    """Help → GPU add-on…, only in builds that carry an add-on manifest (Windows releases)."""
    if not gpu_addon.default_manifest_path().is_file():
        return None
    action = QAction("&GPU add-on (NVIDIA CUDA)…", window)
    action.triggered.connect(lambda: open_gpu_addon_dialog(window, window.tasks))
    menu.addAction(action)
    window.gpu_addon_action = action  # type: ignore[attr-defined]
    return action
