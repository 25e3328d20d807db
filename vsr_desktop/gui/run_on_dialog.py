"""Run on…: where "Upscale all" sends jobs (this computer, a Slurm cluster, AWS) and how
each target is reached.

The targets' forms live here, not in the settings column: they are set up once and would
otherwise take room from the settings an editor changes every day (and keep the window
taller than a 768-pixel screen). Edits apply at once, like the settings column's; a refused
Slurm value keeps its last good one and the form says which field and what it allows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QSpinBox,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from vsr_desktop.core.settings import SLURM_FIELD_LABELS, AppSettings, slurm_settings_problems

#: (key, label) of each target, in the order the dialog lists them.
TARGETS = (("local", "This computer"), ("slurm", "Slurm cluster"), ("aws", "AWS cloud"))
TARGET_SHORT = {"local": "Local", "slurm": "Slurm", "aws": "AWS"}
#: The settings this dialog owns (the settings column keeps stale copies of them).
RUN_ON_FIELDS = ("run_on", *SLURM_FIELD_LABELS)


def with_run_on_fields(target: AppSettings, source: AppSettings) -> AppSettings:
    """`target` with the run-on choices of `source`."""
    return replace(target, **{name: getattr(source, name) for name in RUN_ON_FIELDS})


class SlurmForm(QWidget):
    """The cluster's shared folder, partition, GPUs, parallelism, SSH login and vsr command."""

    changed = Signal(object)  # a fresh AppSettings with the accepted values

    def __init__(self, settings: AppSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._settings = replace(settings)
        form = QFormLayout(self)
        self.slurm_workdir_edit = QLineEdit(settings.slurm_workdir)
        self.slurm_workdir_edit.setPlaceholderText("Shared folder every node sees")
        form.addRow("Work folder", self.slurm_workdir_edit)
        self.slurm_partition_edit = QLineEdit(settings.slurm_partition)
        self.slurm_partition_edit.setPlaceholderText("Cluster default")
        form.addRow("Partition", self.slurm_partition_edit)
        self.slurm_gpus_spin = QSpinBox()
        self.slurm_gpus_spin.setRange(0, 16)
        self.slurm_gpus_spin.setSpecialValueText("None (CPU)")
        self.slurm_gpus_spin.setValue(settings.slurm_gpus_per_task)
        form.addRow("GPUs per task", self.slurm_gpus_spin)
        self.slurm_parallel_spin = QSpinBox()
        self.slurm_parallel_spin.setRange(1, 1000)
        self.slurm_parallel_spin.setValue(settings.slurm_max_parallel)
        form.addRow("Tasks at once", self.slurm_parallel_spin)
        self.slurm_ssh_edit = QLineEdit(settings.slurm_ssh_host)
        self.slurm_ssh_edit.setPlaceholderText("user@login-host (empty: this machine)")
        self.slurm_ssh_edit.setToolTip(
            "Submit over SSH (key login) when this computer does not see the cluster's "
            "shared folder: the source goes up with the job and the output comes back"
        )
        form.addRow("Login host (SSH)", self.slurm_ssh_edit)
        self.slurm_vsr_edit = QLineEdit(settings.slurm_remote_vsr)
        self.slurm_vsr_edit.setToolTip("The command that runs vsr on the cluster's nodes")
        form.addRow("vsr on the cluster", self.slurm_vsr_edit)
        # A value that could reach a job script or an ssh command line as anything but
        # data is not taken: the field keeps its last good value and this says why.
        self.slurm_error_label = QLabel()
        self.slurm_error_label.setObjectName("slurmErrorLabel")
        self.slurm_error_label.setWordWrap(True)
        self.slurm_error_label.setStyleSheet("color: #e53935")
        self.slurm_error_label.setVisible(False)
        form.addRow(self.slurm_error_label)
        for edit in (
            self.slurm_workdir_edit,
            self.slurm_partition_edit,
            self.slurm_ssh_edit,
            self.slurm_vsr_edit,
        ):
            edit.editingFinished.connect(self._edited)
        self.slurm_gpus_spin.valueChanged.connect(self._edited)
        self.slurm_parallel_spin.valueChanged.connect(self._edited)

    def settings(self) -> AppSettings:
        return replace(self._settings)

    @Slot()
    def _edited(self) -> None:
        before = self._settings
        self._settings = replace(
            before,
            slurm_workdir=self.slurm_workdir_edit.text().strip(),
            slurm_partition=self.slurm_partition_edit.text().strip(),
            slurm_gpus_per_task=self.slurm_gpus_spin.value(),
            slurm_max_parallel=self.slurm_parallel_spin.value(),
            slurm_ssh_host=self.slurm_ssh_edit.text().strip(),
            slurm_remote_vsr=self.slurm_vsr_edit.text().strip() or "vsr",
        )
        self._refuse_bad_values(before)
        if self._settings != before:
            self.changed.emit(self.settings())

    def _refuse_bad_values(self, before: AppSettings) -> None:
        """Refused fields go back to their last good values (or their defaults), and the
        form says which field and what it allows."""
        problems = slurm_settings_problems(self._settings)
        for name in problems:
            setattr(self._settings, name, getattr(before, name))
        for name in slurm_settings_problems(self._settings):
            setattr(self._settings, name, getattr(AppSettings(), name))
        self.slurm_error_label.setText("\n".join(problems.values()))
        self.slurm_error_label.setVisible(bool(problems))
        self.slurm_error_label.setToolTip(", ".join(SLURM_FIELD_LABELS[name] for name in problems))


def _aws_summary(settings: AppSettings) -> str:
    who = (
        f"profile “{settings.cloud_profile}”"
        if settings.cloud_profile
        else f"keychain keys “{settings.cloud_keychain_account}”"
        if settings.cloud_keychain_account
        else "not signed in"
    )
    region = settings.cloud_region or "the profile's default region"
    return (
        f"Account: {who}\nRegion: {region}\nStack: {settings.cloud_stack_name}\n\n"
        "Jobs sent to AWS show their estimated cost before anything starts."
    )


class RunOnDialog(QDialog):
    """Targets on the left, the chosen one's form on the right; edits apply at once."""

    settingsChanged = Signal(object)  # AppSettings with the RUN_ON_FIELDS changed

    def __init__(
        self,
        settings: AppSettings,
        parent: QWidget | None = None,
        open_aws_account: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("runOnDialog")
        self.setWindowTitle("Run on…")
        self._settings = replace(settings)
        self.targets = QListWidget()
        self.targets.setObjectName("runOnTargets")
        for _key, label in TARGETS:
            self.targets.addItem(label)
        self.targets.setMaximumWidth(self.targets.sizeHintForColumn(0) + 24)
        self.pages = QStackedWidget()
        local = QLabel(
            "Jobs run here, on the device chosen in the settings column "
            "(Device). Interrupted jobs resume where they stopped."
        )
        local.setWordWrap(True)
        local.setAlignment(Qt.AlignmentFlag.AlignTop)
        self.pages.addWidget(local)
        self.slurm_form = SlurmForm(settings)
        self.slurm_form.changed.connect(self._slurm_changed)
        self.pages.addWidget(self.slurm_form)
        aws = QWidget()
        aws_layout = QVBoxLayout(aws)
        self.aws_summary = QLabel(_aws_summary(settings))
        self.aws_summary.setWordWrap(True)
        self.aws_button = QPushButton("AWS account and stack…")
        self.aws_button.setEnabled(open_aws_account is not None)
        if open_aws_account is not None:
            self.aws_button.clicked.connect(open_aws_account)
        aws_layout.addWidget(self.aws_summary)
        aws_layout.addWidget(self.aws_button, 0, Qt.AlignmentFlag.AlignLeft)
        aws_layout.addStretch(1)
        self.pages.addWidget(aws)
        self.targets.currentRowChanged.connect(self._target_chosen)
        body = QHBoxLayout()
        body.addWidget(self.targets)
        body.addWidget(self.pages, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        buttons.accepted.connect(self.accept)
        layout = QVBoxLayout(self)
        layout.addLayout(body, 1)
        layout.addWidget(buttons)
        keys = [key for key, _ in TARGETS]
        self.targets.setCurrentRow(keys.index(settings.run_on) if settings.run_on in keys else 0)

    def settings(self) -> AppSettings:
        return replace(self._settings)

    def choose(self, key: str) -> None:
        """Pick a target by key (local, slurm, aws)."""
        self.targets.setCurrentRow([k for k, _ in TARGETS].index(key))

    def refresh_cloud(self, settings: AppSettings) -> None:
        """The AWS page's summary after the account dialog saved."""
        self.aws_summary.setText(_aws_summary(settings))

    @Slot(int)
    def _target_chosen(self, row: int) -> None:
        if row < 0:
            return
        self.pages.setCurrentIndex(row)
        key = TARGETS[row][0]
        if key != self._settings.run_on:
            self._settings = replace(self._settings, run_on=key)
            self.settingsChanged.emit(self.settings())

    @Slot(object)
    def _slurm_changed(self, settings: AppSettings) -> None:
        fields = {name: getattr(settings, name) for name in SLURM_FIELD_LABELS}
        self._settings = replace(self._settings, **fields)
        self.settingsChanged.emit(self.settings())
