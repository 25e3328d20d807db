"""Issue 15 item 8: the preview shows what a player shows.

Real clips made by Debian's ffmpeg (a rotated phone-style clip, an anamorphic SAR 16:15
one, an interlaced one) go through the real PreviewPane (its renderer decodes them in its
thread); the view is grabbed and the painted picture measured.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("PySide6")

from PySide6.QtGui import QImage

from tests.integration.test_footage_metadata import ffmpeg, needs_ffmpeg
from vsr_desktop.core.media import probe
from vsr_desktop.core.media.decode import read_frame
from vsr_desktop.core.preview import shown_frame
from vsr_desktop.gui.preview.comparison_view import BACKGROUND
from vsr_desktop.gui.preview.preview_pane import PreviewPane

pytestmark = needs_ffmpeg
X264 = ("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p")


def show(qtbot: Any, pane: PreviewPane, clip: Path) -> None:
    """Open `clip` with no model chosen: the frame is decoded and shown, nothing upscaled."""
    pane.set_source(clip)
    qtbot.waitUntil(lambda: pane.view.frame_index >= 0 and pane._info is not None, timeout=20_000)
    qtbot.wait(50)


def picture_box(image: QImage) -> tuple[int, int]:
    """(width, height) of what is painted over the background (labels are small)."""
    ptr = image.convertToFormat(QImage.Format.Format_RGB888)
    rows = np.frombuffer(ptr.constBits(), np.uint8).reshape(ptr.height(), ptr.bytesPerLine())
    rgb = rows[:, : ptr.width() * 3].reshape(ptr.height(), ptr.width(), 3).astype(int)
    back = np.array([BACKGROUND.red(), BACKGROUND.green(), BACKGROUND.blue()])
    painted = np.abs(rgb - back).sum(axis=2) > 30
    # A row/column belongs to the picture when it is painted about as much as the fullest
    # one (a label's or a footer's text is thin).
    per_col = painted.sum(axis=0)
    cols = np.flatnonzero(per_col > 0.8 * per_col.max())
    # Rows are counted within the picture's columns: the side captions beside a narrow
    # (portrait) picture must not outweigh it.
    per_row = painted[:, cols[0] : cols[-1] + 1].sum(axis=1)
    rows_on = np.flatnonzero(per_row > 0.8 * per_row.max())
    return int(cols[-1] - cols[0] + 1), int(rows_on[-1] - rows_on[0] + 1)


def test_a_rotated_clip_is_shown_upright(qtbot: Any, pane: PreviewPane, tmp_path: Path) -> None:
    plain, clip = tmp_path / "plain.mp4", tmp_path / "phone.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=96x48:rate=25:duration=0.4", *X264, plain)
    ffmpeg("-i", plain, "-c", "copy", "-metadata:s:v:0", "rotate=90", clip)  # a phone's tag
    assert probe(clip).video.rotation in (90, -90, 270)
    show(qtbot, pane, clip)
    for mode in ("split", "side-by-side"):
        pane.set_mode(mode)
        qtbot.wait(20)
        width, height = picture_box(pane.view.grab().toImage())
        if mode == "split":  # one picture, stored 2:1 landscape, shown 1:2 portrait
            assert height > 1.8 * width, (width, height)
    # Zoom keeps the turned shape and both sides in step.
    pane.set_mode("split")
    pane.view.view_state.set_zoom(2.0)
    qtbot.wait(20)
    region = pane.view.visible_source_region()
    assert region.width <= 96 and region.height <= 48


def test_an_anamorphic_clip_is_shown_wider(qtbot: Any, pane: PreviewPane, tmp_path: Path) -> None:
    clip = tmp_path / "pal_wide.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=88x72:rate=25:duration=0.4",
           "-vf", "setsar=16/15", *X264, clip)  # fmt: skip
    show(qtbot, pane, clip)
    width, height = picture_box(pane.view.grab().toImage())
    stored, shown = 88 / 72, 88 * 16 / 15 / 72  # 1.22 stored, 1.30 as a player shows it
    assert abs(width / height - shown) < 0.02, (width, height)
    assert width / height > stored + 0.05


def test_an_interlaced_clip_is_previewed_deinterlaced(tmp_path: Path) -> None:
    clip = tmp_path / "woven.mp4"
    ffmpeg("-f", "lavfi", "-i",
           "nullsrc=s=96x64:r=50,geq=lum='if(lt(mod(X+T*150\\,24)\\,12)\\,220\\,30)':cb=128:cr=128",
           "-vf", "tinterlace=interleave_top", "-t", "0.4", *X264,
           "-flags", "+ilme+ildct", "-top", "1", clip)  # fmt: skip
    info = probe(clip)
    video = info.video

    def comb(rgb: np.ndarray) -> float:
        luma = rgb.astype(float).mean(axis=2)
        return float(np.abs(np.diff(luma, axis=0)).mean() - np.abs(luma[2:] - luma[:-2]).mean())

    woven = read_frame(clip, video.index, video.frame_pts[3], video.bit_depth)
    shown = shown_frame(info, 3)
    assert comb(woven) > 30
    assert abs(comb(shown)) < 2
