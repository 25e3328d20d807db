"""Screenshots of the real app in its main states, for the README and for review.

Run under a virtual display: `make screenshots` (xvfb-run). Saves into docs/screenshots/:
wipe.png (split wipe at 200 %), side_by_side.png, jobs_running.png.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from PySide6.QtCore import QCoreApplication
from PySide6.QtWidgets import QApplication

from vsr_desktop.gui.main_window import MainWindow
from vsr_desktop.resources import sample_clip_path

OUT = Path(__file__).resolve().parent.parent / "docs" / "screenshots"


def pump(seconds: float, until: object = None) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        QCoreApplication.processEvents()
        if callable(until) and until():
            return
        time.sleep(0.01)


def main() -> int:
    _app = QApplication.instance() or QApplication(sys.argv[:1])  # kept alive until exit
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        window = MainWindow.in_scratch_folder(folder)
        window.resize(1400, 900)
        window.show()
        window.open_files([sample_clip_path()])
        rendered = {"n": 0}
        window.preview.renderFinished.connect(lambda: rendered.__setitem__("n", rendered["n"] + 1))
        pump(60, lambda: rendered["n"] >= 1)
        window.preview.set_frame(60)
        pump(30, lambda: rendered["n"] >= 2)
        window.preview.view.view_state.set_zoom(2.0)
        pump(30, lambda: rendered["n"] >= 3)
        pump(1.0)
        window.grab().save(str(OUT / "wipe.png"))
        window.set_preview_mode("side-by-side")
        pump(30, lambda: rendered["n"] >= 4)
        pump(1.0)
        window.grab().save(str(OUT / "side_by_side.png"))
        window.set_preview_mode("split")
        window.start_jobs()
        pump(120, lambda: any(j.frames_done >= 20 for j in window.store.all_jobs()))
        pump(1.0)
        window.grab().save(str(OUT / "jobs_running.png"))
        window.shutdown(cancel_jobs=True)  # a scratch job: no "keep for later" question
        window.close()
    print(f"saved screenshots in {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
