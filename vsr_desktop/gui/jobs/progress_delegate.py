"""Paints the Progress column as a progress bar drawn by the view's own style.

A delegate (rather than a QProgressBar widget per row via setIndexWidget) costs nothing
per row, follows the platform style, and repaints only when the model says the row changed.
"""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QSize, Qt
from PySide6.QtGui import QPainter
from PySide6.QtWidgets import (
    QApplication,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionProgressBar,
    QStyleOptionViewItem,
)

from vsr_desktop.gui.jobs.jobs_model import Roles

_STEPS = 1000  # resolution of the bar; the role gives 0..1


class ProgressBarDelegate(QStyledItemDelegate):
    """Draws ProgressRole (0..1) as a bar with the cell's display text ("42 %") on it."""

    def paint(
        self,
        painter: QPainter,
        option: QStyleOptionViewItem,
        index: QModelIndex | QPersistentModelIndex,
    ) -> None:
        value = index.data(Roles.ProgressRole)
        if value is None:
            super().paint(painter, option, index)
            return
        widget = option.widget
        style = widget.style() if widget is not None else QApplication.style()
        # Selection/hover background first, so a selected row stays visibly selected.
        background = QStyleOptionViewItem(option)
        self.initStyleOption(background, index)
        background.text = ""
        style.drawPrimitive(
            QStyle.PrimitiveElement.PE_PanelItemViewItem, background, painter, widget
        )

        bar = QStyleOptionProgressBar()
        if widget is not None:
            bar.initFrom(widget)
        bar.state = option.state
        bar.direction = option.direction
        bar.rect = option.rect.adjusted(3, 3, -3, -3)
        bar.fontMetrics = option.fontMetrics
        bar.palette = option.palette
        bar.minimum = 0
        bar.maximum = _STEPS
        bar.progress = round(max(0.0, min(1.0, float(value))) * _STEPS)
        bar.text = str(index.data(Qt.ItemDataRole.DisplayRole) or "")
        bar.textVisible = True
        bar.textAlignment = Qt.AlignmentFlag.AlignCenter
        bar.state |= QStyle.StateFlag.State_Horizontal
        style.drawControl(QStyle.ControlElement.CE_ProgressBar, bar, painter, widget)

    def sizeHint(
        self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> QSize:
        hint = super().sizeHint(option, index)
        return QSize(max(hint.width(), 110), hint.height())
