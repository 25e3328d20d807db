"""Error dialogs that fit the screen: the text wraps (long paths too), the full message is
one click away under Details, ready to copy into a bug report.

QMessageBox wraps at spaces only, so a long path or URL made the box wider than the screen
or cut the reason off; here break points are offered after path separators, the visible text
is kept short, and the whole message (with the error's type) goes to the Details text.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QMessageBox, QWidget

from vsr_desktop.core.errors import VsrError

#: Visible text longer than this is cut (the Details hold all of it).
MAX_VISIBLE = 400
_ZWSP = "\u200b"  # a zero-width space: a place a long word may wrap


def wrappable(text: str) -> str:
    """`text` with break opportunities after / \\ _ . , = & ? : in words longer than 30."""
    words = []
    for word in text.split(" "):
        if len(word) > 30:
            for mark in "/\\_.,=&?:":
                word = word.replace(mark, mark + _ZWSP)
        words.append(word)
    return " ".join(words)


def plain(text: str) -> str:
    """The text without the break marks (what Copy gives)."""
    return text.replace(_ZWSP, "")


def _short(text: str) -> str:
    return text if len(text) <= MAX_VISIBLE else text[: MAX_VISIBLE - 1].rstrip() + "…"


def details_of(error: BaseException | str) -> str:
    """The full, copyable account of an error: message, hint and type."""
    if isinstance(error, VsrError):
        lines = [error.message]
        if error.hint:
            lines.append(f"What to do: {error.hint}")
        lines.append(f"({type(error).__name__}, exit code {error.exit_code})")
        return "\n".join(lines)
    if isinstance(error, BaseException):
        return f"{type(error).__name__}: {error}"
    return str(error)


def error_box(
    parent: QWidget | None,
    title: str,
    error: BaseException | str,
    icon: QMessageBox.Icon = QMessageBox.Icon.Warning,
    more: str = "",
) -> QMessageBox:
    """A message box whose text wraps, with the whole message under Details (and `more`
    after it: a traceback, the end of a job's log).

    Every dialog that reports a failure is made here, so all wrap and all can be copied."""
    if isinstance(error, VsrError):
        text, hint = error.message, error.hint
    else:
        text, hint = str(error), ""
    box = QMessageBox(icon, title, wrappable(_short(text)), QMessageBox.StandardButton.Ok, parent)
    box.setTextFormat(Qt.TextFormat.PlainText)
    if hint:
        box.setInformativeText(wrappable(_short(hint[:1].upper() + hint[1:])))
    box.setDetailedText(details_of(error) + (f"\n\n{more.strip()}" if more.strip() else ""))
    box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    for label in box.findChildren(QLabel):
        label.setWordWrap(True)
    # QMessageBox sizes itself from its text; a cap keeps it on a 1366-wide screen.
    box.setStyleSheet(
        "QLabel#qt_msgbox_label, QLabel#qt_msgbox_informativelabel"
        " { min-width: 280px; max-width: 520px; }"
    )
    box.setObjectName("errorDialog")
    return box
