"""What a player does to stored pixels before showing them: pixel aspect, then rotation.

The preview keeps before/after on the stored pixel grid (so the model's pixels stay
comparable) and applies this one transform when painting both sides, so zoom, pan and the
split wipe stay in sync while the picture has the shape a player gives it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from PySide6.QtCore import QRectF
from PySide6.QtGui import QTransform


@dataclass(frozen=True)
class DisplayTransform:
    """Rotation (degrees counter-clockwise, as FFmpeg's display matrix says) and the
    pixel aspect ratio (width of a pixel over its height)."""

    rotation: int = 0
    sample_aspect_ratio: float = 1.0

    @classmethod
    def of(cls, rotation: int | None, sar: Fraction | float | None) -> DisplayTransform:
        quarter = round((rotation or 0) / 90) % 4 * 90
        aspect = float(sar) if sar and float(sar) > 0 else 1.0
        return cls(quarter, aspect)

    @property
    def is_identity(self) -> bool:
        return self.rotation == 0 and math.isclose(self.sample_aspect_ratio, 1.0)

    def _linear(self) -> QTransform:
        # Qt's y axis points down: a counter-clockwise turn on screen is a negative angle.
        return QTransform.fromScale(self.sample_aspect_ratio, 1.0) * QTransform().rotate(
            -self.rotation
        )

    def to_display(self, size: tuple[int, int]) -> QTransform:
        """Stored-image coordinates (of a picture `size` big) → display coordinates."""
        linear = self._linear()
        bounds = linear.mapRect(QRectF(0, 0, size[0], size[1]))
        return linear * QTransform.fromTranslate(-bounds.left(), -bounds.top())

    def display_size(self, size: tuple[int, int]) -> tuple[float, float]:
        bounds = self._linear().mapRect(QRectF(0, 0, size[0], size[1]))
        return bounds.width(), bounds.height()

    def to_stored(self, rect: QRectF, size: tuple[int, int]) -> QRectF:
        """A display rectangle's bounding rectangle in stored-image coordinates."""
        inverse, _ = self.to_display(size).inverted()
        return inverse.mapRect(rect).intersected(QRectF(0, 0, size[0], size[1]))


def region_behind(
    stored: QRectF, source: tuple[int, int], output: tuple[int, int], pad: int, grid: int
) -> tuple[int, int, int, int]:
    """(x, y, w, h) of source pixels behind a stored-output rectangle, padded and snapped
    like ViewState.visible_source_rect."""
    src_w, src_h = source
    if stored.isEmpty():
        return 0, 0, src_w, src_h
    sx, sy = output[0] / src_w, output[1] / src_h
    x0 = max((math.floor(stored.left() / sx) - pad) // grid * grid, 0)
    y0 = max((math.floor(stored.top() / sy) - pad) // grid * grid, 0)
    x1 = min(-(-(math.ceil(stored.right() / sx) + pad) // grid) * grid, src_w)
    y1 = min(-(-(math.ceil(stored.bottom() / sy) + pad) // grid) * grid, src_h)
    return x0, y0, max(x1 - x0, 1), max(y1 - y0, 1)
