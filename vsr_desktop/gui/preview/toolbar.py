"""The row above the picture: comparison mode, what each side shows, and the zoom.

Kept narrow so the window fits 1920×1080 at 200 % scaling (960 logical pixels): the zoom
presets live in one menu button that also shows the zoom, and the side choosers shrink
(eliding their text) before the row makes the window wider.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QButtonGroup, QHBoxLayout, QMenu, QToolButton, QWidget

from vsr_desktop.gui.preview.sides import SideChooser
from vsr_desktop.gui.preview.view_keys import ZOOM_KEYS

MODE_BUTTONS = (
    ("split", "Split", "Wipe between before and after; drag the divider"),
    ("side-by-side", "Side by side", "Before and after next to each other"),
    ("toggle", "Toggle", "After; hold Space to see before"),
)
#: The widest zoom text the zoom button must hold without changing its width.
WIDEST_ZOOM = "Fit · 3200 %"


class PreviewToolbar(QWidget):
    """Mode buttons, the Left/Right choosers and the zoom menu button, in one row."""

    def __init__(
        self,
        left: SideChooser,
        right: SideChooser,
        set_mode: Callable[[str], None],
        run_zoom: Callable[[str], None],
        mode: str,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        bar = QHBoxLayout(self)
        bar.setContentsMargins(4, 4, 4, 0)
        bar.setSpacing(4)
        self.mode_group = QButtonGroup(self)
        self.mode_group.setExclusive(True)
        self.mode_buttons: dict[str, QToolButton] = {}
        for name, text, tip in MODE_BUTTONS:
            button = QToolButton(self)
            button.setText(text)
            button.setToolTip(tip)
            button.setCheckable(True)
            button.setChecked(name == mode)
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            button.clicked.connect(lambda _checked=False, m=name: set_mode(m))
            self.mode_group.addButton(button)
            self.mode_buttons[name] = button
            bar.addWidget(button)
        bar.addSpacing(6)
        bar.addWidget(left)
        bar.addWidget(right)
        bar.addStretch(1)
        self.zoom_button = QToolButton(self)
        self.zoom_button.setObjectName("zoomButton")
        self.zoom_button.setToolTip("Zoom: fit (0), 100 % (1), 200 % (2), in/out (+/−, wheel)")
        self.zoom_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.zoom_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        menu = QMenu(self.zoom_button)
        for entry in ZOOM_KEYS:
            action = menu.addAction(f"{entry.text}\t{entry.shown.split(' ')[0]}")
            action.triggered.connect(lambda _checked=False, c=entry.call: run_zoom(c))
        self.zoom_button.setMenu(menu)
        self.zoom_button.setText(WIDEST_ZOOM)
        self.zoom_button.setMinimumWidth(self.zoom_button.sizeHint().width())
        bar.addWidget(self.zoom_button)

    def show_zoom(self, text: str) -> None:
        self.zoom_button.setText(text)

    def zoom_actions(self) -> list[str]:
        """The zoom menu's entries (tests, the keyboard path)."""
        menu = self.zoom_button.menu()
        return [a.text() for a in menu.actions()] if menu is not None else []
