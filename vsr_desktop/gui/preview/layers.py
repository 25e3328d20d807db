"""Drawing one picture layer of the comparison at the shared zoom and pan.

Split from the view so the view keeps to input and state: each function draws only the part
of `image` (placed at `where`, output-image coordinates) that is visible in a pane, straight
or through the display transform (pixel aspect and rotation as a player shows them).
"""

from __future__ import annotations

import math

from PySide6.QtCore import QPointF, QRect, QRectF
from PySide6.QtGui import QImage, QPainter, QTransform

from vsr_desktop.gui.preview.display import DisplayTransform
from vsr_desktop.gui.preview.view_state import ViewState


def _crop(image: QImage, where: QRectF, visible: QRectF) -> tuple[QRectF, QRectF] | None:
    """(source rect in image pixels, target rect in output-image coords) of the visible part."""
    if visible.isEmpty() or where.isEmpty():
        return None
    kx, ky = image.width() / where.width(), image.height() / where.height()
    left = max(math.floor((visible.left() - where.left()) * kx), 0)
    top = max(math.floor((visible.top() - where.top()) * ky), 0)
    right = min(math.ceil((visible.right() - where.left()) * kx), image.width())
    bottom = min(math.ceil((visible.bottom() - where.top()) * ky), image.height())
    if right <= left or bottom <= top:
        return None
    source = QRectF(left, top, right - left, bottom - top)
    target = QRectF(
        where.left() + left / kx, where.top() + top / ky, (right - left) / kx, (bottom - top) / ky
    )
    return source, target


def draw_layer(
    painter: QPainter,
    state: ViewState,
    display: DisplayTransform,
    output_size: tuple[int, int],
    pane: QRect,
    image: QImage,
    where: QRectF,
    *,
    smooth: bool,
) -> None:
    """Draw the part of `image` visible in `pane` (smooth: filtered, else real pixels)."""
    if not display.is_identity:
        _draw_turned(painter, state, display, output_size, pane, image, where, smooth=smooth)
        return
    crop = _crop(image, where, state.visible_image_rect().intersected(where))
    if crop is None:
        return
    source, target_image = crop
    target = state.image_rect_to_viewport(target_image).translated(QPointF(pane.topLeft()))
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, smooth)
    painter.drawImage(target, image, source)


def _draw_turned(
    painter: QPainter,
    state: ViewState,
    display: DisplayTransform,
    output_size: tuple[int, int],
    pane: QRect,
    image: QImage,
    where: QRectF,
    *,
    smooth: bool,
) -> None:
    """draw_layer through the display transform (stored pixels → what a player shows)."""
    stored = display.to_stored(state.visible_image_rect(), output_size)
    crop = _crop(image, where, stored.intersected(where))
    if crop is None:
        return
    source, target = crop
    origin = state.image_to_viewport(QPointF(0, 0)) + QPointF(pane.topLeft())
    zoom = state.zoom
    view = (
        display.to_display(output_size)
        * QTransform.fromScale(zoom, zoom)
        * QTransform.fromTranslate(origin.x(), origin.y())
    )
    painter.save()
    painter.setTransform(view)
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, smooth)
    painter.drawImage(target, image, source)
    painter.restore()
