"""`vsr-desktop --smoke`: prove an installed (frozen) app really works, then exit.

An installer can look fine and still ship an app that dies on first use: a Qt platform plugin
left out, torch without one of its libraries, a model file not bundled, an encoder missing from
PyAV's FFmpeg. So the smoke test drives the real window offscreen the way a user's first minute
does — open the bundled sample clip, wait for a preview rendered by the bundled model — and
then upscales two frames and encodes them with the same code a job uses, checking the file it
wrote. It prints one line per step and exits 0 only when every step passed; any failure is a
message and exit code 1, and a watchdog ends a hung run with exit code 2 (CI must never wait
forever on a frozen app that deadlocked in native code).
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_TIMEOUT = 2
DEFAULT_TIMEOUT_S = 300.0
FRAMES_TO_UPSCALE = 2


class SmokeFailure(Exception):
    """One step of the smoke test did not do what a user would need."""


class _Reporter:
    """Writes progress to stderr (absent in a windowed Windows exe) and to an optional file."""

    def __init__(self, log_path: Path | None) -> None:
        self._start = time.perf_counter()
        self._file: TextIO | None = None
        if log_path is not None:
            self._file = log_path.open("w", encoding="utf-8")

    def say(self, message: str) -> None:
        line = f"smoke [{time.perf_counter() - self._start:6.2f} s] {message}"
        for stream in (sys.stderr, self._file):
            if stream is not None:
                print(line, file=stream, flush=True)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def _watchdog(timeout_s: float, reporter: _Reporter) -> threading.Timer:
    """Hard exit after `timeout_s`: a hang in Qt, torch or FFmpeg cannot be interrupted."""

    def expire() -> None:
        reporter.say(f"FAILED: timed out after {timeout_s:.0f} s")
        reporter.close()
        os._exit(EXIT_TIMEOUT)

    timer = threading.Timer(timeout_s, expire)
    timer.daemon = True
    timer.name = "smoke-watchdog"
    timer.start()
    return timer


def _pump_until(done: Callable[[], bool], what: str, timeout_s: float) -> None:
    """Run the Qt event loop until `done()`; a step that never finishes is a failure."""
    from PySide6.QtCore import QCoreApplication

    end = time.perf_counter() + timeout_s
    while not done():
        if time.perf_counter() > end:
            raise SmokeFailure(f"{what}: nothing after {timeout_s:.0f} s")
        QCoreApplication.processEvents()
        time.sleep(0.01)


def _preview(window: object, clip: Path, reporter: _Reporter, step_timeout: float) -> None:
    """Open the clip in the real window and wait for a rendered before/after picture."""
    from vsr_desktop.gui.main_window import MainWindow

    assert isinstance(window, MainWindow)
    errors: list[str] = []
    window.preview.sourceFailed.connect(errors.append)
    window.preview.renderFailed.connect(errors.append)
    window.open_files([clip])

    def shown() -> bool:
        return bool(errors) or window.preview.view.current_result is not None

    _pump_until(shown, "preview", step_timeout)
    if errors:
        raise SmokeFailure(f"preview: {errors[0]}")
    result = window.preview.view.current_result
    assert result is not None
    before, after = result.source_rgb.shape, result.after_rgb.shape
    if after[0] <= before[0] or after[1] <= before[1]:
        raise SmokeFailure(f"preview: 'after' {after} is not larger than 'before' {before}")
    reporter.say(f"preview rendered: {before[1]}x{before[0]} -> {after[1]}x{after[0]}")


def _device_text(window: object, step_timeout: float) -> str:
    """What the settings panel tells the user about the device (torch imported in the app)."""
    from vsr_desktop.gui.main_window import MainWindow

    assert isinstance(window, MainWindow)
    label = window.settings_panel.device_label
    _pump_until(lambda: label.text().startswith("Found"), "device probe", step_timeout)
    text = label.text()
    if "unknown" in text:
        raise SmokeFailure(f"device probe: {text}")
    return text


#: The keychain backend each OS needs, and the module it cannot work without.
PLATFORM_KEYRING = {
    "linux": ("keyring.backends.SecretService", "secretstorage"),
    "win32": ("keyring.backends.Windows", "win32ctypes.pywin32.win32cred"),
    "darwin": ("keyring.backends.macOS", "keyring.backends.macOS.api"),
}


def keyring_backends() -> str:
    """Check that keyring can find this OS's keychain backend (frozen apps often can't).

    keyring discovers its backends through package entry points, which a frozen app only has
    when the bundler copied keyring's metadata; the backend's own dependency must be there too.
    Whether a keychain daemon runs (none does in a clean root) is the machine's business.
    """
    import importlib
    from importlib.metadata import entry_points

    try:
        import keyring  # noqa: F401 - the optional aws extra
    except ImportError:
        return "keyring not installed (AWS keys cannot be kept in the keychain)"
    found = sorted(ep.name for ep in entry_points(group="keyring.backends"))
    if not found:
        raise SmokeFailure("keyring: no backends registered (package metadata not bundled)")
    platform = "linux" if sys.platform.startswith("linux") else sys.platform
    if platform in PLATFORM_KEYRING:
        for module in PLATFORM_KEYRING[platform]:
            try:
                importlib.import_module(module)
            except ImportError as exc:
                raise SmokeFailure(f"keyring: {module} is missing ({exc})") from exc
    return ", ".join(found)


def upscale_frames(clip: Path, output: Path, model: str, count: int = FRAMES_TO_UPSCALE) -> str:
    """Decode `count` frames, upscale them with `model`, encode H.264 and check the file.

    The same decode, engine and encoder code a job runs, so a frozen bundle that lacks the
    encoder or a torch kernel fails here rather than in the user's first job.
    """
    from vsr_desktop.core.job_spec import EngineSettings
    from vsr_desktop.core.media.decode import iter_frames
    from vsr_desktop.core.media.encode import ChunkEncoder, EncodeSettings
    from vsr_desktop.core.media.probe import probe
    from vsr_desktop.worker.job_setup import build_engine

    info = probe(clip)
    video = info.video
    engine = build_engine(EngineSettings(model=model))
    frames = list(
        iter_frames(
            clip,
            video.index,
            video.frame_pts[:count],
            bit_depth=video.bit_depth,
            first_pts=video.frame_pts[0],
        )
    )
    import numpy as np

    upscaled = engine.upscale(np.stack([f.rgb for f in frames]))
    width, height = engine.output_size(video.width, video.height)
    if upscaled.shape[:3] != (count, height, width):
        raise SmokeFailure(f"upscale: got {upscaled.shape}, expected {count}x{height}x{width}")
    encoder = ChunkEncoder(
        output,
        EncodeSettings(),
        container_format="mp4",
        width=width,
        height=height,
        time_base=video.time_base,
        rate=video.average_rate,
        source_bit_depth=video.bit_depth,
        color=video.color,
    )
    try:
        for frame, rgb in zip(frames, upscaled, strict=True):
            encoder.write(frame.pts - video.frame_pts[0], rgb)
        encoder.close()
    except BaseException:
        encoder.abort()
        raise
    written = probe(output).video
    if (written.frame_count, written.width, written.height) != (count, width, height):
        raise SmokeFailure(
            f"upscale: {output.name} holds {written.frame_count} frames of "
            f"{written.width}x{written.height}, expected {count} of "
            f"{width}x{height}"
        )
    return f"{count} frames {video.width}x{video.height} -> {width}x{height}, {written.codec}"


def run_smoke(
    timeout_s: float = DEFAULT_TIMEOUT_S,
    clip: Path | None = None,
    log_path: Path | None = None,
) -> int:
    """Run every step offscreen in a scratch folder; return the process exit code."""
    os.environ["QT_QPA_PLATFORM"] = "offscreen"  # before QApplication: no display needed
    reporter = _Reporter(log_path)
    watchdog = _watchdog(timeout_s, reporter)
    try:
        return _run_steps(timeout_s, clip, reporter)
    finally:
        watchdog.cancel()
        reporter.close()


def _run_steps(timeout_s: float, clip: Path | None, reporter: _Reporter) -> int:
    from PySide6.QtWidgets import QApplication

    from vsr_desktop import __version__
    from vsr_desktop.gui.gui_thread_gc import install_gui_thread_gc
    from vsr_desktop.gui.main_window import MainWindow
    from vsr_desktop.resources import sample_clip_path

    clip = clip or sample_clip_path()
    reporter.say(
        f"vsr-desktop {__version__}, python {sys.version.split()[0]}, "
        f"frozen={getattr(sys, 'frozen', False)}, clip={clip}"
    )
    _app = QApplication.instance() or QApplication(sys.argv[:1])  # kept alive for the run
    install_gui_thread_gc(_app)
    with tempfile.TemporaryDirectory(prefix="vsr-smoke-") as tmp:
        window: MainWindow | None = None
        try:
            if not clip.is_file():
                raise SmokeFailure(f"sample clip missing: {clip}")
            window = MainWindow.in_scratch_folder(Path(tmp))
            window.show()
            reporter.say("window shown")
            _preview(window, clip, reporter, timeout_s)
            reporter.say(f"device: {_device_text(window, timeout_s)}")
            reporter.say(f"keyring backends: {keyring_backends()}")
            model = window.app_settings.model
            done = upscale_frames(clip, Path(tmp) / "smoke_x4.mp4", model)
            reporter.say(f"upscaled with {model}: {done}")
        except SmokeFailure as exc:
            reporter.say(f"FAILED: {exc}")
            return EXIT_FAILED
        except Exception as exc:  # any crash is a failed smoke test, with its reason
            reporter.say(f"FAILED: {type(exc).__name__}: {exc}")
            return EXIT_FAILED
        finally:
            if window is not None:
                window.close()
                window.shutdown()
    reporter.say("OK")
    return EXIT_OK
