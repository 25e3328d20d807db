"""The window as a whole: it fits small and scaled screens, Run on…, light/dark theme with
visible icons, focus rings and a keyboard path, Help, existing outputs, bad sources."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QColor, QImage, QPalette
from PySide6.QtWidgets import QApplication, QMessageBox, QToolButton

from tests.conftest import ClipFactory
from vsr_desktop.core.errors import InputError
from vsr_desktop.core.jobs import JobState, JobStore
from vsr_desktop.core.settings import AppSettings, SettingsFile
from vsr_desktop.gui.main_window import MainWindow, spec_for

MakeWindow = Callable[..., MainWindow]


@pytest.fixture
def make_window(qtbot: Any, tmp_path: Path) -> Iterator[MakeWindow]:
    made: list[MainWindow] = []

    def make(**settings: Any) -> MainWindow:
        file = SettingsFile(tmp_path / "settings.json")
        if settings or not file.path.exists():
            file.save(AppSettings(output_folder=str(tmp_path), **settings))
        window = MainWindow(
            settings_file=file,
            store=JobStore(tmp_path / "jobs.sqlite3"),
            opener=lambda path: None,
            probe_device=False,
        )
        qtbot.addWidget(window)
        made.append(window)
        return window

    yield make
    for window in made:
        window.shutdown(cancel_jobs=True)
    _close_boxes()
    app = QApplication.instance()
    theme = getattr(made[0], "theme", None) if made else None
    if theme is not None and isinstance(app, QApplication):
        theme.apply("light")  # later tests start from the light palette


def _boxes() -> list[QMessageBox]:
    return [
        w for w in QApplication.topLevelWidgets() if isinstance(w, QMessageBox) and w.isVisible()
    ]


def _close_boxes() -> None:
    for box in _boxes():
        box.done(0)


# ---------------------------------------------------------------------------- size
_MEASURE = """
import json, sys, tempfile
from pathlib import Path
from PySide6.QtWidgets import QApplication
app = QApplication([])
from vsr_desktop.core.jobs import JobStore
from vsr_desktop.core.settings import SettingsFile
from vsr_desktop.gui.main_window import MainWindow
folder = Path(tempfile.mkdtemp())
w = MainWindow(settings_file=SettingsFile(folder / "s.json"), store=JobStore(folder / "j.db"),
               opener=lambda p: None, probe_device=False)
w.show()
# The longest labels the toolbar shows: a long model name on both sides must not widen it.
long = "realesr-general-wdn-x4v3 ×4 (cloud)"
w.preview.left_chooser.show_choice("settings", long)
w.preview.right_chooser.show_choice("settings", long)
w.preview.toolbar.show_zoom("Fit · 3200 %")
app.processEvents()
hint = w.minimumSizeHint()
print(json.dumps({"w": hint.width(), "h": hint.height(), "dpr": w.devicePixelRatioF(),
                  "size": [w.width(), w.height()]}))
w.shutdown()
"""


def _measure(scale: float) -> dict[str, Any]:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", QT_SCALE_FACTOR=str(scale))
    out = subprocess.run(
        [sys.executable, "-c", _MEASURE], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


#: Logical pixels a desktop's title bar and panel may take from the screen's height.
WINDOW_CHROME = 40


def test_the_window_fits_1366x768_at_100_percent() -> None:
    size = _measure(1)
    assert size["dpr"] == 1
    assert size["h"] <= 700 and size["h"] <= 768 - WINDOW_CHROME, size
    assert size["w"] <= 1366 - 20, size
    assert size["size"][0] <= 1366 and size["size"][1] <= 768, size


def test_the_window_fits_1920x1080_at_200_percent() -> None:
    size = _measure(2)
    assert size["dpr"] == 2
    # 1920×1080 at 200 % is 960×540 logical pixels: the smallest window fits inside it,
    # long model names on both sides included (the side choosers elide their text).
    assert size["w"] <= 1920 // 2, size
    assert size["h"] <= 1080 // 2 - WINDOW_CHROME, size
    assert size["size"][1] * 2 <= 1080, size


def test_narrow_combos_and_side_choosers_elide_rather_than_cut(
    make_window: MakeWindow, qtbot: Any
) -> None:
    """What lets the window shrink: a combo narrower than its entry shows it with "…"
    (not cut mid-letter), a side chooser may shrink below its label, both whole when wide."""
    from vsr_desktop.gui.elided_combo import ElidedComboBox

    window = make_window()
    window.show()
    combo = window.settings_panel.encoder_combo
    assert isinstance(combo, ElidedComboBox)
    whole = combo.currentText()
    combo.setFixedWidth(combo.fontMetrics().horizontalAdvance(whole) // 2)
    qtbot.waitUntil(lambda: combo.shown_text().endswith("…"))
    assert len(combo.shown_text()) < len(whole)
    combo.setFixedWidth(combo.fontMetrics().horizontalAdvance(whole) + 80)
    qtbot.waitUntil(lambda: combo.shown_text() == whole)
    chooser = window.preview.right_chooser
    chooser.show_choice("settings", "realesr-general-wdn-x4v3 ×4 (cloud)")
    assert chooser.minimumSizeHint().width() < chooser.sizeHint().width() // 2
    assert chooser.text() == "Right: realesr-general-wdn-x4v3 ×4 (cloud)"
    assert chooser.text() in chooser.toolTip()


# ---------------------------------------------------------------------------- Run on…
def test_run_on_dialog_round_trip(make_window: MakeWindow, tmp_path: Path) -> None:
    window = make_window()
    assert window.settings_panel.run_on_button.text() == "Run on: Local ▾"
    assert not hasattr(window.settings_panel, "slurm_workdir_edit")  # not in the column
    window.settings_panel.run_on_button.click()
    dialog = window.run_on
    assert dialog is not None and dialog.isVisible()
    dialog.choose("slurm")
    form = dialog.slurm_form
    form.slurm_workdir_edit.setText(str(tmp_path / "shared"))
    form.slurm_workdir_edit.editingFinished.emit()
    form.slurm_partition_edit.setText("gpu")
    form.slurm_partition_edit.editingFinished.emit()
    dialog.close()
    assert window.settings_panel.run_on_button.text() == "Run on: Slurm ▾"
    saved = SettingsFile(tmp_path / "settings.json").load()
    assert (saved.run_on, saved.slurm_workdir, saved.slurm_partition) == (
        "slurm",
        str(tmp_path / "shared"),
        "gpu",
    )
    # A change in the settings column does not undo what Run on… chose.
    panel = window.settings_panel
    panel.scale_combo.setCurrentIndex(panel.scale_combo.findData(2.0))
    assert window.app_settings.run_on == "slurm" and window.app_settings.slurm_partition == "gpu"
    window.close()
    again = make_window()
    assert again.settings_panel.run_on_button.text() == "Run on: Slurm ▾"
    reopened = again.open_run_on()
    assert reopened.targets.currentRow() == 1
    assert reopened.slurm_form.slurm_partition_edit.text() == "gpu"
    reopened.choose("aws")
    assert again.app_settings.run_on == "aws"
    reopened.choose("local")
    assert SettingsFile(tmp_path / "settings.json").load().run_on == "local"


# ---------------------------------------------------------------------------- theme
def _luminance(colour: QColor) -> float:
    return 0.2126 * colour.redF() + 0.7152 * colour.greenF() + 0.0722 * colour.blueF()


def _icon_luminance(button: QToolButton) -> float:
    """Mean luminance of the icon's visible pixels."""
    image = button.icon().pixmap(24, 24).toImage().convertToFormat(QImage.Format.Format_ARGB32)
    values = [
        _luminance(image.pixelColor(x, y))
        for y in range(image.height())
        for x in range(image.width())
        if image.pixelColor(x, y).alpha() > 128
    ]
    assert values, "the icon has no visible pixels"
    return sum(values) / len(values)


def test_theme_switch_recolours_the_transport_icons(
    make_window: MakeWindow, tmp_path: Path
) -> None:
    window = make_window()
    window.show()
    buttons = [
        b for b in window.preview.timeline.findChildren(QToolButton) if not b.icon().isNull()
    ]
    assert buttons
    for theme in ("dark", "light", "dark"):
        window.set_theme(theme)
        QApplication.processEvents()
        background = _luminance(window.palette().color(QPalette.ColorRole.Window))
        for button in buttons:
            contrast = abs(_icon_luminance(button) - background)
            assert contrast > 0.45, (theme, button.toolTip(), contrast)
        assert (background < 0.5) == (theme == "dark")
    assert SettingsFile(tmp_path / "settings.json").load().theme == "dark"
    assert window.theme_actions["dark"].isChecked()
    window.set_theme("system")
    assert window.theme_actions["system"].isChecked()


def test_check_boxes_stay_visible_in_the_dark_theme(make_window: MakeWindow) -> None:
    """Fusion outlines a check box a shade darker than the window; the dark theme adds a
    light outline, so "One frame per field" can be seen (and found) there."""
    from PySide6.QtWidgets import QCheckBox, QStyle, QStyleOptionButton

    window = make_window()
    window.show()
    window.set_theme("dark")
    QApplication.processEvents()
    box = window.settings_panel.findChildren(QCheckBox)[0]
    option = QStyleOptionButton()
    box.initStyleOption(option)
    mark = box.style().subElementRect(QStyle.SubElement.SE_CheckBoxIndicator, option, box)
    picture = box.grab().toImage()
    background = _luminance(window.palette().color(QPalette.ColorRole.Window))
    brightest = max(
        _luminance(picture.pixelColor(x, y))
        for x in range(mark.left(), mark.right() + 1)
        for y in range(mark.top(), mark.bottom() + 1)
    )
    assert brightest - background > 0.35, (brightest, background)


# ---------------------------------------------------------------------------- keyboard
def _activate(qtbot: Any, window: MainWindow) -> None:
    window.show()
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)


@pytest.mark.parametrize("name", ["view", "timeline"])
def test_focus_ring_is_painted_on_the_viewer_and_timeline(
    make_window: MakeWindow, qtbot: Any, name: str
) -> None:
    window = make_window()
    _activate(qtbot, window)
    widget = getattr(window.preview, name)
    window.sources.setFocus()
    qtbot.waitUntil(lambda: not widget.hasFocus())
    without = widget.grab().toImage()
    widget.setFocus(Qt.FocusReason.TabFocusReason)
    qtbot.waitUntil(widget.hasFocus)
    QApplication.processEvents()
    with_focus = widget.grab().toImage()
    highlight = widget.palette().color(QPalette.ColorRole.Highlight)
    middle = widget.height() // 2
    edge = with_focus.pixelColor(1, middle)
    assert without.pixelColor(1, middle) != edge
    assert abs(edge.red() - highlight.red()) + abs(edge.blue() - highlight.blue()) < 60


def test_tab_leaves_the_jobs_table(make_window: MakeWindow, qtbot: Any) -> None:
    window = make_window()
    _activate(qtbot, window)
    table = window.jobs_panel.view
    assert not table.tabKeyNavigation()
    for modifier in (Qt.KeyboardModifier.NoModifier, Qt.KeyboardModifier.ControlModifier):
        table.setFocus()
        qtbot.waitUntil(table.hasFocus)
        qtbot.keyClick(table, Qt.Key.Key_Tab, modifier)
        qtbot.waitUntil(lambda: not table.hasFocus())
    # Tab from the sources reaches every part of the window and comes back round.
    window.sources.setFocus()
    qtbot.waitUntil(window.sources.hasFocus)
    seen = set()
    for _ in range(80):
        focus = QApplication.focusWidget()
        assert focus is not None
        seen.add(focus)
        qtbot.keyClick(focus, Qt.Key.Key_Tab)
    for part in (window.preview.view, window.preview.timeline, table, window.start_button):
        assert part in seen, part
    assert window.settings_panel.run_on_button in seen
    assert window.settings_panel.codec_combo in seen


# ---------------------------------------------------------------------------- help
def test_shortcuts_sheet_lists_every_action_with_a_shortcut(make_window: MakeWindow) -> None:
    window = make_window()
    dialog = window.show_shortcuts()
    rows = dialog.rows()
    keys = {row[2] for row in rows}
    actions = [a for a in window.findChildren(QAction) if not a.shortcut().isEmpty()]
    assert len(actions) >= 10
    for action in actions:
        text = action.shortcut().toString(action.shortcut().SequenceFormat.NativeText)
        assert any(text in k for k in keys), action.text()
    whats = {row[1] for row in rows}
    assert {"Open", "Upscale all sources", "Run on", "Keyboard shortcuts"} <= whats
    dialog.close()


def test_shortcuts_sheet_is_made_from_the_key_bindings(make_window: MakeWindow, qtbot: Any) -> None:
    """The sheet lists the playback keys from the table the pane uses and the zoom keys
    from the table the view uses; each listed zoom key does what the sheet says."""
    from vsr_desktop.gui.help_dialogs import _clean
    from vsr_desktop.gui.preview import keys, view_keys

    window = make_window()
    window.show()
    rows = window.show_shortcuts().rows()
    for binding in keys.BINDINGS:
        assert ("Playback", _clean(binding.text), keys.shortcut_text(binding)) in rows, binding
    shift_right = [row for row in rows if row[2] == "Shift+Right"]
    assert shift_right and all("second" in row[1] for row in shift_right), shift_right
    assert not any("10" in row[2] for row in rows), rows  # the old "Shift: ±10" is gone
    for row in view_keys.sheet_rows():
        assert row in rows

    view = window.preview.view
    state = view.view_state
    state.set_image_size(4000, 3000)
    view.setFocus()
    expect = {
        "fit": lambda before: state.fit_mode,
        "zoom:1": lambda before: state.display_zoom == pytest.approx(1.0),
        "zoom:2": lambda before: state.display_zoom == pytest.approx(2.0),
        "zoom_in": lambda before: state.zoom > before,
        "zoom_out": lambda before: state.zoom < before,
    }
    for entry in view_keys.ZOOM_KEYS:
        for key in entry.keys:
            state.set_display_zoom(0.5)
            before = state.zoom
            qtbot.keyClick(view, key)
            assert expect[entry.call](before), (entry.text, key)


def test_about_lists_versions_and_licences(make_window: MakeWindow) -> None:
    window = make_window()
    dialog = window.show_about()
    names = [name for name, _ in dialog.version_rows]
    for needed in ("VSR Desktop", "Python", "PySide6", "Qt", "torch", "PyAV", "FFmpeg"):
        assert needed in names
    text = dialog.versions_text.toPlainText()
    assert sys.version.split()[0] in text
    assert dialog.licenses.count() >= 2
    dialog.licenses.setCurrentRow(0)
    assert (
        "Permission" in dialog.license_text.toPlainText()
        or len(dialog.license_text.toPlainText()) > 200
    )
    dialog.close()


def test_window_title_names_the_product_and_the_file(
    make_window: MakeWindow, clip_factory: ClipFactory
) -> None:
    window = make_window()
    assert window.windowTitle() == "VSR Desktop"
    clip = clip_factory(frames=8, gop=8, width=48, height=32)
    window.open_files([clip])
    assert window.windowTitle() == f"VSR Desktop — {clip.name}"


# ---------------------------------------------------------------------------- existing outputs
def test_existing_outputs_overwrite_rename_skip(
    make_window: MakeWindow, clip_factory: ClipFactory, tmp_path: Path, qtbot: Any
) -> None:
    made = clip_factory(frames=8, gop=8, width=48, height=32).read_bytes()
    sources = [tmp_path / f"{name}.mp4" for name in ("a", "b", "c")]
    for source in sources:
        source.write_bytes(made)
    outputs = {s.stem: tmp_path / f"{s.stem}_x2.mp4" for s in sources}
    for output in outputs.values():
        output.write_bytes(b"an older render")
    window = make_window(outscale=2.0)
    window.open_files(sources)
    window.start_jobs()
    answers = {"a.mp4": "Overwrite", "b.mp4": "Rename", "c.mp4": "Skip"}
    for _ in range(3):
        qtbot.waitUntil(
            lambda: (
                window.output_question is not None and window.output_question.question is not None
            )
        )
        box = window.output_question.question  # type: ignore[union-attr]
        assert box is not None
        name = next(n for n in answers if n.replace(".mp4", "_x2.mp4") in box.text())
        assert {"Overwrite", "Rename", "Skip"} <= {b.text() for b in box.buttons()}
        next(b for b in box.buttons() if b.text() == answers[name]).click()
    qtbot.waitUntil(
        lambda: (
            len(window.store.all_jobs()) == 2
            and all(j.state is JobState.COMPLETED for j in window.store.all_jobs())
        ),
        timeout=180_000,
    )
    by_source = {Path(j.source).name: j for j in window.store.all_jobs()}
    assert set(by_source) == {"a.mp4", "b.mp4"}  # c was skipped
    assert by_source["a.mp4"].output == str(outputs["a"])
    assert outputs["a"].read_bytes() != b"an older render"  # overwritten
    assert by_source["b.mp4"].output == str(tmp_path / "b_x2 (2).mp4")
    assert outputs["b"].read_bytes() == b"an older render"  # renamed: the old one is kept
    assert (tmp_path / "b_x2 (2).mp4").stat().st_size > 1000
    assert outputs["c"].read_bytes() == b"an older render"
    # The job log records the settings the job ran with.
    log = Path(by_source["a.mp4"].log_path).read_text()
    line = next(li for li in log.splitlines() if " settings: " in li)
    settings = json.loads(line.split(" settings: ", 1)[1])
    assert settings["engine"]["outscale"] == 2.0 and settings["encode"]["codec"] == "h264"


def test_sample_output_goes_to_the_videos_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vsr_desktop.resources import RESOURCES, sample_clip_path

    videos = tmp_path / "My Videos"
    monkeypatch.setenv("XDG_VIDEOS_DIR", str(videos))
    spec = spec_for(AppSettings(), sample_clip_path())
    assert videos.is_dir() and spec.output.parent == videos
    assert not spec.output.resolve().is_relative_to(RESOURCES)
    elsewhere = tmp_path / "mine.mp4"
    assert spec_for(AppSettings(), elsewhere).output.parent == tmp_path  # beside the source
    chosen = spec_for(AppSettings(output_folder=str(tmp_path / "out")), sample_clip_path())
    assert chosen.output.parent == tmp_path / "out"


# ---------------------------------------------------------------------------- bad files
def test_an_unreadable_source_is_marked_once_and_removable(
    make_window: MakeWindow, clip_factory: ClipFactory, tmp_path: Path, qtbot: Any
) -> None:
    window = make_window()
    _activate(qtbot, window)
    good = clip_factory(frames=8, gop=8, width=48, height=32)
    bad = tmp_path / "broken.mp4"
    bad.write_text("not a video at all\n" * 20)
    window.open_files([good, bad])
    queue = window.sources
    qtbot.waitUntil(lambda: queue.problem_of(queue.item_of(bad)) is not None, timeout=20_000)
    item = queue.item_of(bad)
    assert item is not None and not item.icon().isNull()
    assert "Cannot be read" in item.toolTip()
    assert "broken.mp4 cannot be read" in window.notice.text()
    assert _boxes() == []  # no dialog
    # Selecting it again: the reason again, still no dialog and no second probe.
    opened: list[object] = []
    window.preview.renderer.sourceOpened.connect(opened.append)
    queue.setCurrentItem(queue.item_of(good))
    qtbot.waitUntil(lambda: bool(opened), timeout=20_000)
    assert window.notice.text() == ""
    queue.setCurrentItem(item)
    qtbot.wait(300)
    assert _boxes() == [] and "broken.mp4 cannot be read" in window.notice.text()
    # Upscale all leaves it out.
    assert queue.readable_paths() == [good]
    # Delete (while the queue has focus) removes it.
    queue.setFocus()
    qtbot.waitUntil(queue.hasFocus)
    qtbot.keyClick(queue, Qt.Key.Key_Delete)
    assert queue.paths() == [good]
    assert window.notice.text() == ""


def _damaged_mp4(folder: Path) -> Path:
    """An MP4 whose index (at the front) promises 24 frames; the data stops halfway."""
    whole = folder / "faststart.mp4"
    lavfi = "testsrc2=size=48x32:rate=24:duration=1"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", lavfi, "-c:v", "libx264",
         "-preset", "ultrafast", "-g", "6", "-movflags", "+faststart", str(whole)],
        check=True,
    )  # fmt: skip
    data = whole.read_bytes()
    cut = folder / "truncated.mp4"
    cut.write_bytes(data[: len(data) * 55 // 100])
    return cut


def test_a_damaged_source_says_so_when_opened(
    make_window: MakeWindow, tmp_path: Path, qtbot: Any
) -> None:
    window = make_window()
    window.show()
    window.open_files([_damaged_mp4(tmp_path)])
    qtbot.waitUntil(lambda: "damaged" in window.notice.text(), timeout=20_000)
    assert window.notice.level == "warning" and _boxes() == []


# ---------------------------------------------------------------------------- errors
def test_the_banner_wraps_long_text(make_window: MakeWindow, qtbot: Any) -> None:
    window = make_window()
    window.resize(1000, 700)
    window.show()
    qtbot.waitExposed(window)
    before = window.minimumSizeHint()
    text = "CUDA was chosen but this machine has no NVIDIA driver: " + "the reason goes on " * 30
    window.show_notice(text, "error")
    QApplication.processEvents()
    label = window.notice.label
    assert label.wordWrap() and label.isVisible()
    line = label.fontMetrics().height()
    assert label.height() >= 3 * line  # wrapped onto several lines, not cut off
    assert label.width() <= window.preview.width()
    assert window.minimumSizeHint().width() == before.width()  # the window did not grow


def test_error_dialogs_wrap_and_keep_copyable_details(make_window: MakeWindow, qtbot: Any) -> None:
    from vsr_desktop.gui.errors import show_error

    window = make_window()
    long_path = "/very/long/" + "folder_name/" * 20 + "clip.mp4"
    box = show_error(window, "Cannot open", InputError(f"{long_path} does not exist", "check it"))
    qtbot.waitUntil(box.isVisible)
    assert long_path in box.detailedText() and "check it" in box.detailedText()
    assert box.width() < 900  # the path wraps instead of widening the box
    box.done(0)
