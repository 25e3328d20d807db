"""`vsr-desktop`: start the Qt application and open the main window.

The bundled sample clip is opened on first run, so there is something to compare at once.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

START = time.perf_counter()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vsr-desktop", description="Video super-resolution")
    parser.add_argument("files", nargs="*", type=Path, help="videos to open")
    parser.add_argument(
        "--quit-after",
        type=float,
        default=None,
        metavar="SECONDS",
        help="close the window after this long (start-up timing, screenshots)",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="self-test offscreen: preview and upscale the bundled sample, then "
        "exit 0 (installers run this after installing)",
    )
    parser.add_argument(
        "--smoke-timeout",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="fail the self-test (exit 2) if it takes longer than this",
    )
    parser.add_argument(
        "--smoke-log",
        type=Path,
        default=None,
        metavar="FILE",
        help="also write the self-test's report here (a windowed app has no console on Windows)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.smoke:
        from vsr_desktop.gui.smoke import run_smoke

        return run_smoke(args.smoke_timeout, args.files[0] if args.files else None, args.smoke_log)
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from vsr_desktop import __version__
    from vsr_desktop.gui.errors import install_excepthook
    from vsr_desktop.gui.gui_thread_gc import install_gui_thread_gc
    from vsr_desktop.gui.main_window import MainWindow
    from vsr_desktop.resources import sample_clip_path

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("vsr_desktop")
    app.setApplicationVersion(__version__)
    install_excepthook()
    install_gui_thread_gc(app)
    window = MainWindow()
    first_run = not window.app_settings.recent_files
    files = list(args.files) or (
        [sample_clip_path()]
        if first_run
        else [Path(p) for p in window.app_settings.recent_files[:1] if Path(p).is_file()]
    )
    window.show()
    shown = time.perf_counter() - START
    window.statusBar().showMessage(f"Ready in {shown:.2f} s", 5000)
    print(f"window shown after {shown:.2f} s", file=sys.stderr)
    if files:
        QTimer.singleShot(0, lambda: window.open_files(files))
    if args.quit_after is not None:
        QTimer.singleShot(int(args.quit_after * 1000), window.close)
    return int(app.exec())


if __name__ == "__main__":
    sys.exit(main())
