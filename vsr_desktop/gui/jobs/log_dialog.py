"""The end of a job's log, inside the app, following the file while the job writes to it.

Why not just open the file: a running job's log grows, and the line that says why a chunk
failed is at its end. Only the last ``TAIL_BYTES`` are read (a small read on the GUI
thread, like a stat), and only when the file's size or time has changed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QTimer, Slot
from PySide6.QtGui import QFontDatabase, QKeySequence, QShortcut, QTextCursor
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QPlainTextEdit,
    QVBoxLayout,
    QWidget,
)

#: How much of the end of the log is shown (a job writes a line or two per chunk).
TAIL_BYTES = 64 * 1024
#: How often the file is looked at for new lines, in milliseconds.
REFRESH_MS = 1000


def read_tail(path: Path, limit: int = TAIL_BYTES) -> str:
    """The last ``limit`` bytes of ``path`` as text, starting at a whole line."""
    with open(path, "rb") as log:
        size = log.seek(0, os.SEEK_END)
        start = max(0, size - limit)
        log.seek(start)
        data = log.read()
    if start > 0:  # the first line is cut: drop it
        cut = data.find(b"\n")
        data = data[cut + 1 :] if cut >= 0 else b""
    return data.decode("utf-8", errors="replace")


def job_log_tail(job: object, lines: int = 40) -> str:
    """The last lines of a job's log, for a failure's Details ("" when it has no log)."""
    path = getattr(job, "log_path", "") or ""
    if not path or not Path(path).is_file():
        return ""
    try:
        tail = read_tail(Path(path), 16 * 1024).splitlines()[-lines:]
    except OSError:
        return ""
    return f"The end of the job's log ({path}):\n" + "\n".join(tail)


class LogDialog(QDialog):
    """Shows the tail of one job's log and keeps it current; "Open in editor" hands it on."""

    def __init__(
        self, title: str, path: Path, opener: Callable[[Path], None], parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setObjectName("jobLog")
        self.setWindowTitle(f"Log — {title}")
        self.resize(760, 420)
        self.path = path
        self._opener = opener
        self._seen: tuple[int, int] | None = None

        self.text = QPlainTextEdit(self)
        self.text.setReadOnly(True)
        self.text.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.status = QLabel(self)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        self.open_button = buttons.addButton(
            "Open in editor", QDialogButtonBox.ButtonRole.ActionRole
        )
        self.open_button.clicked.connect(lambda: self._opener(self.path))
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.text)
        layout.addWidget(self.status)
        layout.addWidget(buttons)
        QShortcut(QKeySequence.StandardKey.Refresh, self, self.refresh)

        self.timer = QTimer(self)
        self.timer.setInterval(REFRESH_MS)
        self.timer.timeout.connect(self.refresh)
        self.timer.start()
        self.refresh()

    @Slot()
    def refresh(self) -> None:
        """Re-read the tail when the file changed; keep the view at the end if it was there."""
        try:
            stat = self.path.stat()
            seen = (stat.st_size, stat.st_mtime_ns)
            if seen == self._seen:
                return
            text = read_tail(self.path)
        except OSError as exc:
            self.status.setText(f"Cannot read {self.path}: {exc.strerror or exc}")
            self._seen = None
            return
        self._seen = seen
        bar = self.text.verticalScrollBar()
        at_end = bar.value() >= bar.maximum() - 2
        self.text.setPlainText(text)
        if at_end:
            self.text.moveCursor(QTextCursor.MoveOperation.End)
            bar.setValue(bar.maximum())
        shown = "the end of " if seen[0] > TAIL_BYTES else ""
        self.status.setText(f"Showing {shown}{self.path} — follows new lines as the job writes")

    def done(self, result: int) -> None:
        self.timer.stop()
        super().done(result)
