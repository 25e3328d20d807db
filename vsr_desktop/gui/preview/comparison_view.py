"""The before/after picture: split wipe, side by side, or toggle, all on one shared ViewState.

"Before" is the source region scaled with bicubic filtering to the output size, "after" is
the model's output, so both sit on the same pixel grid. Under both lies the whole source
frame scaled by Qt: it fills the picture while the upscaled region is still being rendered.
At 100 % and above, results are drawn without smoothing so the user sees real pixels.
Input lives in view_input.py, painting in view_painting.py.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from PySide6.QtCore import QPointF, QRect, Qt, QTimer, Signal
from PySide6.QtGui import (
    QImage,
    QResizeEvent,
    QShowEvent,
)
from PySide6.QtWidgets import QWidget

from vsr_desktop.core.preview import Region
from vsr_desktop.gui.preview import view_input, view_painting
from vsr_desktop.gui.preview.display import DisplayTransform, region_behind
from vsr_desktop.gui.preview.renderer import PreviewResult
from vsr_desktop.gui.preview.sides import BICUBIC, MODEL, Side
from vsr_desktop.gui.preview.view_painting import BACKGROUND  # noqa: F401 - re-exported
from vsr_desktop.gui.preview.view_state import ViewState

MODES = ("split", "side-by-side", "toggle")
PANE_GAP = 4
REGION_PAD = 8
REGION_GRID = 16


def rgb_to_qimage(rgb: np.ndarray) -> QImage:
    """An owning QImage copy of an (H, W, 3) uint8 array."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    height, width = rgb.shape[:2]
    image = QImage(rgb.data, width, height, rgb.strides[0], QImage.Format.Format_RGB888)
    return image.copy()


class ComparisonView(QWidget):
    """Paints before and after of the current frame; wheel zooms, drag pans or wipes."""

    visibleRegionChanged = Signal(object)  # Region of the source frame
    modeChanged = Signal(str)
    framePainted = Signal(object)  # frame index now on screen (after the paint, not before)

    # Input and painting: functions of view_input and view_painting.
    wheelEvent = view_input.wheelEvent
    _on_divider = view_input._on_divider
    mousePressEvent = view_input.mousePressEvent
    mouseMoveEvent = view_input.mouseMoveEvent
    mouseReleaseEvent = view_input.mouseReleaseEvent
    mouseDoubleClickEvent = view_input.mouseDoubleClickEvent
    keyPressEvent = view_input.keyPressEvent
    keyReleaseEvent = view_input.keyReleaseEvent
    event = view_input.event
    focusOutEvent = view_input.focusOutEvent
    paintEvent = view_painting.paintEvent
    _caption = staticmethod(view_painting._caption)
    _draw_side = view_painting._draw_side
    _fresh_before = view_painting._fresh_before
    _layer = view_painting._layer

    def __init__(self, parent: QWidget | None = None, view_state: ViewState | None = None) -> None:
        super().__init__(parent)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMouseTracking(True)
        self.setMinimumSize(240, 160)
        self._state = view_state or ViewState(self)
        self._state.changed.connect(self._on_state_changed)
        self._mode = "split"
        self._divider = 0.5
        self._showing_before = False
        self._source: QImage | None = None
        self._source_size: tuple[int, int] | None = None
        self._output_size: tuple[int, int] | None = None
        self._display = DisplayTransform()
        self._frame_index = -1
        self._painted_frame = -1
        self._result: PreviewResult | None = None  # the newest from the main renderer
        #: Rendered pictures by settings key: (result, bicubic "before", model "after").
        self._images: dict[str, tuple[PreviewResult, QImage, QImage]] = {}
        self._sides = (Side(BICUBIC, label="Bicubic"), Side(MODEL, label="After"))
        #: What the last paint showed: (label, "source"/"bicubic"/settings key, frame).
        self.painted: list[tuple[str, str, int]] = []
        self._placeholder: tuple[Region, QImage] | None = None  # bicubic, until "after" comes
        self._message: str | None = "Open a video to compare before and after"
        self._error: str | None = None
        self._busy = False
        self._phase = 0
        self._timer = QTimer(self)
        self._timer.setInterval(80)
        self._timer.timeout.connect(self._tick)
        self._drag: str | None = None
        self._last_pos = QPointF()
        self._last_region: Region | None = None
        self.overview_enabled = True

    # -- public state --------------------------------------------------------------------------
    @property
    def view_state(self) -> ViewState:
        return self._state

    @property
    def mode(self) -> str:
        return self._mode

    @property
    def divider_fraction(self) -> float:
        return self._divider

    @property
    def showing_before(self) -> bool:
        """In toggle mode: True while the user holds Space (or after `flip`)."""
        return self._showing_before

    @property
    def busy(self) -> bool:
        return self._busy

    @property
    def message(self) -> str | None:
        return self._message

    @property
    def current_result(self) -> PreviewResult | None:
        return self._result

    @property
    def placeholder_region(self) -> Region | None:
        """The region whose bicubic stand-in is shown while its upscale is on its way."""
        return self._placeholder[0] if self._placeholder is not None else None

    @property
    def source_image(self) -> QImage | None:
        """The decoded source frame on screen (as stored: before pixel aspect and turn)."""
        return self._source

    @property
    def frame_index(self) -> int:
        return self._frame_index

    @property
    def painted_frame(self) -> int:
        """The source frame the last paint put on screen (-1 before any)."""
        return self._painted_frame

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown comparison mode {mode!r}; use one of {MODES}")
        if mode == self._mode:
            return
        self._mode = mode
        self._showing_before = False
        self._update_viewport()
        self.update()
        self.modeChanged.emit(mode)

    def set_divider_fraction(self, fraction: float) -> None:
        self._divider = min(max(fraction, 0.0), 1.0)
        self.update()

    def hold_before(self, held: bool) -> None:
        """Toggle mode shows "before" while held (Space down) and "after" otherwise."""
        if held != self._showing_before:
            self._showing_before = held
            self.update()

    def flip(self) -> None:
        self.hold_before(not self._showing_before)

    def set_busy(self, busy: bool) -> None:
        self._busy = busy
        if busy and self.isVisible():
            self._timer.start()
        elif not busy:
            self._timer.stop()
        self.update()

    def show_message(self, text: str | None) -> None:
        """A message instead of the picture (nothing open, opening, cannot open)."""
        self._message = text
        self.update()

    def set_error(self, text: str | None) -> None:
        """A banner over the picture when a render failed (the picture stays)."""
        self._error = text
        self.update()

    # -- content -------------------------------------------------------------------------------
    def set_sizes(self, source: tuple[int, int], output: tuple[int, int]) -> None:
        """Source frame size and the full output size (source × model scale)."""
        changed = source != self._source_size or output != self._output_size
        if output != self._output_size:
            self._placeholder = None
            for key in [k for k, e in self._images.items() if e[0].output_size != output]:
                self._drop(key)
        self._source_size, self._output_size = source, output
        self._state.set_image_size(*self._display.display_size(output))
        if changed:
            self._emit_region_if_changed()

    def set_display(self, rotation: int | None, sample_aspect_ratio: object = None) -> None:
        """Show the picture as a player does: the source's pixel aspect, then its rotation
        (VideoInfo.rotation, sample_aspect_ratio), on both sides alike."""
        sar = sample_aspect_ratio if isinstance(sample_aspect_ratio, Fraction | float) else None
        display = DisplayTransform.of(rotation, sar)
        if display == self._display:
            return
        self._display = display
        if self._output_size is not None:
            self._state.set_image_size(*display.display_size(self._output_size))
            self._state.fit()
        self._emit_region_if_changed()
        self.update()

    @property
    def display(self) -> DisplayTransform:
        return self._display

    def set_frame(
        self, frame_index: int, rgb: np.ndarray, keep_stale: bool = False, force: bool = False
    ) -> None:
        """Show a newly decoded source frame. Upscales of other frames are dropped, or with
        `keep_stale` (playing faster than the engine) kept and marked stale; `force` shows
        the same frame decoded anew (another deinterlace setting)."""
        if frame_index == self._frame_index and self._source is not None and not force:
            return  # the same frame again (a new region of it is being rendered)
        self._placeholder = None
        if not keep_stale:
            for key in [k for k, e in self._images.items() if e[0].frame_index != frame_index]:
                self._drop(key)
        self._frame_index = frame_index
        self._source = rgb_to_qimage(rgb)
        if self._source_size is None:
            height, width = rgb.shape[:2]
            self.set_sizes((width, height), (width, height))
        self._message = None
        self.update()

    def set_placeholder(self, frame_index: int, region: Region, before_rgb: np.ndarray) -> None:
        """The region's bicubic picture, shown on both sides until its upscale arrives."""
        if frame_index == self._frame_index:
            self._placeholder = (region, rgb_to_qimage(before_rgb))
            self.update()

    def set_result(self, result: PreviewResult, primary: bool = True) -> None:
        """Show a render; `primary` for the main renderer's (the second model of an A/B
        comparison is not primary). Each side draws only results of its own key."""
        if self._placeholder is not None and self._placeholder[0] == result.region:
            self._placeholder = None
        if primary:
            self._result = result
        before, after = rgb_to_qimage(result.before_rgb), rgb_to_qimage(result.after_rgb)
        self._images[result.settings_key] = (result, before, after)
        self._error = None
        height, width = result.source_rgb.shape[:2]
        if result.frame_index != self._frame_index or self._source is None:
            self._frame_index = result.frame_index
            self._source = rgb_to_qimage(result.source_rgb)
        self.set_sizes((width, height), result.output_size)
        self._message = None
        self.update()

    def clear_result(self) -> None:
        self._result = None
        self._images.clear()
        self._placeholder = None
        self.update()

    def _drop(self, key: str) -> None:
        self._images.pop(key, None)
        if self._result is not None and self._result.settings_key == key:
            self._result = None

    def set_sides(self, left: Side, right: Side) -> None:
        """What each side shows. Pictures of keys no side shows any more are forgotten, so
        the previous model's "after" cannot come back under a new label."""
        self._sides = (left, right)
        keys = {side.key for side in self._sides if side.kind == MODEL}
        if any(side.kind == BICUBIC for side in self._sides) and self._result is not None:
            keys.add(self._result.settings_key)
        for key in [k for k in self._images if k not in keys]:
            self._drop(key)
        self.update()

    @property
    def sides(self) -> tuple[Side, Side]:
        return self._sides

    def side_labels(self) -> tuple[str, str]:
        return self._sides[0].label, self._sides[1].label

    def result_for(self, key: str) -> PreviewResult | None:
        entry = self._images.get(key)
        return entry[0] if entry is not None else None

    def clear(self, message: str | None = None) -> None:
        """Forget the source (a new file is being opened)."""
        self.clear_result()
        self._source = None
        self._source_size = self._output_size = None
        self._frame_index = -1
        self._painted_frame = -1
        self._last_region = None
        self._error = None
        self.show_message(message)

    # -- geometry ------------------------------------------------------------------------------
    def pane_rects(self) -> list[QRect]:
        """One pane, or two equal ones in side-by-side mode (same ViewState for both)."""
        if self._mode != "side-by-side":
            return [self.rect()]
        width = max((self.width() - PANE_GAP) // 2, 1)
        return [QRect(0, 0, width, self.height()), QRect(width + PANE_GAP, 0, width, self.height())]

    def image_to_view(self, point: QPointF, pane: int = 0) -> QPointF:
        """Widget position of an output-image point in pane 0 (before) or 1 (after)."""
        rect = self.pane_rects()[pane]
        return self._state.image_to_viewport(point) + QPointF(rect.topLeft())

    def divider_x(self) -> int:
        return round(self._divider * self.width())

    def visible_source_region(self) -> Region:
        """Source pixels visible now, padded for the model's context and snapped to a grid."""
        if self._source_size is None or self._output_size is None:
            return Region(0, 0, 1, 1)
        if not self._display.is_identity:
            stored = self._display.to_stored(self._state.visible_image_rect(), self._output_size)
            x, y, w, h = region_behind(
                stored, self._source_size, self._output_size, REGION_PAD, REGION_GRID
            )
            return Region(x, y, w, h).clamp(*self._source_size)
        x, y, w, h = self._state.visible_source_rect(
            self._source_size, self._output_size, REGION_PAD, REGION_GRID
        )
        return Region(x, y, w, h).clamp(*self._source_size)

    def _update_viewport(self) -> None:
        pane = self.pane_rects()[0]
        self._state.set_viewport_size(pane.width(), pane.height())
        self._emit_region_if_changed()

    def _emit_region_if_changed(self) -> None:
        if self._source_size is None:
            return
        region = self.visible_source_region()
        if region != self._last_region:
            self._last_region = region
            self.visibleRegionChanged.emit(region)

    def _on_state_changed(self) -> None:
        self._emit_region_if_changed()
        self.update()

    def _tick(self) -> None:
        self._phase = (self._phase + 1) % 12
        self.update()

    # -- events --------------------------------------------------------------------------------
    def resizeEvent(self, event: QResizeEvent) -> None:
        self._update_viewport()
        super().resizeEvent(event)

    def showEvent(self, event: QShowEvent) -> None:
        self._update_viewport()
        if self._busy:
            self._timer.start()
        super().showEvent(event)

    def _pane_at(self, pos: QPointF) -> QRect:
        panes = self.pane_rects()
        return panes[1] if len(panes) > 1 and pos.x() >= panes[1].left() else panes[0]

    def run_zoom(self, call: str) -> None:
        """A zoom entry's call: a ViewState method, or "zoom:<factor>" (display zoom)."""
        if call.startswith("zoom:"):
            self._state.set_display_zoom(float(call.removeprefix("zoom:")))
        else:
            getattr(self._state, call)()

    # -- painting ------------------------------------------------------------------------------
