"""The before/after preview on real clips with the real bundled model, through real Qt events.

Pixels are read back from `grab()` and compared with the arrays the renderer produced, so
the tests see what the user sees: which side of the wipe shows what, whether both panes
follow one zoom, whether scrubbing really changes the picture.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import QPoint, QPointF, QRectF, Qt
from PySide6.QtGui import QImage, QWheelEvent
from PySide6.QtWidgets import QApplication

from vsr_desktop.core.errors import ModelError
from vsr_desktop.core.media import probe
from vsr_desktop.core.preview import Region
from vsr_desktop.gui.preview.comparison_view import ComparisonView
from vsr_desktop.gui.preview.preview_pane import PreviewPane
from vsr_desktop.gui.preview.renderer import PreviewRenderer, PreviewResult, RenderRequest
from vsr_desktop.gui.preview.timeline import TimelineScrubber
from vsr_desktop.gui.preview.view_state import ViewState

RENDER_TIMEOUT = 30_000


@pytest.fixture(scope="session")
def engine() -> Any:
    """The real bundled realesr-animevideov3, ×2 (loaded once; tests share it)."""
    from vsr_desktop.core.job_spec import EngineSettings
    from vsr_desktop.worker.job_setup import build_engine

    return build_engine(EngineSettings(outscale=2, precision="fp32"))


class CountingFactory:
    """An engine factory that records how often, and on which thread, it was called."""

    def __init__(self, make: Any) -> None:
        self._make = make
        self.calls = 0
        self.thread_ids: list[int] = []

    def __call__(self) -> Any:
        self.calls += 1
        self.thread_ids.append(threading.get_ident())  # not current_thread(): no dummy thread
        return self._make()


@pytest.fixture
def renderer() -> Any:
    r = PreviewRenderer()
    yield r
    r.shutdown()


def open_clip(qtbot: Any, pane: PreviewPane, clip: Path, factory: Any, key: str = "x2") -> None:
    pane.set_engine_factory(key, factory)
    with qtbot.waitSignal(pane.renderFinished, timeout=RENDER_TIMEOUT):
        pane.set_source(clip)
    assert pane.view.current_result is not None


def rgb_at(image: QImage, point: QPointF) -> np.ndarray:
    color = image.pixelColor(int(point.x()), int(point.y()))
    return np.array([color.red(), color.green(), color.blue()], dtype=int)


def expected(result: PreviewResult, which: str, ix: int, iy: int) -> np.ndarray:
    """The rendered array's pixel at output-image point (ix, iy)."""
    scale_x = result.output_size[0] / result.source_rgb.shape[1]
    scale_y = result.output_size[1] / result.source_rgb.shape[0]
    array = result.before_rgb if which == "before" else result.after_rgb
    x, y = ix - round(result.region.x * scale_x), iy - round(result.region.y * scale_y)
    return array[y, x].astype(int)


def centre_of(ix: int, iy: int) -> QPointF:
    return QPointF(ix + 0.5, iy + 0.5)


def distinct_points(result: PreviewResult, xs: range, ys: range, count: int) -> list[tuple]:
    """Output-image points where before and after clearly differ (so a swap is visible)."""
    diff = np.abs(result.before_rgb.astype(int) - result.after_rgb.astype(int)).sum(axis=2)
    scale = result.output_size[0] / result.source_rgb.shape[1]
    ox, oy = round(result.region.x * scale), round(result.region.y * scale)
    picks = [(int(diff[y - oy, x - ox]), x, y) for y in ys for x in xs]
    picks.sort(reverse=True)
    chosen = [(x, y) for d, x, y in picks[:count] if d > 45]
    assert chosen, "before and after are too alike to tell apart"
    return chosen


def test_view_state_fit_zoom_about_cursor_and_pan(qtbot: Any) -> None:
    state = ViewState()
    state.set_viewport_size(400, 300)
    state.set_image_size(200, 100)
    assert state.fit_mode and state.zoom == pytest.approx(2.0)
    anchor = QPointF(300, 120)
    under = state.viewport_to_image(anchor)
    with qtbot.waitSignal(state.changed, timeout=1000):
        state.zoom_in(anchor, steps=2)
    assert not state.fit_mode and state.zoom == pytest.approx(2.0 * 1.25**2)
    after = state.viewport_to_image(anchor)
    assert abs(after.x() - under.x()) < 1 / state.zoom and abs(after.y() - under.y()) < 1
    state.pan_by(-10_000, 0)  # cannot drag the picture off the screen
    assert state.center.x() == pytest.approx(200)
    state.set_image_size(400, 200)  # a ×2 model instead of ×1: the same spot stays centred
    assert state.center.x() == pytest.approx(400)
    state.set_zoom(1.0)  # centred on the right edge: the right half shows, clipped
    assert state.visible_image_rect() == QRectF(200, 0, 200, 200)
    state.fit()
    assert state.fit_mode and state.zoom == pytest.approx(1.0)


def test_open_video_and_drag_the_wipe_divider(
    qtbot: Any, pane: PreviewPane, clip_factory: Any, engine: Any
) -> None:
    """Opens a real clip; the engine is built lazily in the render thread; the wipe moves."""
    from vsr_desktop.core.job_spec import EngineSettings
    from vsr_desktop.worker.job_setup import build_engine

    factory = CountingFactory(lambda: build_engine(EngineSettings(outscale=2, precision="fp32")))
    open_clip(qtbot, pane, clip_factory(), factory)
    assert factory.calls == 1 and factory.thread_ids != [threading.get_ident()]
    view = pane.view
    result = view.current_result
    assert result is not None and result.output_size == (192, 128)
    assert result.after_rgb.shape == result.before_rgb.shape == (128, 192, 3)
    assert pane.current_frame() == 0 and pane.timeline.frame_count() == 24

    qtbot.keyClick(view, Qt.Key.Key_1)  # 100 %: one output pixel per screen pixel
    assert view.view_state.zoom == 1.0 and pane.zoom_text() == "100 %"
    assert view.visible_source_region() == result.region == Region(0, 0, 96, 64)

    # A point left of the divider, where before and after clearly differ.
    split_x = view.divider_x()
    left_half = range(10, 76)  # image x 96 is the centre, under the divider
    ix, iy = distinct_points(result, left_half, range(20, 110), 1)[0]
    point = view.image_to_view(centre_of(ix, iy))
    assert point.x() < split_x - 10
    shot = view.grab().toImage()
    assert np.abs(rgb_at(shot, point) - expected(result, "before", ix, iy)).max() <= 2
    assert np.abs(rgb_at(shot, point) - expected(result, "after", ix, iy)).sum() > 30

    # Drag the divider with the mouse to the left of that point.
    y = view.height() // 2
    target = int(point.x()) - 30
    qtbot.mousePress(view, Qt.MouseButton.LeftButton, pos=QPoint(split_x, y))
    qtbot.mouseMove(view, QPoint((split_x + target) // 2, y))
    qtbot.mouseMove(view, QPoint(target, y))
    qtbot.mouseRelease(view, Qt.MouseButton.LeftButton, pos=QPoint(target, y))
    assert view.divider_x() == target
    assert view.divider_fraction == pytest.approx(target / view.width(), abs=1e-3)
    assert view.view_state.center == QPointF(96, 64)  # a divider drag does not pan

    shot = view.grab().toImage()
    assert np.abs(rgb_at(shot, point) - expected(result, "after", ix, iy)).max() <= 2
    far_left = view.image_to_view(centre_of(4, iy))
    assert far_left.x() < target
    assert np.abs(rgb_at(shot, far_left) - expected(result, "before", 4, iy)).max() <= 2


def wheel(view: ComparisonView, pos: QPointF, steps: int) -> None:
    global_pos = QPointF(view.mapToGlobal(pos.toPoint()))
    event = QWheelEvent(
        pos,
        global_pos,
        QPoint(),
        QPoint(0, 120 * steps),
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(view, event)


def assert_panes_show(view: ComparisonView, result: PreviewResult) -> int:
    """Both panes show the same image point at the same place in their pane."""
    shot = view.grab().toImage()
    panes = view.pane_rects()
    offset = panes[1].left() - panes[0].left()
    visible = view.view_state.visible_image_rect()
    checked = 0
    for fx in (0.3, 0.45, 0.6, 0.75):
        for fy in (0.3, 0.5, 0.65):
            ix = int(visible.left() + fx * visible.width())
            iy = int(visible.top() + fy * visible.height())
            left = view.image_to_view(centre_of(ix, iy), 0)
            right = view.image_to_view(centre_of(ix, iy), 1)
            assert right.x() - left.x() == pytest.approx(offset) and right.y() == left.y()
            assert np.abs(rgb_at(shot, left) - expected(result, "before", ix, iy)).max() <= 2
            assert np.abs(rgb_at(shot, right) - expected(result, "after", ix, iy)).max() <= 2
            checked += 1
    return checked


def test_side_by_side_panes_zoom_and_pan_together(
    qtbot: Any, pane: PreviewPane, clip_factory: Any, engine: Any
) -> None:
    open_clip(qtbot, pane, clip_factory(), lambda: engine)
    view = pane.view
    with qtbot.waitSignal(pane.modeChanged, timeout=1000) as blocker:
        qtbot.mouseClick(pane._mode_buttons["side-by-side"], Qt.MouseButton.LeftButton)
    assert blocker.args == ["side-by-side"] and view.mode == "side-by-side"
    left_pane, right_pane = view.pane_rects()
    assert left_pane.width() == right_pane.width()

    # Wheel over the LEFT pane: zoom about the cursor.
    cursor = QPointF(left_pane.left() + left_pane.width() * 0.4, left_pane.height() * 0.45)
    under = view.view_state.viewport_to_image(cursor)
    wheel(view, cursor, 3)
    qtbot.waitUntil(lambda: not view.busy, timeout=RENDER_TIMEOUT)
    state = view.view_state
    assert state.zoom > 3 and not state.fit_mode
    moved = state.viewport_to_image(cursor)
    assert abs(moved.x() - under.x()) <= 1 / state.zoom + 1e-6
    result = view.current_result
    assert result is not None
    assert assert_panes_show(view, result) == 12

    # Drag in the RIGHT pane: the left one pans with it. The frame was upscaled whole at
    # "fit", so zooming and panning inside it need no new upscale.
    start = QPoint(right_pane.left() + 100, 200)
    end = QPoint(right_pane.left() + 40, 150)
    centre_before = state.center
    qtbot.mousePress(view, Qt.MouseButton.LeftButton, pos=start)
    qtbot.mouseMove(view, end)
    qtbot.mouseRelease(view, Qt.MouseButton.LeftButton, pos=end)
    qtbot.waitUntil(lambda: not view.busy, timeout=RENDER_TIMEOUT)
    assert state.center.x() == pytest.approx(centre_before.x() + 60 / state.zoom)
    assert state.center.y() == pytest.approx(centre_before.y() + 50 / state.zoom)
    assert pane.renderer.stats.submitted == 1 and view.current_result is result
    assert assert_panes_show(view, result) == 12

    # The next frame is upscaled only where it is visible, in both panes alike.
    with qtbot.waitSignal(pane.renderFinished, timeout=RENDER_TIMEOUT):
        qtbot.keyClick(view, Qt.Key.Key_Right)
    result = view.current_result
    assert result is not None and result.frame_index == 1
    assert result.region == view.visible_source_region()
    assert result.region.width * result.region.height < 96 * 64
    assert assert_panes_show(view, result) == 12


def test_scrubbing_changes_the_frame(
    qtbot: Any, pane: PreviewPane, clip_factory: Any, engine: Any
) -> None:
    open_clip(qtbot, pane, clip_factory(), lambda: engine)
    view = pane.view
    first = view.grab().toImage()
    first_result = view.current_result

    def step(key: Qt.Key, index: int, modifier: Any = Qt.KeyboardModifier.NoModifier) -> None:
        with (
            qtbot.waitSignal(pane.renderFinished, timeout=RENDER_TIMEOUT),
            qtbot.waitSignal(pane.frameChanged, timeout=2000, check_params_cb=lambda i: i == index),
        ):
            qtbot.keyClick(view, key, modifier)  # the view passes frame keys to the timeline
        assert pane.current_frame() == index
        assert view.current_result is not None and view.current_result.frame_index == index

    step(Qt.Key.Key_Right, 1)
    second = view.grab().toImage()
    a = np.array(
        [[rgb_at(first, QPointF(x, y)) for x in range(300, 600, 7)] for y in range(200, 400, 7)]
    )
    b = np.array(
        [[rgb_at(second, QPointF(x, y)) for x in range(300, 600, 7)] for y in range(200, 400, 7)]
    )
    assert np.abs(a - b).mean() > 1.0  # the pictured frame changed
    assert first_result is not None and view.current_result is not None
    assert not np.array_equal(first_result.after_rgb, view.current_result.after_rgb)

    step(Qt.Key.Key_Right, 23, Qt.KeyboardModifier.ShiftModifier)  # one second, clamped
    step(Qt.Key.Key_Left, 22)
    step(Qt.Key.Key_End, 23)
    # The counter names the painted frame, in SMPTE timecode at 24 fps.
    qtbot.waitUntil(lambda: "Frame 24 / 24  ·  00:00:00:23" in pane.timeline.label_text())
    jobs = pane.renderer.stats.submitted
    step(Qt.Key.Key_Home, 0)  # seen before: answered from the cache
    assert pane.renderer.stats.submitted == jobs and pane.renderer.stats.cache_hits >= 1


def test_timeline_timecodes_from_real_pts_and_debounced_drag(qtbot: Any, clip_factory: Any) -> None:
    video = probe(clip_factory(variable_frame_rate=True)).video
    assert video.is_variable_frame_rate
    timeline = TimelineScrubber()
    qtbot.addWidget(timeline)
    timeline.set_video(video)
    emitted: list[int] = []
    timeline.frameChanged.connect(emitted.append)
    timeline.set_frame(2)
    assert emitted == [2]
    assert timeline.label_text() == "Frame – / 24"  # nothing painted yet: no claim
    timeline.show_painted(2)
    # 1 + 1.5 frame intervals: 0.104 s, a frame later than a constant rate would say.
    assert video.pts_to_seconds(video.frame_pts[2]) == pytest.approx(0.104, abs=0.001)
    assert timeline.timecode(2) == timeline._timecode.at_seconds(0.104)
    assert timeline.label_text() == f"Frame 3 / 24  ·  {timeline.timecode(2)}"

    slider = timeline._slider
    slider.setSliderDown(True)
    for value in (5, 6, 7):
        slider.setValue(value)
        assert timeline.label_text().startswith("Frame 3 / 24")  # never ahead of the picture
    assert emitted == [2]  # ...but the renderer is not flooded
    with qtbot.waitSignal(timeline.frameChanged, timeout=2000) as blocker:
        pass
    assert blocker.args == [7] and emitted == [2, 7]
    slider.setSliderDown(False)
    assert emitted == [2, 7]


def test_renderer_cache_and_settings_key(
    qtbot: Any, renderer: PreviewRenderer, clip_factory: Any, engine: Any
) -> None:
    clip = clip_factory()
    first, second = CountingFactory(lambda: engine), CountingFactory(lambda: engine)
    renderer.set_engine_factory("model-a", first)
    renderer.set_engine_factory("model-b", second)
    request = RenderRequest(clip, 3, Region(16, 8, 48, 40), "model-a")
    with qtbot.waitSignal(renderer.rendered, timeout=RENDER_TIMEOUT) as blocker:
        assert renderer.request(request) is False
    result = blocker.args[0]
    assert (result.frame_index, result.region) == (3, Region(16, 8, 48, 40))
    assert result.after_rgb.shape == (80, 96, 3) and result.source_rgb.shape == (64, 96, 3)
    assert renderer.stats.submitted == 1 and first.calls == 1

    with qtbot.waitSignal(renderer.rendered, timeout=1000) as blocker:
        assert renderer.request(request) is True  # answered at once
    assert blocker.args[0] is result
    assert renderer.stats.submitted == 1 and renderer.stats.cache_hits == 1

    other = RenderRequest(clip, 3, Region(16, 8, 48, 40), "model-b")
    with qtbot.waitSignal(renderer.rendered, timeout=RENDER_TIMEOUT) as blocker:
        assert renderer.request(other) is False
    assert blocker.args[0].settings_key == "model-b"
    assert renderer.stats.submitted == 2 and second.calls == 1 and first.calls == 1
    assert renderer.stats.engine_builds == 2


def test_ten_bit_source_and_engine_errors(
    qtbot: Any, renderer: PreviewRenderer, clip_factory: Any, engine: Any
) -> None:
    clip = clip_factory(ten_bit=True)
    renderer.set_engine_factory("x2", lambda: engine)
    with qtbot.waitSignal(renderer.rendered, timeout=RENDER_TIMEOUT) as blocker:
        renderer.request(RenderRequest(clip, 5, Region(0, 0, 40, 30), "x2"))
    result = blocker.args[0]
    assert result.after_rgb.dtype == result.source_rgb.dtype == np.uint8  # shown at 8 bits
    assert result.after_rgb.shape == (60, 80, 3) and result.after_rgb.std() > 5

    def broken() -> Any:
        raise ModelError("model file mine.pth is corrupt", "download it again")

    renderer.set_engine_factory("mine", broken)
    with qtbot.waitSignal(renderer.failed, timeout=RENDER_TIMEOUT) as blocker:
        renderer.request(RenderRequest(clip, 5, Region(0, 0, 40, 30), "mine"))
    assert blocker.args == ["model file mine.pth is corrupt — download it again"]


class BlockingUpscaler:
    """Wraps the real engine; its first call waits until released or cancelled."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.started = threading.Event()
        self.release = threading.Event()
        self.cancels: list[threading.Event | None] = []

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        return self.engine.output_size(width, height)

    def upscale(self, frames: np.ndarray, cancel: threading.Event | None = None) -> np.ndarray:
        self.cancels.append(cancel)
        if len(self.cancels) == 1:
            assert cancel is not None
            self.started.set()
            while not (cancel.is_set() or self.release.is_set()):
                cancel.wait(0.01)
        return self.engine.upscale(frames, cancel)  # raises CancelledError when cancelled


def test_superseded_requests_are_cancelled_and_coalesced(
    qtbot: Any, renderer: PreviewRenderer, clip_factory: Any, engine: Any
) -> None:
    clip = clip_factory()
    upscaler = BlockingUpscaler(engine)
    renderer.set_engine_factory("x2", lambda: upscaler)
    region = Region(0, 0, 96, 64)
    shown: list[int] = []
    renderer.rendered.connect(lambda r: shown.append(r.frame_index))
    renderer.request(RenderRequest(clip, 0, region, "x2"))
    qtbot.waitUntil(upscaler.started.is_set, timeout=RENDER_TIMEOUT)  # frame 0 is upscaling
    with qtbot.waitSignal(renderer.rendered, timeout=RENDER_TIMEOUT) as blocker:
        for index in (1, 2, 3):
            renderer.request(RenderRequest(clip, index, region, "x2"))
    assert blocker.args[0].frame_index == 3 and shown == [3]
    assert renderer.stats.submitted == 2  # frames 1 and 2 never reached the worker
    assert renderer.stats.log == [(0, "cancelled"), (3, "done")]
    assert upscaler.cancels[0] is not None and upscaler.cancels[0].is_set()
    assert len(upscaler.cancels) == 2 and upscaler.cancels[1] is not None
    assert not upscaler.cancels[1].is_set()


def test_after_side_shows_bicubic_and_busy_badge_until_upscaled(
    qtbot: Any, pane: PreviewPane, clip_factory: Any, engine: Any
) -> None:
    upscaler = BlockingUpscaler(engine)
    pane.set_engine_factory("x2", lambda: upscaler)
    view = pane.view
    pane.set_source(clip_factory())
    qtbot.waitUntil(upscaler.started.is_set, timeout=RENDER_TIMEOUT)
    qtbot.waitUntil(lambda: view.placeholder_region == Region(0, 0, 96, 64), timeout=5000)
    assert view.busy and view.current_result is None
    waiting = view.grab().toImage()
    with qtbot.waitSignal(pane.renderFinished, timeout=RENDER_TIMEOUT):
        upscaler.release.set()
    result = view.current_result
    assert result is not None and not view.busy and view.placeholder_region is None
    done = view.grab().toImage()
    right_half = range(110, 180)  # image x; the divider sits at x 96
    for ix, iy in distinct_points(result, right_half, range(40, 110), 5):
        point = view.image_to_view(centre_of(ix, iy))
        assert point.x() > view.divider_x()
        # Until the model is done, "after" shows the same bicubic picture as "before".
        assert np.abs(rgb_at(waiting, point) - expected(result, "before", ix, iy)).max() <= 2
        assert np.abs(rgb_at(done, point) - expected(result, "after", ix, iy)).max() <= 2


@pytest.mark.parametrize("content", [b"this is not a video\n" * 50, None])
def test_broken_file_reports_source_failed(
    qtbot: Any, pane: PreviewPane, tmp_path: Path, engine: Any, content: bytes | None
) -> None:
    path = tmp_path / "holiday.mp4"
    if content is not None:
        path.write_bytes(content)
    pane.set_engine_factory("x2", lambda: engine)
    with qtbot.waitSignal(pane.sourceFailed, timeout=10_000) as blocker:
        pane.set_source(path)
    message = blocker.args[0]
    assert "holiday.mp4" in message
    assert ("not a video" in message) if content else ("does not exist" in message)
    assert pane.view.message is not None and message in pane.view.message
    assert pane.renderer.stats.submitted == 0 and pane.view.current_result is None


def test_toggle_shows_before_while_space_is_held(
    qtbot: Any, pane: PreviewPane, clip_factory: Any, engine: Any
) -> None:
    open_clip(qtbot, pane, clip_factory(), lambda: engine)
    view = pane.view
    qtbot.keyClick(view, Qt.Key.Key_1)
    pane.set_mode("toggle")
    result = view.current_result
    assert result is not None
    ix, iy = distinct_points(result, range(20, 170), range(20, 110), 1)[0]
    point = view.image_to_view(centre_of(ix, iy))

    def shows(which: str) -> bool:
        pixel = rgb_at(view.grab().toImage(), point)
        return bool(np.abs(pixel - expected(result, which, ix, iy)).max() <= 2)

    assert not view.showing_before and shows("after")
    qtbot.keyPress(view, Qt.Key.Key_Space)
    assert view.showing_before and shows("before")
    qtbot.keyRelease(view, Qt.Key.Key_Space)
    assert not view.showing_before and shows("after")
    view.flip()
    assert view.showing_before and shows("before")


def test_settings_change_rerenders_and_saves_screenshot(
    qtbot: Any, pane: PreviewPane, clip_factory: Any, engine: Any
) -> None:
    open_clip(qtbot, pane, clip_factory(width=320, height=180), lambda: engine)
    jobs = pane.renderer.stats.submitted
    other = CountingFactory(lambda: engine)
    with qtbot.waitSignal(pane.renderFinished, timeout=RENDER_TIMEOUT):
        pane.set_engine_factory("x2-again", other)
    assert other.calls == 1 and pane.renderer.stats.submitted == jobs + 1
    assert pane.view.current_result is not None
    assert pane.view.current_result.settings_key == "x2-again"
    pane.grab().save("/tmp/preview_split.png")
