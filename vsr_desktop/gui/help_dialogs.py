"""Help → Keyboard shortcuts and Help → About.

The shortcuts sheet is made from the window's actions when it opens, so it lists what the
keys really do (an action added later shows up; a changed key changes here too). About
names the versions a bug report needs and the licences shipped with the app (the files in
resources/licenses: the package's own, plus what the installers add beside them).
"""

from __future__ import annotations

import platform
import sys
from importlib import metadata
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QGuiApplication, QKeySequence
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QMenu,
    QPlainTextEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from vsr_desktop.gui.preview import view_keys

PRODUCT_NAME = "VSR Desktop"
#: Keys the picture handles itself (not actions), from the table the view uses, and Tab.
#: The playback keys (frame and second steps, J/K/L, I/O) are the Playback menu's actions.
VIEWER_KEYS = (
    *view_keys.sheet_rows(),
    ("Window", "Next control / previous control", "Tab / Shift+Tab"),
)


def _clean(text: str) -> str:
    return text.replace("&&", "\0").replace("&", "").replace("\0", "&")


def action_rows(window: QWidget) -> list[tuple[str, str, str]]:
    """(menu, action, shortcut) for every action of the window with a shortcut."""
    rows: list[tuple[str, str, str]] = []
    seen: set[int] = set()

    def visit(menu: QMenu, path: str) -> None:
        for action in menu.actions():
            sub = action.menu()
            if isinstance(sub, QMenu):
                visit(sub, f"{path} → {_clean(sub.title())}")
                continue
            add(action, path)

    def add(action: QAction, where: str) -> None:
        keys = [k for k in action.shortcuts() if not k.isEmpty()]
        if not keys or id(action) in seen:
            return
        seen.add(id(action))
        text = ", ".join(k.toString(QKeySequence.SequenceFormat.NativeText) for k in keys)
        rows.append((where, _clean(action.text()).rstrip("…").rstrip(), text))

    bar = getattr(window, "menuBar", None)
    if callable(bar):
        for action in bar().actions():
            menu = action.menu()
            if isinstance(menu, QMenu):
                visit(menu, _clean(menu.title()))
    for action in window.findChildren(QAction):
        add(action, "Window")
    return rows


class ShortcutsDialog(QDialog):
    """A table of every shortcut: the window's actions, then the viewer's own keys."""

    def __init__(self, window: QWidget) -> None:
        super().__init__(window)
        self.setObjectName("shortcutsDialog")
        self.setWindowTitle(f"Keyboard shortcuts — {PRODUCT_NAME}")
        rows = action_rows(window) + list(VIEWER_KEYS)
        self.table = QTableWidget(len(rows), 3)
        self.table.setHorizontalHeaderLabels(["Where", "What", "Keys"])
        for r, row in enumerate(rows):
            for c, text in enumerate(row):
                self.table.setItem(r, c, QTableWidgetItem(text))
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 8)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setTabKeyNavigation(False)
        self.table.resizeColumnsToContents()
        self.table.horizontalHeader().setStretchLastSection(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        layout.addWidget(buttons)
        self.resize(640, 520)

    def rows(self) -> list[tuple[str, str, str]]:
        rows = []
        for r in range(self.table.rowCount()):
            cells = [self.table.item(r, c) for c in range(3)]
            texts = [cell.text() if cell is not None else "" for cell in cells]
            rows.append((texts[0], texts[1], texts[2]))
        return rows


def _dist_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def versions() -> list[tuple[str, str]]:
    """(component, version) of what a bug report needs; torch is not imported for this."""
    from PySide6 import __version__ as pyside_version
    from PySide6.QtCore import qVersion

    from vsr_desktop import __version__

    rows = [
        (PRODUCT_NAME, __version__),
        ("Python", f"{platform.python_version()} ({sys.implementation.name})"),
        ("PySide6", pyside_version),
        ("Qt", qVersion()),
        ("torch", _dist_version("torch")),
    ]
    try:
        import av

        rows.append(("PyAV", str(av.__version__)))
        rows.append(("FFmpeg", str(getattr(av, "ffmpeg_version_info", "unknown"))))
    except ImportError:
        rows.append(("PyAV", "not installed"))
    rows.append(("System", f"{platform.system()} {platform.release()} {platform.machine()}"))
    return rows


def license_files() -> list[Path]:
    """The licence texts shipped in the package (and, in an installed app, beside them)."""
    from vsr_desktop.resources import licenses_dir

    folder = licenses_dir()
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []


class AboutDialog(QDialog):
    """Versions (copyable) and the licences shipped, each readable in place."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("aboutDialog")
        self.setWindowTitle(f"About {PRODUCT_NAME}")
        self.version_rows = versions()
        heading = QLabel(
            f"<b>{PRODUCT_NAME}</b> — video super-resolution with Real-ESRGAN models, "
            "on this computer, a Slurm cluster or AWS. Licensed under the MIT licence."
        )
        heading.setWordWrap(True)
        self.versions_text = QPlainTextEdit(
            "\n".join(f"{name}: {value}" for name, value in self.version_rows)
        )
        self.versions_text.setReadOnly(True)
        self.versions_text.setMaximumHeight(
            self.versions_text.fontMetrics().lineSpacing() * (len(self.version_rows) + 1) + 12
        )
        copy = QPushButton("Copy versions")
        copy.clicked.connect(
            lambda: QGuiApplication.clipboard().setText(self.versions_text.toPlainText())
        )
        self.licenses = QListWidget()
        self.licenses.setObjectName("licenseList")
        from vsr_desktop.resources import licenses_dir

        self._files = license_files()
        for path in self._files:
            self.licenses.addItem(str(path.relative_to(licenses_dir())))
        self.license_text = QPlainTextEdit()
        self.license_text.setReadOnly(True)
        self.licenses.currentRowChanged.connect(self._show_license)
        panes = QHBoxLayout()
        panes.addWidget(self.licenses, 1)
        panes.addWidget(self.license_text, 2)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(heading)
        layout.addWidget(self.versions_text)
        layout.addWidget(copy, 0, Qt.AlignmentFlag.AlignLeft)
        layout.addWidget(QLabel("Licences shipped with the app:"))
        layout.addLayout(panes, 1)
        layout.addWidget(buttons)
        if self._files:
            self.licenses.setCurrentRow(0)
        self.resize(680, 560)

    def _show_license(self, row: int) -> None:
        if 0 <= row < len(self._files):
            try:
                text = self._files[row].read_text(encoding="utf-8", errors="replace")
            except OSError as exc:
                text = f"Cannot read {self._files[row]}: {exc}"
            self.license_text.setPlainText(text)
