"""The source queue: the videos to upscale, each marked once when it cannot be read.

An unreadable file keeps a warning icon and the reason as its tooltip; selecting it again
shows that reason without reopening it (no dialog each time). The context menu (and the
window's File → Remove source, Delete while the list has focus) removes the selected source.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QPoint, Qt, Signal, Slot
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QListWidget, QListWidgetItem, QMenu, QStyle, QWidget

PATH_ROLE = Qt.ItemDataRole.UserRole
#: Why the source cannot be read ("" or None: it can).
PROBLEM_ROLE = Qt.ItemDataRole.UserRole + 1


class SourceQueue(QListWidget):
    """A list of source paths (one item each) that remembers which cannot be read."""

    removeRequested = Signal()  # the context menu's Remove, on the current item

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("sourceList")
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.customContextMenuRequested.connect(self._context_menu)
        self.setAccessibleName("Sources")

    def add_path(self, path: Path) -> QListWidgetItem:
        """The item of `path`, added at the end when it is not in the queue yet."""
        existing = self.item_of(path)
        if existing is not None:
            return existing
        item = QListWidgetItem(path.name)
        item.setData(PATH_ROLE, str(path))
        item.setToolTip(str(path))
        self.addItem(item)
        return item

    def item_of(self, path: Path) -> QListWidgetItem | None:
        for row in range(self.count()):
            item = self.item(row)
            if item.data(PATH_ROLE) == str(path):
                return item
        return None

    def paths(self) -> list[Path]:
        return [Path(self.item(row).data(PATH_ROLE)) for row in range(self.count())]

    def readable_paths(self) -> list[Path]:
        """The sources not marked unreadable (what jobs are made of)."""
        return [
            Path(self.item(row).data(PATH_ROLE))
            for row in range(self.count())
            if not self.item(row).data(PROBLEM_ROLE)
        ]

    def mark_unreadable(self, path: Path, reason: str) -> bool:
        """Mark `path` (icon + tooltip with the reason); False when it already was."""
        item = self.item_of(path)
        if item is None or item.data(PROBLEM_ROLE):
            return False
        item.setData(PROBLEM_ROLE, reason)
        item.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_MessageBoxWarning))
        item.setToolTip(f"{path}\n\nCannot be read: {reason}\n(Delete removes it from the queue)")
        return True

    @staticmethod
    def problem_of(item: QListWidgetItem | None) -> str | None:
        return (
            str(item.data(PROBLEM_ROLE)) if item is not None and item.data(PROBLEM_ROLE) else None
        )

    def remove_current(self) -> Path | None:
        row = self.currentRow()
        if row < 0:
            return None
        item = self.takeItem(row)
        return Path(item.data(PATH_ROLE)) if item is not None else None

    @Slot(QPoint)
    def _context_menu(self, pos: QPoint) -> None:
        item = self.itemAt(pos)
        if item is None:
            return
        self.setCurrentItem(item)
        menu = QMenu(self)
        remove = menu.addAction("Remove from queue")
        remove.setShortcut(QKeySequence(QKeySequence.StandardKey.Delete))
        remove.triggered.connect(self.removeRequested)
        menu.popup(self.viewport().mapToGlobal(pos))


def damage_notice(info: object, source: Path) -> str:
    """What to tell about a source that opened but is damaged (MediaInfo.damage, or
    leading frames a player drops); "" when it is whole."""
    notes = []
    damage = getattr(info, "damage", None)
    if damage:
        notes.append(str(damage))
    dropped = getattr(getattr(info, "video", None), "leading_dropped", 0) or 0
    if dropped:
        notes.append(
            f"{source.name} starts with {dropped} frame(s) that cannot be shown (no picture "
            "before them); they are left out, as players do"
        )
    if not notes:
        return ""
    return (
        "; ".join(notes) + ". The preview shows the frames that can be read; a job stops at "
        "a damaged frame unless allowed (vsr upscale --allow-damaged)."
    )
