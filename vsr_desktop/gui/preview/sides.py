"""Model A/B: what each side of the comparison shows, and the menu that chooses it.

Each side shows the source as it is (nearest pixels), a bicubic upscale, or any model's
upscale of the same region, so two models can be judged side by side. A side only ever
draws a result rendered with its own settings key: switching a model can never leave the
previous model's picture on screen under the new name.

The model list names each model with what an editor needs to choose: installed or not, its
size, and its speed measured on this machine (ms per source megapixel, recorded by the first
render of a model; "—" until then) in the user's cache folder.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QAction, QActionGroup, QPaintEvent
from PySide6.QtWidgets import (
    QMenu,
    QSizePolicy,
    QStyle,
    QStyleOptionToolButton,
    QStylePainter,
    QToolButton,
    QWidget,
)

SOURCE, BICUBIC, SETTINGS = "source", "bicubic", "settings"
MODEL = "model"  # a Side's kind when it shows a model's upscale
MODEL_PREFIX = "model:"


@dataclass(frozen=True)
class Side:
    """What one side shows: kind "source", "bicubic" or "model" (with its settings key)."""

    kind: str
    key: str = ""
    label: str = ""


@dataclass(frozen=True)
class ModelEntry:
    """One row of the model list."""

    name: str
    installed: bool
    size_bytes: int
    ms_per_mp: float | None = None

    def text(self) -> str:
        here = "installed" if self.installed else "not installed"
        size = f"{self.size_bytes / 1e6:.1f} MB" if self.size_bytes else "size unknown"
        speed = f"{self.ms_per_mp:.0f} ms/MP" if self.ms_per_mp is not None else "—"
        return f"{self.name}  ·  {here}  ·  {size}  ·  {speed}"


# -- speed measured on this machine ---------------------------------------------------------
def speed_file() -> Path:
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("vsr_desktop")) / "model_speed.json"


def load_speeds() -> dict[str, float]:
    try:
        data = json.loads(speed_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): float(v) for k, v in data.items() if isinstance(v, int | float) and v > 0}


def record_speed(model: str, ms_per_mp: float) -> None:
    """Remember a model's speed (atomic write; a failure only loses the figure)."""
    if not model or ms_per_mp <= 0:
        return
    speeds = load_speeds()
    speeds[model] = round(ms_per_mp, 1)
    path = speed_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".partial")
        tmp.write_text(json.dumps(speeds, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass


def model_of_key(key: str) -> str:
    """The model name in a local preview settings key ("model|scale|…"); "" for cloud keys
    (an endpoint's speed is not this machine's)."""
    if not key or "cloud:" in key:
        return ""
    return key.split("|", 1)[0]


def label_for_key(key: str) -> str:
    """ "realesr-animevideov3 ×2" from a settings key ("model|outscale|…")."""
    if not key:
        return "After"
    parts = key.split("|")
    name = Path(parts[0]).name or parts[0]
    scale = ""
    try:
        scale = f" ×{float(parts[1]):g}"
    except (IndexError, ValueError):  # no outscale set: the model's own scale
        from vsr_desktop.core.models.registry import MODEL_REGISTRY

        spec = MODEL_REGISTRY.get(parts[0])
        scale = f" ×{spec.scale}" if spec is not None else ""
    cloud = " (cloud)" if "cloud:" in key else ""
    return f"{name}{scale}{cloud}"


def model_catalog() -> list[ModelEntry]:
    """Every model the app knows, installed or not, with size and measured speed."""
    from vsr_desktop.core.models.registry import MODEL_REGISTRY
    from vsr_desktop.gui.settings_panel import model_available

    speeds = load_speeds()
    return [
        ModelEntry(name, model_available(name), spec.size_bytes, speeds.get(name))
        for name, spec in MODEL_REGISTRY.items()
    ]


class SideChooser(QToolButton):
    """ "Left: Bicubic ▾": a menu of Source, Bicubic, the settings' model and every model.

    A long model name does not widen the window: the button may shrink to a few letters,
    eliding its text when painted (text() and the tooltip keep the whole label).
    """

    chosen = Signal(str)  # "source", "bicubic", "settings" or "model:<name>"

    def __init__(
        self,
        title: str,
        catalog: Callable[[], list[ModelEntry]] = model_catalog,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self._title = title
        self._catalog = catalog
        self._choice = ""
        self.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self._tip = f"What the {title.lower()} side shows: source, bicubic or a model"
        self.setToolTip(self._tip)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        self._menu = QMenu(self)
        self._menu.aboutToShow.connect(self._fill)
        self.setMenu(self._menu)
        self._fill()

    @property
    def choice(self) -> str:
        return self._choice

    def show_choice(self, choice: str, label: str) -> None:
        self._choice = choice
        self.setText(f"{self._title}: {label}")
        self.setToolTip(f"{self.text()}\n{self._tip}")

    def _chrome(self) -> int:
        """Width of everything but the text (margins, the menu arrow)."""
        return super().sizeHint().width() - self.fontMetrics().horizontalAdvance(self.text())

    def minimumSizeHint(self) -> QSize:
        shortest = self.fontMetrics().horizontalAdvance(f"{self._title}: Bicu…")
        hint = super().sizeHint()
        return QSize(min(hint.width(), self._chrome() + shortest), hint.height())

    def paintEvent(self, event: QPaintEvent) -> None:
        """The button as the style draws it, with the text elided to the width it has."""
        option = QStyleOptionToolButton()
        self.initStyleOption(option)
        if self.width() < super().sizeHint().width():  # whole text when it has its room
            room = self.width() - self._chrome()
            option.text = self.fontMetrics().elidedText(
                self.text(), Qt.TextElideMode.ElideRight, max(room, 0)
            )
        painter = QStylePainter(self)
        painter.drawComplexControl(QStyle.ComplexControl.CC_ToolButton, option)

    def entries(self) -> list[QAction]:
        """The menu's actions (for tests and the keyboard path)."""
        self._fill()
        return [a for a in self._menu.actions() if not a.isSeparator()]

    def _fill(self) -> None:
        self._menu.clear()
        group = QActionGroup(self._menu)
        fixed = ((SOURCE, "Source"), (BICUBIC, "Bicubic"), (SETTINGS, "Model from the settings"))
        for value, text in fixed:
            self._add(group, value, text, True, "")
        self._menu.addSeparator()
        try:
            entries = self._catalog()
        except Exception:  # a broken cache folder must not break the menu
            entries = []
        for entry in entries:
            tip = "" if entry.installed else "Download it in the settings first"
            self._add(group, MODEL_PREFIX + entry.name, entry.text(), entry.installed, tip)

    def _add(self, group: QActionGroup, value: str, text: str, enabled: bool, tip: str) -> None:
        action = QAction(text, self._menu)
        action.setData(value)
        action.setCheckable(True)
        action.setChecked(value == self._choice)
        action.setEnabled(enabled)
        action.setToolTip(tip)
        action.triggered.connect(lambda _checked=False, v=value: self.chosen.emit(v))
        group.addAction(action)
        self._menu.addAction(action)
