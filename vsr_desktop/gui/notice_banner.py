"""A non-modal banner above the preview: a damaged source, an unreadable one, a failed render.

A dialog would stop the editor at every click; a painted overlay clips long text. This is
a word-wrapped label the window shows and hides (`MainWindow.show_notice`), with a close
button, in colours readable on the light and the dark theme.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QSizePolicy,
    QToolButton,
    QWidget,
)

#: level → (background, text) colours; both themes keep them (contrast above 4.5:1).
LEVEL_COLOURS = {
    "error": ("#b3261e", "#ffffff"),
    "warning": ("#8a5a00", "#ffffff"),
    "info": ("#1f5f99", "#ffffff"),
}

#: The Details dialog's title for each kind of notice.
DETAIL_TITLES = {"render": "The preview failed", "source": "Cannot preview this source"}


class NoticeBanner(QFrame):
    """One line of news, wrapped to the pane's width; hidden until `show_notice`."""

    closed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("noticeBanner")
        self.level = ""
        self.kind = ""  # who raised it ("source", "render"…), so only they clear it
        self.label = QLabel()
        self.label.setObjectName("noticeText")
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.details_button = QToolButton()
        self.details_button.setText("Details…")
        self.details_button.setAutoRaise(True)
        self.details_button.setToolTip("The whole message, ready to copy")
        self.details_button.clicked.connect(self.show_details)
        self.details_button.setVisible(False)
        self._details = ""
        self.details_box: QMessageBox | None = None
        close = QToolButton()
        close.setText("✕")
        close.setAutoRaise(True)
        close.setToolTip("Hide this message")
        close.setAccessibleName("Hide message")
        close.clicked.connect(lambda: self.clear())
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 6, 6)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.details_button, 0, Qt.AlignmentFlag.AlignTop)
        layout.addWidget(close, 0, Qt.AlignmentFlag.AlignTop)
        self.setVisible(False)

    def show_notice(
        self, text: str, level: str = "warning", kind: str = "", details: str = ""
    ) -> None:
        """Show `text`; with `details` (a failure), a Details… button opens the standard
        error dialog (wrapped, the whole text copyable), as every failure dialog does."""
        background, foreground = LEVEL_COLOURS.get(level, LEVEL_COLOURS["info"])
        self.setStyleSheet(
            f"QFrame#noticeBanner {{ background: {background}; border-radius: 4px; }}"
            f"QFrame#noticeBanner QLabel, QFrame#noticeBanner QToolButton "
            f"{{ color: {foreground}; background: transparent; }}"
        )
        self.level, self.kind = level, kind
        self.label.setText(text)
        self.label.setToolTip(text)
        self._details = details
        self.details_button.setVisible(bool(details))
        self.setVisible(True)

    def show_details(self) -> QMessageBox | None:
        if not self._details:
            return None
        from vsr_desktop.gui.errors import show_error

        title = DETAIL_TITLES.get(self.kind, "Details")
        self.details_box = show_error(self.window(), title, self._details)
        return self.details_box

    def text(self) -> str:
        return self.label.text() if not self.isHidden() else ""

    def clear(self, kind: str | None = None) -> None:
        """Hide the banner (only when it is `kind`'s, if given)."""
        if kind is not None and kind != self.kind:
            return
        was = not self.isHidden()
        self.setVisible(False)
        self.level = self.kind = ""
        if was:
            self.closed.emit()
