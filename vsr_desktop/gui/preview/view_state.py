"""Zoom and pan shared by both halves of the comparison, so they cannot drift apart.

Coordinates: "image" points are output pixels of the whole upscaled frame (source × scale);
"viewport" points are widget pixels relative to the top-left of one pane. `zoom` is output
pixels per widget pixel; `display_zoom` (what "100 %" means to the user) is per physical
pixel, the zoom at which an upscale is judged, also at 200 % screen scaling.
"""

from __future__ import annotations

import math

from PySide6.QtCore import QObject, QPointF, QRectF, QSizeF, Signal
from PySide6.QtWidgets import QWidget

MIN_ZOOM = 0.02
MAX_ZOOM = 32.0
ZOOM_STEP = 1.25


class ViewState(QObject):
    """Zoom factor, centre (in image coordinates) and fit mode of the comparison panes."""

    changed = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._zoom = 1.0
        self._center = QPointF(0.0, 0.0)
        self._fit_mode = True
        self._image = QSizeF(0.0, 0.0)
        self._viewport = QSizeF(0.0, 0.0)
        self._emitted = self._snapshot()

    # -- read ----------------------------------------------------------------------------------
    @property
    def zoom(self) -> float:
        return self._zoom

    @property
    def device_pixel_ratio(self) -> float:
        """Physical pixels per widget pixel of the view this state belongs to (2 at 200 %
        screen scaling); read each time, since a window can move to another screen."""
        parent = self.parent()
        return parent.devicePixelRatioF() if isinstance(parent, QWidget) else 1.0

    @property
    def display_zoom(self) -> float:
        """The zoom as the user reads it: 1.0 ("100 %") is one output pixel per physical
        screen pixel, whatever the screen scaling (`zoom` is per widget pixel)."""
        return self._zoom * self.device_pixel_ratio

    def set_display_zoom(self, zoom: float, anchor: QPointF | None = None) -> None:
        """Set the zoom as the user reads it (1.0: one output pixel per physical pixel)."""
        self.set_zoom(zoom / self.device_pixel_ratio, anchor)

    @property
    def center(self) -> QPointF:
        return QPointF(self._center)

    @property
    def fit_mode(self) -> bool:
        return self._fit_mode

    @property
    def image_size(self) -> QSizeF:
        return QSizeF(self._image)

    @property
    def viewport_size(self) -> QSizeF:
        return QSizeF(self._viewport)

    def fit_zoom(self) -> float:
        """The zoom at which the whole image fits the viewport."""
        if self._image.isEmpty() or self._viewport.isEmpty():
            return 1.0
        return min(
            self._viewport.width() / self._image.width(),
            self._viewport.height() / self._image.height(),
        )

    def origin(self) -> QPointF:
        """Viewport position of image point (0, 0), on whole pixels so 100 % is a 1:1 blit."""
        return QPointF(
            round(self._viewport.width() / 2 - self._center.x() * self._zoom),
            round(self._viewport.height() / 2 - self._center.y() * self._zoom),
        )

    def image_to_viewport(self, point: QPointF) -> QPointF:
        origin = self.origin()
        return QPointF(origin.x() + point.x() * self._zoom, origin.y() + point.y() * self._zoom)

    def viewport_to_image(self, point: QPointF) -> QPointF:
        origin = self.origin()
        return QPointF((point.x() - origin.x()) / self._zoom, (point.y() - origin.y()) / self._zoom)

    def image_rect_to_viewport(self, rect: QRectF) -> QRectF:
        top_left = self.image_to_viewport(rect.topLeft())
        return QRectF(
            top_left.x(), top_left.y(), rect.width() * self._zoom, rect.height() * self._zoom
        )

    def visible_image_rect(self) -> QRectF:
        """The part of the image inside the viewport (image coordinates, clipped to the image)."""
        top_left = self.viewport_to_image(QPointF(0, 0))
        bottom_right = self.viewport_to_image(
            QPointF(self._viewport.width(), self._viewport.height())
        )
        return QRectF(top_left, bottom_right).intersected(
            QRectF(0, 0, self._image.width(), self._image.height())
        )

    def visible_source_rect(
        self, source: tuple[int, int], output: tuple[int, int], pad: int = 0, grid: int = 1
    ) -> tuple[int, int, int, int]:
        """(x, y, w, h) of the source pixels behind the visible part, padded by `pad` and
        snapped outward to multiples of `grid` (small pans then ask for the same region)."""
        src_w, src_h = source
        rect = self.visible_image_rect()
        if rect.isEmpty():
            return 0, 0, src_w, src_h
        sx, sy = output[0] / src_w, output[1] / src_h
        x0 = max((math.floor(rect.left() / sx) - pad) // grid * grid, 0)
        y0 = max((math.floor(rect.top() / sy) - pad) // grid * grid, 0)
        x1 = min(-(-(math.ceil(rect.right() / sx) + pad) // grid) * grid, src_w)
        y1 = min(-(-(math.ceil(rect.bottom() / sy) + pad) // grid) * grid, src_h)
        return x0, y0, max(x1 - x0, 1), max(y1 - y0, 1)

    # -- write ---------------------------------------------------------------------------------
    def set_image_size(self, width: float, height: float) -> None:
        """New picture size; the centre is rescaled so a new model scale keeps the same spot."""
        new = QSizeF(width, height)
        if new == self._image:
            return
        if not self._image.isEmpty() and not new.isEmpty():
            self._center = QPointF(
                self._center.x() * new.width() / self._image.width(),
                self._center.y() * new.height() / self._image.height(),
            )
        else:
            self._center = QPointF(width / 2, height / 2)
        self._image = new
        self._settle()

    def set_viewport_size(self, width: float, height: float) -> None:
        new = QSizeF(max(width, 0.0), max(height, 0.0))
        if new == self._viewport:
            return
        self._viewport = new
        self._settle()

    def fit(self, viewport: QSizeF | None = None, image: QSizeF | None = None) -> None:
        """Show the whole image, and keep doing so when the viewport or image changes."""
        if viewport is not None:
            self._viewport = QSizeF(viewport)
        if image is not None:
            self._image = QSizeF(image)
        self._fit_mode = True
        self._settle()

    def set_zoom(self, zoom: float, anchor: QPointF | None = None) -> None:
        """Set an absolute zoom (1.0 = 100 %), keeping the image point under `anchor` still."""
        zoom = min(max(zoom, MIN_ZOOM), MAX_ZOOM)
        fixed = (
            anchor
            if anchor is not None
            else QPointF(self._viewport.width() / 2, self._viewport.height() / 2)
        )
        under = self.viewport_to_image(fixed)
        self._fit_mode = False
        self._zoom = zoom
        offset = QPointF(
            fixed.x() - self._viewport.width() / 2, fixed.y() - self._viewport.height() / 2
        )
        self._center = QPointF(under.x() - offset.x() / zoom, under.y() - offset.y() / zoom)
        self._settle()

    def zoom_in(self, anchor: QPointF | None = None, steps: float = 1.0) -> None:
        self.set_zoom(self._zoom * ZOOM_STEP**steps, anchor)

    def zoom_out(self, anchor: QPointF | None = None, steps: float = 1.0) -> None:
        self.set_zoom(self._zoom / ZOOM_STEP**steps, anchor)

    def pan_by(self, dx: float, dy: float) -> None:
        """Move the picture by (dx, dy) screen pixels, as a drag does."""
        if self._fit_mode:
            self._fit_mode = False
        self._center = QPointF(
            self._center.x() - dx / self._zoom, self._center.y() - dy / self._zoom
        )
        self._settle()

    def _snapshot(self) -> tuple[float, ...]:
        return (
            self._zoom,
            self._center.x(),
            self._center.y(),
            float(self._fit_mode),
            self._image.width(),
            self._image.height(),
            self._viewport.width(),
            self._viewport.height(),
        )

    def _settle(self) -> None:
        """Apply fit mode and keep the centre on the image; emit `changed` if anything moved."""
        if self._fit_mode:
            self._zoom = self.fit_zoom()
            self._center = QPointF(self._image.width() / 2, self._image.height() / 2)
        else:
            self._center = QPointF(
                min(max(self._center.x(), 0.0), self._image.width()),
                min(max(self._center.y(), 0.0), self._image.height()),
            )
        snapshot = self._snapshot()
        if snapshot != self._emitted:
            self._emitted = snapshot
            self.changed.emit()
