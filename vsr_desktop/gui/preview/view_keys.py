"""The picture's own keys (zoom, and Space held in toggle mode) in one table.

The comparison view handles its keys from this table and the shortcuts sheet lists it, so
the sheet cannot say one thing while the keys do another (the playback keys come from
keys.BINDINGS through the Playback menu's actions, the same way).
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import Qt

Key = Qt.Key


@dataclass(frozen=True)
class ViewKey:
    """One zoom key: what the sheet calls it, the keys that do it, and the ViewState call
    (a method name, or "zoom:<display zoom>" for a fixed zoom such as 100 %)."""

    text: str
    keys: tuple[Qt.Key, ...]
    call: str
    shown: str  # how the sheet writes the keys


ZOOM_KEYS = (
    ViewKey("Zoom to fit", (Key.Key_0,), "fit", "0"),
    ViewKey("Zoom 100 % (one output pixel per screen pixel)", (Key.Key_1,), "zoom:1", "1"),
    ViewKey("Zoom 200 %", (Key.Key_2,), "zoom:2", "2"),
    ViewKey("Zoom in", (Key.Key_Plus, Key.Key_Equal), "zoom_in", "+ (or the mouse wheel)"),
    ViewKey("Zoom out", (Key.Key_Minus, Key.Key_Underscore), "zoom_out", "− (or the mouse wheel)"),
)
#: Space in toggle mode: held, the left side shows (not play/pause there).
HOLD_KEY = Key.Key_Space


def zoom_key_for(key: int) -> ViewKey | None:
    """The zoom entry a pressed key means, or None."""
    return next((entry for entry in ZOOM_KEYS if key in entry.keys), None)


def sheet_rows() -> list[tuple[str, str, str]]:
    """(where, what, keys) rows for the shortcuts sheet, from the tables the view uses."""
    rows = [("Preview", entry.text, entry.shown) for entry in ZOOM_KEYS]
    rows.append(("Preview", "Show the left side while held (toggle mode)", "Space"))
    return rows
