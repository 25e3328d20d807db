"""What the comparison view draws over the picture: divider, labels, hints, spinner, overview.

Plain functions of a QPainter and rectangles, kept apart from the view's state and input
handling so each part stays small.
"""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRect, QRectF, Qt
from PySide6.QtGui import QColor, QImage, QPainter, QPen, QTransform

from vsr_desktop.gui.preview.display import DisplayTransform


def draw_divider(painter: QPainter, x: int, height: int) -> None:
    """The split wipe's handle: a line with a round grip."""
    painter.save()
    painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
    painter.fillRect(QRect(x - 1, 0, 2, height), QColor(255, 255, 255, 230))
    centre = QPointF(x, height / 2)
    painter.setPen(QPen(QColor(40, 40, 40), 1))
    painter.setBrush(QColor(255, 255, 255, 235))
    painter.drawEllipse(centre, 13, 13)
    painter.setBrush(QColor(40, 40, 40))
    for sign in (-1, 1):
        tip = centre + QPointF(sign * 9, 0)
        painter.drawPolygon([tip, tip + QPointF(-sign * 5, -5), tip + QPointF(-sign * 5, 5)])
    painter.restore()


def badge(
    painter: QPainter, text: str, anchor: QPointF, align: str, fill: QColor | None = None
) -> None:
    """A caption on a dark rounded box; `align` says which edge `anchor` is: left/right/mid."""
    painter.save()
    painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
    metrics = painter.fontMetrics()
    box = QRectF(0, 0, metrics.horizontalAdvance(text) + 16, metrics.height() + 8)
    shift = {"left": 0.0, "right": box.width(), "mid": box.width() / 2}[align]
    box.moveTopLeft(QPointF(anchor.x() - shift, anchor.y()))
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(fill if fill is not None else QColor(0, 0, 0, 170))
    painter.drawRoundedRect(box, 4, 4)
    painter.setPen(QColor(255, 255, 255))
    painter.drawText(box, Qt.AlignmentFlag.AlignCenter, text)
    painter.restore()


STALE_FILL = QColor(170, 110, 0, 220)


def label(
    painter: QPainter, text: str, pane: QRect, *, left: bool = True, stale: bool = False
) -> None:
    """A side's caption (what it shows) in a pane's top corner; amber when it is stale."""
    anchor = QPointF(pane.left() + 10 if left else pane.right() - 10, pane.top() + 10)
    badge(painter, text, anchor, "left" if left else "right", STALE_FILL if stale else None)


def footer(painter: QPainter, area: QRect, text: str, error: bool = False) -> None:
    """A hint (or, red, an error) centred at the bottom of `area`."""
    bottom = area.bottom() - painter.fontMetrics().height() - 18
    fill = QColor(150, 30, 30, 220) if error else QColor(0, 0, 0, 150)
    badge(painter, text, QPointF(area.center().x(), bottom), "mid", fill)


def draw_busy(painter: QPainter, area: QRect, phase: int) -> None:
    """A spinner badge on the "after" side while its upscaled region is on its way."""
    if area.width() < 40:
        return
    painter.save()
    painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
    text = "Upscaling…"
    metrics = painter.fontMetrics()
    box = QRectF(0, 0, metrics.horizontalAdvance(text) + 44, metrics.height() + 12)
    box.moveCenter(QPointF(area.center().x(), area.top() + 60))
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(QColor(0, 0, 0, 180))
    painter.drawRoundedRect(box, box.height() / 2, box.height() / 2)
    spinner = QRectF(box.left() + 10, box.center().y() - 7, 14, 14)
    painter.setPen(QPen(QColor(90, 170, 255), 2.5, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap))
    painter.drawArc(spinner, -phase * 30 * 16, 270 * 16)
    painter.setPen(QColor(255, 255, 255))
    painter.drawText(box.adjusted(30, 0, -8, 0), Qt.AlignmentFlag.AlignVCenter, text)
    painter.restore()


def draw_overview(
    painter: QPainter,
    pane: QRect,
    source: QImage,
    output_size: tuple[int, int],
    visible: QRectF,
    display: DisplayTransform | None = None,
) -> None:
    """When zoomed past the pane, a thumbnail of `source` shows where `visible` (display
    coordinates of the output) lies; the thumbnail is turned and stretched like the main
    picture (`display`: rotation and pixel aspect)."""
    display = display or DisplayTransform()
    out_w, out_h = display.display_size(output_size)
    if visible.width() >= out_w - 1 and visible.height() >= out_h - 1:
        return
    # At most 160×100, and a quarter of a small pane (200 % scaling on a laptop).
    scale = min(min(160, pane.width() / 4) / out_w, min(100, pane.height() / 4) / out_h)
    thumb = QRectF(
        pane.left() + 10, pane.bottom() - 10 - out_h * scale, out_w * scale, out_h * scale
    )
    stored = (source.width(), source.height())
    shown_w, _ = display.display_size(stored)
    fit = thumb.width() / max(shown_w, 1e-9)
    painter.save()
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
    painter.setOpacity(0.85)
    painter.setTransform(
        display.to_display(stored)
        * QTransform.fromScale(fit, fit)
        * QTransform.fromTranslate(thumb.left(), thumb.top()),
        True,
    )
    painter.drawImage(QRectF(0, 0, stored[0], stored[1]), source)
    painter.restore()
    painter.save()
    painter.setPen(QPen(QColor(255, 255, 255), 1))
    painter.setBrush(Qt.BrushStyle.NoBrush)
    painter.drawRect(thumb)
    painter.setPen(QPen(QColor(90, 170, 255), 2))
    painter.drawRect(
        QRectF(
            thumb.left() + visible.left() * scale,
            thumb.top() + visible.top() * scale,
            visible.width() * scale,
            visible.height() * scale,
        )
    )
    painter.restore()


def draw_message(painter: QPainter, rect: QRect, text: str) -> None:
    """A message in place of the picture (no clip open, an error)."""
    painter.setPen(QColor(220, 220, 220))
    area = rect.adjusted(24, 24, -24, -24)
    painter.drawText(area, Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, text)
