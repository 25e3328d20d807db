"""A combo box that elides its text ("Auto (hardware when pre…") when the column is narrow.

The settings column keeps its combos as wide as the column, not as their longest entry (so
the window fits a small screen); Qt's own combo then cuts the text off mid-letter. This one
paints the current text elided to the room it has; the open list shows every entry whole.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QPaintEvent
from PySide6.QtWidgets import (
    QComboBox,
    QStyle,
    QStyleOptionComboBox,
    QStylePainter,
)


class ElidedComboBox(QComboBox):
    """QComboBox whose shown text ends in "…" when it does not fit."""

    def shown_text(self) -> str:
        """The text as painted (elided to the edit field's width)."""
        option = QStyleOptionComboBox()
        self.initStyleOption(option)
        field = self.style().subControlRect(
            QStyle.ComplexControl.CC_ComboBox,
            option,
            QStyle.SubControl.SC_ComboBoxEditField,
            self,
        )
        room = field.width() - 4  # the style's text margin
        return self.fontMetrics().elidedText(option.currentText, Qt.TextElideMode.ElideRight, room)

    def paintEvent(self, event: QPaintEvent) -> None:
        if self.isEditable():
            super().paintEvent(event)
            return
        painter = QStylePainter(self)
        option = QStyleOptionComboBox()
        self.initStyleOption(option)
        painter.drawComplexControl(QStyle.ComplexControl.CC_ComboBox, option)
        option.currentText = self.shown_text()
        painter.drawControl(QStyle.ControlElement.CE_ComboBoxLabel, option)
