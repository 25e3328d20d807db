"""Upscale one chunk: decode → bounded queue → engine → bounded queue → encode, concurrently.

Decode and encode run in their own threads (FFmpeg releases the GIL), so the engine never
waits on I/O it could overlap, and the bounded queues keep memory flat for any length.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vsr_desktop.core.errors import CancelledError, MediaError, VsrError
from vsr_desktop.core.media.decode import DecodedFrame, iter_frames
from vsr_desktop.core.media.encode import ChunkEncoder, EncodeSettings
from vsr_desktop.core.media.probe import MediaInfo
from vsr_desktop.core.plan import Chunk
from vsr_desktop.core.upscaler import FrameUpscaler, upscale_in_groups

QUEUE_DEPTH = 4
_END = object()


@dataclass(frozen=True)
class ChunkResult:
    path: Path
    frames: int


def encoded_size(engine: FrameUpscaler, width: int, height: int) -> tuple[int, int]:
    """Output size rounded down to even numbers (4:2:0 chroma needs it)."""
    out_w, out_h = engine.output_size(width, height)
    return out_w - out_w % 2, out_h - out_h % 2


def partial_path(final: Path) -> Path:
    """Where a file is written before it is complete (renamed onto `final` at the end)."""
    return final.with_name(f"{final.stem}.partial{final.suffix}")


class _Stage(threading.Thread):
    """A pipeline thread that records its exception instead of dying silently."""

    def __init__(self, name: str, target: Callable[[], None], stop: threading.Event) -> None:
        super().__init__(name=name, daemon=True)
        self._work = target
        self._stop_all = stop
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._work()
        except BaseException as exc:
            self.error = exc
            self._stop_all.set()


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
    while True:
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            if stop.is_set():
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
) -> ChunkResult:
    """Write the upscaled chunk to `out_path` (atomically) and return it."""
    video = source.video
    out_w, out_h = encoded_size(engine, video.width, video.height)
    # An engine that runs one frame per core wants that many frames per call.
    batch_size = max(batch_size, int(getattr(engine, "frames_per_call", 1)))
    stop = threading.Event()
    # Deep enough that a whole batch is waiting when the engine asks for the next one.
    depth = max(QUEUE_DEPTH, 2 * batch_size)
    decoded: queue.Queue[Any] = queue.Queue(maxsize=depth)
    upscaled: queue.Queue[Any] = queue.Queue(maxsize=depth)
    tmp_path = partial_path(out_path)
    encoder = ChunkEncoder(
        tmp_path, settings, container_format=container_format, width=out_w, height=out_h,
        time_base=video.time_base, rate=video.average_rate, source_bit_depth=video.bit_depth,
        color=video.color, pts_offset=chunk.start_pts,
    )

    def decode() -> None:
        for frame in iter_frames(
            source.path, video.index, chunk.start_pts, chunk.frame_count,
            bit_depth=video.bit_depth, first_pts=video.frame_pts[0], cancel=stop,
        ):
            if not _put(decoded, frame, stop):
                return
        _put(decoded, _END, stop)

    def encode() -> None:
        while True:
            item = _get(upscaled, stop)
            if item is _END:
                return
            pts, rgb = item
            encoder.write(pts, rgb[:out_h, :out_w])

    decoder = _Stage("vsr-decode", decode, stop)
    writer = _Stage("vsr-encode", encode, stop)
    decoder.start()
    writer.start()

    def decoded_frames() -> Iterator[DecodedFrame]:
        while True:
            item = _get(decoded, stop)
            if item is _END:
                return
            yield item

    stream = getattr(engine, "upscale_stream", None)
    results: Iterator[tuple[DecodedFrame, np.ndarray]] = (
        stream(decoded_frames(), _rgb_of, cancel) if stream is not None
        else upscale_in_groups(engine, decoded_frames(), _rgb_of, batch_size, cancel)
    )
    done = 0
    try:
        try:
            for frame, rgb in results:
                if cancel is not None and cancel.is_set():
                    raise CancelledError("cancelled")
                if not _put(upscaled, (frame.pts, rgb), stop):
                    break
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
        writer.join()
        decoder.join()
        for stage in (decoder, writer):
            if stage.error is not None:
                raise stage.error
        if done != chunk.frame_count or encoder.frames_written != chunk.frame_count:
            raise MediaError(
                f"chunk {chunk.index}: {encoder.frames_written} of {chunk.frame_count} "
                "frames were written"
            )
        encoder.close()
        os.replace(tmp_path, out_path)
    except BaseException as exc:
        stop.set()
        decoder.join()
        writer.join()
        encoder.abort()
        with contextlib.suppress(OSError):  # never mask the error that got us here
            tmp_path.unlink(missing_ok=True)
        for stage in (decoder, writer):
            if stage.error is not None and not isinstance(exc, VsrError):
                raise stage.error from exc
        raise
    return ChunkResult(path=out_path, frames=done)


def _rgb_of(frame: DecodedFrame) -> np.ndarray:
    return frame.rgb
