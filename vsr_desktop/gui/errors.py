"""Errors at the GUI edge: a dialog that says what to do, and a last-resort excepthook.

Nothing should crash the app: an unexpected exception is logged to the user log dir with its
traceback and shown as a dialog; the window stays up.
"""

from __future__ import annotations

import logging
import sys
import traceback
from logging.handlers import RotatingFileHandler
from pathlib import Path
from types import TracebackType

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QMessageBox, QWidget

from vsr_desktop.core.errors import VsrError

log = logging.getLogger("vsr_desktop.gui")
_live_dialogs: list[QMessageBox] = []


def user_log_path() -> Path:
    from platformdirs import user_log_dir

    return Path(user_log_dir("vsr_desktop", appauthor=False)) / "vsr-desktop.log"


def setup_logging() -> Path:
    """Log to a rotating file in the user log dir (what the excepthook points users to)."""
    path = user_log_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    if not any(isinstance(h, RotatingFileHandler) for h in root.handlers):
        handler = RotatingFileHandler(path, maxBytes=2_000_000, backupCount=2, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
    return path


def show_error(
    parent: QWidget | None, title: str, error: BaseException | str, more: str = ""
) -> QMessageBox:
    """A window-modal message: the problem first, what to do next below it; the whole
    text (and `more`: a log's end, a traceback) copyable under Details.

    Opened with open(), not exec(): no nested event loop, so work in progress keeps running.
    """
    from vsr_desktop.gui.error_dialog import error_box  # wraps; Details hold the whole text

    box = error_box(parent, title, error, more=more)
    _open_kept(box)
    return box


def _open_kept(box: QMessageBox) -> None:
    """Open without a nested event loop, holding a reference until the box is closed
    (a parentless box would otherwise be garbage-collected at once)."""
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    _live_dialogs.append(box)
    box.finished.connect(lambda _result: _live_dialogs.remove(box))
    box.open()


def unexpected_error_box(error: BaseException, trace: str, log_path: Path) -> QMessageBox:
    """The excepthook's dialog: wrapped like every error dialog, the traceback under
    Details (copyable into a bug report) and where the log is."""
    from vsr_desktop.gui.error_dialog import error_box

    message = error.user_message() if isinstance(error, VsrError) else str(error)
    shown = VsrError(
        f"Something went wrong: {message or type(error).__name__}",
        f"the app keeps running; details were written to {log_path}",
    )
    box = error_box(None, "Unexpected error", shown, QMessageBox.Icon.Critical, more=trace)
    box.setObjectName("excepthookDialog")
    return box


def install_excepthook() -> None:
    """Route uncaught exceptions to the log and a dialog instead of killing the app."""
    log_path = setup_logging()

    def hook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        if issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, value, tb)
            return
        log.error("uncaught exception:\n%s", "".join(traceback.format_exception(kind, value, tb)))
        if QApplication.instance() is None:
            sys.__excepthook__(kind, value, tb)
            return
        _open_kept(
            unexpected_error_box(
                value, "".join(traceback.format_exception(kind, value, tb)), log_path
            )
        )

    sys.excepthook = hook
