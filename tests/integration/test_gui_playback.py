"""Playback, shuttle keys, In/Out marks, SMPTE counter and model A/B on real clips.

The clock, the sequential decoder (a TaskRunner task) and the render-ahead all run for
real; frames are checked as painted, so the counter is compared with what is on screen.
"""

from __future__ import annotations

import json
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import QPoint, Qt, QTimer

from vsr_desktop.core.media import probe
from vsr_desktop.gui.preview import sides
from vsr_desktop.gui.preview.preview_pane import PreviewPane
from vsr_desktop.gui.preview.timeline import TimelineScrubber

RENDER_TIMEOUT = 30_000
KEY = "realesr-animevideov3|2|None|cpu|fp32|0"
Mod = Qt.KeyboardModifier


@pytest.fixture(scope="module")
def engine() -> Any:
    from vsr_desktop.core.job_spec import EngineSettings
    from vsr_desktop.worker.job_setup import build_engine

    return build_engine(EngineSettings(outscale=2, precision="fp32"))


class Inverted:
    """A second "model": the real engine's output, inverted (easy to tell apart)."""

    def __init__(self, engine: Any) -> None:
        self._engine = engine

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        return self._engine.output_size(width, height)

    def upscale(self, frames: np.ndarray, cancel: Any = None) -> np.ndarray:
        return 255 - self._engine.upscale(frames, cancel)


def open_clip(qtbot: Any, pane: PreviewPane, clip: Path, engine: Any) -> None:
    pane.set_engine_factory(KEY, lambda: engine)
    with qtbot.waitSignal(pane.renderFinished, timeout=RENDER_TIMEOUT):
        pane.set_source(clip)
    qtbot.waitUntil(lambda: pane.view.painted_frame == 0)


def press(qtbot: Any, pane: PreviewPane, key: Qt.Key, modifier: Any = Mod.NoModifier) -> None:
    qtbot.keyClick(pane.view, key, modifier)


def test_playback_paints_frames_in_order_and_the_counter_follows_the_picture(
    qtbot: Any, pane: PreviewPane, clip_factory: Any, engine: Any
) -> None:
    open_clip(qtbot, pane, clip_factory(frames=48, gop=12), engine)
    painted: list[int] = []
    mismatches: list[tuple[int, int]] = []
    pane.view.framePainted.connect(painted.append)

    def sample() -> None:  # at arbitrary moments: the counter names the painted frame
        on_screen, counted = pane.view.painted_frame, pane.timeline.painted_frame()
        if on_screen != counted:
            mismatches.append((on_screen, counted))
        label = pane.timeline.label_text()
        if on_screen >= 0 and not label.startswith(f"Frame {on_screen + 1} / 48"):
            mismatches.append((on_screen, -2))

    probe_timer = QTimer()
    probe_timer.timeout.connect(sample)
    probe_timer.start(3)
    with qtbot.waitSignal(pane.playingChanged, timeout=2000, check_params_cb=lambda p: p):
        press(qtbot, pane, Qt.Key.Key_Space)
    assert pane.playback.playing and pane.playback.speed == 1
    qtbot.waitUntil(lambda: not pane.playback.playing, timeout=20_000)  # played to the end
    probe_timer.stop()
    assert painted == sorted(painted) and len(set(painted)) == len(painted)
    assert painted[-1] == 47 and len(painted) >= 24  # real time may drop a few, not most
    assert not mismatches
    assert pane.current_frame() == 47
    qtbot.waitUntil(lambda: "Frame 48 / 48  ·  00:00:01:23" in pane.timeline.label_text())
    # The engine worked ahead of the playhead (region only), and the paused frame is upscaled.
    assert pane.renderer.stats.submitted >= 2
    qtbot.waitUntil(
        lambda: pane.view.current_result is not None and pane.view.current_result.frame_index == 47,
        timeout=RENDER_TIMEOUT,
    )


def test_jkl_shuttle_arrows_and_stepping_past_the_end(
    qtbot: Any, pane: PreviewPane, clip_factory: Any, engine: Any
) -> None:
    open_clip(qtbot, pane, clip_factory(frames=72, gop=12), engine)
    playback = pane.playback
    press(qtbot, pane, Qt.Key.Key_L)
    assert playback.speed == 1
    press(qtbot, pane, Qt.Key.Key_L)
    assert playback.speed == 2
    press(qtbot, pane, Qt.Key.Key_L)
    press(qtbot, pane, Qt.Key.Key_L)
    assert playback.speed == 4  # the fastest
    press(qtbot, pane, Qt.Key.Key_K)
    assert not playback.playing
    # Arrows: one frame; Shift: one second (24 frames).
    press(qtbot, pane, Qt.Key.Key_Home)
    press(qtbot, pane, Qt.Key.Key_Right)
    assert pane.current_frame() == 1
    press(qtbot, pane, Qt.Key.Key_Right, Mod.ShiftModifier)
    assert pane.current_frame() == 25
    press(qtbot, pane, Qt.Key.Key_Left, Mod.ShiftModifier)
    press(qtbot, pane, Qt.Key.Key_Left)
    assert pane.current_frame() == 0
    qtbot.waitUntil(lambda: pane.view.painted_frame == 0)
    # J plays backward, in order, from where the picture is.
    pane.set_frame(40)
    qtbot.waitUntil(lambda: pane.view.painted_frame == 40, timeout=RENDER_TIMEOUT)
    painted: list[int] = []
    pane.view.framePainted.connect(painted.append)
    press(qtbot, pane, Qt.Key.Key_J)
    assert playback.speed == -1
    qtbot.waitUntil(lambda: len(painted) >= 8, timeout=10_000)
    press(qtbot, pane, Qt.Key.Key_J)
    assert playback.speed == -2
    press(qtbot, pane, Qt.Key.Key_K)
    assert not playback.playing
    assert painted == sorted(painted, reverse=True) and painted[0] < 40
    # Playing while stepping: a step pauses. Past the end: it stops at the last frame.
    press(qtbot, pane, Qt.Key.Key_L)
    press(qtbot, pane, Qt.Key.Key_End)
    assert not playback.playing and pane.current_frame() == 71
    press(qtbot, pane, Qt.Key.Key_Right)
    press(qtbot, pane, Qt.Key.Key_Right, Mod.ShiftModifier)
    assert not playback.playing and pane.current_frame() == 71
    qtbot.waitUntil(lambda: pane.timeline.label_text().startswith("Frame 72 / 72"))


def test_in_out_marks_signal_and_timeline(
    qtbot: Any, pane: PreviewPane, clip_factory: Any, engine: Any
) -> None:
    open_clip(qtbot, pane, clip_factory(frames=48, gop=12), engine)
    seen: list[tuple[Any, Any]] = []
    pane.marksChanged.connect(lambda a, b: seen.append((a, b)))

    def go(index: int) -> None:
        pane.set_frame(index)
        qtbot.waitUntil(lambda: pane.view.painted_frame == index, timeout=RENDER_TIMEOUT)

    go(5)
    press(qtbot, pane, Qt.Key.Key_I)
    go(30)
    press(qtbot, pane, Qt.Key.Key_O)
    assert pane.marks() == (5, 30) and seen == [(5, None), (5, 30)]
    assert pane.timeline.marks() == (5, 30)
    # Drawn on the timeline: the In mark is orange, the band between is tinted.
    image = pane.timeline.grab().toImage()
    x, y = pane.timeline.mark_x(5), pane.timeline.height() // 2
    color = image.pixelColor(QPoint(x, y))
    assert color.red() > 200 and color.green() > 120 and color.blue() < 80
    press(qtbot, pane, Qt.Key.Key_I, Mod.AltModifier)
    assert pane.marks() == (None, 30)
    press(qtbot, pane, Qt.Key.Key_O, Mod.AltModifier)
    assert pane.marks() == (None, None) and seen[-1] == (None, None)
    go(40)
    press(qtbot, pane, Qt.Key.Key_O)
    go(45)
    press(qtbot, pane, Qt.Key.Key_I)  # In after Out: the Out no longer makes sense
    assert pane.marks() == (45, None)
    pane.set_source(clip_factory(frames=24))  # another clip: no marks carried over
    assert pane.marks() == (None, None)


def test_smpte_counter_formats(qtbot: Any, clip_factory: Any) -> None:
    timeline = TimelineScrubber()
    qtbot.addWidget(timeline)
    video25 = probe(clip_factory(fps=25, frames=30)).video
    timeline.set_video(video25)
    timeline.show_painted(26)
    assert timeline.label_text() == "Frame 27 / 30  ·  00:00:01:01"
    assert timeline.frames_per_second() == 25
    video24 = probe(clip_factory(fps=24, frames=30)).video
    timeline.set_video(video24)
    timeline.show_painted(24)
    assert timeline.label_text().endswith("00:00:01:00")
    # 29.97 drop-frame: frame 1800 (a minute in) is ;02, ';' marks drop-frame.
    ntsc = replace(
        video25,
        time_base=Fraction(1, 30000),
        average_rate=Fraction(30000, 1001),
        base_rate=Fraction(30000, 1001),
        frame_pts=tuple(i * 1001 for i in range(1900)),
        keyframe_pts=(0,),
    )
    timeline.set_video(ntsc)
    assert timeline.timecode(1800) == "00:01:00;02"
    timeline.set_video(ntsc, "01:00:00;00")
    assert timeline.timecode(0) == "01:00:00;00" and timeline.timecode(1800) == "01:01:00;02"


def test_start_timecode_of_the_source_is_shown(
    qtbot: Any, pane: PreviewPane, clip_factory: Any, engine: Any
) -> None:
    clip = clip_factory(".mov", fps=25, frames=30, timecode="10:00:00:00")
    assert probe(clip).timecode == "10:00:00:00"
    open_clip(qtbot, pane, clip, engine)
    qtbot.waitUntil(lambda: pane.timeline.label_text() == "Frame 1 / 30  ·  10:00:00:00")
    pane.set_frame(26)
    qtbot.waitUntil(lambda: pane.timeline.label_text() == "Frame 27 / 30  ·  10:00:01:01")


def test_model_ab_labels_and_switching_never_shows_the_old_after(
    qtbot: Any, pane: PreviewPane, clip_factory: Any, engine: Any
) -> None:
    other_key = "other-model|2|None|cpu|fp32|0"
    pane.set_model_provider(lambda name: (other_key, lambda: Inverted(engine)))
    open_clip(qtbot, pane, clip_factory(frames=24), engine)
    view = pane.view
    assert pane.side_labels() == ("Bicubic", "realesr-animevideov3 ×2")
    assert pane.right_chooser.text() == "Right: realesr-animevideov3 ×2"
    # The first render of the model recorded its speed; the list shows it (and "—").
    speeds = json.loads(sides.speed_file().read_text())
    assert speeds["realesr-animevideov3"] > 0
    rows = {a.data(): a.text() for a in pane.right_chooser.entries()}
    assert "ms/MP" in rows["model:realesr-animevideov3"]
    assert "installed" in rows["model:realesr-animevideov3"]
    assert rows["model:RealESRGAN_x4plus"].endswith("—")
    assert "not installed" in rows["model:RealESRGAN_x4plus"]
    assert "67.0 MB" in rows["model:RealESRGAN_x4plus"]

    # Left: source, right: another model. The old model's picture is gone at once.
    pane.set_side(0, "source")
    pane.set_side(1, "model:other")
    assert pane.side_labels() == ("Source", "other-model ×2")
    view.grab()
    assert all(shown != KEY for _label, shown, _frame in view.painted)
    qtbot.waitUntil(lambda: view.result_for(other_key) is not None, timeout=RENDER_TIMEOUT)
    view.grab()
    assert [(label, shown) for label, shown, _f in view.painted] == [
        ("Source", "source"),
        ("other-model ×2", other_key),
    ]
    # Two models side by side on the same region and frame: left the settings' model.
    pane.set_mode("side-by-side")
    pane.set_side(0, "settings")
    qtbot.waitUntil(
        lambda: view.result_for(KEY) is not None and view.result_for(other_key) is not None,
        timeout=RENDER_TIMEOUT,
    )
    left, right = view.result_for(KEY), view.result_for(other_key)
    assert left is not None and right is not None
    assert (left.frame_index, left.region) == (right.frame_index, right.region)
    assert np.array_equal(255 - left.after_rgb, right.after_rgb)
    view.grab()
    assert [shown for _label, shown, _f in view.painted] == [KEY, other_key]
    assert pane.side_labels() == ("realesr-animevideov3 ×2", "other-model ×2")
    # The settings' model changes: its side is relabelled and its old picture dropped.
    pane.set_engine_factory("realesr-animevideov3|2|None|cpu|fp32|512", lambda: engine)
    view.grab()
    assert pane.side_labels()[0] == "realesr-animevideov3 ×2"
    assert all(shown != KEY for _label, shown, _frame in view.painted)


def test_playing_ahead_of_the_engine_marks_the_last_upscale_stale(qtbot: Any) -> None:
    from vsr_desktop.core.preview import Region
    from vsr_desktop.gui.preview.comparison_view import MODEL, ComparisonView
    from vsr_desktop.gui.preview.renderer import PreviewResult
    from vsr_desktop.gui.preview.sides import BICUBIC, Side

    view = ComparisonView()
    qtbot.addWidget(view)
    view.resize(400, 300)
    view.show()
    qtbot.waitExposed(view)
    view.set_sides(Side(BICUBIC, label="Bicubic"), Side(MODEL, "k", "m ×2"))
    frame = np.full((32, 48, 3), 90, np.uint8)
    region = Region(0, 0, 48, 32)
    picture = np.full((64, 96, 3), 200, np.uint8)
    view.set_result(PreviewResult(Path("a"), 3, region, "k", picture, picture, frame, (96, 64)))
    view.grab()
    assert [(shown, f) for _l, shown, f in view.painted] == [("bicubic", 3), ("k", 3)]
    view.set_frame(5, frame, keep_stale=True)  # playing: frame 5 has no upscale yet
    view.grab()
    assert view.painted_frame == 5
    # The model side keeps frame 3's upscale (marked stale); bicubic shows the source.
    assert [(shown, f) for _l, shown, f in view.painted] == [("source", 5), ("k", 3)]
    assert view._caption(view.sides[1], 3) == "m ×2 · stale (frame 4)"
    view.set_frame(6, frame)  # stepping: another frame's upscale is never kept
    view.grab()
    assert [shown for _l, shown, _f in view.painted] == ["source", "source"]
