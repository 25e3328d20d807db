"""Cloud → AWS account and stack: who the app signs in as, and the stack it deploys.

The left half picks the credentials (a profile, with SSO sign-in; access keys kept only in
the OS keychain; or the default chain) and checks them; the right half shows the stack and
deploys, updates or tears it down with CloudFormation's events streaming into a log. Every
AWS call runs in a worker thread (cancellable where it waits); only names are saved to the
settings — the secret key goes from its password field straight to the keychain.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from vsr_desktop.core.errors import VsrError
from vsr_desktop.core.settings import AppSettings
from vsr_desktop.gui.cloud import account_tasks as work
from vsr_desktop.gui.errors import show_error
from vsr_desktop.gui.tasks import Task, TaskRunner

REGIONS = (
    "us-east-1",
    "us-east-2",
    "us-west-2",
    "ca-central-1",
    "eu-west-1",
    "eu-west-2",
    "eu-central-1",
    "eu-north-1",
    "ap-northeast-1",
    "ap-southeast-2",
    "ap-south-1",
)
_TITLES = {
    "check": "Cannot check the credentials",
    "keys": "Cannot keep the access keys",
    "forget": "Cannot forget the access keys",
    "sso": "SSO sign-in failed",
    "status": "Cannot read the stack",
    "deploy": "Deploying the stack failed",
    "teardown": "Tearing down the stack failed",
}


class CloudAccountDialog(QDialog):
    """Credentials, identity check, stack status, deploy/update and tear down."""

    settingsSaved = Signal(object)  # AppSettings with the chosen cloud_* names

    def __init__(self, settings: AppSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("cloudAccountDialog")
        self.setWindowTitle("AWS account and stack")
        self._settings = replace(settings)
        self.runner = TaskRunner(self)
        self.poll_seconds = 5.0  # stack events; tests shorten it
        self.sso_client: Any = None  # the sso-oidc client (tests stub the real service)
        self.sso_cache_dir: Path | None = None  # botocore's token cache (tests: tmp)
        self.teardown_box: QMessageBox | None = None
        self._build()
        self._load(settings)
        self.runner.progress.connect(self._on_progress)
        self.runner.finished.connect(self._on_finished)
        self.runner.failed.connect(self._on_failed)
        self.runner.cancelled.connect(self._on_cancelled)
        self.runner.ended.connect(self._update_buttons)
        self.runner.started.connect(self._update_buttons)
        self._update_buttons()

    # -- layout -------------------------------------------------------------------------

    def _button(self, text: str, tip: str, slot: Any) -> QPushButton:
        button = QPushButton(text)
        button.setToolTip(tip)
        button.setAutoDefault(False)
        button.clicked.connect(slot)
        return button

    def _build(self) -> None:
        self.region = QComboBox()
        self.region.setEditable(True)
        self.region.addItems(REGIONS)
        line = self.region.lineEdit()
        if line is not None:
            line.setPlaceholderText("the profile's default region")
        self.use_profile = QRadioButton("AWS &profile")
        self.use_keys = QRadioButton("Access &keys in the OS keychain")
        self.use_default = QRadioButton("&Environment / instance role")
        self.mode = QButtonGroup(self)
        for button in (self.use_profile, self.use_keys, self.use_default):
            self.mode.addButton(button)
            button.toggled.connect(self._update_buttons)
        self.profile = QComboBox()
        self.profile.currentTextChanged.connect(self._update_buttons)
        self.sso_button = self._button(
            "Sign in with &SSO…",
            "Open the AWS sign-in page and approve this app (IAM Identity Center)",
            self.sign_in,
        )
        self.sso_cancel = self._button(
            "Cancel sign-in", "Stop waiting for the approval", lambda: self._cancel("sso")
        )
        self.sso_info = QLabel()
        self.sso_info.setObjectName("ssoInfo")
        self.sso_info.setOpenExternalLinks(True)
        self.sso_info.setWordWrap(True)
        self.account = QLineEdit()
        self.account.setPlaceholderText("a label, e.g. studio")
        self.key_id = QLineEdit()
        self.key_id.setPlaceholderText("AKIA…")
        self.secret = QLineEdit()
        self.secret.setEchoMode(QLineEdit.EchoMode.Password)
        self.secret.setObjectName("secretKey")
        self.save_keys = self._button(
            "Keep in &keychain",
            "Store the key pair in the OS keychain (never in the app's files)",
            self.store_keys,
        )
        self.forget_keys = self._button(
            "&Forget", "Remove these keys from the keychain", self.forget
        )
        self.check_button = self._button("&Check", "Ask AWS who these credentials are", self.check)
        self.identity = QLabel("Not checked yet")
        self.identity.setObjectName("identity")
        self.identity.setWordWrap(True)

        creds = QGroupBox("Sign in")
        form = QFormLayout(creds)
        form.addRow("&Region", self.region)
        form.addRow(self.use_profile)
        form.addRow("Profile", _row(self.profile, self.sso_button))
        form.addRow(self.sso_info)
        form.addRow("", _row(self.sso_cancel))
        form.addRow(self.use_keys)
        form.addRow("Label", self.account)
        form.addRow("Access key ID", self.key_id)
        form.addRow("Secret access key", self.secret)
        form.addRow("", _row(self.save_keys, self.forget_keys))
        form.addRow(self.use_default)
        form.addRow(_row(self.check_button), self.identity)

        defaults = work.parameter_defaults()
        self.stack_name = QLineEdit()
        self.stack_status = QLabel("Unknown — press Refresh")
        self.stack_status.setObjectName("stackStatus")
        self.stack_status.setWordWrap(True)
        self.gpu_types = QLineEdit(defaults[work.PARAM_GPU_TYPES])
        self.max_parallel = QSpinBox()
        self.max_parallel.setRange(1, 40)  # Step Functions' inline Map limit
        self.max_parallel.setValue(int(defaults[work.PARAM_MAX_PARALLEL]))
        self.image = QLineEdit(defaults[work.PARAM_IMAGE])
        self.refresh_button = self._button("&Refresh", "Read the stack's status", self.refresh)
        self.deploy_button = self._button(
            "&Deploy / update", "Create or update the stack (takes several minutes)", self.deploy
        )
        self.teardown_button = self._button(
            "&Tear down…", "Delete the stack and every file in its bucket", self.confirm_teardown
        )
        self.stop_button = self._button(
            "Stop &watching",
            "Stop following CloudFormation (it carries on)",
            lambda: self._cancel("stack"),
        )
        self.busy = QProgressBar()
        self.busy.setRange(0, 0)
        self.busy.setVisible(False)
        self.log = QPlainTextEdit()
        self.log.setObjectName("eventLog")
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(2000)
        self.log.setPlaceholderText("Stack events appear here while deploying.")
        self.auto_download = QCheckBox("&Download finished cloud jobs automatically")

        stack = QGroupBox("Stack")
        sform = QFormLayout(stack)
        sform.addRow("Stack &name", self.stack_name)
        sform.addRow("Status", _row(self.stack_status, self.refresh_button))
        sform.addRow("GPU instance types", self.gpu_types)
        sform.addRow("Chunks at once", self.max_parallel)
        sform.addRow("Worker image", self.image)
        sform.addRow(_row(self.deploy_button, self.teardown_button, self.stop_button))
        sform.addRow(self.busy)
        sform.addRow(self.log)
        sform.addRow(self.auto_download)

        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        columns = QHBoxLayout()
        columns.addWidget(creds, 1)
        columns.addWidget(stack, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(columns, 1)
        layout.addWidget(self.buttons)
        self.resize(980, 560)

    def _load(self, s: AppSettings) -> None:
        self.region.setCurrentText(s.cloud_region)
        try:
            profiles = work.profiles()
        except VsrError as exc:
            profiles = []
            self.identity.setText(exc.user_message())
        self.profile.addItems(profiles)
        if s.cloud_profile:
            if s.cloud_profile not in profiles:
                self.profile.addItem(s.cloud_profile)
            self.profile.setCurrentText(s.cloud_profile)
        self.account.setText(s.cloud_keychain_account)
        mode = (
            self.use_profile
            if s.cloud_profile
            else self.use_keys
            if s.cloud_keychain_account
            else self.use_default
        )
        mode.setChecked(True)
        self.stack_name.setText(s.cloud_stack_name)
        self.auto_download.setChecked(s.cloud_auto_download)
        self.sso_info.setVisible(False)

    # -- what the user chose ------------------------------------------------------------

    def chosen_settings(self) -> AppSettings:
        """The dialog's choices as settings: names only (no key ID, no secret)."""
        profile = self.profile.currentText().strip() if self.use_profile.isChecked() else ""
        account = self.account.text().strip() if self.use_keys.isChecked() else ""
        return replace(
            self._settings,
            cloud_region=self.region.currentText().strip(),
            cloud_profile=profile,
            cloud_keychain_account=account,
            cloud_stack_name=self.stack_name.text().strip() or "vsr-desktop",
            cloud_auto_download=self.auto_download.isChecked(),
        )

    def _stack(self) -> str:
        return self.chosen_settings().cloud_stack_name

    def accept(self) -> None:
        self.settingsSaved.emit(self.chosen_settings())
        super().accept()

    def done(self, result: int) -> None:
        """Closing stops waiting (CloudFormation carries on) and joins the threads."""
        self.runner.shutdown()
        super().done(result)

    # -- actions ------------------------------------------------------------------------

    def _run(self, kind: str, fn: Any, lane: str = "") -> None:
        self.runner.start(Task(kind, lane or kind, fn))

    @Slot()
    def check(self) -> None:
        settings = self.chosen_settings()
        self.identity.setText("Checking…")
        self._run("check", lambda ctx: work.check(settings), "creds")

    @Slot()
    def store_keys(self) -> None:
        account, key_id, secret = self.account.text(), self.key_id.text(), self.secret.text()
        self.secret.clear()  # held only by the task until the keychain has it
        self._run("keys", lambda ctx: work.store_keys(account, key_id, secret), "creds")

    @Slot()
    def forget(self) -> None:
        account = self.account.text()
        self._run("forget", lambda ctx: work.forget_keys(account), "creds")

    @Slot()
    def sign_in(self) -> None:
        profile = self.profile.currentText().strip()
        client, cache = self.sso_client, self.sso_cache_dir
        self.sso_info.setText("Starting the sign-in…")
        self.sso_info.setVisible(True)
        self._run("sso", lambda ctx: work.sso_sign_in(profile, ctx, client, cache))

    @Slot()
    def refresh(self) -> None:
        settings = self.chosen_settings()
        self._run("status", lambda ctx: work.stack_status(settings), "stack")

    @Slot()
    def deploy(self) -> None:
        settings, seconds = self.chosen_settings(), self.poll_seconds
        try:
            params = work.deploy_parameters(
                self.gpu_types.text(), self.max_parallel.value(), self.image.text()
            )
        except VsrError as exc:
            show_error(self, "Cannot deploy", exc)
            return
        self.log.appendPlainText(f"Deploying {settings.cloud_stack_name}…")
        self._run("deploy", lambda ctx: work.deploy(settings, params, ctx, seconds), "stack")

    @Slot()
    def confirm_teardown(self) -> None:
        name = self._stack()
        box = QMessageBox(
            QMessageBox.Icon.Warning,
            "Tear down the stack?",
            f"Delete the stack {name} and everything in it?",
            parent=self,
        )
        box.setObjectName("teardownConfirm")
        box.setInformativeText(
            "Every file in the stack's S3 bucket will be deleted: uploaded sources, finished "
            "chunks and any output not downloaded yet. Running cloud jobs stop. This cannot "
            "be undone; Deploy creates an empty stack again."
        )
        self.confirm_button = box.addButton("Tear down", QMessageBox.ButtonRole.DestructiveRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        box.finished.connect(lambda _r: self._teardown_answered(box))
        self.teardown_box = box
        box.open()

    def _teardown_answered(self, box: QMessageBox) -> None:
        if box.clickedButton() is not self.confirm_button:
            return
        settings, seconds = self.chosen_settings(), self.poll_seconds
        self.log.appendPlainText(f"Tearing down {settings.cloud_stack_name}…")
        self._run("teardown", lambda ctx: work.teardown(settings, ctx, seconds), "stack")

    def _cancel(self, lane: str) -> None:
        for task in self.runner.tasks():
            if task.lane == lane:
                self.runner.cancel(task.key)

    # -- results (GUI thread) -----------------------------------------------------------

    @Slot(str, object)
    def _on_progress(self, key: str, value: object) -> None:
        if isinstance(value, work.SignInPrompt):
            self.sso_info.setText(value.html())
        elif isinstance(value, str):
            self.log.appendPlainText(value)  # appended: the newest line is at the bottom

    @Slot(str, object)
    def _on_finished(self, key: str, result: object) -> None:
        if key == "check":
            self.identity.setText(f"Signed in as {result}")
        elif key == "keys":
            self.key_id.clear()
            self.identity.setText(f"Keys kept in the keychain as “{result}”; press Check")
        elif key == "forget":
            self.identity.setText("Keys removed from the keychain")
        elif key == "sso":
            self.sso_info.setText("Signed in. Press Check to see the account.")
        elif key in ("status", "deploy", "teardown"):
            self._show_stack(result)
            if key == "deploy":
                self.log.appendPlainText("Done: the stack is ready.")
                self.settingsSaved.emit(self.chosen_settings())
            elif key == "teardown":
                self.log.appendPlainText("Done: the stack and its bucket are gone.")

    def _show_stack(self, result: object) -> None:
        if result is None or getattr(result, "status", "") == "DELETE_COMPLETE":
            self.stack_status.setText("Not deployed in this region")
            return
        self.stack_status.setText(work.describe_stack_info(result))
        gpu = work.gpu_types_of(result)
        if gpu:
            self.gpu_types.setText(gpu)
        # Show what is deployed, so Deploy / update sends it back rather than the defaults.
        deployed = getattr(result, "parameters", {}) or {}
        if deployed.get(work.PARAM_IMAGE):
            self.image.setText(deployed[work.PARAM_IMAGE])
        if str(deployed.get(work.PARAM_MAX_PARALLEL, "")).isdigit():
            self.max_parallel.setValue(int(deployed[work.PARAM_MAX_PARALLEL]))

    @Slot(str, object)
    def _on_failed(self, key: str, error: object) -> None:
        detail = (
            error
            if isinstance(error, VsrError)
            else VsrError(f"{type(error).__name__}: {error}", "check the settings and try again")
        )
        if key == "check":
            self.identity.setText(detail.message)
        if key in ("deploy", "teardown"):
            self.log.appendPlainText(f"Failed: {detail.user_message()}")
        if key == "sso":
            self.sso_info.setText(detail.message)
        show_error(self, _TITLES.get(key, "Cloud error"), detail)

    @Slot(str)
    def _on_cancelled(self, key: str) -> None:
        if key == "sso":
            self.sso_info.setText("Sign-in cancelled.")
        elif key in ("deploy", "teardown"):
            self.log.appendPlainText(
                "Stopped watching; CloudFormation carries on. Refresh shows where it got to."
            )

    @Slot()
    def _update_buttons(self, *_args: object) -> None:
        lanes = {task.lane for task in self.runner.tasks()}
        stack_busy = "stack" in lanes
        self.busy.setVisible(bool({"stack", "sso"} & lanes))
        for button in (self.deploy_button, self.teardown_button, self.refresh_button):
            button.setEnabled(not stack_busy)
        self.stop_button.setEnabled(stack_busy)
        profile_mode = self.use_profile.isChecked()
        self.profile.setEnabled(profile_mode)
        self.sso_button.setEnabled(
            profile_mode and "sso" not in lanes and work.is_sso(self.profile.currentText())
        )
        self.sso_cancel.setVisible("sso" in lanes)
        keys_mode = self.use_keys.isChecked()
        for widget in (self.account, self.key_id, self.secret, self.save_keys, self.forget_keys):
            widget.setEnabled(keys_mode and "creds" not in lanes)
        self.check_button.setEnabled("creds" not in lanes)


def _row(*widgets: QWidget) -> QWidget:
    holder = QWidget()
    layout = QHBoxLayout(holder)
    layout.setContentsMargins(0, 0, 0, 0)
    for widget in widgets:
        layout.addWidget(widget)
    layout.addStretch(1)
    return holder
