"""The app's cloud side against the moto server over real HTTP, through real Qt widgets.

Real: the main window, dialogs and jobs panel (offscreen), the AWS backend, uploads and
downloads of real clips to moto's S3, moto's Step Functions running the real state machine
(Batch jobs end at once: no Docker), moto's CloudFormation deploying the real template.
Boundaries: moto's Spot price is a dummy (the estimate's arithmetic is tested in
test_cloud_cost); IAM Identity Center is botocore's Stubber; the keychain is in memory.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from PySide6.QtWidgets import QApplication, QLineEdit, QMessageBox

from tests.conftest import ClipFactory
from tests.helpers.aws_fixture import REGION, MotoServer
from tests.helpers.cloud_infra import BUCKET, STACK_NAME, create_cloud_stack
from tests.helpers.gui_cloud import PART, cloud_settings_file, cloud_window
from tests.helpers.memory_keyring import MemoryKeyring
from vsr_desktop.backends.aws.backend import AwsBackend
from vsr_desktop.backends.aws.cost import estimate_job
from vsr_desktop.backends.aws.stack import deploy_stack, describe_stack
from vsr_desktop.core.jobs import JobRecord, JobState, JobStore
from vsr_desktop.core.settings import AppSettings, SettingsFile
from vsr_desktop.gui.cloud import estimate_view
from vsr_desktop.gui.cloud.account_dialog import CloudAccountDialog
from vsr_desktop.gui.cloud.context import AppAwsBackend, CloudContext
from vsr_desktop.gui.cloud.job_actions import Transfer
from vsr_desktop.gui.cloud.submit_dialog import SubmitDialog
from vsr_desktop.gui.jobs.jobs_model import Column, JobsTableModel, state_text
from vsr_desktop.gui.jobs.jobs_panel import can_download
from vsr_desktop.gui.main_window import spec_for

TIMEOUT_MS = 60_000
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
KEY_ID = "AKIAIOSFODNN7EXAMPLE"
BUCKET_STACK = """{"Resources": {"Bucket": {"Type": "AWS::S3::Bucket"}},
 "Outputs": {"BucketName": {"Value": {"Ref": "Bucket"}}}}"""


@pytest.fixture()
def settings_file(tmp_path: Path) -> SettingsFile:
    return cloud_settings_file(tmp_path)


@pytest.fixture()
def stack(aws: MotoServer) -> Any:
    return create_cloud_stack()  # bucket, Batch, the real state machine, a stand-in stack


def _source(tmp_path: Path, clip: Path) -> Path:
    source = tmp_path / "clip.mp4"
    source.write_bytes(clip.read_bytes())
    return source


def _submitted(tmp_path: Path, settings_file: SettingsFile, source: Path) -> JobRecord:
    """A job sent the way the CLI does, before the window starts (the app finds it)."""
    backend = AwsBackend(
        JobStore(tmp_path / "jobs.sqlite3"),
        boto3.session.Session(),
        stack_name=STACK_NAME,
        part_size=PART,
    )
    return backend.submit(spec_for(settings_file.load(), source, "aws"), price_per_gpu_hour=0.5)


def _execution_status(job: JobRecord) -> str:
    arn = AwsBackend.aws_state(job)["execution_arn"]
    return str(boto3.client("stepfunctions").describe_execution(executionArn=arn)["status"])


def _close_dialogs() -> list[QMessageBox]:
    boxes = [
        w for w in QApplication.topLevelWidgets() if isinstance(w, QMessageBox) and w.isVisible()
    ]
    for box in boxes:
        box.close()
    return boxes


# --- send to cloud ---------------------------------------------------------------------------


def test_estimate_fills_in_and_submit_uploads_with_progress(
    stack: Any, qtbot: Any, settings_file: SettingsFile, tmp_path: Path, clip_factory: ClipFactory
) -> None:
    source = _source(tmp_path, clip_factory(width=320, height=240, frames=48, crf=4))
    window = cloud_window(qtbot, settings_file, tmp_path)
    try:
        window.open_files([source])
        window.send_to_aws()
        dialog = window.submit_dialog
        assert isinstance(dialog, SubmitDialog) and dialog.isVisible()
        qtbot.waitUntil(dialog.submit_button.isEnabled, timeout=TIMEOUT_MS)
        items = [dialog.table.item(0, c) for c in range(dialog.table.columnCount())]
        cells = [item.text() if item is not None else "" for item in items]
        assert cells[0] == "clip.mp4" and cells[1] == "48"
        assert cells[2].split()[0] in {"g4dn.xlarge", "g5.xlarge"}  # the stack's GPU types
        assert cells[3].endswith((" h", " min", " s")) and "min" in cells[4]
        assert cells[5].startswith("$") and cells[6].split()[1] in {"GB", "MB"}
        assert "GPU time" in dialog.summary.text() and "download" in dialog.summary.text()
        assert not dialog.pause_button.isVisible()  # only while uploading
        assert "estimated from published" in dialog.assumptions.text()

        seen: list[tuple[int, str]] = []  # (percent, the row's state text at that moment)

        def record(key: str, value: object) -> None:  # a slot on the GUI thread
            if isinstance(value, Transfer) and value.total:  # bytes, not "preparing"
                job = window.store.all_jobs()[0]
                seen.append((value.percent, state_text(job)))

        window.cloud_jobs.transferProgress.connect(record)
        with qtbot.waitSignal(dialog.accepted, timeout=TIMEOUT_MS):
            dialog.submit_button.click()
        [job] = window.store.all_jobs()
        assert job.backend == "aws" and job.state is JobState.RUNNING
        stored = (
            boto3.client("s3")
            .get_object(Bucket=BUCKET, Key=f"jobs/{job.id}/input/source.mp4")["Body"]
            .read()
        )
        assert stored == source.read_bytes()
        assert len(seen) > 2 and seen[-1][0] == 100  # several 64 KiB parts
        # The row reads the store, which the upload thread may already have moved one part
        # further by the time the GUI thread handles the signal: never behind, though.
        shown = [(pct, text.removeprefix("Running — uploading ")) for pct, text in seen]
        assert all(rest.endswith("%") and int(rest[:-1]) >= pct for pct, rest in shown), seen
        assert AwsBackend.aws_state(job)["price_per_gpu_hour"] > 0  # from the estimate
        model = window.jobs_panel.model
        model.refresh()
        assert model.index_of(job.id, Column.BACKEND).data() == "AWS"
        # moto runs the real state machine (Batch jobs end at once); the poller follows it.
        qtbot.waitUntil(
            lambda: window.store.get(job.id).state is JobState.COMPLETED, timeout=TIMEOUT_MS
        )
        model.refresh()
        assert model.index_of(job.id, Column.STATE).data() == "Completed — ready to download"
    finally:
        window.shutdown()


def test_pause_upload_then_retry_resumes_it(
    stack: Any, qtbot: Any, settings_file: SettingsFile, tmp_path: Path, clip_factory: ClipFactory
) -> None:
    source = _source(tmp_path, clip_factory(width=320, height=240, frames=48, crf=4))
    window = cloud_window(qtbot, settings_file, tmp_path)
    try:
        window.open_files([source])
        window.send_to_aws()
        dialog = window.submit_dialog
        assert isinstance(dialog, SubmitDialog)
        qtbot.waitUntil(dialog.submit_button.isEnabled, timeout=TIMEOUT_MS)
        window.cloud_jobs.transferProgress.connect(lambda key, value: dialog.pause())
        with qtbot.waitSignal(window.cloud_jobs.taskEnded, timeout=TIMEOUT_MS) as ended:
            dialog.submit_button.click()
        assert ended.args[1] == "cancelled"
        assert "paused" in dialog.status.text()
        [job] = window.store.all_jobs()
        assert job.state is JobState.CANCELLED and "upload paused" in job.message
        assert "execution_arn" not in AwsBackend.aws_state(job)

        panel = window.jobs_panel
        panel.model.refresh()
        panel.select_job(job.id)
        assert panel.retry_action.isEnabled() and not panel.download_action.isEnabled()
        with qtbot.waitSignal(window.cloud_jobs.taskEnded, timeout=TIMEOUT_MS) as ended:
            panel.retry_action.trigger()
        assert ended.args[1] == "done"
        job = window.store.get(job.id)
        assert AwsBackend.aws_state(job)["execution_arn"].endswith(job.id)
        stored = (
            boto3.client("s3")
            .get_object(Bucket=BUCKET, Key=f"jobs/{job.id}/input/source.mp4")["Body"]
            .read()
        )
        assert stored == source.read_bytes()
        qtbot.waitUntil(lambda: _execution_status(job) == "SUCCEEDED", timeout=TIMEOUT_MS)
    finally:
        window.shutdown()


def test_estimate_without_a_stack_says_to_deploy(
    aws: MotoServer,
    qtbot: Any,
    settings_file: SettingsFile,
    tmp_path: Path,
    clip_factory: ClipFactory,
) -> None:
    source = _source(tmp_path, clip_factory(frames=24, gop=8, width=48, height=32))
    window = cloud_window(qtbot, settings_file, tmp_path)
    try:
        window.open_files([source])
        window.send_to_aws()
        dialog = window.submit_dialog
        assert isinstance(dialog, SubmitDialog)
        qtbot.waitUntil(lambda: "not deployed" in dialog.status.text(), timeout=TIMEOUT_MS)
        boxes = _close_dialogs()
        assert boxes and "Deploy" in boxes[0].informativeText()
        assert not dialog.submit_button.isEnabled()
    finally:
        window.shutdown()


# --- the jobs panel's cloud rows -------------------------------------------------------------


def test_download_action_fetches_the_output(
    stack: Any, qtbot: Any, settings_file: SettingsFile, tmp_path: Path, clip_factory: ClipFactory
) -> None:
    source = _source(tmp_path, clip_factory(frames=24, gop=8, width=48, height=32))
    job = _submitted(tmp_path, settings_file, source)
    output = Path(job.output)
    body = b"finished video bytes " * 1000
    boto3.client("s3").put_object(
        Bucket=BUCKET, Key=f"jobs/{job.id}/output/{output.name}", Body=body
    )
    qtbot.waitUntil(lambda: _execution_status(job) == "SUCCEEDED", timeout=TIMEOUT_MS)
    window = cloud_window(qtbot, settings_file, tmp_path)
    try:
        panel = window.jobs_panel
        qtbot.waitUntil(
            lambda: window.store.get(job.id).state is JobState.COMPLETED, timeout=TIMEOUT_MS
        )  # the poller saw it finish
        panel.model.refresh()
        panel.select_job(job.id)
        assert panel.model.index_of(job.id, Column.STATE).data() == "Completed — ready to download"
        assert panel.download_action.isEnabled() and not output.exists()
        with qtbot.waitSignal(window.cloud_jobs.taskEnded, timeout=TIMEOUT_MS) as ended:
            panel.download_action.trigger()
        assert ended.args[1] == "done"
        assert output.read_bytes() == body
        panel.model.refresh()
        done = window.store.get(job.id)
        assert not can_download(done, panel.backend_or_none(done))
        assert not panel.download_action.isEnabled()
        # The download is checked against the source here; these bytes are no video: ⚠.
        assert panel.model.index_of(job.id, Column.STATE).data() == "Completed ⚠ check the details"
        assert done.verify_report is not None and not done.verify_report["ok"]
        assert panel.open_output_action.isEnabled()
    finally:
        window.shutdown()


def _output_in_the_cloud(
    tmp_path: Path, settings_file: SettingsFile, clip_factory: ClipFactory, body: bytes
) -> tuple[JobRecord, Path]:
    """Auto-download on, a job submitted, and its output already in S3."""
    settings = settings_file.load()
    settings.cloud_auto_download = True
    settings_file.save(settings)
    source = _source(tmp_path, clip_factory(frames=24, gop=8, width=48, height=32))
    job = _submitted(tmp_path, settings_file, source)
    output = Path(job.output)
    boto3.client("s3").put_object(
        Bucket=BUCKET, Key=f"jobs/{job.id}/output/{output.name}", Body=body
    )
    return job, output


def test_auto_download_when_the_poller_sees_the_job_complete(
    stack: Any, qtbot: Any, settings_file: SettingsFile, tmp_path: Path, clip_factory: ClipFactory
) -> None:
    job, output = _output_in_the_cloud(tmp_path, settings_file, clip_factory, b"auto")
    window = cloud_window(qtbot, settings_file, tmp_path)
    try:
        qtbot.waitUntil(
            lambda: output.exists() and not window.cloud_jobs.busy(job.id), timeout=TIMEOUT_MS
        )
        assert output.read_bytes() == b"auto"
        assert AwsBackend.aws_state(window.store.get(job.id))["downloaded"] is True
    finally:
        window.shutdown()


def test_jobs_finished_while_the_app_was_closed_download_at_start(
    stack: Any, qtbot: Any, settings_file: SettingsFile, tmp_path: Path, clip_factory: ClipFactory
) -> None:
    job, output = _output_in_the_cloud(tmp_path, settings_file, clip_factory, b"while away")
    # The app was closed when the job finished: the store already says so.
    JobStore(tmp_path / "jobs.sqlite3").update(job.id, state=JobState.COMPLETED, phase="")
    window = cloud_window(qtbot, settings_file, tmp_path)
    try:
        qtbot.waitUntil(
            lambda: output.exists() and not window.cloud_jobs.busy(job.id), timeout=TIMEOUT_MS
        )
        assert output.read_bytes() == b"while away"
    finally:
        window.shutdown()


# moto's interpreter thread for the stopped .sync task dies on its own bug; see
# test_cloud_backend. The backend's behaviour is what is checked.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_cancel_from_the_panel_runs_off_the_gui_thread_and_ends_cancelled(
    stack: Any,
    qtbot: Any,
    settings_file: SettingsFile,
    tmp_path: Path,
    clip_factory: ClipFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MOTO_SIMPLE_BATCH_FAIL_AFTER", "4")  # the split job runs for 4 s
    source = _source(tmp_path, clip_factory(frames=24, gop=8, width=48, height=32))
    job = _submitted(tmp_path, settings_file, source)
    threads: list[threading.Thread] = []
    original = AwsBackend.cancel

    def cancel(self: AwsBackend, record: JobRecord) -> JobRecord:
        threads.append(threading.current_thread())
        return original(self, record)

    monkeypatch.setattr(AwsBackend, "cancel", cancel)
    window = cloud_window(qtbot, settings_file, tmp_path)
    try:
        panel = window.jobs_panel
        panel.select_job(job.id)
        assert panel.cancel_action.isEnabled()
        with qtbot.waitSignal(window.cloud_jobs.taskEnded, timeout=TIMEOUT_MS) as ended:
            panel.cancel_action.trigger()
        assert ended.args[1] == "done", _close_dialogs()
        assert threads and threads[0] is not threading.main_thread()
        panel.model.refresh()
        assert window.store.get(job.id).state is JobState.CANCELLED
        assert panel.model.index_of(job.id, Column.STATE).data().startswith("Cancelled")
        assert panel.retry_action.isEnabled()
        # A poll holding the row as it was before the cancel (RUNNING) must not undo it.
        assert job.state is JobState.RUNNING
        backend = panel.backend_or_none(job)
        assert isinstance(backend, AppAwsBackend)
        assert backend.poll(job).state is JobState.CANCELLED
        # moto ends a stopped .sync execution FAILED rather than ABORTED (FACTS.md).
        qtbot.waitUntil(lambda: _execution_status(job) in {"ABORTED", "FAILED"}, timeout=TIMEOUT_MS)
    finally:
        window.shutdown()


def test_cloud_rows_in_the_model_and_the_download_rule(qtmodeltester: Any, tmp_path: Path) -> None:
    """ "Ready to download" is the AWS backend's own answer (needs_fetch), asked without
    opening a session: no AWS call happens here."""
    from vsr_desktop.backends.local import LocalBackend

    store = JobStore(tmp_path / "jobs.sqlite3")
    for state, aws in (
        (JobState.COMPLETED, {"downloaded": False}),
        (JobState.COMPLETED, {"downloaded": True}),
        (JobState.RUNNING, {"downloaded": False}),
    ):
        store.add(
            JobRecord(
                id=JobStore.new_id(),
                name="a.mp4",
                backend="aws",
                source="/a.mp4",
                output="/a_x2.mp4",
                state=state,
                settings={"aws": aws},
                phase="running 1/2 chunks" if state is JobState.RUNNING else "",
                cost_usd=0.42,
            )
        )
    context = CloudContext(AppSettings, store)
    context.session = lambda *a: pytest.fail("a session was opened")  # type: ignore[method-assign]
    backend = AppAwsBackend(context)
    model = JobsTableModel(store, needs_fetch=lambda job: can_download(job, backend))
    qtmodeltester.check(model)
    jobs = store.all_jobs()
    assert [can_download(j, backend) for j in jobs] == [
        j.state is JobState.COMPLETED and not j.settings["aws"]["downloaded"] for j in jobs
    ]
    texts = {state_text(j, model.ready_to_download(j)) for j in jobs}
    assert texts == {"Completed — ready to download", "Completed", "Running — running 1/2 chunks"}
    assert {model.index(r, Column.STATE).data() for r in range(3)} == texts
    assert {model.index(r, Column.COST).data() for r in range(3)} == {"~$0.42"}
    local = JobRecord(
        id="x", name="b", backend="local", source="/b", output="/b2", state=JobState.COMPLETED
    )
    assert not can_download(local, LocalBackend(store, work_root=tmp_path))


def test_remove_asks_before_deleting_an_undownloaded_cloud_output(
    qtbot: Any, settings_file: SettingsFile, tmp_path: Path
) -> None:
    """The question's words are the AWS backend's (work_lost_on_remove); Cancel keeps it."""
    from PySide6.QtWidgets import QMessageBox as Box

    window = cloud_window(qtbot, settings_file, tmp_path)
    try:
        job = JobRecord(
            id=JobStore.new_id(),
            name="cloud.mp4",
            backend="aws",
            source="/cloud.mp4",
            output=str(tmp_path / "cloud_x2.mp4"),
            state=JobState.COMPLETED,
            settings={"aws": {"downloaded": False}},
        )
        window.store.add(job)
        panel = window.jobs_panel
        panel.model.refresh()
        panel.select_job(job.id)
        assert panel.download_action.isEnabled()
        panel.remove_action.trigger()
        box = panel.remove_box
        assert box is not None and "not downloaded" in box.informativeText()
        box.button(Box.StandardButton.Cancel).click()
        assert panel.model.row_of(job.id) != -1
    finally:
        window.shutdown()


def test_estimate_words_from_a_real_estimate(tmp_path: Path) -> None:
    from vsr_desktop.core.errors import InputError
    from vsr_desktop.core.job_spec import JobSpec
    from vsr_desktop.core.media.encode import EncodeSettings

    est = estimate_job(
        frames=24 * 3600,
        width=1920,
        height=1080,
        scale=2,
        model="realesr-animevideov3",
        instance_types=["g4dn.xlarge", "g5.xlarge"],
        spot_prices={"g4dn.xlarge": 0.2, "g5.xlarge": 0.4},
        max_parallel=16,
    )
    good = estimate_view.SourceEstimate(
        JobSpec(source=tmp_path / "a.mp4", output=tmp_path / "b.mp4", encode=EncodeSettings()), est
    )
    bad = estimate_view.SourceEstimate(
        JobSpec(source=tmp_path / "c.mp4", output=tmp_path / "d.mp4"),
        error=InputError("no such file"),
    )
    cells = estimate_view.row_cells(good)
    assert cells[1] == "86,400" and cells[2].startswith(est.instance_type)
    assert cells[3] == f"{est.gpu_hours:.2f} h" and cells[6].startswith(f"{est.output_gb:.2f} GB")
    assert estimate_view.gpu_time(0.05) == "3.0 min"
    assert estimate_view.gpu_time(0.001) == "4 s" and estimate_view.size(0.0123) == "12.3 MB"
    assert cells[5] == f"${est.total_usd:.2f}–${est.total_usd_high:.2f}"
    text = estimate_view.summary([good, bad])
    assert f"{est.gpu_hours:.2f} h of GPU time" in text and "1 source(s) have no estimate" in text
    assert not bad.submittable and good.submittable and good.price_per_gpu_hour == 0.2
    assert any("c.mp4 cannot be sent" in line for line in estimate_view.notes([good, bad]))


# --- the account and stack dialog ------------------------------------------------------------


def _account_dialog(qtbot: Any, settings: AppSettings) -> CloudAccountDialog:
    dialog = CloudAccountDialog(settings)
    qtbot.addWidget(dialog)
    dialog.poll_seconds = 0.1
    dialog.show()
    return dialog


@pytest.mark.filterwarnings("ignore:Tried to parse AWS.*:UserWarning")
def test_deploy_streams_stack_events_into_the_log(aws: MotoServer, qtbot: Any) -> None:
    """The real template through moto's CloudFormation (it records stack-level events)."""
    dialog = _account_dialog(qtbot, AppSettings(cloud_stack_name="vsr-gui"))
    try:
        with qtbot.waitSignal(dialog.settingsSaved, timeout=TIMEOUT_MS) as saved:
            dialog.deploy_button.click()
            assert dialog.busy.isVisible() and not dialog.deploy_button.isEnabled()
            assert dialog.stop_button.isEnabled()
        assert saved.args[0].cloud_stack_name == "vsr-gui"
        lines = dialog.log.toPlainText().splitlines()
        assert lines[0] == "Deploying vsr-gui…" and lines[-1] == "Done: the stack is ready."
        events = [line for line in lines if "AWS::CloudFormation::Stack" in line]
        assert "CREATE_IN_PROGRESS" in events[0] and "CREATE_COMPLETE" in events[-1]
        assert dialog.stack_status.text().startswith("CREATE_COMPLETE — bucket ")
        qtbot.waitUntil(lambda: not dialog.busy.isVisible())
        assert dialog.deploy_button.isEnabled()
        info = describe_stack(boto3.session.Session(), "vsr-gui")
        assert info is not None and info.ready
    finally:
        dialog.done(0)


def test_teardown_asks_first_then_empties_and_deletes(aws: MotoServer, qtbot: Any) -> None:
    """A bucket-only stack: moto cannot delete the real template's VPC (test_cloud_stack)."""
    session = boto3.session.Session()
    bucket = deploy_stack(session, BUCKET_STACK, {}, "vsr-bye", poll_seconds=0.1).output(
        "BucketName"
    )
    session.client("s3").put_object(Bucket=bucket, Key="jobs/x/output/a.mp4", Body=b"v")
    dialog = _account_dialog(qtbot, AppSettings(cloud_stack_name="vsr-bye"))
    try:
        dialog.teardown_button.click()
        box = dialog.teardown_box
        assert box is not None and box.isVisible()
        assert "bucket will be deleted" in box.informativeText()
        box.button(QMessageBox.StandardButton.Cancel).click()
        assert describe_stack(session, "vsr-bye") is not None  # "Cancel" deletes nothing
        dialog.teardown_button.click()
        with qtbot.waitSignal(dialog.runner.ended, timeout=TIMEOUT_MS):
            dialog.confirm_button.click()
        assert describe_stack(session, "vsr-bye") is None
        assert dialog.stack_status.text() == "Not deployed in this region"
        assert dialog.log.toPlainText().splitlines()[-1].startswith("Done: the stack")
    finally:
        dialog.done(0)


def test_secret_key_goes_to_the_keychain_never_the_settings(
    aws: MotoServer,
    qtbot: Any,
    memory_keyring: MemoryKeyring,
    tmp_path: Path,
    settings_file: SettingsFile,
    monkeypatch: pytest.MonkeyPatch,
    isolated_user_dirs: Path,
) -> None:
    window = cloud_window(qtbot, settings_file, tmp_path)
    try:
        window.open_cloud_dialog()
        dialog = window.cloud_dialog
        assert isinstance(dialog, CloudAccountDialog)
        assert dialog.secret.echoMode() is QLineEdit.EchoMode.Password
        dialog.use_keys.setChecked(True)
        dialog.account.setText("studio")
        dialog.key_id.setText(KEY_ID)
        dialog.secret.setText(SECRET)
        with qtbot.waitSignal(dialog.runner.ended, timeout=TIMEOUT_MS):
            dialog.save_keys.click()
        assert dialog.secret.text() == "" and dialog.key_id.text() == ""
        stored = json.loads(memory_keyring.items[("vsr-desktop-aws", "studio")])
        assert stored == {"access_key_id": KEY_ID, "secret_access_key": SECRET}
        # The check uses the keychain keys (moto accepts any), not the environment's.
        for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            monkeypatch.delenv(var)
        with qtbot.waitSignal(dialog.runner.ended, timeout=TIMEOUT_MS):
            dialog.check_button.click()
        assert (
            dialog.identity.text().startswith("Signed in as arn:aws:")
            and REGION in dialog.identity.text()
        )
        dialog.buttons.button(dialog.buttons.StandardButton.Save).click()
        assert window.app_settings.cloud_keychain_account == "studio"
    finally:
        window.close()  # saves the settings, as quitting does
    saved = settings_file.path.read_text()
    assert '"cloud_keychain_account": "studio"' in saved
    everything = [
        p for root in (tmp_path, isolated_user_dirs) for p in root.rglob("*") if p.is_file()
    ]
    assert settings_file.path in everything
    for path in everything:
        data = path.read_bytes()
        assert SECRET.encode() not in data, path
        assert KEY_ID.encode() not in data or path.suffix == ".mp4", path


def test_sso_sign_in_shows_the_code_and_can_be_cancelled(
    qtbot: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stubber for IAM Identity Center (a real sign-in needs a person and a browser)."""
    from vsr_desktop.backends.aws import sso_login

    config = tmp_path / "aws-config"
    config.write_text(
        "[profile corp]\nsso_session = corp\nsso_account_id = 123456789012\n"
        "sso_role_name = Editor\nregion = eu-west-1\n\n[sso-session corp]\n"
        "sso_start_url = https://corp.awsapps.com/start\nsso_region = eu-west-1\n"
    )
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    client = sso_login.oidc_client("eu-west-1")
    stub = Stubber(client)
    now = datetime.now(timezone.utc)
    stub.add_response(
        "register_client",
        {
            "clientId": "c1",
            "clientSecret": "s1",
            "clientIdIssuedAt": int(now.timestamp()),
            "clientSecretExpiresAt": int((now + timedelta(days=90)).timestamp()),
        },
    )
    stub.add_response(
        "start_device_authorization",
        {
            "deviceCode": "d1",
            "userCode": "WXYZ-1234",
            "verificationUri": "https://device.sso.eu-west-1.amazonaws.com/",
            "verificationUriComplete": "https://device.sso.eu-west-1.amazonaws.com/?user_code=WXYZ",
            "expiresIn": 600,
            "interval": 30,
        },
    )
    stub.add_client_error("create_token", "AuthorizationPendingException")
    dialog = _account_dialog(qtbot, AppSettings(cloud_profile="corp"))
    dialog.sso_client = client
    dialog.sso_cache_dir = tmp_path / "sso-cache"
    try:
        with stub:
            assert dialog.sso_button.isEnabled()
            with qtbot.waitSignal(dialog.runner.progress, timeout=TIMEOUT_MS):
                dialog.sso_button.click()
            assert (
                "WXYZ-1234" in dialog.sso_info.text() and "user_code=WXYZ" in dialog.sso_info.text()
            )
            assert dialog.sso_cancel.isVisible() and not dialog.sso_button.isEnabled()
            with qtbot.waitSignal(dialog.runner.cancelled, timeout=5_000):
                dialog.sso_cancel.click()  # the 30 s poll interval is cut short
        assert dialog.sso_info.text() == "Sign-in cancelled." and dialog.sso_button.isEnabled()
        assert not (tmp_path / "sso-cache").exists()
    finally:
        dialog.done(0)
