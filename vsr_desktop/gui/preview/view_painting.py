"""Painting the comparison: each side's layers (source, bicubic stand-in, upscale) through
the shared zoom, the captions (stale or not yet upscaled), the divider, the overview and
the busy spinner.

Functions of ComparisonView (assigned in its class body), kept apart so the view's module
holds its state and geometry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QRect, QRectF
from PySide6.QtGui import QColor, QImage, QPainter, QPaintEvent

from vsr_desktop.gui.preview import overlays
from vsr_desktop.gui.preview.layers import draw_layer
from vsr_desktop.gui.preview.renderer import PreviewResult
from vsr_desktop.gui.preview.sides import BICUBIC, MODEL, SOURCE, Side

if TYPE_CHECKING:
    from vsr_desktop.gui.preview.comparison_view import ComparisonView

BACKGROUND = QColor(24, 24, 28)
NOT_YET = -2  # _draw_side: a model side with nothing upscaled on screen


def paintEvent(view: ComparisonView, event: QPaintEvent) -> None:
    painter = QPainter(view)
    painter.fillRect(view.rect(), BACKGROUND)
    view.painted = []
    if view._source is None or view._message:
        overlays.draw_message(painter, view.rect(), view._message or "")
        painter.end()
        return
    panes = view.pane_rects()
    left, right = view._sides
    if view._mode == "split":
        pane, split = panes[0], view.divider_x()
        stale_left = view._draw_side(painter, pane, QRect(0, 0, split, pane.height()), left)
        after_area = QRect(split, 0, pane.width() - split, pane.height())
        stale_right = view._draw_side(painter, pane, after_area, right)
        overlays.draw_divider(painter, split, view.height())
        overlays.label(painter, view._caption(left, stale_left), pane, stale=stale_left is not None)
        overlays.label(
            painter,
            view._caption(right, stale_right),
            pane,
            left=False,
            stale=stale_right is not None,
        )
    elif view._mode == "side-by-side":
        for side, area in zip(view._sides, panes, strict=True):
            stale = view._draw_side(painter, area, area, side)
            overlays.label(painter, view._caption(side, stale), area, stale=stale is not None)
        after_area = panes[1]
    else:
        side = left if view._showing_before else right
        stale = view._draw_side(painter, panes[0], panes[0], side)
        overlays.label(painter, view._caption(side, stale), panes[0], stale=stale is not None)
        overlays.footer(painter, panes[0], f"Hold Space to see {left.label}")
        after_area = panes[0]
    if view.overview_enabled and view._source is not None and view._output_size:
        overlays.draw_overview(
            painter,
            panes[0],
            view._source,
            view._output_size,
            view._state.visible_image_rect(),
            view._display,
        )
    if view._busy:
        overlays.draw_busy(painter, after_area, view._phase)
    if view._error:
        overlays.footer(painter, view.rect(), view._error, error=True)
    painter.end()
    if view._frame_index != view._painted_frame:
        view._painted_frame = view._frame_index
        view.framePainted.emit(view._frame_index)  # the counter follows what is seen


def _caption(side: Side, stale: int | None) -> str:
    if stale is None:
        return side.label
    if stale == NOT_YET:
        return f"{side.label} · not upscaled yet"
    return f"{side.label} · stale (frame {stale + 1})"


def _draw_side(
    view: ComparisonView, painter: QPainter, pane: QRect, clip: QRect, side: Side
) -> int | None:
    """Draw one side; returns the frame index of an upscale from an earlier frame (shown
    marked stale while playback outruns the engine), NOT_YET for a model side with no
    upscale at all (the source or the bicubic stand-in shows), else None."""
    if clip.isEmpty() or view._source is None or view._output_size is None:
        return None
    painter.save()
    painter.setClipRect(clip)
    out_w, out_h = view._output_size
    real_pixels = side.kind == SOURCE and view._state.display_zoom >= 1.0
    view._layer(painter, pane, view._source, QRectF(0, 0, out_w, out_h), not real_pixels)
    shown, stale = (SOURCE, view._frame_index), None
    layers = []
    if side.kind != SOURCE and view._placeholder is not None:
        layers.append(view._placeholder)
    entry = view._images.get(side.key) if side.kind == MODEL else view._fresh_before()
    if side.kind != SOURCE and entry is not None:
        result, before, after = entry
        if result.frame_index != view._frame_index:
            stale = result.frame_index
        if side.kind == MODEL or stale is None:
            layers.append((result.region, after if side.kind == MODEL else before))
            shown = (side.key if side.kind == MODEL else BICUBIC, result.frame_index)
        else:
            stale = None  # a bicubic picture of another frame is not worth showing
    if view._source_size is not None:
        sx, sy = out_w / view._source_size[0], out_h / view._source_size[1]
        for region, picture in layers:
            where = QRectF(region.x * sx, region.y * sy, picture.width(), picture.height())
            view._layer(painter, pane, picture, where, view._state.display_zoom < 1.0)
    painter.restore()
    view.painted.append((side.label, shown[0], shown[1]))
    if side.kind == MODEL and side.key and shown[0] != side.key:
        return NOT_YET
    return stale


def _fresh_before(view: ComparisonView) -> tuple[PreviewResult, QImage, QImage] | None:
    """The bicubic picture of the frame on screen, from whichever model rendered it."""
    entries = list(view._images.values())
    fresh = [e for e in entries if e[0].frame_index == view._frame_index]
    return fresh[0] if fresh else (entries[0] if entries else None)


def _layer(
    view, painter: QPainter, pane: QRect, image: QImage, where: QRectF, smooth: bool
) -> None:
    assert view._output_size is not None
    draw_layer(
        painter,
        view._state,
        view._display,
        view._output_size,
        pane,
        image,
        where,
        smooth=smooth,
    )
