"""Upscale one chunk: decode → bounded queue → engine → bounded queue → encode, concurrently.

Decode and encode run in their own threads (FFmpeg releases the GIL), so the engine never
waits on I/O it could overlap, and the bounded queues keep memory flat for any length.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vsr_desktop.core.errors import CancelledError, DamagedInputError, MediaError, VsrError
from vsr_desktop.core.media.alpha import keeps_alpha, merge_alpha
from vsr_desktop.core.media.color_tags import explicit_matrix
from vsr_desktop.core.media.decode import DecodedFrame, DecodeTally, iter_frames
from vsr_desktop.core.media.deinterlace import Deinterlace
from vsr_desktop.core.media.encode import EncodeSettings, raise_for_os_error
from vsr_desktop.core.media.geometry import geometry_for
from vsr_desktop.core.media.image_sequence import open_frame_writer
from vsr_desktop.core.media.probe import MediaInfo
from vsr_desktop.core.media.timeline import output_timeline
from vsr_desktop.core.plan import Chunk
from vsr_desktop.core.upscaler import FrameUpscaler, engine_error, upscale_in_groups

QUEUE_DEPTH = 4
_END = object()


@dataclass(frozen=True)
class ChunkResult:
    path: Path
    frames: int
    #: Source frames that could not be decoded, each replaced by its neighbour (--allow-damaged).
    damaged: int = 0


def partial_path(final: Path) -> Path:
    """Where a file is written before it is complete (renamed onto `final` at the end)."""
    return final.with_name(f"{final.stem}.partial{final.suffix}")


class _Failures:
    """The pipeline's errors in the order they happened; recording one stops every stage.

    When one stage fails, the others see the stop and give up, some by raising
    CancelledError: those are echoes, and the error that started the shutdown is the one
    the caller gets (see :meth:`first`).
    """

    def __init__(self, stop: threading.Event) -> None:
        self._stop = stop
        self._lock = threading.Lock()
        self._errors: list[BaseException] = []

    def record(self, exc: BaseException) -> None:
        with self._lock:
            if not any(exc is seen for seen in self._errors):
                self._errors.append(exc)
        self._stop.set()

    def first(self, user_cancelled: bool) -> BaseException | None:
        """The first real error. A CancelledError stands for itself only when the user
        cancelled and nothing failed before it; otherwise it is a stage obeying the stop."""
        with self._lock:
            errors = list(self._errors)
        for exc in errors:
            if isinstance(exc, CancelledError) and not user_cancelled:
                continue
            return exc
        return errors[0] if errors else None


class _Stage(threading.Thread):
    """A pipeline thread that records its exception instead of dying silently."""

    def __init__(self, name: str, target: Callable[[], None], failures: _Failures) -> None:
        super().__init__(name=name, daemon=True)
        self._work = target
        self._failures = failures

    def run(self) -> None:
        try:
            self._work()
        except BaseException as exc:
            self._failures.record(exc)


def _put(q: queue.Queue[Any], item: Any, stop: threading.Event) -> bool:
    """Blocking put that gives up when the pipeline is stopping."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _get(q: queue.Queue[Any], stop: threading.Event) -> Any:
    """Blocking get that gives up (returns the end marker) when the pipeline is stopping."""
    while not stop.is_set():
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            continue
    return _END


def upscale_chunk(
    source: MediaInfo,
    chunk: Chunk,
    engine: FrameUpscaler,
    settings: EncodeSettings,
    out_path: Path,
    *,
    container_format: str,
    batch_size: int = 1,
    on_frames: Callable[[int], None] | None = None,
    cancel: threading.Event | None = None,
    allow_damaged: bool = False,
    deinterlace: Deinterlace | None = None,
) -> ChunkResult:
    """Write the upscaled chunk to `out_path` (atomically) and return it.

    Raises the error that stopped the pipeline first, as a VsrError: MediaError for the
    decoder or the encoder (DiskFullError for a full disk), EngineError for the upscaler
    (its own VsrErrors pass unchanged), CancelledError only when ``cancel`` was set and no
    stage had failed before. Nothing is left under either file name on an error.
    """
    video = source.video
    fields = None
    if deinterlace is not None:  # whole frames for the model; at double rate one per field
        fields = deinterlace.decoder(video)
        source, chunk = deinterlace.output_media(source), deinterlace.output_chunk(chunk)
        video, on_frames = source.video, deinterlace.counting_source_frames(on_frames)
    # Model scale, then --size/--height/--square-pixels (one Lanczos pass when needed).
    geometry = geometry_for(video, engine.output_size(video.width, video.height), settings)
    out_w, out_h = geometry.canvas
    # An engine that runs one frame per core wants that many frames per call.
    batch_size = max(batch_size, int(getattr(engine, "frames_per_call", 1)))
    stop = threading.Event()
    failures = _Failures(stop)
    # Deep enough that a whole batch is waiting when the engine asks for the next one.
    depth = max(QUEUE_DEPTH, 2 * batch_size)
    decoded: queue.Queue[Any] = queue.Queue(maxsize=depth)
    upscaled: queue.Queue[Any] = queue.Queue(maxsize=depth)
    tmp_path = partial_path(out_path)
    alpha = keeps_alpha(video.has_alpha, settings, container_format)  # core.media.alpha
    # Source timestamps, or for a CFR source stored rounded, the exact frame grid.
    timeline = output_timeline(video, container_format, source.start_seconds)
    try:
        encoder = open_frame_writer(  # a ChunkEncoder, or image files for PNG/TIFF
            tmp_path,
            settings,
            final=out_path,
            first_frame=chunk.start_frame,
            container_format=container_format,
            width=out_w,
            height=out_h,
            time_base=timeline.time_base,
            rate=video.header_rate(),
            source_bit_depth=video.bit_depth,
            color=explicit_matrix(video.color, video.pix_fmt, video.width, video.height),
            source_pix_fmt=video.pix_fmt,
            alpha=alpha,
            pts_offset=timeline.to_output(chunk.start_pts),
            sample_aspect_ratio=geometry.sar,
        )
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink(missing_ok=True)
        raise

    tally = DecodeTally()

    def decode() -> None:
        try:
            frames = iter_frames(
                source.path,
                video.index,
                video.frame_pts[chunk.start_frame : chunk.end_frame],
                end_pts=(
                    video.frame_pts[chunk.end_frame]
                    if chunk.end_frame < len(video.frame_pts)
                    else None
                ),
                bit_depth=video.bit_depth,
                first_pts=video.frame_pts[0],
                cancel=stop,
                tally=tally,
                deinterlacer=fields,
                alpha=alpha,
            )
            for frame in frames:
                if tally.missing and not allow_damaged:
                    for _ in frames:  # only counting from here on: the chunk will not be kept
                        pass
                    raise damaged_input_error(source, tally.missing)
                if not _put(decoded, frame, stop):
                    return
        except VsrError:
            raise
        except OSError as exc:
            raise MediaError(
                f"{source.path.name}: reading failed in chunk {chunk.index}: {exc}",
                "check that the source file is still there and readable",
            ) from exc
        except Exception as exc:
            raise MediaError(
                f"{source.path.name}: decoding failed in chunk {chunk.index}: "
                f"{type(exc).__name__}: {exc}",
                "the file may be corrupt or truncated; re-export it",
            ) from exc
        _put(decoded, _END, stop)

    def encode() -> None:
        try:
            while True:
                item = _get(upscaled, stop)
                if item is _END:
                    return
                pts, rgb, plane = item  # the alpha plane is resized to the upscaled RGB
                encoder.write(timeline.to_output(pts), geometry.apply(merge_alpha(rgb, plane)))
        except VsrError:
            raise
        except OSError as exc:
            raise_for_os_error(exc, tmp_path)  # DiskFullError or MediaError
        except Exception as exc:
            raise MediaError(
                f"encoding chunk {chunk.index} with {settings.codec} failed: "
                f"{type(exc).__name__}: {exc}",
                "check the encoder options (CRF, preset, bit rate)",
            ) from exc

    def upscaled_frames(
        results: Iterable[tuple[DecodedFrame, np.ndarray]],
    ) -> Iterator[tuple[DecodedFrame, np.ndarray]]:
        """The engine's results; its unexpected errors become EngineError (recorded at once,
        so they come before the echoes of the stop they cause)."""
        iterator = iter(results)
        while True:
            try:
                item = next(iterator)
            except StopIteration:
                return
            except VsrError as exc:
                failures.record(exc)
                raise
            except Exception as exc:
                error = engine_error(exc)
                error.__cause__ = exc  # as `from exc`: recorded before it is raised
                failures.record(error)
                raise error from exc
            yield item

    decoder = _Stage("vsr-decode", decode, failures)
    writer = _Stage("vsr-encode", encode, failures)
    decoder.start()
    writer.start()

    def decoded_frames() -> Iterator[DecodedFrame]:
        while True:
            item = _get(decoded, stop)
            if item is _END:
                return
            yield item

    done = 0
    try:
        stream = getattr(engine, "upscale_stream", None)
        results: Iterator[tuple[DecodedFrame, np.ndarray]] = (
            stream(decoded_frames(), _rgb_of, cancel)
            if stream is not None
            else upscale_in_groups(engine, decoded_frames(), _rgb_of, batch_size, cancel)
        )
        try:
            for frame, rgb in upscaled_frames(results):
                if cancel is not None and cancel.is_set():
                    raise CancelledError("cancelled")
                if not _put(upscaled, (frame.pts, rgb, frame.alpha), stop):
                    break  # another stage failed: its error is recorded
                done += 1
                if on_frames is not None:
                    on_frames(1)
        finally:  # a generator's close() waits for an engine's workers before cleanup
            close = getattr(results, "close", None)
            if close is not None:
                close()
        if cancel is not None and cancel.is_set():
            raise CancelledError("cancelled")
        _put(upscaled, _END, stop)
    except BaseException as exc:
        failures.record(exc)
    writer.join()
    decoder.join()
    try:
        error = failures.first(user_cancelled=cancel is not None and cancel.is_set())
        if error is not None:
            raise error
        if done != chunk.frame_count or encoder.frames_written != chunk.frame_count:
            raise MediaError(
                f"chunk {chunk.index}: {encoder.frames_written} of {chunk.frame_count} "
                "frames were written"
            )
        encoder.close()
        try:
            os.replace(tmp_path, out_path)
        except OSError as exc:
            raise_for_os_error(exc, out_path)
    except BaseException:
        encoder.abort()
        with contextlib.suppress(OSError):  # never mask the error that got us here
            tmp_path.unlink(missing_ok=True)
        raise
    per_source = deinterlace.rate_factor if deinterlace is not None else 1  # source frames
    return ChunkResult(path=out_path, frames=done // per_source, damaged=len(tally.missing))


def damaged_input_error(source: MediaInfo, missing: list[int]) -> DamagedInputError:
    """The refusal for frames that could not be decoded, with where they are."""
    first = source.video.pts_to_seconds(missing[0])
    return DamagedInputError(
        f"{source.path.name} is damaged: {len(missing)} frame(s) from {first:.3f} s "
        "could not be decoded",
        "pass --allow-damaged to upscale it anyway (each such frame repeats its neighbour), "
        "or re-export the file",
    )


def _rgb_of(frame: DecodedFrame) -> np.ndarray:
    return frame.rgb
