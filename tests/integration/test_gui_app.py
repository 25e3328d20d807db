"""The main window as a user drives it: open, drop, settings that persist, jobs, errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QApplication, QMessageBox

from tests.conftest import ClipFactory
from tests.integration.test_gui_jobs import GatedStore
from vsr_desktop.core.jobs import JobRecord, JobState, JobStore
from vsr_desktop.core.media import probe
from vsr_desktop.core.settings import AppSettings, SettingsFile
from vsr_desktop.gui.main_window import MainWindow

pytest.importorskip("pytestqt")


@pytest.fixture
def make_window(qtbot: Any, tmp_path: Path) -> Iterator[Any]:
    windows: list[MainWindow] = []

    def make() -> MainWindow:
        window = MainWindow(
            settings_file=SettingsFile(tmp_path / "settings.json"),
            store=JobStore(tmp_path / "jobs.sqlite3"),
            opener=lambda path: None,
            probe_device=False,
        )
        qtbot.addWidget(window)
        windows.append(window)
        return window

    yield make
    for window in windows:
        window.shutdown()
    _close_dialogs()


def _dialogs() -> list[QMessageBox]:
    return [
        w for w in QApplication.topLevelWidgets() if isinstance(w, QMessageBox) and w.isVisible()
    ]


def _close_dialogs() -> None:
    for box in _dialogs():
        box.close()


def test_open_files_queue_and_recent_files_persist(
    make_window: Any, clip_factory: ClipFactory, qtbot: Any
) -> None:
    a = clip_factory(frames=8, gop=8, width=48, height=32)
    b = clip_factory(frames=8, gop=8, width=64, height=48)
    window = make_window()
    window.open_files([a, b, a])
    assert window.source_paths() == [a, b]
    assert window.sources.currentItem().data(Qt.ItemDataRole.UserRole) == str(a)
    assert window.sources.currentItem().text() == a.name
    window.close()
    again = make_window()
    assert again.app_settings.recent_files[:2] == [str(a), str(b)]
    assert [act.text() for act in again.recent_menu.actions()][:2] == [str(a), str(b)]


def test_drop_videos_adds_them_and_non_videos_get_a_dialog(
    make_window: Any,
    clip_factory: ClipFactory,
    tmp_path: Path,
    qtbot: Any,
) -> None:
    window = make_window()
    clip = clip_factory(frames=8, gop=8, width=48, height=32)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(clip))])
    drop = QDropEvent(
        QPointF(10, 10),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    window.dropEvent(drop)
    assert window.source_paths() == [clip]
    note = tmp_path / "notes.txt"
    note.write_text("hi")
    mime2 = QMimeData()
    mime2.setUrls([QUrl.fromLocalFile(str(note))])
    window.dropEvent(
        QDropEvent(
            QPointF(10, 10),
            Qt.DropAction.CopyAction,
            mime2,
            Qt.MouseButton.LeftButton,
            Qt.KeyboardModifier.NoModifier,
        )
    )
    qtbot.waitUntil(lambda: bool(_dialogs()))
    assert "is a video" in _dialogs()[0].text()
    _close_dialogs()
    assert window.source_paths() == [clip]


def test_settings_changes_persist_across_restarts(make_window: Any, qtbot: Any) -> None:
    window = make_window()
    panel = window.settings_panel
    panel.codec_combo.setCurrentIndex(panel.codec_combo.findData("h265"))
    panel.scale_combo.setCurrentIndex(panel.scale_combo.findData(2.0))
    assert window.app_settings.codec == "h265" and window.app_settings.outscale == 2.0
    window.close()
    again = make_window()
    assert again.settings_panel.codec_combo.currentData() == "h265"
    assert again.app_settings.outscale == 2.0


def test_start_runs_a_job_to_completion(
    make_window: Any, clip_factory: ClipFactory, tmp_path: Path, qtbot: Any
) -> None:
    clip = tmp_path / "mine.mp4"
    clip.write_bytes(clip_factory(frames=8, gop=8, width=48, height=32).read_bytes())
    window = make_window()
    window.open_files([clip])
    panel = window.settings_panel
    panel.scale_combo.setCurrentIndex(panel.scale_combo.findData(2.0))
    window.show()
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    with qtbot.waitSignal(window.jobs_panel.jobFinished, timeout=120_000):
        qtbot.keyClick(window.sources, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    output = tmp_path / "mine_x2.mp4"
    assert output.exists()
    job = window.store.all_jobs()[0]
    assert job.state is JobState.COMPLETED and job.output == str(output)


def test_bad_input_shows_a_dialog_not_a_crash(make_window: Any, tmp_path: Path, qtbot: Any) -> None:
    window = make_window()
    window.open_files([tmp_path / "missing.mp4"])
    qtbot.waitUntil(lambda: bool(_dialogs()))
    assert "does not exist" in _dialogs()[0].text()
    _close_dialogs()
    fake = tmp_path / "fake.mp4"
    fake.write_text("not a video at all\n" * 20)
    window.open_files([fake])
    # The preview finds it unreadable: marked in the queue and said in the banner, no dialog.
    qtbot.waitUntil(lambda: "cannot be read" in window.notice.text(), timeout=10_000)
    assert "not a video" in window.notice.text() or "FFmpeg" in window.notice.text()
    assert not _dialogs()
    window.start_jobs()
    qtbot.waitUntil(lambda: bool(_dialogs()), timeout=10_000)
    assert "no readable video" in _dialogs()[0].text()
    _close_dialogs()
    assert window.store.all_jobs() == []  # refused before any job was recorded
    assert window.source_paths() == [fake]  # the queue is intact


def test_excepthook_logs_and_shows_a_dialog(qtbot: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from vsr_desktop.gui.errors import install_excepthook, user_log_path

    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # restored after the test
    install_excepthook()
    try:
        raise RuntimeError("boom in a slot")
    except RuntimeError as exc:
        sys.excepthook(type(exc), exc, exc.__traceback__)

    def hook_dialogs() -> list[QMessageBox]:
        return [d for d in _dialogs() if d.objectName() == "excepthookDialog"]

    qtbot.waitUntil(lambda: bool(hook_dialogs()))
    from vsr_desktop.gui.error_dialog import plain

    box = hook_dialogs()[0]
    assert "boom in a slot" in box.text()
    assert str(user_log_path()) in plain(box.informativeText())
    # Wrapped like every error dialog, the traceback copyable under Details.
    assert "Traceback" in box.detailedText() and "boom in a slot" in box.detailedText()
    _close_dialogs()
    log_text = user_log_path().read_text()
    assert "RuntimeError: boom in a slot" in log_text and "Traceback" in log_text


# --- quitting with jobs running, and the next start ------------------------------------------


def _window_over(qtbot: Any, tmp_path: Path, store: JobStore) -> MainWindow:
    settings = SettingsFile(tmp_path / "settings.json")
    settings.save(AppSettings(outscale=2.0, output_folder=str(tmp_path / "out"), chunk_seconds=0.3))
    (tmp_path / "out").mkdir(exist_ok=True)
    window = MainWindow(
        settings_file=settings, store=store, opener=lambda path: None, probe_device=False
    )
    qtbot.addWidget(window)
    return window


def _half_done_job(
    qtbot: Any, tmp_path: Path, clip_factory: ClipFactory
) -> tuple[MainWindow, GatedStore, JobRecord]:
    """A window running a real job, held right after its first finished chunk."""
    store = GatedStore(tmp_path / "jobs.sqlite3")
    window = _window_over(qtbot, tmp_path, store)
    window.show()
    clip = tmp_path / "mine.mp4"
    clip.write_bytes(clip_factory(frames=16, gop=8, width=48, height=32).read_bytes())
    window.open_files([clip])
    window.start_jobs()
    qtbot.waitUntil(store.reached.is_set, timeout=120_000)
    [job] = store.all_jobs()
    return window, store, job


def _answer_quit(window: MainWindow, qtbot: Any, button: str) -> None:
    window.close()  # Ctrl+Q
    box = window.quit_box
    assert box is not None and box.isVisible() and window.isVisible()
    assert "mine.mp4" in box.informativeText()
    clicked = next(b for b in box.buttons() if b.text() == button)
    clicked.click()


@pytest.mark.parametrize(
    ("button", "state"),
    [("Keep for later", JobState.INTERRUPTED), ("Cancel jobs", JobState.CANCELLED)],
)
def test_quitting_with_a_job_running_asks_first(
    qtbot: Any,
    tmp_path: Path,
    clip_factory: ClipFactory,
    button: str,
    state: JobState,
) -> None:
    window, store, job = _half_done_job(qtbot, tmp_path, clip_factory)
    try:
        _answer_quit(window, qtbot, button)
        store.go.set()  # the run goes on to its next report, where it stops
        qtbot.waitUntil(lambda: not window.isVisible(), timeout=60_000)
        after = JobStore(store.path).get(job.id)
        assert after.state is state and after.state.is_resumable
        assert after.chunks_done == 1 and not Path(job.output).exists()
    finally:
        store.go.set()
        window.shutdown()


def test_cancel_in_the_quit_question_keeps_the_app_and_the_job(
    qtbot: Any, tmp_path: Path, clip_factory: ClipFactory
) -> None:
    window, store, job = _half_done_job(qtbot, tmp_path, clip_factory)
    try:
        window.close()
        box = window.quit_box
        assert box is not None
        box.button(QMessageBox.StandardButton.Cancel).click()
        assert window.isVisible() and window.quit_box is None
        with qtbot.waitSignal(window.jobs_panel.jobFinished, timeout=120_000):
            store.go.set()
        assert JobStore(store.path).get(job.id).state is JobState.COMPLETED
        window.close()  # nothing runs any more: no question
        assert window.quit_box is None and not window.isVisible()
    finally:
        store.go.set()
        window.shutdown()


def test_the_next_start_offers_to_resume_a_job_kept_for_later(
    qtbot: Any, tmp_path: Path, clip_factory: ClipFactory
) -> None:
    window, store, job = _half_done_job(qtbot, tmp_path, clip_factory)
    try:
        _answer_quit(window, qtbot, "Keep for later")
        store.go.set()
        qtbot.waitUntil(lambda: not window.isVisible(), timeout=60_000)
    finally:
        store.go.set()
        window.shutdown()
    assert JobStore(store.path).get(job.id).state is JobState.INTERRUPTED

    again = _window_over(qtbot, tmp_path, JobStore(store.path))
    try:
        again.show()
        qtbot.waitUntil(lambda: again.jobs_panel.resume_box is not None, timeout=5_000)
        box = again.jobs_panel.resume_box
        assert box is not None and box.isVisible() and "mine.mp4" in box.informativeText()
        with qtbot.waitSignal(again.jobs_panel.jobFinished, timeout=120_000):
            next(b for b in box.buttons() if b.text() == "Resume").click()
        done = again.store.get(job.id)
        assert done.state is JobState.COMPLETED and probe(Path(done.output)).video.frame_count == 16
    finally:
        again.shutdown()
