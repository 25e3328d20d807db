"""Is the window responsive? Start-up time and GUI-thread stalls while previews and jobs run.

Run: `python -m benchmarks.gui_latency` (offscreen; `make bench-gui`). A 10 ms QTimer on the
GUI thread records how late each tick fires; a tick more than 100 ms late means the user saw
a frozen window. Phases: idle, scrubbing the preview (renders in flight), a job running.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

TICK_MS = 10


def startup_seconds(runs: int = 3) -> list[float]:
    """Time from process start to `window.show()` returning, as the app prints it."""
    times = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as home:
            env = {
                **os.environ,
                "XDG_CONFIG_HOME": home,
                "XDG_DATA_HOME": home,
                "XDG_CACHE_HOME": home,
                "QT_QPA_PLATFORM": "offscreen",
            }
            start = time.perf_counter()
            result = subprocess.run(
                [sys.executable, "-m", "vsr_desktop.gui.app", "--quit-after", "0.2"],
                capture_output=True,
                text=True,
                env=env,
                timeout=120,
            )
            wall = time.perf_counter() - start
            found = re.search(r"window shown after ([\d.]+) s", result.stderr)
            times.append(float(found.group(1)) if found else wall)
    return times


class LatencyProbe:
    """Collects how late a fast GUI-thread timer fires."""

    def __init__(self) -> None:
        from PySide6.QtCore import QTimer

        self.samples: list[float] = []
        self._last = time.perf_counter()
        self._timer = QTimer()
        self._timer.setInterval(TICK_MS)
        self._timer.timeout.connect(self._tick)

    def _tick(self) -> None:
        now = time.perf_counter()
        self.samples.append(max(0.0, (now - self._last) * 1000 - TICK_MS))
        self._last = now

    def run_for(self, app: object, seconds: float, during: object = None) -> list[float]:
        self.samples = []
        self._last = time.perf_counter()
        self._timer.start()
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            app.processEvents()  # type: ignore[attr-defined]
            if callable(during):
                during()
            time.sleep(0.001)
        self._timer.stop()
        return list(self.samples)


def summarize(name: str, samples: list[float]) -> str:
    if not samples:
        return f"{name:28} no samples"
    p99 = statistics.quantiles(samples, n=100)[98] if len(samples) > 2 else max(samples)
    return (
        f"{name:28} ticks {len(samples):5d}  max late {max(samples):7.1f} ms  "
        f"p99 {p99:6.1f} ms  over 100 ms: {sum(s > 100 for s in samples)}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job-seconds", type=float, default=20.0)
    args = parser.parse_args(argv)
    starts = startup_seconds()
    print(
        f"window shown after: {', '.join(f'{t:.2f}' for t in starts)} s "
        f"(median {statistics.median(starts):.2f} s)",
        flush=True,
    )

    from PySide6.QtWidgets import QApplication

    from vsr_desktop.gui.main_window import MainWindow
    from vsr_desktop.resources import sample_clip_path

    app = QApplication.instance() or QApplication([])
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        window = MainWindow.in_scratch_folder(folder)
        window.resize(1280, 820)
        window.show()
        probe = LatencyProbe()
        window.open_files([sample_clip_path()])
        # The device probe and the first render import torch, spandrel and PyAV in worker
        # threads; their C-extension initialisation holds the GIL once per process.
        print(summarize("start-up: first render", probe.run_for(app, 10.0)), flush=True)
        print(summarize("idle", probe.run_for(app, 2.0)), flush=True)
        frames = iter(range(0, 96, 6))

        def scrub() -> None:
            if int(time.perf_counter() * 4) % 2 == 0:
                index = next(frames, None)
                if index is not None:
                    window.preview.set_frame(index)

        print(
            summarize("scrubbing, renders in flight", probe.run_for(app, 10.0, scrub)), flush=True
        )
        window.start_jobs()
        print(summarize("job running", probe.run_for(app, args.job_seconds)), flush=True)
        window.shutdown(cancel_jobs=True)  # a scratch job: no "keep for later" question
        window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
