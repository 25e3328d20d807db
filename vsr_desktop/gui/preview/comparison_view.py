"""The before/after picture: split wipe, side by side, or toggle, all on one shared ViewState.

"Before" is the source region scaled with bicubic filtering to the output size, "after" is
the model's output, so both sit on the same pixel grid. Under both lies the whole source
frame scaled by Qt: it fills the picture while the upscaled region is still being rendered.
At 100 % and above, results are drawn without smoothing so the user sees real pixels.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction

import numpy as np
from PySide6.QtCore import QEvent, QPointF, QRect, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import (
    QColor,
    QFocusEvent,
    QImage,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QResizeEvent,
    QShowEvent,
    QWheelEvent,
)
from PySide6.QtWidgets import QWidget

from vsr_desktop.core.preview import Region
from vsr_desktop.gui.preview import overlays
from vsr_desktop.gui.preview.display import DisplayTransform, region_behind
from vsr_desktop.gui.preview.layers import draw_layer
from vsr_desktop.gui.preview.renderer import PreviewResult
from vsr_desktop.gui.preview.sides import BICUBIC, SOURCE, Side
from vsr_desktop.gui.preview.view_state import ViewState

MODES = ("split", "side-by-side", "toggle")
PANE_GAP = 4
DIVIDER_GRAB = 7
REGION_PAD = 8
REGION_GRID = 16
BACKGROUND = QColor(24, 24, 28)
MODEL = "model"
NOT_YET = -2  # _draw_side: a model side with nothing upscaled on screen


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

    def set_frame(self, frame_index: int, rgb: np.ndarray, keep_stale: bool = False) -> None:
        """Show a newly decoded source frame. Upscales of other frames are dropped, or with
        `keep_stale` (playing faster than the engine) kept and marked stale."""
        if frame_index == self._frame_index and self._source is not None:
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

    def wheelEvent(self, event: QWheelEvent) -> None:
        steps = event.angleDelta().y() / 120
        if not steps or self._source is None:
            event.ignore()
            return
        pos = event.position()
        anchor = pos - QPointF(self._pane_at(pos).topLeft())
        self._state.zoom_in(anchor, steps)
        event.accept()

    def _on_divider(self, pos: QPointF) -> bool:
        return self._mode == "split" and abs(pos.x() - self.divider_x()) <= DIVIDER_GRAB

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() != Qt.MouseButton.LeftButton:
            super().mousePressEvent(event)
            return
        pos = event.position()
        self._drag = "divider" if self._on_divider(pos) else "pan"
        self._last_pos = pos
        if self._drag == "pan":
            self.setCursor(Qt.CursorShape.ClosedHandCursor)
        event.accept()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        pos = event.position()
        if self._drag == "divider":
            self.set_divider_fraction(pos.x() / max(self.width(), 1))
        elif self._drag == "pan":
            delta = pos - self._last_pos
            self._state.pan_by(delta.x(), delta.y())
        else:
            shape = (
                Qt.CursorShape.SplitHCursor
                if self._on_divider(pos)
                else Qt.CursorShape.OpenHandCursor
            )
            self.setCursor(shape)
        self._last_pos = pos
        event.accept()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton and self._drag is not None:
            self._drag = None
            self.unsetCursor()
            event.accept()
            return
        super().mouseReleaseEvent(event)

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        """Double-click flips between fit and 100 % at the clicked point."""
        if self._state.fit_mode:
            pos = event.position()
            self._state.set_display_zoom(1.0, pos - QPointF(self._pane_at(pos).topLeft()))
        else:
            self._state.fit()
        event.accept()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        state, key = self._state, event.key()
        actions: dict[int, Callable[[], None]] = {
            Qt.Key.Key_Plus: state.zoom_in, Qt.Key.Key_Equal: state.zoom_in,
            Qt.Key.Key_Minus: state.zoom_out, Qt.Key.Key_Underscore: state.zoom_out,
            Qt.Key.Key_0: state.fit,
            Qt.Key.Key_1: lambda: state.set_display_zoom(1.0),
            Qt.Key.Key_2: lambda: state.set_display_zoom(2.0),
        }  # fmt: skip
        if key == Qt.Key.Key_Space and self._mode == "toggle":
            if not event.isAutoRepeat():
                self.hold_before(True)
        elif key in actions:
            actions[key]()
        else:
            event.ignore()  # arrows etc. go on to the pane (timeline)
            return
        event.accept()

    def keyReleaseEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Space and self._mode == "toggle":
            if not event.isAutoRepeat():
                self.hold_before(False)
            event.accept()
            return
        super().keyReleaseEvent(event)

    def event(self, event: QEvent) -> bool:
        """In toggle mode Space is held to compare: it is a key here, not play/pause."""
        if (
            event.type() == QEvent.Type.ShortcutOverride
            and isinstance(event, QKeyEvent)
            and event.key() == Qt.Key.Key_Space
            and self._mode == "toggle"
        ):
            event.accept()
            return True
        return super().event(event)

    def focusOutEvent(self, event: QFocusEvent) -> None:
        self.hold_before(False)  # a Space release we never see must not stick
        super().focusOutEvent(event)

    # -- painting ------------------------------------------------------------------------------
    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), BACKGROUND)
        self.painted = []
        if self._source is None or self._message:
            overlays.draw_message(painter, self.rect(), self._message or "")
            painter.end()
            return
        panes = self.pane_rects()
        left, right = self._sides
        if self._mode == "split":
            pane, split = panes[0], self.divider_x()
            stale_left = self._draw_side(painter, pane, QRect(0, 0, split, pane.height()), left)
            after_area = QRect(split, 0, pane.width() - split, pane.height())
            stale_right = self._draw_side(painter, pane, after_area, right)
            overlays.draw_divider(painter, split, self.height())
            overlays.label(
                painter, self._caption(left, stale_left), pane, stale=stale_left is not None
            )
            overlays.label(
                painter,
                self._caption(right, stale_right),
                pane,
                left=False,
                stale=stale_right is not None,
            )
        elif self._mode == "side-by-side":
            for side, area in zip(self._sides, panes, strict=True):
                stale = self._draw_side(painter, area, area, side)
                overlays.label(painter, self._caption(side, stale), area, stale=stale is not None)
            after_area = panes[1]
        else:
            side = left if self._showing_before else right
            stale = self._draw_side(painter, panes[0], panes[0], side)
            overlays.label(painter, self._caption(side, stale), panes[0], stale=stale is not None)
            overlays.footer(painter, panes[0], f"Hold Space to see {left.label}")
            after_area = panes[0]
        if self.overview_enabled and self._source is not None and self._output_size:
            overlays.draw_overview(
                painter, panes[0], self._source, self._output_size, self._state.visible_image_rect()
            )
        if self._busy:
            overlays.draw_busy(painter, after_area, self._phase)
        if self._error:
            overlays.footer(painter, self.rect(), self._error, error=True)
        painter.end()
        if self._frame_index != self._painted_frame:
            self._painted_frame = self._frame_index
            self.framePainted.emit(self._frame_index)  # the counter follows what is seen

    @staticmethod
    def _caption(side: Side, stale: int | None) -> str:
        if stale is None:
            return side.label
        if stale == NOT_YET:
            return f"{side.label} · not upscaled yet"
        return f"{side.label} · stale (frame {stale + 1})"

    def _draw_side(self, painter: QPainter, pane: QRect, clip: QRect, side: Side) -> int | None:
        """Draw one side; returns the frame index of an upscale from an earlier frame (shown
        marked stale while playback outruns the engine), NOT_YET for a model side with no
        upscale at all (the source or the bicubic stand-in shows), else None."""
        if clip.isEmpty() or self._source is None or self._output_size is None:
            return None
        painter.save()
        painter.setClipRect(clip)
        out_w, out_h = self._output_size
        real_pixels = side.kind == SOURCE and self._state.display_zoom >= 1.0
        self._layer(painter, pane, self._source, QRectF(0, 0, out_w, out_h), not real_pixels)
        shown, stale = (SOURCE, self._frame_index), None
        layers = []
        if side.kind != SOURCE and self._placeholder is not None:
            layers.append(self._placeholder)
        entry = self._images.get(side.key) if side.kind == MODEL else self._fresh_before()
        if side.kind != SOURCE and entry is not None:
            result, before, after = entry
            if result.frame_index != self._frame_index:
                stale = result.frame_index
            if side.kind == MODEL or stale is None:
                layers.append((result.region, after if side.kind == MODEL else before))
                shown = (side.key if side.kind == MODEL else BICUBIC, result.frame_index)
            else:
                stale = None  # a bicubic picture of another frame is not worth showing
        if self._source_size is not None:
            sx, sy = out_w / self._source_size[0], out_h / self._source_size[1]
            for region, picture in layers:
                where = QRectF(region.x * sx, region.y * sy, picture.width(), picture.height())
                self._layer(painter, pane, picture, where, self._state.display_zoom < 1.0)
        painter.restore()
        self.painted.append((side.label, shown[0], shown[1]))
        if side.kind == MODEL and side.key and shown[0] != side.key:
            return NOT_YET
        return stale

    def _fresh_before(self) -> tuple[PreviewResult, QImage, QImage] | None:
        """The bicubic picture of the frame on screen, from whichever model rendered it."""
        entries = list(self._images.values())
        fresh = [e for e in entries if e[0].frame_index == self._frame_index]
        return fresh[0] if fresh else (entries[0] if entries else None)

    def _layer(
        self, painter: QPainter, pane: QRect, image: QImage, where: QRectF, smooth: bool
    ) -> None:
        assert self._output_size is not None
        draw_layer(
            painter,
            self._state,
            self._display,
            self._output_size,
            pane,
            image,
            where,
            smooth=smooth,
        )
