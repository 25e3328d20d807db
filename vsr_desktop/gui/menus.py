"""The main window's menus: File, View (with the theme), Jobs, Cloud and Help.

Every command is a QAction with its shortcut, so the keyboard reaches all of them and the
shortcuts sheet (Help → Keyboard shortcuts) is made from these very actions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QMenu

from vsr_desktop.gui.gpu_addon_dialog import add_gpu_addon_action
from vsr_desktop.gui.theme import THEME_LABELS, THEMES

if TYPE_CHECKING:
    from vsr_desktop.gui.main_window import MainWindow

Shortcut = QKeySequence | QKeySequence.StandardKey | str | None


def add_action(
    window: MainWindow, menu: QMenu, text: str, shortcut: Shortcut, slot: Callable[..., object]
) -> QAction:
    """An action in `menu` that also works while the menu is closed (added to the window)."""
    action = QAction(text, window)
    if shortcut is not None:
        action.setShortcut(QKeySequence(shortcut))
    action.triggered.connect(slot)
    menu.addAction(action)
    window.addAction(action)
    return action


def build_menus(window: MainWindow) -> None:
    """Fill the window's menu bar (actions it needs later become attributes)."""
    bar = window.menuBar()
    file_menu = bar.addMenu("&File")
    add_action(window, file_menu, "&Open…", QKeySequence.StandardKey.Open, window.open_dialog)
    window.recent_menu = file_menu.addMenu("Open &Recent")
    window.fill_recent_menu()
    remove = QAction("&Remove source", window)
    remove.setShortcut(QKeySequence(QKeySequence.StandardKey.Delete))
    # Delete removes a source only while the queue has focus (the jobs table has its own).
    remove.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
    remove.triggered.connect(window.remove_current_source)
    file_menu.addAction(remove)
    window.sources.addAction(remove)
    file_menu.addSeparator()
    add_action(window, file_menu, "&Quit", QKeySequence.StandardKey.Quit, window.close)

    view_menu = bar.addMenu("&View")
    for i, (label, mode) in enumerate(
        (("&Split wipe", "split"), ("Side &by side", "side-by-side"), ("&Toggle", "toggle")),
        start=1,
    ):
        add_action(
            window,
            view_menu,
            label,
            f"Ctrl+{i}",
            lambda checked=False, m=mode: window.set_preview_mode(m),
        )
    view_menu.addAction(window.jobs_panel.toggleViewAction())
    # Ctrl+Tab leaves any control, also those that keep Tab for themselves.
    add_action(window, view_menu, "&Next control", "Ctrl+Tab", window.focusNextChild)
    add_action(window, view_menu, "&Previous control", "Ctrl+Shift+Tab", window.focusPreviousChild)
    view_menu.addSeparator()
    theme_menu = view_menu.addMenu("&Theme")
    group = QActionGroup(window)
    window.theme_actions = {}
    for theme in THEMES:
        action = theme_menu.addAction(THEME_LABELS[theme])
        action.setCheckable(True)
        action.setChecked(theme == window.app_settings.theme)
        action.setActionGroup(group)
        action.triggered.connect(lambda checked=False, t=theme: window.set_theme(t))
        window.theme_actions[theme] = action

    jobs_menu = bar.addMenu("&Jobs")
    add_action(window, jobs_menu, "&Upscale all sources", "Ctrl+Return", window.start_jobs)
    add_action(window, jobs_menu, "Send all to &Slurm", "Ctrl+Shift+Return", window.send_to_slurm)
    add_action(window, jobs_menu, "Send all to &AWS…", "Ctrl+Alt+Return", window.send_to_aws)
    jobs_menu.addSeparator()
    add_action(window, jobs_menu, "&Run on…", "Ctrl+,", window.open_run_on)

    cloud_menu = bar.addMenu("&Cloud")
    add_action(
        window, cloud_menu, "&AWS account and stack…", "Ctrl+Shift+K", window.open_cloud_dialog
    )
    cloud_menu.addAction(window.preview_cloud.action)

    help_menu = bar.addMenu("&Help")
    add_action(window, help_menu, "&Keyboard shortcuts", "F1", window.show_shortcuts)
    add_gpu_addon_action(window, help_menu)  # Windows builds with a CUDA add-on manifest
    add_action(window, help_menu, "&About", None, window.show_about)
