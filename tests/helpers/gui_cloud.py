"""What the app's cloud tests share: settings that send to the test stack, and the real main
window built on them (one copy, so a new MainWindow argument reaches every cloud test)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.helpers.cloud_infra import STACK_NAME
from vsr_desktop.core.jobs import JobStore
from vsr_desktop.core.settings import AppSettings, SettingsFile
from vsr_desktop.gui.main_window import MainWindow

PART = 64 * 1024  # upload part size: several parts even for the tests' tiny clips


def cloud_settings_file(tmp_path: Path) -> SettingsFile:
    """x2, half-second chunks, outputs in tmp_path/out, the test stack, no auto-download."""
    (tmp_path / "out").mkdir()
    file = SettingsFile(tmp_path / "settings.json")
    file.save(
        AppSettings(
            outscale=2.0,
            output_folder=str(tmp_path / "out"),
            chunk_seconds=0.5,
            cloud_stack_name=STACK_NAME,
            cloud_auto_download=False,
        )
    )
    return file


def cloud_window(qtbot: Any, settings_file: SettingsFile, tmp_path: Path) -> MainWindow:
    """The real main window (no device probe, files never opened), uploads in small parts."""
    window = MainWindow(
        settings_file=settings_file,
        store=JobStore(tmp_path / "jobs.sqlite3"),
        opener=lambda path: None,
        probe_device=False,
    )
    qtbot.addWidget(window)
    window.cloud.part_size = PART
    return window
