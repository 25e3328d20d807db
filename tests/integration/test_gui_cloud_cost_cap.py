"""The cost cap in the app: the send dialog's field travels with the job, and the app's poller
stops a job past its cap and says why in the jobs panel (moto server over HTTP, real widgets).

Boundary: moto's Batch runs no container; a job "runs" for MOTO_SIMPLE_BATCH_FAIL_AFTER s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest
from PySide6.QtCore import Qt

from tests.conftest import ClipFactory
from tests.helpers.aws_fixture import MotoServer
from tests.helpers.cloud_infra import STACK_NAME, create_cloud_stack
from tests.helpers.gui_cloud import cloud_settings_file, cloud_window
from vsr_desktop.backends.aws.backend import AwsBackend
from vsr_desktop.core.jobs import JobState, JobStore
from vsr_desktop.core.settings import SettingsFile
from vsr_desktop.gui.cloud.submit_dialog import SubmitDialog
from vsr_desktop.gui.jobs.jobs_model import Column
from vsr_desktop.gui.main_window import spec_for

TIMEOUT_MS = 60_000


@pytest.fixture()
def settings_file(aws: MotoServer, tmp_path: Path) -> SettingsFile:
    file = cloud_settings_file(tmp_path)
    create_cloud_stack()
    return file


def _source(tmp_path: Path, clip_factory: ClipFactory) -> Path:
    source = tmp_path / "clip.mp4"
    source.write_bytes(clip_factory(frames=24, gop=8, width=48, height=32).read_bytes())
    return source


def test_the_dialogs_cost_cap_goes_with_the_job(
    qtbot: Any, settings_file: SettingsFile, tmp_path: Path, clip_factory: ClipFactory
) -> None:
    window = cloud_window(qtbot, settings_file, tmp_path)
    try:
        window.open_files([_source(tmp_path, clip_factory)])
        window.send_to_aws()
        dialog = window.submit_dialog
        assert isinstance(dialog, SubmitDialog)
        assert dialog.max_cost.value() == 0 and dialog.max_cost.text() == "no cap"  # opt-in
        assert "app is closed" in dialog.max_cost.toolTip()
        qtbot.waitUntil(dialog.submit_button.isEnabled, timeout=TIMEOUT_MS)
        dialog.max_cost.setValue(25.0)
        with qtbot.waitSignal(dialog.accepted, timeout=TIMEOUT_MS):
            dialog.submit_button.click()
        [job] = window.store.all_jobs()
        assert AwsBackend.aws_state(job)["max_cost_usd"] == 25.0
    finally:
        window.shutdown()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_the_apps_poller_stops_a_job_past_its_cap_and_the_row_says_why(
    qtbot: Any,
    settings_file: SettingsFile,
    tmp_path: Path,
    clip_factory: ClipFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MOTO_SIMPLE_BATCH_FAIL_AFTER", "10")  # the split job runs 10 s
    backend = AwsBackend(
        JobStore(tmp_path / "jobs.sqlite3"), boto3.session.Session(), stack_name=STACK_NAME
    )
    spec = spec_for(settings_file.load(), _source(tmp_path, clip_factory), "aws")
    # The split job's CPU time passes $0.0001 after ~2 s: the app, not the job, stops it.
    job = backend.submit(spec, price_per_gpu_hour=0.5, max_cost_usd=0.0001)
    window = cloud_window(qtbot, settings_file, tmp_path)
    try:
        qtbot.waitUntil(
            lambda: window.store.get(job.id).state is JobState.FAILED, timeout=TIMEOUT_MS
        )
        model = window.jobs_panel.model
        model.refresh()
        assert model.index_of(job.id, Column.STATE).data() == "Failed"
        why = model.index_of(job.id, Column.STATE).data(Qt.ItemDataRole.ToolTipRole)
        assert "stopped by its cost cap" in why and "1 Batch job(s)" in why
        batch = boto3.client("batch")
        [split] = batch.list_jobs(
            jobQueue=backend.stack().outputs["CpuJobQueueArn"],
            filters=[{"name": "JOB_NAME", "values": [f"vsr-{job.id}-split"]}],
        )["jobSummaryList"]
        # TerminateJob reached it with the reason (moto's simple Batch keeps its status).
        described = batch.describe_jobs(jobs=[split["jobId"]])["jobs"][0]
        assert described["statusReason"] == "vsr_desktop cost cap $0.00 reached"
    finally:
        window.shutdown()
