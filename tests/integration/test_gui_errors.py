"""Every failure the window shows uses the one error dialog: the message word-wrapped, the
whole text (a job's log end, a traceback) copyable under Details. Each failure here is real:
a job whose source vanished, a download whose checksum is wrong, a model file that is not a
model, a file that is not a video."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QLabel, QMessageBox

from tests.conftest import ClipFactory
from tests.integration.test_models_download import PAYLOAD, FileServer, server  # noqa: F401
from vsr_desktop.core.job_spec import JobSpec
from vsr_desktop.core.jobs import JobState, JobStore
from vsr_desktop.core.models.registry import MODEL_REGISTRY
from vsr_desktop.core.settings import AppSettings, SettingsFile
from vsr_desktop.gui.main_window import MainWindow


@pytest.fixture
def window(qtbot: Any, tmp_path: Path) -> Iterator[MainWindow]:
    file = SettingsFile(tmp_path / "settings.json")
    file.save(AppSettings(output_folder=str(tmp_path)))
    made = MainWindow(
        settings_file=file,
        store=JobStore(tmp_path / "jobs.sqlite3"),
        opener=lambda path: None,
        probe_device=False,
    )
    qtbot.addWidget(made)
    made.show()
    yield made
    made.shutdown(cancel_jobs=True)
    for box in QApplication.topLevelWidgets():
        if isinstance(box, QMessageBox) and box.isVisible():
            box.done(0)


def _assert_error_dialog(box: QMessageBox | None, *in_details: str) -> None:
    """The standard error dialog (error_dialog.error_box): selectable text, Details holding
    all of it, and a width that stays on a small screen (QMessageBox turns wrapping on
    when the text is long; error_box caps the labels' width)."""
    assert box is not None
    assert box.objectName() == "errorDialog"
    assert "max-width" in box.styleSheet()
    assert box.textInteractionFlags() & Qt.TextInteractionFlag.TextSelectableByMouse
    for text in in_details:
        assert text in box.detailedText(), (text, box.detailedText())
    assert box.width() < 900  # wraps rather than widening past a small screen


def test_a_failed_job_shows_its_reason_and_the_end_of_its_log(
    window: MainWindow, clip_factory: ClipFactory, tmp_path: Path, qtbot: Any
) -> None:
    panel = window.jobs_panel
    source = tmp_path / "vanishing.mp4"
    source.write_bytes(clip_factory(frames=8, gop=8, width=48, height=32).read_bytes())
    job = panel.local_backend.prepare(JobSpec(source, tmp_path / "out.mp4"))
    panel.local_backend.store.update(job.id, state=JobState.CANCELLED)
    source.unlink()  # gone before the retry: the job fails for real
    panel.model.refresh()
    panel.select_job(job.id)
    with qtbot.waitSignal(panel.jobFailed, timeout=120_000) as failed:
        panel.retry_action.trigger()
    qtbot.waitUntil(lambda: window.job_error is not None and window.job_error.isVisible())
    box = window.job_error
    _assert_error_dialog(box, failed.args[1])
    assert box is not None and "vanishing" in box.windowTitle()
    record = window.store.get(job.id)
    assert record.log_path and Path(record.log_path).is_file()
    assert "The end of the job's log" in box.detailedText()


def test_a_failed_download_opens_the_error_dialog(
    window: MainWindow,
    qtbot: Any,
    server: FileServer,  # noqa: F811 - the fixture imported above
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = dataclasses.replace(
        MODEL_REGISTRY["RealESRGAN_x4plus"],
        url=server.url,
        size_bytes=len(PAYLOAD),
        sha256=hashlib.sha256(b"something else").hexdigest(),  # the file will not match
    )
    monkeypatch.setitem(MODEL_REGISTRY, spec.name, spec)
    panel = window.settings_panel
    panel.model_combo.setCurrentIndex(panel.model_combo.findData(spec.name))
    qtbot.mouseClick(panel.download_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.download_error is not None, timeout=30_000)
    box = panel.download_error
    assert box is not None and box.windowTitle() == "The model download failed"
    reason = panel.model_status.toolTip()
    assert reason and "Download failed" in panel.model_status.text()
    _assert_error_dialog(box, reason.split(" (")[0][:40])


def test_a_model_that_cannot_load_says_why_with_details(
    window: MainWindow, clip_factory: ClipFactory, tmp_path: Path, qtbot: Any
) -> None:
    broken = tmp_path / "broken_model.pth"
    broken.write_bytes(b"this is not a model\n" * 64)
    window.open_files([clip_factory(frames=8, gop=8, width=48, height=32)])
    with qtbot.waitSignal(window.preview.renderFailed, timeout=120_000) as failed:
        window._settings_changed(
            dataclasses.replace(window.settings_panel.settings(), model=str(broken))
        )
    message = failed.args[0]
    assert window.notice.text() == message and window.notice.level == "error"
    assert window.notice.details_button.isVisibleTo(window.notice)
    box = window.notice.show_details()
    qtbot.waitUntil(lambda: box is not None and box.isVisible())
    _assert_error_dialog(box, message)
    assert box is not None and box.windowTitle() == "The preview failed"


def test_an_unreadable_source_has_details_too(
    window: MainWindow, tmp_path: Path, qtbot: Any
) -> None:
    bad = tmp_path / "not_a_video.mp4"
    bad.write_text("plain text, not a video\n" * 10)
    window.open_files([bad])
    qtbot.waitUntil(lambda: "cannot be read" in window.notice.text(), timeout=20_000)
    qtbot.mouseClick(window.notice.details_button, Qt.MouseButton.LeftButton)
    box = window.notice.details_box
    qtbot.waitUntil(lambda: box is not None and box.isVisible())
    reason = window.notice.text().split("cannot be read: ", 1)[1]
    _assert_error_dialog(box, reason)


def test_slurm_fields_are_named_where_they_are_now() -> None:
    """Errors name a Slurm field by the path a user follows to it: Jobs → Run on… →
    Slurm cluster → the field's own label in the Run on… dialog."""
    from vsr_desktop.core.settings import SLURM_FIELD_LABELS
    from vsr_desktop.gui.run_on_dialog import TARGETS, SlurmForm

    form = SlurmForm(AppSettings())
    labels = {w.text() for w in form.findChildren(QLabel)}
    assert ("slurm", "Slurm cluster") in TARGETS
    for name, path in SLURM_FIELD_LABELS.items():
        where, _, field = path.rpartition(" → ")
        assert where == "Jobs → Run on… → Slurm cluster", path
        assert field in labels, (name, field, labels)
    form.deleteLater()
