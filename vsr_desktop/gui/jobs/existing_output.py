"""An output that already exists: Overwrite, Rename (the next free name) or Skip.

Asked once per clashing job before anything is queued, with "Do the same for the rest"
for a long queue; the box is opened, not exec()'d, so jobs already running keep reporting.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QCheckBox, QMessageBox, QPushButton, QWidget

from vsr_desktop.core.job_spec import JobSpec

OVERWRITE, RENAME, SKIP = "overwrite", "rename", "skip"


def next_free_name(path: Path) -> Path:
    """`x.mp4` → `x (2).mp4`, or `x (3).mp4` when that is taken too, and so on."""
    for n in range(2, 10_000):
        candidate = path.with_name(f"{path.stem} ({n}){path.suffix}")
        if not candidate.exists():
            return candidate
    raise FileExistsError(f"no free name beside {path}")


def output_exists(spec: JobSpec) -> bool:
    """A single-file output already there (image sequences are checked by the job)."""
    return "%" not in spec.output.name and spec.output.exists()


def apply_choice(spec: JobSpec, choice: str) -> JobSpec | None:
    """The spec to run for the user's answer (None: skip it)."""
    if choice == OVERWRITE:
        return replace(spec, overwrite=True)
    if choice == RENAME:
        return replace(spec, output=next_free_name(spec.output))
    return None


class ExistingOutputs(QObject):
    """Asks about each clashing spec in turn, then hands back the specs to run.

    `question` is the open box (tests click its buttons); `done` gets the final list.
    """

    def __init__(
        self,
        specs: list[JobSpec],
        parent: QWidget,
        done: Callable[[list[JobSpec]], None],
    ) -> None:
        super().__init__(parent)
        self._parent = parent
        self._done = done
        self._ready = [s for s in specs if not output_exists(s)]
        self._clashing = [s for s in specs if output_exists(s)]
        self._same_for_rest: str | None = None
        self.question: QMessageBox | None = None

    def start(self) -> None:
        self._next()

    def _next(self) -> None:
        while self._clashing:
            spec = self._clashing.pop(0)
            if self._same_for_rest is None:
                self._ask(spec)
                return
            chosen = apply_choice(spec, self._same_for_rest)
            if chosen is not None:
                self._ready.append(chosen)
        self.question = None
        self._done(self._ready)
        self.deleteLater()

    def _ask(self, spec: JobSpec) -> None:
        box = QMessageBox(
            QMessageBox.Icon.Question,
            "The output already exists",
            f"{spec.output.name} is already in {spec.output.parent}.",
            parent=self._parent,
        )
        box.setObjectName("existingOutputQuestion")
        box.setInformativeText(
            f"Overwrite replaces it when the job finishes; Rename writes "
            f"{next_free_name(spec.output).name} instead; Skip leaves "
            f"{spec.source.name} out of this run."
        )
        buttons: dict[str, QPushButton] = {
            OVERWRITE: box.addButton("Overwrite", QMessageBox.ButtonRole.DestructiveRole),
            RENAME: box.addButton("Rename", QMessageBox.ButtonRole.AcceptRole),
            SKIP: box.addButton("Skip", QMessageBox.ButtonRole.RejectRole),
        }
        box.setDefaultButton(buttons[RENAME])
        box.setEscapeButton(buttons[SKIP])
        check: QCheckBox | None = None
        if self._clashing:  # parented and referenced here: the box does not own it
            check = QCheckBox(f"Do the same for the other {len(self._clashing)}", box)
            box.setCheckBox(check)

        def answered(_result: int) -> None:
            clicked = box.clickedButton()
            choice = next((k for k, b in buttons.items() if b is clicked), SKIP)
            if check is not None and check.isChecked():
                self._same_for_rest = choice
            chosen = apply_choice(spec, choice)
            if chosen is not None:
                self._ready.append(chosen)
            box.deleteLater()
            self._next()

        box.finished.connect(answered)
        self.question = box
        box.open()
