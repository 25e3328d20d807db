"""A focus ring for custom-painted widgets (the viewer, the timeline).

Styles draw focus for their own controls only; a widget that paints itself shows nothing
when Tab reaches it, so the keyboard user loses track. A transparent child laid over the
widget draws a highlight-coloured frame while the widget (or a child of it) has focus; it
takes no mouse events and needs no change to the widget's own painting.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, QRectF, Qt
from PySide6.QtGui import QPainter, QPaintEvent, QPalette, QPen
from PySide6.QtWidgets import QApplication, QWidget

RING_WIDTH = 2


class FocusRing(QWidget):
    """Covers `target` and frames it while it has focus."""

    def __init__(self, target: QWidget) -> None:
        super().__init__(target)
        self.setObjectName("focusRing")
        self.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.setAttribute(Qt.WidgetAttribute.WA_NoSystemBackground)
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self._target = target
        target.installEventFilter(self)
        app = QApplication.instance()
        if isinstance(app, QApplication):
            app.focusChanged.connect(self._focus_changed)
        self.setGeometry(target.rect())
        self.setVisible(False)

    @classmethod
    def attach(cls, target: QWidget) -> FocusRing:
        existing = target.findChild(
            FocusRing, "focusRing", Qt.FindChildOption.FindDirectChildrenOnly
        )
        return existing if isinstance(existing, FocusRing) else cls(target)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self._target and event.type() == QEvent.Type.Resize:
            self.setGeometry(self._target.rect())
        return False

    def _focus_changed(self, _old: QWidget | None, new: QWidget | None) -> None:
        has = new is not None and (new is self._target or self._target.isAncestorOf(new))
        self.setVisible(has)
        if has:
            self.raise_()

    def paintEvent(self, _event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        colour = self.palette().color(QPalette.ColorRole.Highlight)
        painter.setPen(QPen(colour, RING_WIDTH))
        half = RING_WIDTH / 2
        painter.drawRoundedRect(QRectF(self.rect()).adjusted(half, half, -half, -half), 3, 3)
