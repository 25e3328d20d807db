"""The preview's playback keys in one table: the pane's key handling and the Playback menu.

Both read the same table, so a key listed in the menu is the key that works. The menu's
actions are scoped to the preview pane (WidgetWithChildrenShortcut): J, K, L, I, O and
Space still type into text fields and move through lists elsewhere in the window.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeyEvent, QKeySequence
from PySide6.QtWidgets import QWidget

Mod = Qt.KeyboardModifier
_MODS = Mod.ShiftModifier | Mod.AltModifier | Mod.ControlModifier | Mod.MetaModifier


@dataclass(frozen=True)
class Binding:
    """One key: what the menu calls it, the key and modifiers, and the pane method name."""

    text: str
    key: Qt.Key
    modifiers: Qt.KeyboardModifier
    method: str
    repeat: bool = False  # held down, it repeats (stepping); J/K/L/I/O and Space do not


BINDINGS = (
    Binding("&Play / pause", Qt.Key.Key_Space, Mod.NoModifier, "toggle_play"),
    Binding("Play &backward (J; again: faster)", Qt.Key.Key_J, Mod.NoModifier, "shuttle_back"),
    Binding("P&ause (K)", Qt.Key.Key_K, Mod.NoModifier, "pause"),
    Binding("Play &forward (L; again: faster)", Qt.Key.Key_L, Mod.NoModifier, "shuttle_forward"),
    Binding("Pre&vious frame", Qt.Key.Key_Left, Mod.NoModifier, "step_back", True),
    Binding("&Next frame", Qt.Key.Key_Right, Mod.NoModifier, "step_forward", True),
    Binding("Back one &second", Qt.Key.Key_Left, Mod.ShiftModifier, "second_back", True),
    Binding("Forward one s&econd", Qt.Key.Key_Right, Mod.ShiftModifier, "second_forward", True),
    Binding("F&irst frame", Qt.Key.Key_Home, Mod.NoModifier, "go_first"),
    Binding("&Last frame", Qt.Key.Key_End, Mod.NoModifier, "go_last"),
    Binding("Mark &In", Qt.Key.Key_I, Mod.NoModifier, "mark_in"),
    Binding("Mark &Out", Qt.Key.Key_O, Mod.NoModifier, "mark_out"),
    Binding("Clear In", Qt.Key.Key_I, Mod.AltModifier, "clear_in"),
    Binding("Clear Out", Qt.Key.Key_O, Mod.AltModifier, "clear_out"),
)


def binding_for(event: QKeyEvent) -> Binding | None:
    """The binding a key press means, or None (auto-repeat only for stepping keys)."""
    modifiers = event.modifiers() & _MODS
    for binding in BINDINGS:
        if event.key() == binding.key and modifiers == binding.modifiers:
            if event.isAutoRepeat() and not binding.repeat:
                return None
            return binding
    return None


def shortcut_text(binding: Binding) -> str:
    return QKeySequence(binding.key | binding.modifiers).toString(
        QKeySequence.SequenceFormat.NativeText
    )


def make_actions(owner: QWidget, call: Callable[[str], None]) -> list[QAction]:
    """Menu actions for every binding, active while focus is inside `owner`."""
    actions = []
    for binding in BINDINGS:
        action = QAction(binding.text, owner)
        action.setShortcut(QKeySequence(binding.key | binding.modifiers))
        action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        action.setAutoRepeat(binding.repeat)
        action.triggered.connect(lambda _checked=False, m=binding.method: call(m))
        owner.addAction(action)
        actions.append(action)
    return actions
