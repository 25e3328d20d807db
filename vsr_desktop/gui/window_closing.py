"""Quitting while jobs run: ask (keep them for later or cancel), stop them without blocking
the window, then close; and `shutdown`, which stops every thread the window owns.

Methods of MainWindow (assigned in its class body), kept apart so the window's module
stays small.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QTimer

from vsr_desktop.gui.quit_question import quit_question

if TYPE_CHECKING:
    from vsr_desktop.gui.main_window import MainWindow


#: How long quitting waits (without blocking) for jobs to stop before it waits blocking.
STOP_WAIT_MS = 30_000


def _ask_before_quitting(window: MainWindow) -> None:
    if window.quit_box is not None:
        window.quit_box.raise_()
        return
    window.quit_box = quit_question(
        window,
        window.jobs_panel.work_in_progress(),
        window.jobs_panel.running_elsewhere(),
        window._quit_answered,
    )


def _quit_answered(window: MainWindow, cancel_jobs: bool | None) -> None:
    window.quit_box = None
    if cancel_jobs is not None:
        window._stop_jobs_then_close(cancel_jobs=cancel_jobs)


def _stop_jobs_then_close(window: MainWindow, *, cancel_jobs: bool) -> None:
    """Stop the jobs without blocking the window, then close once all stopped."""
    window._quitting = True
    window.statusBar().showMessage(
        "Cancelling jobs…" if cancel_jobs else "Stopping jobs; they resume at the next start…"
    )
    window.jobs_panel.stop_jobs(cancel_jobs=cancel_jobs)
    if not window.tasks.is_busy():
        QTimer.singleShot(0, window, window.close)
        return
    window.tasks.idle.connect(window.close)
    QTimer.singleShot(STOP_WAIT_MS, window, window.close)  # then shutdown() waits for the rest


def shutdown(window: MainWindow, *, cancel_jobs: bool = False) -> None:
    """Stop every thread the window owns (idempotent). Jobs still running here are
    kept resumable (INTERRUPTED) unless `cancel_jobs`; remote jobs run on."""
    if window._shut_down:
        return
    window._shut_down = True
    window.preview.shutdown()
    for dialog in (window.cloud_dialog, window.submit_dialog, window.run_on):
        if dialog is not None:
            dialog.done(0)  # joins its worker threads
    window.preview_cloud.shutdown()  # deletes the preview endpoint: it bills by the hour
    window.jobs_panel.shutdown(cancel_jobs=cancel_jobs)
    window.settings_panel.shutdown()
    window.tasks.shutdown()  # waits for every task thread (runs stop at their next report)
