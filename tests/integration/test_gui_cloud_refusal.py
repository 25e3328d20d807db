"""A send the account checks refuse: the send dialog says the refusal in its own words, with
what to do next, and offers no "retry" (no job was recorded, so the jobs panel has no row).

moto server over HTTP and real widgets. Boundary: moto's Service Quotas knows no EC2 quota,
so the GPU Spot quota is seeded into the emulator (cloud_infra.seed_spot_quota, said there);
the app asks for it over HTTP as it would ask AWS.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PySide6.QtWidgets import QApplication, QMessageBox

from tests.conftest import ClipFactory
from tests.helpers.aws_fixture import MotoServer
from tests.helpers.cloud_infra import create_cloud_stack, seed_spot_quota
from tests.helpers.gui_cloud import cloud_settings_file, cloud_window
from vsr_desktop.core.settings import SettingsFile
from vsr_desktop.gui.cloud.submit_dialog import SubmitDialog
from vsr_desktop.gui.error_dialog import plain

TIMEOUT_MS = 60_000


@pytest.fixture()
def settings_file(aws: MotoServer, tmp_path: Path) -> SettingsFile:
    file = cloud_settings_file(tmp_path)
    create_cloud_stack()
    return file


def _error_boxes() -> list[QMessageBox]:
    return [
        w
        for w in QApplication.topLevelWidgets()
        if isinstance(w, QMessageBox) and w.isVisible() and w.objectName() == "errorDialog"
    ]


def test_a_send_refused_for_the_spot_quota_says_why_in_the_dialog(
    qtbot: Any,
    settings_file: SettingsFile,
    tmp_path: Path,
    clip_factory: ClipFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seed_spot_quota(monkeypatch, 0)
    window = cloud_window(qtbot, settings_file, tmp_path)
    source = tmp_path / "clip.mp4"
    source.write_bytes(clip_factory(frames=24, gop=8, width=48, height=32).read_bytes())
    try:
        window.open_files([source])
        window.send_to_aws()
        dialog = window.submit_dialog
        assert isinstance(dialog, SubmitDialog)
        qtbot.waitUntil(dialog.submit_button.isEnabled, timeout=TIMEOUT_MS)
        dialog.submit_button.click()
        qtbot.waitUntil(lambda: "not sent" in dialog.status.text(), timeout=TIMEOUT_MS)

        text = plain(dialog.status.text())
        assert "clip.mp4 was not sent: your AWS account's GPU Spot quota in eu-west-1 is 0" in (
            text
        )
        assert "What to do: ask AWS for at least" in text and "--on-demand-fallback true" in text
        assert "retry" not in text.lower()  # nothing to retry: no job was recorded
        assert "1 not sent (no job was recorded); 0 started." in text
        assert dialog.status.wordWrap() and dialog.isVisible()  # the user reads it here
        assert not dialog.pause_button.isVisible()
        assert window.store.all_jobs() == []
        # The app's one error dialog (the jobs panel's) says the same, once.
        boxes = _error_boxes()
        assert len(boxes) == 1 and "GPU Spot quota" in plain(boxes[0].text())
        for box in boxes:
            box.close()
    finally:
        window.shutdown()
