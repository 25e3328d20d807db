"""Light and dark colours that follow the system, and icons that stay visible in both.

Qt 6 tells the system's colour scheme through QStyleHints.colorScheme(); not every platform
turns that into a palette (X11 without a desktop portal never does), so the window sets the
palette itself: Fusion with a light or a dark palette. "System" follows colorSchemeChanged.

The built-in monochrome icons (transport buttons, toolbar arrows) are dark grey PNGs that
nearly vanish on a dark window. The app's style hands out those icons recoloured with the
palette's button-text colour, and a theme switch recolours the ones already on screen, so
every widget that asks `style().standardIcon(…)` gets a visible icon without knowing why.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, QSize, Qt
from PySide6.QtGui import QAction, QColor, QGuiApplication, QIcon, QPainter, QPalette, QPixmap
from PySide6.QtWidgets import (
    QAbstractButton,
    QApplication,
    QProxyStyle,
    QStyle,
    QStyleFactory,
    QStyleOption,
    QWidget,
)

THEMES = ("system", "light", "dark")
THEME_LABELS = {"system": "&System", "light": "&Light", "dark": "&Dark"}
#: Sizes the recoloured icons are drawn at (logical pixels; the device ratio is added).
_ICON_SIZES = (16, 20, 24, 32, 48)


def system_scheme() -> str:
    """ "dark" or "light": what the platform says (Unknown counts as light)."""
    hints = QGuiApplication.styleHints()
    return "dark" if hints.colorScheme() == Qt.ColorScheme.Dark else "light"


def effective_scheme(choice: str) -> str:
    """The scheme a theme choice shows now ("system" resolves to the platform's)."""
    return choice if choice in ("light", "dark") else system_scheme()


def dark_palette() -> QPalette:
    """A neutral dark palette (contrast of text on window above 10:1, links readable)."""
    p = QPalette()
    window, base, text = QColor(45, 45, 48), QColor(30, 30, 32), QColor(230, 230, 230)
    disabled = QColor(130, 130, 130)
    for role, colour in (
        (QPalette.ColorRole.Window, window),
        (QPalette.ColorRole.WindowText, text),
        (QPalette.ColorRole.Base, base),
        (QPalette.ColorRole.AlternateBase, QColor(40, 40, 43)),
        (QPalette.ColorRole.ToolTipBase, QColor(60, 60, 64)),
        (QPalette.ColorRole.ToolTipText, text),
        (QPalette.ColorRole.PlaceholderText, QColor(150, 150, 150)),
        (QPalette.ColorRole.Text, text),
        (QPalette.ColorRole.Button, QColor(58, 58, 62)),
        (QPalette.ColorRole.ButtonText, text),
        (QPalette.ColorRole.BrightText, QColor(255, 90, 90)),
        (QPalette.ColorRole.Light, QColor(75, 75, 80)),
        (QPalette.ColorRole.Midlight, QColor(65, 65, 70)),
        (QPalette.ColorRole.Mid, QColor(50, 50, 54)),
        (QPalette.ColorRole.Dark, QColor(25, 25, 27)),
        (QPalette.ColorRole.Shadow, QColor(0, 0, 0)),
        (QPalette.ColorRole.Highlight, QColor(42, 130, 218)),
        (QPalette.ColorRole.HighlightedText, QColor(255, 255, 255)),
        (QPalette.ColorRole.Link, QColor(110, 170, 255)),
        (QPalette.ColorRole.LinkVisited, QColor(180, 140, 255)),
    ):
        p.setColor(role, colour)
    for role in (
        QPalette.ColorRole.WindowText,
        QPalette.ColorRole.Text,
        QPalette.ColorRole.ButtonText,
    ):
        p.setColor(QPalette.ColorGroup.Disabled, role, disabled)
    return p


def light_palette(style: QStyle) -> QPalette:
    """Fusion's own light palette."""
    return style.standardPalette()


def is_dark(palette: QPalette) -> bool:
    return palette.color(QPalette.ColorRole.Window).lightnessF() < 0.5


def tinted(icon: QIcon, colour: QColor, sizes: tuple[int, ...] = _ICON_SIZES) -> QIcon:
    """The icon's shape filled with `colour` (alpha kept), at every size and both states."""
    out = QIcon()
    screen = QGuiApplication.primaryScreen()
    ratio = screen.devicePixelRatio() if screen is not None else 1.0
    for size in sizes:
        source = icon.pixmap(QSize(size, size), ratio)
        if source.isNull():
            continue
        for mode, alpha in ((QIcon.Mode.Normal, 1.0), (QIcon.Mode.Disabled, 0.4)):
            pixmap = QPixmap(source.size())
            pixmap.setDevicePixelRatio(source.devicePixelRatio())
            pixmap.fill(Qt.GlobalColor.transparent)
            painter = QPainter(pixmap)
            painter.drawPixmap(0, 0, source)
            painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_SourceIn)
            fill = QColor(colour)
            fill.setAlphaF(alpha)
            painter.fillRect(pixmap.rect(), fill)
            painter.end()
            out.addPixmap(pixmap, mode)
    return out if not out.isNull() else icon


def is_monochrome(icon: QIcon) -> bool:
    """True when every visible pixel is a grey (a glyph, safe to recolour)."""
    image = icon.pixmap(QSize(24, 24)).toImage()
    seen = False
    for y in range(0, image.height(), 2):
        for x in range(0, image.width(), 2):
            colour = image.pixelColor(x, y)
            if colour.alpha() < 40:
                continue
            seen = True
            if colour.hsvSaturationF() > 0.25:
                return False
    return seen


class ThemedStyle(QProxyStyle):
    """Fusion whose monochrome standard icons take the palette's button-text colour."""

    def __init__(self) -> None:
        super().__init__(QStyleFactory.create("Fusion"))
        #: cacheKey of an icon handed out → the standard pixmap it shows (to recolour it).
        self.handed_out: dict[int, QStyle.StandardPixmap] = {}

    def standardIcon(
        self,
        standard: QStyle.StandardPixmap,
        option: QStyleOption | None = None,
        widget: QWidget | None = None,
    ) -> QIcon:
        icon = super().standardIcon(standard, option, widget)
        if icon.isNull() or not is_monochrome(icon):
            return icon
        icon = tinted(icon, QApplication.palette().color(QPalette.ColorRole.ButtonText))
        self.handed_out[icon.cacheKey()] = standard
        return icon

    def drawPrimitive(
        self,
        element: QStyle.PrimitiveElement,
        option: QStyleOption,
        painter: QPainter,
        widget: QWidget | None = None,
    ) -> None:
        """Fusion outlines check boxes and radio buttons a shade darker than the window:
        on a dark window they vanish, so there they get a light outline."""
        super().drawPrimitive(element, option, painter, widget)
        marks = (
            QStyle.PrimitiveElement.PE_IndicatorCheckBox,
            QStyle.PrimitiveElement.PE_IndicatorRadioButton,
        )
        if element not in marks or not is_dark(option.palette):  # type: ignore[attr-defined]
            return
        rect = option.rect.adjusted(0, 0, -1, -1)  # type: ignore[attr-defined]
        painter.save()
        painter.setPen(QColor(150, 150, 155))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        if element == QStyle.PrimitiveElement.PE_IndicatorRadioButton:
            painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
            painter.drawEllipse(rect)
        else:
            painter.drawRect(rect)
        painter.restore()


class ThemeController(QObject):
    """Owns the app's style and palette; `apply(choice)` switches, "system" follows the OS."""

    def __init__(self, app: QApplication, choice: str = "system") -> None:
        super().__init__(app)
        self._app = app
        self.choice = choice if choice in THEMES else "system"
        style = app.style()
        if not isinstance(style, ThemedStyle):
            style = ThemedStyle()
            app.setStyle(style)
        self.style: ThemedStyle = style
        QGuiApplication.styleHints().colorSchemeChanged.connect(self._system_changed)

    @classmethod
    def install(cls, app: QApplication, choice: str) -> ThemeController:
        """The app's one controller (made once; later windows share it)."""
        existing = app.findChild(ThemeController)
        controller = existing if isinstance(existing, ThemeController) else cls(app, choice)
        controller.apply(choice)
        return controller

    @property
    def scheme(self) -> str:
        return effective_scheme(self.choice)

    def apply(self, choice: str) -> None:
        self.choice = choice if choice in THEMES else "system"
        scheme = self.scheme
        palette = dark_palette() if scheme == "dark" else light_palette(self.style)
        self._app.setPalette(palette)
        self.recolour_icons()

    def _system_changed(self, _scheme: Qt.ColorScheme) -> None:
        if self.choice == "system":
            self.apply("system")

    def recolour_icons(self) -> None:
        """Give every on-screen button and action that shows a recoloured standard icon the
        one for the current palette."""
        colour = self._app.palette().color(QPalette.ColorRole.ButtonText)
        handed = self.style.handed_out
        fresh: dict[int, QStyle.StandardPixmap] = {}
        for top in self._app.topLevelWidgets():
            holders: list[QAbstractButton | QAction] = [
                *top.findChildren(QAbstractButton),
                *top.findChildren(QAction),
            ]
            for holder in holders:
                standard = handed.get(holder.icon().cacheKey())
                if standard is None:
                    continue
                base = self.style.baseStyle().standardIcon(standard)
                icon = tinted(base, colour)
                fresh[icon.cacheKey()] = standard
                holder.setIcon(icon)
        handed.update(fresh)
