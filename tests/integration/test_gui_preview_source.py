"""The preview shows the picture the job will upscale, in the shape a player shows it.

Real clips made by Debian's ffmpeg go through the real PreviewPane (its renderer and its
playback decoder decode them in their threads): an interlaced clip follows the deinterlace
setting (auto: deinterlaced; off: the woven fields the job would upscale), and a rotated
clip's overview thumbnail is turned like the main picture.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PySide6.QtCore import QRect, QRectF
from PySide6.QtGui import QColor, QImage, QPainter

from tests.helpers.footage import ffmpeg, needs_ffmpeg
from vsr_desktop.core.jobs import JobStore
from vsr_desktop.core.media import probe
from vsr_desktop.core.settings import AppSettings, SettingsFile
from vsr_desktop.gui.preview import overlays
from vsr_desktop.gui.preview.display import DisplayTransform
from vsr_desktop.gui.preview.playback import PlaybackFrame
from vsr_desktop.gui.preview.preview_pane import PreviewPane

pytestmark = needs_ffmpeg
X264 = ("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p")
#: Vertical bars moving 3 px per 1/50 s, woven into 25i: neighbouring lines differ (comb).
BARS = "nullsrc=s=96x64:r=50,geq=lum='if(lt(mod(X+T*150\\,24)\\,12)\\,220\\,30)':cb=128:cr=128"


@pytest.fixture(scope="module")
def woven(tmp_path_factory: pytest.TempPathFactory) -> Path:
    clip = tmp_path_factory.mktemp("woven") / "woven.mp4"
    ffmpeg("-f", "lavfi", "-i", BARS, "-vf", "tinterlace=interleave_top", "-t", "0.8",
           *X264, "-flags", "+ilme+ildct", "-top", "1", clip)  # fmt: skip
    assert probe(clip).video.interlaced == "tff"
    return clip


def comb(rgb: np.ndarray) -> float:
    """Neighbouring lines minus lines two apart (luma): ~0 for whole frames, tens of levels
    for woven fields."""
    luma = rgb.astype(float).mean(axis=2)
    return float(np.abs(np.diff(luma, axis=0)).mean() - np.abs(luma[2:] - luma[:-2]).mean())


def to_array(image: QImage | None) -> np.ndarray:
    assert image is not None
    rgb = image.convertToFormat(QImage.Format.Format_RGB888)
    rows = np.frombuffer(rgb.constBits(), np.uint8).reshape(rgb.height(), rgb.bytesPerLine())
    return rows[:, : rgb.width() * 3].reshape(rgb.height(), rgb.width(), 3).copy()


def shown_comb(pane: PreviewPane) -> float:
    return comb(to_array(pane.view.source_image))


def test_the_preview_follows_the_deinterlace_setting(
    qtbot: Any, pane: PreviewPane, woven: Path
) -> None:
    pane.set_source(woven)
    qtbot.waitUntil(lambda: pane.view.frame_index >= 0, timeout=20_000)
    pane.set_frame(5)
    qtbot.waitUntil(lambda: pane.view.frame_index == 5, timeout=20_000)
    assert abs(shown_comb(pane)) < 3  # auto: an interlaced source is shown deinterlaced
    pane.set_deinterlace("off")  # the job would upscale the woven fields: so does the preview
    qtbot.waitUntil(lambda: shown_comb(pane) > 30, timeout=20_000)
    assert pane.view.frame_index == 5
    pane.set_deinterlace("bwdif")
    qtbot.waitUntil(lambda: abs(shown_comb(pane)) < 3, timeout=20_000)
    # Playback decodes as the job would too.
    pane.set_deinterlace("off")
    qtbot.waitUntil(lambda: shown_comb(pane) > 30, timeout=20_000)
    played: list[float] = []

    def note(frame: PlaybackFrame) -> None:
        played.append(comb(frame.rgb))

    pane.playback.frameDue.connect(note)
    pane.set_frame(0)
    pane.toggle_play()
    qtbot.waitUntil(lambda: len(played) >= 3, timeout=20_000)
    pane.pause()
    assert min(played) > 30, played


def test_the_window_passes_its_deinterlace_setting_to_the_preview(
    qtbot: Any, tmp_path: Path, woven: Path
) -> None:
    from vsr_desktop.gui.main_window import MainWindow

    file = SettingsFile(tmp_path / "settings.json")
    file.save(AppSettings(output_folder=str(tmp_path), deinterlace="off"))
    window = MainWindow(
        settings_file=file,
        store=JobStore(tmp_path / "jobs.sqlite3"),
        opener=lambda path: None,
        probe_device=False,
    )
    qtbot.addWidget(window)
    try:
        window.show()
        assert window.preview.deinterlace() == "off"
        window.open_files([woven])
        qtbot.waitUntil(lambda: window.preview.view.frame_index >= 0, timeout=20_000)
        window.preview.set_frame(5)
        qtbot.waitUntil(lambda: window.preview.view.frame_index == 5, timeout=20_000)
        qtbot.waitUntil(lambda: shown_comb(window.preview) > 30, timeout=20_000)
        window._settings_changed(dataclasses.replace(window.app_settings, deinterlace="auto"))
        assert window.preview.deinterlace() == "auto"
        qtbot.waitUntil(lambda: abs(shown_comb(window.preview)) < 3, timeout=20_000)
    finally:
        window.shutdown(cancel_jobs=True)


# -------------------------------------------------------------------- the overview, turned
def _halves(width: int, height: int) -> QImage:
    """Left half red, right half blue (no white: the overview's border is the only white)."""
    image = QImage(width, height, QImage.Format.Format_RGB888)
    painter = QPainter(image)
    painter.fillRect(QRect(0, 0, width // 2, height), QColor(200, 0, 0))
    painter.fillRect(QRect(width // 2, 0, width - width // 2, height), QColor(0, 0, 200))
    painter.end()
    return image


def _thumb_box(picture: np.ndarray) -> tuple[int, int, int, int]:
    """(left, top, width, height) of the white frame drawn around the thumbnail."""
    white = (picture > 245).all(axis=2)
    ys, xs = np.nonzero(white)
    assert len(xs), "no overview drawn"
    return int(xs.min()), int(ys.min()), int(xs.max() - xs.min()), int(ys.max() - ys.min())


def test_the_overview_is_turned_like_the_picture() -> None:
    """draw_overview with a quarter turn: a portrait thumbnail whose halves lie above and
    below each other (stored left and right)."""
    canvas = QImage(400, 300, QImage.Format.Format_RGB888)
    canvas.fill(QColor(0, 0, 0))
    painter = QPainter(canvas)
    turned = DisplayTransform.of(90, None)
    visible = QRectF(0, 0, 20, 20)  # zoomed in: the overview shows
    overlays.draw_overview(painter, canvas.rect(), _halves(96, 48), (192, 96), visible, turned)
    painter.end()
    picture = to_array(canvas)
    left, top, width, height = _thumb_box(picture)
    assert height > 1.8 * width, (width, height)  # 96×48 stored, 48×96 shown
    inside = picture[top + 3 : top + height - 2, left + 3 : left + width - 2].astype(int)
    upper, lower = inside[: inside.shape[0] // 3], inside[-inside.shape[0] // 3 :]
    # The red and blue halves are above and below each other, not side by side.
    assert abs(upper[..., 0].mean() - lower[..., 0].mean()) > 100
    assert abs(inside[:, :5, 0].mean() - inside[:, -5:, 0].mean()) < 30


def test_a_rotated_clips_overview_is_turned_in_the_pane(
    qtbot: Any, pane: PreviewPane, tmp_path: Path
) -> None:
    plain, clip = tmp_path / "plain.mp4", tmp_path / "phone.mp4"
    halves = "color=c=red:s=96x48:r=25:d=0.4[a];color=c=blue:s=48x48:r=25:d=0.4[b];[a][b]overlay=48"
    ffmpeg("-f", "lavfi", "-i", halves, *X264, plain)
    ffmpeg("-i", plain, "-c", "copy", "-metadata:s:v:0", "rotate=90", clip)  # a phone's tag
    assert probe(clip).video.rotation in (90, -90, 270)
    pane.set_source(clip)
    qtbot.waitUntil(lambda: pane.view.frame_index >= 0, timeout=20_000)
    pane.view.view_state.set_zoom(6.0)  # past the pane: the overview appears
    qtbot.wait(50)
    picture = to_array(pane.view.grab().toImage())
    corner = picture[picture.shape[0] - 140 :, :200]  # the overview sits bottom left
    _left, _top, width, height = _thumb_box(corner)
    assert height > 1.8 * width, (width, height)
