"""The main window's sources: open (dialog, files, drag and drop), select, remove, and
unreadable or damaged sources marked once (the queue's icon, the banner; no modal loop).

Methods of MainWindow (assigned in its class body), kept apart so the window's module
stays small.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Slot
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QFileDialog, QListWidgetItem

from vsr_desktop.core.errors import VsrError
from vsr_desktop.gui.errors import show_error
from vsr_desktop.gui.help_dialogs import PRODUCT_NAME
from vsr_desktop.gui.source_queue import PATH_ROLE, SourceQueue, damage_notice

if TYPE_CHECKING:
    from vsr_desktop.gui.main_window import MainWindow


VIDEO_FILTER = "Videos (*.mp4 *.mkv *.mov *.webm *.avi *.m4v *.mpg *.mpeg *.ts *.wmv *.flv)"
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


@Slot()
def open_dialog(window: MainWindow) -> None:
    paths, _ = QFileDialog.getOpenFileNames(window, "Open videos", "", VIDEO_FILTER)
    window.open_files([Path(p) for p in paths])


def open_files(window: MainWindow, paths: list[Path]) -> None:
    """Add files to the queue and preview the last one."""
    added = None
    for path in paths:
        if not path.is_file():
            show_error(window, "Cannot open", VsrError(f"{path} does not exist", "check the path"))
            continue
        added = window.sources.add_path(path)
        window.app_settings.remember(path)
    if added is not None:
        window.sources.setCurrentItem(added)
        window.fill_recent_menu()
        window._save_settings()


def source_paths(window: MainWindow) -> list[Path]:
    return window.sources.paths()


@Slot()
def remove_current_source(window: MainWindow) -> None:
    removed = window.sources.remove_current()
    if removed is not None:
        window.notice.clear("source")
        window.statusBar().showMessage(f"Removed {removed.name} from the queue")


@Slot(object, object)
def _source_selected(
    window: MainWindow, current: QListWidgetItem | None, _previous: object
) -> None:
    window.notice.clear("source")
    if current is None:
        window.setWindowTitle(PRODUCT_NAME)
        return
    path = Path(current.data(PATH_ROLE))
    window.setWindowTitle(f"{PRODUCT_NAME} — {path.name}")
    problem = SourceQueue.problem_of(current)
    if problem is not None:  # marked once already: say why, no dialog, no re-probe
        window.show_notice(
            f"{path.name} cannot be read: {problem}", "error", kind="source", details=problem
        )
        window.statusBar().showMessage(f"{path} cannot be read")
        return
    window.preview.set_source(path)
    window.statusBar().showMessage(str(path))


@Slot(str)
def _preview_failed(window: MainWindow, message: str) -> None:
    """An unreadable source: marked in the queue (icon + reason) and said in the banner."""
    item = window.sources.currentItem()
    if item is not None:
        path = Path(item.data(PATH_ROLE))
        window.sources.mark_unreadable(path, message)
        window.show_notice(
            f"{path.name} cannot be read: {message}", "error", kind="source", details=message
        )
    window.statusBar().showMessage(message)


@Slot(object)
def _source_opened(window: MainWindow, opened: object) -> None:
    """A damaged source (frames it promises cannot be read, or leading frames a player
    drops) says so when it opens: the preview shows what is there."""
    info = getattr(opened, "info", None)
    source = getattr(opened, "source", None)
    item = window.sources.currentItem()
    if info is None or item is None or str(source) != item.data(PATH_ROLE):
        return
    notice = damage_notice(info, Path(str(source)))
    if notice:
        window.show_notice(notice, "warning", kind="source")


# ------------------------------------------------------------------ drag and drop
def dragEnterEvent(window: MainWindow, event: QDragEnterEvent) -> None:
    if event.mimeData().hasUrls():
        event.acceptProposedAction()


def dropEvent(window: MainWindow, event: QDropEvent) -> None:
    paths = [Path(url.toLocalFile()) for url in event.mimeData().urls() if url.isLocalFile()]
    videos = [p for p in paths if p.suffix.lower() in VIDEO_SUFFIXES]
    if paths and not videos:
        show_error(
            window,
            "Not a video",
            VsrError("none of the dropped files is a video", "drop .mp4, .mkv, .mov… files"),
        )
    window.open_files(videos)
    event.acceptProposedAction()
