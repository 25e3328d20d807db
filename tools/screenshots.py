"""Screenshots of the real app in its main states, for the README and for review.

Run under a virtual display: `make screenshots` (xvfb-run) runs this once per screen:
1366×768 at 100 % and 1920×1080 at 200 % (QT_SCALE_FACTOR=2), each in the light and the
dark theme. Saves into docs/screenshots/ with a prefix per run:

- light, 100 %: wipe.png (split wipe at 100 %), side_by_side.png, playback.png (In/Out
  marks on the timeline), jobs_running.png,
  run_on.png (the Run on… dialog), shortcuts.png, about.png, notice.png (a damaged-file banner)
- dark, 100 %: dark_wipe.png, dark_jobs_running.png, dark_run_on.png
- 200 %: hidpi_wipe.png, hidpi_dark_wipe.png (physical pixels: twice the logical size)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from PySide6.QtCore import QCoreApplication
from PySide6.QtWidgets import QApplication, QWidget

from vsr_desktop.gui.main_window import MainWindow
from vsr_desktop.resources import sample_clip_path

OUT = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
SHOTS = ("wipe", "side", "jobs", "dialogs")


def pump(seconds: float, until: object = None) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        QCoreApplication.processEvents()
        if callable(until) and until():
            return
        time.sleep(0.01)


def save(widget: QWidget, name: str) -> None:
    pump(0.5)
    widget.grab().save(str(OUT / name))
    print(f"  {name}: {widget.width()}×{widget.height()} × {widget.devicePixelRatioF():g}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--theme", choices=("light", "dark"), default="light")
    parser.add_argument("--prefix", default="")
    parser.add_argument("--shots", default=",".join(SHOTS), help="wipe,side,jobs,dialogs")
    args = parser.parse_args(argv)
    shots = set(args.shots.split(","))
    app = QApplication.instance() or QApplication(sys.argv[:1])
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        window = MainWindow.in_scratch_folder(folder)
        window.set_theme(args.theme)
        screen = app.primaryScreen().availableGeometry()
        window.resize(max(screen.width(), window.minimumSizeHint().width()), screen.height())
        window.show()
        window.open_files([sample_clip_path()])
        rendered = {"n": 0}
        window.preview.renderFinished.connect(lambda: rendered.__setitem__("n", rendered["n"] + 1))
        pump(60, lambda: rendered["n"] >= 1)
        window.preview.set_frame(60)
        pump(30, lambda: rendered["n"] >= 2)
        window.preview.view.view_state.set_display_zoom(1.0)  # one pixel per screen pixel
        pump(30, lambda: rendered["n"] >= 3)
        if "wipe" in shots:
            save(window, f"{args.prefix}wipe.png")
        if "side" in shots:
            window.set_preview_mode("side-by-side")
            pump(30, lambda: rendered["n"] >= 4)
            save(window, f"{args.prefix}side_by_side.png")
            preview = window.preview  # playback: In/Out marks, paused after a second of play
            for index, mark in ((20, preview.mark_in), (70, preview.mark_out), (30, None)):
                preview.set_frame(index)
                pump(30, lambda i=index: preview.view.painted_frame == i)
                if mark is not None:
                    mark()
            preview.toggle_play()
            pump(1.0)
            preview.pause()
            pump(30, lambda: preview.view.current_result is not None and not preview.view.busy)
            save(window, f"{args.prefix}playback.png")
            window.set_preview_mode("split")
        if "dialogs" in shots:
            dialog = window.open_run_on()
            dialog.choose("slurm")
            save(dialog, f"{args.prefix}run_on.png")
            dialog.choose("local")
            dialog.close()
            if not args.prefix:
                sheet = window.show_shortcuts()
                save(sheet, "shortcuts.png")
                sheet.close()
                about = window.show_about()
                save(about, "about.png")
                about.close()
                window.show_notice(
                    "astronaut_pan.mp4 is damaged: its data stops after frame 76 of the 120 "
                    "its index promises (truncated). The preview shows the frames that can "
                    "be read; a job stops at a damaged frame unless allowed "
                    "(vsr upscale --allow-damaged).",
                    "warning",
                )
                save(window, "notice.png")
                window.notice.clear()
        if "jobs" in shots:
            window.start_jobs()
            pump(120, lambda: any(j.frames_done >= 20 for j in window.store.all_jobs()))
            save(window, f"{args.prefix}jobs_running.png")
        window.shutdown(cancel_jobs=True)  # a scratch job: no "keep for later" question
        window.close()
    print(f"saved screenshots in {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
