"""Send to AWS: the cost and time estimate first, then Submit uploads with progress.

The estimate (probing each source, reading the stack and live Spot prices) runs in a worker
thread the moment the dialog opens. Submit hands the uploads to the app-wide CloudJobs, so
the dialog may be closed while they run: the jobs panel rows show "uploading NN%" from the
store, and Pause stops the upload between parts (Retry in the panel resumes it).

A submit the account checks refuse (Spot quota, worker image, cost cap: backends/aws
preflight.py, cost_cap.py) records no job, so there is nothing to retry in the panel: the
dialog says the refusal itself, with what to do next, where the user is looking.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Slot
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from vsr_desktop.core.errors import VsrError
from vsr_desktop.gui.cloud import estimate_view as view
from vsr_desktop.gui.cloud.estimate_view import SourceEstimate
from vsr_desktop.gui.cloud.job_actions import CloudJobs
from vsr_desktop.gui.error_dialog import wrappable
from vsr_desktop.gui.errors import show_error
from vsr_desktop.gui.jobs.job_runner import Transfer
from vsr_desktop.gui.tasks import Task, TaskContext, TaskRunner

if TYPE_CHECKING:
    from vsr_desktop.core.job_spec import JobSpec


def _refusal(name: str, error: object) -> str:
    """One refused send, wrapped: the reason, then what to do (the error's hint)."""
    if isinstance(error, VsrError):
        text = f"{name} was not sent: {error.message}"
        if error.hint:
            text += f"\nWhat to do: {error.hint}"
    elif error is not None:
        text = f"{name} was not sent: {type(error).__name__}: {error}"
    else:
        text = f"{name} was not sent (the reason is in the jobs panel's status line)"
    return wrappable(text)


def _size(count: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} B"


class SubmitDialog(QDialog):
    """Estimate, then upload and start the jobs; non-modal, closes itself when all started."""

    def __init__(
        self, specs: list[JobSpec], jobs: CloudJobs, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setObjectName("cloudSubmitDialog")
        self.setWindowTitle("Send to AWS")
        self.resize(860, 420)
        self.specs = list(specs)
        self.jobs = jobs
        self.estimates: list[SourceEstimate] = []
        self._runner = TaskRunner(self)
        self._keys: dict[str, str] = {}  # task key → outcome ("" while running)
        self._names: dict[str, str] = {}  # task key → the source's file name
        self._recorded: set[str] = set()  # keys whose job was recorded (a row to retry)
        self._errors: dict[str, object] = {}  # task key → why it failed

        context = jobs.context
        settings = context.settings
        where = settings.cloud_region or "the profile's default region"
        self.header = QLabel(
            f"{len(specs)} video(s) to the stack "
            f"<b>{context.stack_name()}</b> in {where}. Estimating…"
        )
        self.table = QTableWidget(len(specs), len(view.COLUMNS))
        self.table.setObjectName("estimateTable")
        self.table.setHorizontalHeaderLabels(list(view.COLUMNS))
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        for row, spec in enumerate(specs):
            self.table.setItem(row, 0, QTableWidgetItem(spec.source.name))
        self.summary = QLabel("Reading Spot prices and probing the videos…")
        self.summary.setObjectName("estimateSummary")
        self.summary.setWordWrap(True)
        self.summary.setStyleSheet("font-weight: bold")
        self.notes = QLabel()
        self.notes.setObjectName("estimateNotes")
        self.notes.setWordWrap(True)
        self.assumptions = QLabel()
        self.assumptions.setWordWrap(True)
        self.assumptions.setStyleSheet("color: palette(mid)")
        # The per-job cost cap (0 = none): Batch time limits hold it with the app closed,
        # and each poll stops a job that reaches it (backends/aws/cost_cap.py).
        self.max_cost = QDoubleSpinBox()
        self.max_cost.setObjectName("maxCostSpin")
        self.max_cost.setRange(0.0, 100000.0)
        self.max_cost.setDecimals(2)
        self.max_cost.setPrefix("$ ")
        self.max_cost.setSpecialValueText("no cap")
        self.max_cost.setToolTip(
            "Stop each job once it has cost this much (0 = no cap). Each chunk's time limit "
            "is its share of the cap, so AWS holds it even while the app is closed."
        )
        cap_row = QHBoxLayout()
        cap_label = QLabel("Stop each &job when it has cost:")
        cap_label.setBuddy(self.max_cost)
        cap_row.addWidget(cap_label)
        cap_row.addWidget(self.max_cost)
        cap_row.addStretch(1)
        self.progress = QProgressBar()
        self.progress.setRange(0, 0)  # busy while estimating
        self.status = QLabel()
        self.status.setObjectName("submitStatus")
        self.status.setWordWrap(True)
        self.status.setTextFormat(Qt.TextFormat.PlainText)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.buttons = QDialogButtonBox()
        self.submit_button = QPushButton("&Submit")
        self.submit_button.setObjectName("submitButton")
        self.submit_button.setToolTip("Upload the videos and start the jobs (Ctrl+Return)")
        self.submit_button.setShortcut("Ctrl+Return")
        self.submit_button.setEnabled(False)
        self.submit_button.setDefault(True)
        self.pause_button = QPushButton("&Pause upload")
        self.pause_button.setToolTip("Stop uploading; Retry in the jobs panel resumes it")
        self.buttons.addButton(self.submit_button, QDialogButtonBox.ButtonRole.AcceptRole)
        self.buttons.addButton(self.pause_button, QDialogButtonBox.ButtonRole.ActionRole)
        self.buttons.addButton(QDialogButtonBox.StandardButton.Close)
        self.pause_button.setVisible(False)  # after addButton, which shows it
        self.submit_button.clicked.connect(self.submit)
        self.pause_button.clicked.connect(self.pause)
        self.buttons.rejected.connect(self.reject)

        layout = QVBoxLayout(self)
        for widget in (
            self.header,
            self.table,
            self.summary,
            self.notes,
            self.assumptions,
            self.progress,
            self.status,
            self.buttons,
        ):
            layout.addWidget(widget, 1 if widget is self.table else 0)
            if widget is self.assumptions:
                layout.addLayout(cap_row)

        jobs.transferProgress.connect(self._on_transfer)
        jobs.taskFailed.connect(self._on_task_failed)
        jobs.taskEnded.connect(self._on_task_ended)
        self._runner.finished.connect(self._on_estimated)
        self._runner.failed.connect(self._on_estimate_failed)
        self._start_estimate()

    # -- estimate -----------------------------------------------------------------------

    def _start_estimate(self) -> None:
        context = self.jobs.context
        specs = self.specs
        stack_name = context.stack_name()
        pinned = context.stack is not None

        def run(ctx: TaskContext) -> object:
            return view.estimate_all(
                context.session(), specs, stack_name, ctx.cancel, check_stack=not pinned
            )

        self._runner.start(Task("estimate", "estimate", run))

    @Slot(str, object)
    def _on_estimated(self, key: str, result: object) -> None:
        self.estimates = list(result) if isinstance(result, list) else []
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        for row, item in enumerate(self.estimates):
            for column, text in enumerate(view.row_cells(item)):
                cell = QTableWidgetItem(text)
                if column in (1, 3, 5, 6):
                    cell.setTextAlignment(
                        Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
                    )
                self.table.setItem(row, column, cell)
        self.summary.setText(view.summary(self.estimates))
        notes = view.notes(self.estimates)
        self.notes.setText("\n".join(f"• {line}" for line in notes))
        self.notes.setVisible(bool(notes))
        self.assumptions.setText("Assumptions: " + "; ".join(view.assumptions(self.estimates)))
        ready = [item for item in self.estimates if item.submittable]
        self.submit_button.setEnabled(bool(ready))
        self.header.setText(self.header.text().replace("Estimating…", "Estimated."))
        self.status.setText(
            f"{len(ready)} of {len(self.estimates)} can be sent. Prices are "
            "estimates; Spot prices change."
            if ready
            else "Nothing can be sent: see the notes."
        )

    @Slot(str, object)
    def _on_estimate_failed(self, key: str, error: object) -> None:
        self.progress.setRange(0, 100)
        self.summary.setText("No estimate: the cloud account or stack is not ready.")
        detail = (
            error
            if isinstance(error, VsrError)
            else VsrError(
                f"{type(error).__name__}: {error}", "check the cloud settings and try again"
            )
        )
        self.status.setText(detail.user_message())
        show_error(self, "Cannot estimate the cloud jobs", detail)

    # -- submit -------------------------------------------------------------------------

    @Slot()
    def submit(self) -> None:
        """Hand every sendable source to CloudJobs (uploads run one after another)."""
        self.submit_button.setEnabled(False)
        self.pause_button.setVisible(True)
        cap = self.max_cost.value() or None
        for item in self.estimates:
            if item.submittable:
                key = self.jobs.submit(item.spec, item.price_per_gpu_hour, cap)
                self._keys[key] = ""
                self._names[key] = item.spec.source.name
        self.status.setText(f"Uploading {len(self._keys)} video(s)…")

    @Slot()
    def pause(self) -> None:
        for key, outcome in self._keys.items():
            if not outcome:
                self.jobs.cancel_task(key)

    @Slot(str, object)
    def _on_transfer(self, key: str, value: object) -> None:
        if key not in self._keys or not isinstance(value, Transfer):
            return
        self._recorded.add(key)  # the backend reports once the job is recorded
        if not value.total:  # recorded; the upload has not started
            self.status.setText(f"Preparing {value.name}…")
            return
        self.progress.setValue(value.percent)
        self.status.setText(
            f"Uploading {value.name}: {_size(value.done)} of "
            f"{_size(value.total)} ({value.percent}%)"
        )

    @Slot(str, object)
    def _on_task_failed(self, key: str, error: object) -> None:
        if key in self._keys:
            self._errors[key] = error

    @Slot(str, str)
    def _on_task_ended(self, key: str, outcome: str) -> None:
        if key not in self._keys:
            return
        self._keys[key] = outcome
        if not all(self._keys.values()):
            return
        self.pause_button.setVisible(False)
        outcomes = list(self._keys.values())
        if all(o == "done" for o in outcomes):
            self.status.setText(f"{len(outcomes)} job(s) running in the cloud.")
            self.accept()
            return
        self.status.setText(self._outcome_text())

    def _outcome_text(self) -> str:
        """What became of the sends: each refusal in its own words (no job row exists, so
        no "retry"), then the counts; Retry is offered only for rows that exist."""
        refused = [
            key
            for key, outcome in self._keys.items()
            if outcome == "failed" and key not in self._recorded
        ]
        lines = [_refusal(self._names.get(key, "?"), self._errors.get(key)) for key in refused]
        outcomes = [o for key, o in self._keys.items() if key not in refused]
        started = outcomes.count("done")
        stopped = len(outcomes) - started  # paused, failed after recording, interrupted
        if refused:
            lines.append(
                f"{len(refused)} not sent (no job was recorded); {started} started"
                + (f", {stopped} stopped." if stopped else ".")
            )
        else:
            paused = outcomes.count("cancelled")
            lines.append(f"{started} started, {paused} paused, {stopped - paused} failed.")
        if stopped:
            lines.append("Retry the stopped ones from the jobs panel.")
        return "\n".join(lines)

    def done(self, result: int) -> None:
        """Closing stops the estimate; uploads carry on (the jobs panel shows them)."""
        self._runner.shutdown()
        super().done(result)
