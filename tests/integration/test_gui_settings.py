"""The settings panel: a missing model offers a download with progress; choices emit at once."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from typing import Any

import pytest
from PySide6.QtCore import Qt

from tests.integration.test_models_download import PAYLOAD, FileServer, server  # noqa: F401 - fixture
from vsr_desktop.core.models.registry import MODEL_REGISTRY
from vsr_desktop.core.settings import AppSettings
from vsr_desktop.gui.settings_panel import SettingsPanel


@pytest.fixture
def panel(qtbot: Any) -> Iterator[SettingsPanel]:
    widget = SettingsPanel(AppSettings())
    qtbot.addWidget(widget)
    yield widget
    widget.shutdown()


def test_bundled_model_is_ready_and_denoise_only_for_general_v3(panel: Any, qtbot: Any) -> None:
    assert panel.model_is_ready() and not panel.download_button.isVisibleTo(panel)
    assert not panel.denoise_slider.isEnabled()
    with qtbot.waitSignal(panel.settingsChanged) as changed:
        panel.model_combo.setCurrentIndex(panel.model_combo.findData("realesr-general-x4v3"))
    assert changed.args[0].model == "realesr-general-x4v3"
    assert panel.denoise_slider.isEnabled()
    assert panel.download_button.isVisibleTo(panel)  # not downloaded in this fresh cache
    assert "general-x4v3" in panel.preview_key()


def test_missing_model_downloads_with_progress(
    panel: Any,
    qtbot: Any,
    server: FileServer,  # noqa: F811 - the fixture imported above
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = dataclasses.replace(
        MODEL_REGISTRY["RealESRGAN_x4plus"],
        url=server.url,
        size_bytes=len(PAYLOAD),
        sha256=hashlib.sha256(PAYLOAD).hexdigest(),
    )
    monkeypatch.setitem(MODEL_REGISTRY, spec.name, spec)
    panel.model_combo.setCurrentIndex(panel.model_combo.findData(spec.name))
    assert not panel.model_is_ready()
    seen: list[int] = []
    panel.download_progress.valueChanged.connect(seen.append)
    with qtbot.waitSignal(panel.modelReady, timeout=30_000) as ready:
        qtbot.mouseClick(panel.download_button, Qt.MouseButton.LeftButton)
    assert ready.args == [spec.name]
    assert panel.model_is_ready() and not panel.download_button.isVisibleTo(panel)
    assert seen and seen[-1] == 1000
    assert len(server.log) == 1
