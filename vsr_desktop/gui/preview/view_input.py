"""The comparison view's input: wheel zoom, drag to pan or move the wipe, double-click
between fit and 100 %, the zoom keys (view_keys.ZOOM_KEYS) and Space held in toggle mode.

Functions of ComparisonView (assigned in its class body), kept apart so the view's module
holds its state and geometry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QEvent, QPointF, Qt
from PySide6.QtGui import QFocusEvent, QKeyEvent, QMouseEvent, QWheelEvent
from PySide6.QtWidgets import QWidget

from vsr_desktop.gui.preview import view_keys

if TYPE_CHECKING:
    from vsr_desktop.gui.preview.comparison_view import ComparisonView

#: How near the split divider (widget pixels) a press grabs it.
DIVIDER_GRAB = 7


def wheelEvent(view: ComparisonView, event: QWheelEvent) -> None:
    steps = event.angleDelta().y() / 120
    if not steps or view._source is None:
        event.ignore()
        return
    pos = event.position()
    anchor = pos - QPointF(view._pane_at(pos).topLeft())
    view._state.zoom_in(anchor, steps)
    event.accept()


def _on_divider(view: ComparisonView, pos: QPointF) -> bool:
    return view._mode == "split" and abs(pos.x() - view.divider_x()) <= DIVIDER_GRAB


def mousePressEvent(view: ComparisonView, event: QMouseEvent) -> None:
    if event.button() != Qt.MouseButton.LeftButton:
        QWidget.mousePressEvent(view, event)
        return
    pos = event.position()
    view._drag = "divider" if view._on_divider(pos) else "pan"
    view._last_pos = pos
    if view._drag == "pan":
        view.setCursor(Qt.CursorShape.ClosedHandCursor)
    event.accept()


def mouseMoveEvent(view: ComparisonView, event: QMouseEvent) -> None:
    pos = event.position()
    if view._drag == "divider":
        view.set_divider_fraction(pos.x() / max(view.width(), 1))
    elif view._drag == "pan":
        delta = pos - view._last_pos
        view._state.pan_by(delta.x(), delta.y())
    else:
        shape = (
            Qt.CursorShape.SplitHCursor if view._on_divider(pos) else Qt.CursorShape.OpenHandCursor
        )
        view.setCursor(shape)
    view._last_pos = pos
    event.accept()


def mouseReleaseEvent(view: ComparisonView, event: QMouseEvent) -> None:
    if event.button() == Qt.MouseButton.LeftButton and view._drag is not None:
        view._drag = None
        view.unsetCursor()
        event.accept()
        return
    QWidget.mouseReleaseEvent(view, event)


def mouseDoubleClickEvent(view: ComparisonView, event: QMouseEvent) -> None:
    """Double-click flips between fit and 100 % at the clicked point."""
    if view._state.fit_mode:
        pos = event.position()
        view._state.set_display_zoom(1.0, pos - QPointF(view._pane_at(pos).topLeft()))
    else:
        view._state.fit()
    event.accept()


def keyPressEvent(view: ComparisonView, event: QKeyEvent) -> None:
    """Zoom keys from view_keys.ZOOM_KEYS (the shortcuts sheet lists the same table)."""
    entry = view_keys.zoom_key_for(event.key())
    if event.key() == view_keys.HOLD_KEY and view._mode == "toggle":
        if not event.isAutoRepeat():
            view.hold_before(True)
    elif entry is not None:
        view.run_zoom(entry.call)
    else:
        event.ignore()  # arrows etc. go on to the pane (timeline)
        return
    event.accept()


def keyReleaseEvent(view: ComparisonView, event: QKeyEvent) -> None:
    if event.key() == Qt.Key.Key_Space and view._mode == "toggle":
        if not event.isAutoRepeat():
            view.hold_before(False)
        event.accept()
        return
    QWidget.keyReleaseEvent(view, event)


def event(view: ComparisonView, event: QEvent) -> bool:
    """In toggle mode Space is held to compare: it is a key here, not play/pause."""
    if (
        event.type() == QEvent.Type.ShortcutOverride
        and isinstance(event, QKeyEvent)
        and event.key() == Qt.Key.Key_Space
        and view._mode == "toggle"
    ):
        event.accept()
        return True
    return QWidget.event(view, event)


def focusOutEvent(view: ComparisonView, event: QFocusEvent) -> None:
    view.hold_before(False)  # a Space release we never see must not stick
    QWidget.focusOutEvent(view, event)
