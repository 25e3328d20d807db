"""The settings panel: a missing model offers a download with progress; choices emit at once."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from pathlib import Path
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


def _items(combo: Any) -> list[Any]:
    return [combo.itemData(i) for i in range(combo.count())]


def test_only_valid_codec_container_quality_combinations_are_offered(
    panel: Any, qtbot: Any
) -> None:
    """Issue 15 item 6: containers, the CRF box and presets follow the codec."""
    from vsr_desktop.core.media.encode import CODECS, check_codec_fits_container, container_for
    from vsr_desktop.gui.main_window import spec_for

    assert _items(panel.container_combo) == [".mp4", ".mov", ".mkv"]  # H.264: no .webm
    assert (panel.crf_spin.minimum(), panel.crf_spin.maximum()) == (-1, 51)
    assert "veryslow" in _items(panel.preset_combo)
    for codec in [*_items(panel.codec_combo)[1:], "h264"]:  # each one a change
        with qtbot.waitSignal(panel.settingsChanged) as changed:
            panel.codec_combo.setCurrentIndex(panel.codec_combo.findData(codec))
        profile = CODECS[codec]
        for suffix in _items(panel.container_combo):  # every offered pair is valid
            name = f"out_%06d{suffix}" if profile.image_sequence else f"out{suffix}"
            check_codec_fits_container(codec, container_for(Path(name)))
        assert panel.crf_spin.isEnabled() == (profile.crf_range is not None)
        if profile.crf_range is not None:
            assert panel.crf_spin.maximum() == profile.crf_range[1]
        assert panel.preset_combo.isEnabled() == bool(profile.presets)
        settings = changed.args[0]
        assert settings.codec == codec and settings.crf is None
        spec_for(settings, Path("/videos/clip.mp4")).encode.profile()  # accepted as is
    panel.codec_combo.setCurrentIndex(panel.codec_combo.findData("dnxhr-hqx"))
    assert _items(panel.container_combo) == [".mov", ".mxf"]
    panel.codec_combo.setCurrentIndex(panel.codec_combo.findData("png"))
    assert _items(panel.container_combo) == [".png"]
    assert panel.settings().output_for(Path("/v/clip.mp4")).name == "clip_x4_%06d.png"
    with qtbot.waitSignal(panel.settingsChanged) as changed:
        panel.codec_combo.setCurrentIndex(panel.codec_combo.findData("av1"))
    assert changed.args[0].container in (".mp4", ".mkv", ".webm")
    with qtbot.waitSignal(panel.settingsChanged) as changed:
        panel.crf_spin.setValue(40)
    assert changed.args[0].crf == 40
    with qtbot.waitSignal(panel.settingsChanged) as changed:
        panel.preset_combo.setCurrentIndex(panel.preset_combo.findData("6"))
    assert changed.args[0].preset == "6"


def test_target_size_presets_and_fit(panel: Any, qtbot: Any) -> None:
    from vsr_desktop.gui.main_window import spec_for

    assert not panel.fit_combo.isEnabled()  # source × scale: nothing to fit
    with qtbot.waitSignal(panel.settingsChanged) as changed:
        panel.size_combo.setCurrentIndex(panel.size_combo.findData("3840x2160"))
    assert changed.args[0].target_size == "3840x2160" and panel.fit_combo.isEnabled()
    with qtbot.waitSignal(panel.settingsChanged) as changed:
        panel.fit_combo.setCurrentIndex(panel.fit_combo.findData("pad"))
    encode = spec_for(changed.args[0], Path("/v/clip.mp4")).encode
    assert (encode.width, encode.height, encode.fit) == (3840, 2160, "pad")
    panel.size_combo.setCurrentIndex(panel.size_combo.count() - 1)  # Custom…
    assert panel.size_edit.isVisibleTo(panel)
    panel.size_edit.setText("2048x1080")
    with qtbot.waitSignal(panel.settingsChanged) as changed:
        panel.size_edit.editingFinished.emit()
    assert changed.args[0].target_size == "2048x1080"
    panel.size_edit.setText("2047x1080")  # odd: H.264 stores colour per 2x2 pixels
    with qtbot.waitSignal(panel.settingsChanged) as changed:
        panel.size_edit.editingFinished.emit()
    assert changed.args[0].target_size == "2048x1080"
    assert "odd" in panel.size_edit.toolTip()
    again = SettingsPanel(changed.args[0])  # a saved custom size comes back as custom
    qtbot.addWidget(again)
    assert again.size_edit.text() == "2048x1080" and again.fit_combo.currentData() == "pad"
    again.shutdown()
