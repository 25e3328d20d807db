"""The main window as a user drives it: open, drop, settings that persist, jobs, errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QApplication, QMessageBox

from tests.conftest import ClipFactory
from vsr_desktop.core.jobs import JobState, JobStore
from vsr_desktop.core.settings import SettingsFile
from vsr_desktop.gui.main_window import MainWindow

pytest.importorskip("pytestqt")


@pytest.fixture
def make_window(qtbot, tmp_path: Path) -> Iterator:  # type: ignore[no-untyped-def]
    windows: list[MainWindow] = []

    def make() -> MainWindow:
        window = MainWindow(settings_file=SettingsFile(tmp_path / "settings.json"),
                            store=JobStore(tmp_path / "jobs.sqlite3"),
                            opener=lambda path: None, probe_device=False)
        qtbot.addWidget(window)
        windows.append(window)
        return window

    yield make
    for window in windows:
        window.shutdown()
    _close_dialogs()


def _dialogs() -> list[QMessageBox]:
    return [w for w in QApplication.topLevelWidgets()
            if isinstance(w, QMessageBox) and w.isVisible()]


def _close_dialogs() -> None:
    for box in _dialogs():
        box.close()


def test_open_files_queue_and_recent_files_persist(make_window, clip_factory: ClipFactory,
                                                    qtbot) -> None:  # type: ignore[no-untyped-def]
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
    make_window, clip_factory: ClipFactory, tmp_path: Path, qtbot  # type: ignore[no-untyped-def]
) -> None:
    window = make_window()
    clip = clip_factory(frames=8, gop=8, width=48, height=32)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(clip))])
    drop = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime,
                      Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    window.dropEvent(drop)
    assert window.source_paths() == [clip]
    note = tmp_path / "notes.txt"
    note.write_text("hi")
    mime2 = QMimeData()
    mime2.setUrls([QUrl.fromLocalFile(str(note))])
    window.dropEvent(QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime2,
                                Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier))
    qtbot.waitUntil(lambda: bool(_dialogs()))
    assert "is a video" in _dialogs()[0].text()
    _close_dialogs()
    assert window.source_paths() == [clip]


def test_settings_changes_persist_across_restarts(make_window, qtbot) -> None:  # type: ignore[no-untyped-def]
    window = make_window()
    panel = window.settings_panel
    panel.codec_combo.setCurrentIndex(panel.codec_combo.findData("h265"))
    panel.scale_combo.setCurrentIndex(panel.scale_combo.findData(2.0))
    assert window.app_settings.codec == "h265" and window.app_settings.outscale == 2.0
    window.close()
    again = make_window()
    assert again.settings_panel.codec_combo.currentData() == "h265"
    assert again.app_settings.outscale == 2.0


def test_start_runs_a_job_to_completion(make_window, clip_factory: ClipFactory,
                                        tmp_path: Path, qtbot) -> None:  # type: ignore[no-untyped-def]
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


def test_bad_input_shows_a_dialog_not_a_crash(make_window, tmp_path: Path, qtbot) -> None:  # type: ignore[no-untyped-def]
    window = make_window()
    window.open_files([tmp_path / "missing.mp4"])
    qtbot.waitUntil(lambda: bool(_dialogs()))
    assert "does not exist" in _dialogs()[0].text()
    _close_dialogs()
    fake = tmp_path / "fake.mp4"
    fake.write_text("not a video at all\n" * 20)
    window.open_files([fake])
    window.start_jobs()
    qtbot.waitUntil(lambda: bool(_dialogs()), timeout=10_000)
    assert any("not a video" in box.text() or "FFmpeg" in box.text() for box in _dialogs())
    _close_dialogs()
    assert window.store.all_jobs() == []  # refused before any job was recorded
    assert window.source_paths() == [fake]  # the queue is intact


def test_excepthook_logs_and_shows_a_dialog(qtbot, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
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
    assert "boom in a slot" in hook_dialogs()[0].text()
    assert str(user_log_path()) in hook_dialogs()[0].informativeText()
    _close_dialogs()
    log_text = user_log_path().read_text()
    assert "RuntimeError: boom in a slot" in log_text and "Traceback" in log_text
