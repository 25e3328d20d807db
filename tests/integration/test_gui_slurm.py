"""From the window to the real one-node Slurm and back: rows polled into the jobs panel."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ClipFactory
from vsr_desktop.core.jobs import JobState, JobStore
from vsr_desktop.core.media import probe
from vsr_desktop.core.settings import AppSettings, SettingsFile
from vsr_desktop.gui.jobs.jobs_model import Column
from vsr_desktop.gui.main_window import MainWindow

pytestmark = pytest.mark.slurm


def test_send_to_slurm_runs_and_the_row_follows(
    slurm_cluster: Any,
    qtbot: Any,
    clip_factory: ClipFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key, value in slurm_cluster.env().items():
        monkeypatch.setenv(key, value)  # the app talks to the cluster through SLURM_CONF
    settings = SettingsFile(tmp_path / "settings.json")
    settings.save(
        AppSettings(
            outscale=2.0,
            output_folder=str(tmp_path),
            slurm_workdir=str(tmp_path / "shared"),
            slurm_max_parallel=2,
        )
    )
    window = MainWindow(
        settings_file=settings,
        store=JobStore(tmp_path / "jobs.sqlite3"),
        opener=lambda path: None,
        probe_device=False,
    )
    qtbot.addWidget(window)
    try:
        source = tmp_path / "clip.mp4"
        source.write_bytes(clip_factory(frames=16, gop=8, width=48, height=32).read_bytes())
        window.open_files([source])
        with qtbot.waitSignal(window.jobs_panel.jobFinished, timeout=180_000):
            window.send_to_slurm()
        job = window.store.all_jobs()[0]
        assert job.backend == "slurm" and job.state is JobState.COMPLETED
        output = tmp_path / "clip_x2.mp4"
        assert probe(output).video.frame_count == 16
        model = window.jobs_panel.model
        row = model.row_of(job.id)
        assert model.index(row, Column.BACKEND).data() == "Slurm"
        # ✓: the merge's "nothing lost" report, read from the cluster into the row.
        assert model.index(row, Column.STATE).data() == "Completed ✓"
        # Remove (through the protocol, off the GUI thread) frees the job's folder on the
        # cluster; the output stays.
        panel = window.jobs_panel
        assert Path(job.work_dir).is_dir()
        panel.select_job(job.id)
        panel.remove_action.trigger()
        qtbot.waitUntil(lambda: model.row_of(job.id) == -1, timeout=30_000)
        assert not Path(job.work_dir).exists() and output.exists()
        assert "its work files" in panel.status_label.text()
    finally:
        window.shutdown()


def test_send_to_slurm_without_a_work_folder_says_what_to_do(qtbot: Any, tmp_path: Path) -> None:
    from PySide6.QtWidgets import QApplication, QMessageBox

    window = MainWindow(
        settings_file=SettingsFile(tmp_path / "s.json"),
        store=JobStore(tmp_path / "j.sqlite3"),
        opener=lambda p: None,
        probe_device=False,
    )
    qtbot.addWidget(window)
    try:
        window.send_to_slurm()
        boxes = [
            w
            for w in QApplication.topLevelWidgets()
            if isinstance(w, QMessageBox) and w.isVisible()
        ]
        assert boxes and "Work folder" in boxes[0].informativeText()
        for box in boxes:
            box.close()
    finally:
        window.shutdown()


def test_login_host_setting_makes_an_ssh_target(qtbot: Any, tmp_path: Path) -> None:
    """Run on… → Slurm cluster → Login host: the window's backend submits over SSH with the
    cluster's own paths and vsr (the SSH path itself runs end to end in test_slurm_ssh)."""
    settings = SettingsFile(tmp_path / "settings.json")
    settings.save(
        AppSettings(
            slurm_workdir="/scratch/vsr",
            slurm_ssh_host="me@login1",
            slurm_remote_vsr="/opt/vsr/bin/vsr --debug",
        )
    )
    window = MainWindow(
        settings_file=settings,
        store=JobStore(tmp_path / "jobs.sqlite3"),
        opener=lambda path: None,
        probe_device=False,
    )
    qtbot.addWidget(window)
    panel = window.open_run_on().slurm_form
    assert panel.slurm_ssh_edit.text() == "me@login1"
    target = window.slurm_backend().target
    assert target.ssh is not None and target.ssh.host == "me@login1"
    assert str(target.workdir_root) == "/scratch/vsr"
    assert target.vsr_command == ("/opt/vsr/bin/vsr", "--debug")
    panel.slurm_ssh_edit.setText("")
    panel.slurm_ssh_edit.editingFinished.emit()
    qtbot.waitUntil(lambda: not window.app_settings.slurm_ssh_host, timeout=5000)
    assert window.slurm_backend().target.ssh is None


@pytest.mark.parametrize(
    ("edit", "value", "label"),
    [
        ("slurm_partition_edit", "gpu;touch /tmp/vsr-test-pwned", "Partition"),
        ("slurm_partition_edit", "gpu\ntouch /tmp/vsr-test-pwned", "Partition"),
        ("slurm_ssh_edit", "-oProxyCommand=touch /tmp/vsr-test-pwned", "Login host"),
        ("slurm_workdir_edit", "/scratch\x1b[2Jvsr", "Work folder"),
        ("slurm_vsr_edit", "vsr 'unclosed", "vsr on the cluster"),
    ],
)
def test_the_slurm_form_refuses_what_a_shell_would_run(
    qtbot: Any, tmp_path: Path, edit: str, value: str, label: str
) -> None:
    """A refused field keeps its last good value (in the settings and the window's
    backend) and the form says which field and what it allows."""
    settings = SettingsFile(tmp_path / "settings.json")
    settings.save(
        AppSettings(slurm_workdir="/scratch/vsr", slurm_partition="gpu", slurm_ssh_host="me@l1")
    )
    window = MainWindow(
        settings_file=settings,
        store=JobStore(tmp_path / "jobs.sqlite3"),
        opener=lambda path: None,
        probe_device=False,
    )
    qtbot.addWidget(window)
    try:
        panel = window.open_run_on().slurm_form
        getattr(panel, edit).setText(value)
        getattr(panel, edit).editingFinished.emit()
        assert not panel.slurm_error_label.isHidden()
        assert f"Slurm cluster → {label}" in panel.slurm_error_label.text()
        kept = window.app_settings
        assert (kept.slurm_workdir, kept.slurm_partition, kept.slurm_ssh_host) == (
            "/scratch/vsr",
            "gpu",
            "me@l1",
        )
        assert settings.load().slurm_partition == "gpu"  # what was saved is the good value
        target = window.slurm_backend().target
        assert target.partition == "gpu" and target.ssh is not None
        assert target.ssh.host == "me@l1"
        getattr(panel, edit).setText({"slurm_partition_edit": "debug"}.get(edit, ""))
        getattr(panel, edit).editingFinished.emit()
        assert panel.slurm_error_label.isHidden()
        assert not Path("/tmp/vsr-test-pwned").exists()
    finally:
        window.shutdown()
