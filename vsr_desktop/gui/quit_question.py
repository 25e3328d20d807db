"""Quitting while jobs run: keep them for later (resumed at the next start) or cancel them.

The question is opened, not exec()'d: the jobs keep reporting while it is up.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import QMessageBox, QWidget

from vsr_desktop.core.jobs import JobRecord


def quit_question(
    parent: QWidget,
    jobs: list[JobRecord],
    elsewhere: list[JobRecord],
    answered: Callable[[bool | None], None],
) -> QMessageBox:
    """Open the question; `answered` gets True (cancel the jobs), False (keep them for
    later) or None (do not quit)."""
    box = QMessageBox(
        QMessageBox.Icon.Question,
        "Quit while jobs run?",
        f"{len(jobs)} job(s) are running or waiting in this app.",
        parent=parent,
    )
    box.setObjectName("quitQuestion")
    lines = [f"• {job.name}" for job in jobs[:8]]
    if len(jobs) > 8:
        lines.append(f"… and {len(jobs) - 8} more")
    lines += [
        "",
        "Keep for later stops them where they are; the next start offers to "
        "resume them from their last finished chunk. Cancel jobs cancels them.",
    ]
    if elsewhere:
        lines.append(
            f"{len(elsewhere)} job(s) on a cluster or in the cloud keep running there either way."
        )
    box.setInformativeText("\n".join(lines))
    keep = box.addButton("Keep for later", QMessageBox.ButtonRole.AcceptRole)
    cancel_jobs = box.addButton("Cancel jobs", QMessageBox.ButtonRole.DestructiveRole)
    box.addButton(QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(keep)

    def finished(_result: int) -> None:
        clicked = box.clickedButton()
        box.deleteLater()
        answered(False if clicked is keep else True if clicked is cancel_jobs else None)

    box.finished.connect(finished)
    box.open()
    return box
