"""A non-modal banner above the preview: a damaged source, an unreadable one, a failed render.

A dialog would stop the editor at every click; a painted overlay clips long text. This is
a word-wrapped label the window shows and hides (`MainWindow.show_notice`), with a close
button, in colours readable on the light and the dark theme.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QSizePolicy, QToolButton, QWidget

#: level → (background, text) colours; both themes keep them (contrast above 4.5:1).
LEVEL_COLOURS = {
    "error": ("#b3261e", "#ffffff"),
    "warning": ("#8a5a00", "#ffffff"),
    "info": ("#1f5f99", "#ffffff"),
}


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
        close = QToolButton()
        close.setText("✕")
        close.setAutoRaise(True)
        close.setToolTip("Hide this message")
        close.setAccessibleName("Hide message")
        close.clicked.connect(lambda: self.clear())
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 6, 6)
        layout.addWidget(self.label, 1)
        layout.addWidget(close, 0, Qt.AlignmentFlag.AlignTop)
        self.setVisible(False)

    def show_notice(self, text: str, level: str = "warning", kind: str = "") -> None:
        background, foreground = LEVEL_COLOURS.get(level, LEVEL_COLOURS["info"])
        self.setStyleSheet(
            f"QFrame#noticeBanner {{ background: {background}; border-radius: 4px; }}"
            f"QFrame#noticeBanner QLabel, QFrame#noticeBanner QToolButton "
            f"{{ color: {foreground}; background: transparent; }}"
        )
        self.level, self.kind = level, kind
        self.label.setText(text)
        self.label.setToolTip(text)
        self.setVisible(True)

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
