"""Upscale the visible region of one frame off the GUI thread; newest request wins.

The GUI-side `PreviewRenderer` keeps at most one job in the worker thread: a request that
arrives while it is busy cancels the running job (threading.Event) and waits as the single
pending request, replacing any older pending one. Finished results go into an LRU cache
that answers repeats at once, without the worker. The worker never touches a widget; its
signals reach the renderer (a GUI-thread QObject) as queued calls to its methods.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QCoreApplication, QObject, QThread, Signal, Slot

from vsr_desktop.core.errors import CancelledError, VsrError
from vsr_desktop.core.preview import Region, bicubic_resize, to_8bit
from vsr_desktop.core.upscaler import FrameUpscaler

log = logging.getLogger(__name__)

EngineFactory = Callable[[], FrameUpscaler]
CACHE_ENTRIES = 64
CACHE_BYTES = 768 * 1024 * 1024


@dataclass(frozen=True)
class RenderRequest:
    """One preview render: a region of one frame of one source, with one engine setting,
    the frame deinterlaced as the job's `deinterlace` mode says (core.preview.shown_frame)."""

    source: Path
    frame_index: int
    region: Region
    settings_key: str
    deinterlace: str = "auto"

    @property
    def key(self) -> tuple[str, int, Region, str, str]:
        return (
            str(self.source),
            self.frame_index,
            self.region,
            self.settings_key,
            self.deinterlace,
        )


@dataclass(frozen=True)
class PreviewResult:
    """Before/after of a region (8-bit RGB, output size) plus the whole source frame."""

    source: Path
    frame_index: int
    region: Region
    settings_key: str
    before_rgb: np.ndarray = field(repr=False)
    after_rgb: np.ndarray = field(repr=False)
    source_rgb: np.ndarray = field(repr=False)
    output_size: tuple[int, int] = (0, 0)
    #: How long the model took for this region (the model list's speed is measured from it).
    upscale_ms: float = 0.0
    deinterlace: str = "auto"  # the mode its frame was decoded with

    @property
    def nbytes(self) -> int:
        return self.before_rgb.nbytes + self.after_rgb.nbytes + self.source_rgb.nbytes


@dataclass(frozen=True)
class DecodedFrame:
    """A decoded source frame, shown while its region is still being upscaled.

    Sent twice per job: at once, then with the region's bicubic "before" (the honest
    stand-in for "after" until the model is done) once the engine knows the output size.
    """

    source: Path
    frame_index: int
    rgb: np.ndarray = field(repr=False)
    region: Region | None = None
    before_rgb: np.ndarray | None = field(default=None, repr=False)
    output_size: tuple[int, int] | None = None
    deinterlace: str = "auto"


@dataclass(frozen=True)
class SourceOpened:
    """A probed source (`info` is a core MediaInfo)."""

    source: Path
    info: Any


@dataclass(frozen=True)
class SourceFailed:
    """A source that could not be probed, with the message for the user."""

    source: Path
    message: str
    detail: str = ""


@dataclass
class _Job:
    """What travels to the worker: the request, the engine recipe and the cancel flag.

    Without a factory the job only decodes the frame (no model chosen yet).
    """

    request: RenderRequest
    factory: EngineFactory | None
    cancel: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True)
class _Outcome:
    request: RenderRequest
    status: str  # "done", "decoded", "cancelled", "failed"
    result: PreviewResult | None = None
    message: str = ""
    engine_built: bool = False
    detail: str = ""  # traceback of an unexpected error, logged in the GUI thread


@dataclass
class RendererStats:
    """Counters the tests (and a debug overlay) read: what really reached the worker."""

    submitted: int = 0
    completed: int = 0
    cancelled: int = 0
    failed: int = 0
    cache_hits: int = 0
    engine_builds: int = 0
    log: list[tuple[int, str]] = field(default_factory=list)


class _Worker(QObject):
    """Lives in the render thread: probes, decodes, builds the engine and upscales."""

    opened = Signal(object)
    openFailed = Signal(object)
    decoded = Signal(object)
    finished = Signal(object)

    def __init__(self) -> None:
        super().__init__()
        self._infos: dict[str, Any] = {}
        self._frames: OrderedDict[tuple[str, int, str], np.ndarray] = OrderedDict()
        self._engine: FrameUpscaler | None = None
        self._engine_key: str | None = None

    def _info(self, source: Path, fresh: bool = False) -> Any:
        key = str(source)
        if fresh or key not in self._infos:
            from vsr_desktop.core.media import probe

            self._infos[key] = probe(source)
        return self._infos[key]

    def _frame(self, source: Path, index: int, deinterlace: str) -> np.ndarray:
        """Decode (or reuse) one frame; a few are kept so panning does not re-decode."""
        from vsr_desktop.core.preview import shown_frame

        key = (str(source), index, deinterlace)
        if key in self._frames:
            self._frames.move_to_end(key)
            return self._frames[key]
        rgb = shown_frame(self._info(source), index, deinterlace)  # as the job will see it
        self._frames[key] = rgb
        while len(self._frames) > 4:
            self._frames.popitem(last=False)
        return rgb

    @Slot(object)
    def open_source(self, source: Path) -> None:
        try:
            info = self._info(source, fresh=True)  # the file may have changed since
            for stale in [k for k in self._frames if k[0] == str(source)]:
                del self._frames[stale]
            self.opened.emit(SourceOpened(source, info))
        except VsrError as exc:
            self.openFailed.emit(SourceFailed(source, exc.user_message()))
        except Exception as exc:
            message = f"{source.name} could not be opened ({exc})"
            self.openFailed.emit(SourceFailed(source, message, traceback.format_exc()))

    @Slot(object)
    def render(self, job: _Job) -> None:
        request, built = job.request, False
        try:
            rgb = self._frame(request.source, request.frame_index, request.deinterlace)
            display = to_8bit(rgb)
            mode = request.deinterlace
            self.decoded.emit(
                DecodedFrame(request.source, request.frame_index, display, deinterlace=mode)
            )
            if job.cancel.is_set():
                raise CancelledError("superseded before upscaling")
            if job.factory is None:
                self.finished.emit(_Outcome(request, "decoded"))
                return
            if self._engine is None or self._engine_key != request.settings_key:
                self._engine = None  # free the old model before loading the next
                self._engine = job.factory()
                self._engine_key = request.settings_key
                built = True
            height, width = rgb.shape[:2]
            area = request.region.clamp(width, height)
            crop = np.ascontiguousarray(
                rgb[area.y : area.y + area.height, area.x : area.x + area.width]
            )
            full_size = self._engine.output_size(width, height)
            before = bicubic_resize(crop, *self._engine.output_size(area.width, area.height))
            self.decoded.emit(
                DecodedFrame(
                    request.source, request.frame_index, display, area, before, full_size, mode
                )
            )
            started = time.perf_counter()
            after = to_8bit(self._engine.upscale(crop[None], job.cancel)[0])
            upscale_ms = (time.perf_counter() - started) * 1000
            if job.cancel.is_set():
                raise CancelledError("superseded while upscaling")
            if after.shape != before.shape:
                before = bicubic_resize(crop, after.shape[1], after.shape[0])
            result = PreviewResult(
                source=request.source,
                frame_index=request.frame_index,
                region=area,
                settings_key=request.settings_key,
                before_rgb=before,
                after_rgb=after,
                source_rgb=display,
                output_size=full_size,
                upscale_ms=upscale_ms,
                deinterlace=mode,
            )
            self.finished.emit(_Outcome(request, "done", result, engine_built=built))
        except CancelledError:
            self.finished.emit(_Outcome(request, "cancelled", engine_built=built))
        except VsrError as exc:
            self.finished.emit(
                _Outcome(request, "failed", message=exc.user_message(), engine_built=built)
            )
        except Exception as exc:
            # No logging here: a log record made in this thread would register it with
            # Python's threading module; the GUI thread logs the traceback instead.
            outcome = _Outcome(
                request,
                "failed",
                message=f"Preview failed: {exc}",
                engine_built=built,
                detail=traceback.format_exc(),
            )
            self.finished.emit(outcome)


class PreviewRenderer(QObject):
    """GUI-thread front of the render thread: coalescing, cancelling, caching."""

    rendered = Signal(object)  # PreviewResult
    failed = Signal(str)
    frameDecoded = Signal(object)  # DecodedFrame
    sourceOpened = Signal(object)  # SourceOpened
    sourceFailed = Signal(object)  # SourceFailed
    busyChanged = Signal(bool)

    _submitRender = Signal(object)
    _submitOpen = Signal(object)

    def __init__(
        self,
        parent: QObject | None = None,
        cache_entries: int = CACHE_ENTRIES,
        cache_bytes: int = CACHE_BYTES,
    ) -> None:
        super().__init__(parent)
        self.stats = RendererStats()
        self._cache: OrderedDict[tuple[str, int, Region, str, str], PreviewResult] = OrderedDict()
        self._cache_entries = cache_entries
        self._cache_bytes = cache_bytes
        self._factories: dict[str, EngineFactory] = {}
        self._running: _Job | None = None
        self._pending: RenderRequest | None = None
        self._latest: RenderRequest | None = None
        self._thread: QThread | None = QThread()
        self._thread.setObjectName("vsr-preview-render")
        self._worker: _Worker | None = _Worker()
        self._worker.moveToThread(self._thread)
        self._submitRender.connect(self._worker.render)
        self._submitOpen.connect(self._worker.open_source)
        self._worker.finished.connect(self._on_finished)
        self._worker.decoded.connect(self._on_decoded)
        self._worker.opened.connect(self._on_opened)
        self._worker.openFailed.connect(self._on_open_failed)
        self._thread.finished.connect(self._worker.deleteLater)
        self._thread.start()
        app = QCoreApplication.instance()
        if app is not None:  # a safety net; owners should call shutdown() themselves
            app.aboutToQuit.connect(self.shutdown)

    @property
    def busy(self) -> bool:
        return self._running is not None

    def set_engine_factory(self, settings_key: str, factory: EngineFactory) -> None:
        """How to build the engine for requests with this settings key (built in the worker).

        Requests whose key has no factory only decode their frame.
        """
        self._factories[settings_key] = factory

    def open_source(self, source: Path) -> None:
        """Probe in the worker; answers with `sourceOpened` or `sourceFailed`."""
        source = Path(source)
        for key in [k for k in self._cache if k[0] == str(source)]:
            del self._cache[key]
        if self._thread is not None:
            self._submitOpen.emit(source)

    def request(self, request: RenderRequest) -> bool:
        """Ask for a render; True when it was answered from the cache (already emitted)."""
        self._latest = request
        cached = self._cache.get(request.key)
        if cached is not None:
            self._cache.move_to_end(request.key)
            self.stats.cache_hits += 1
            self._pending = None
            if self._running is not None:
                self._running.cancel.set()
            self.rendered.emit(cached)
            return True
        if self._running is not None:
            if self._running.request == request and not self._running.cancel.is_set():
                self._pending = None
            else:
                self._running.cancel.set()
                self._pending = request
            return False
        self._start(request)
        return False

    def cancel(self) -> None:
        """Drop the pending request and cancel the running one (its result is not wanted)."""
        self._pending = None
        self._latest = None
        if self._running is not None:
            self._running.cancel.set()

    def cached(self, request: RenderRequest) -> PreviewResult | None:
        return self._cache.get(request.key)

    def _start(self, request: RenderRequest) -> None:
        if self._thread is None:
            return
        self._pending = None
        self._running = _Job(request, self._factories.get(request.settings_key))
        self.stats.submitted += 1
        self.busyChanged.emit(True)
        self._submitRender.emit(self._running)

    @Slot(object)
    def _on_finished(self, outcome: _Outcome) -> None:
        if self._thread is None:
            return  # shut down: late news from the worker is dropped
        self._running = None
        self.stats.log.append((outcome.request.frame_index, outcome.status))
        if outcome.detail:
            log.error("preview render failed\n%s", outcome.detail)
        self.stats.engine_builds += int(outcome.engine_built)
        if outcome.status == "done" and outcome.result is not None:
            self.stats.completed += 1
            self._remember(outcome.request, outcome.result)
        elif outcome.status == "cancelled":
            self.stats.cancelled += 1
        elif outcome.status == "failed":
            self.stats.failed += 1
        if self._pending is not None:
            pending, self._pending = self._pending, None
            cached = self._cache.get(pending.key)
            if cached is None:
                self._start(pending)
                return
            outcome = _Outcome(pending, "done", cached)  # finished after all: no rerun
        self.busyChanged.emit(False)
        if outcome.request != self._latest:
            return
        if outcome.result is not None:
            self.rendered.emit(outcome.result)
        elif outcome.status == "failed":
            self.failed.emit(outcome.message)

    @Slot(object)
    def _on_decoded(self, frame: DecodedFrame) -> None:
        if self._thread is None:
            return
        latest = self._latest
        if latest is not None and (latest.source, latest.frame_index, latest.deinterlace) == (
            frame.source,
            frame.frame_index,
            frame.deinterlace,
        ):
            self.frameDecoded.emit(frame)

    @Slot(object)
    def _on_opened(self, opened: SourceOpened) -> None:
        self.sourceOpened.emit(opened)

    @Slot(object)
    def _on_open_failed(self, failure: SourceFailed) -> None:
        if failure.detail:
            log.error("probing %s failed\n%s", failure.source, failure.detail)
        self.sourceFailed.emit(failure)

    def _remember(self, request: RenderRequest, result: PreviewResult) -> None:
        self._cache[request.key] = result
        total = sum(r.nbytes for r in self._cache.values())
        while len(self._cache) > 1 and (
            len(self._cache) > self._cache_entries or total > self._cache_bytes
        ):
            _, dropped = self._cache.popitem(last=False)
            total -= dropped.nbytes

    def clear_cache(self) -> None:
        self._cache.clear()

    def shutdown(self) -> None:
        """Cancel, stop the thread and wait for it: nothing outlives this call."""
        self._pending = None
        if self._running is not None:
            self._running.cancel.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.quit()
            thread.wait()
        self._worker = None
        self._running = None
