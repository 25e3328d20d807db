"""Decode a range of frames as RGB arrays, by exact presentation timestamp.

A range starts on a keyframe (the plan guarantees it), so seeking there and dropping
anything earlier gives exactly the frames the plan counted, B-frames included.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vsr_desktop.core.errors import CancelledError, MediaError


@dataclass(frozen=True)
class DecodedFrame:
    """One source frame: its presentation timestamp and its RGB pixels (uint8 or uint16)."""

    pts: int
    rgb: np.ndarray


def rgb_format_for(bit_depth: int) -> str:
    """8-bit sources decode to rgb24; deeper ones to rgb48 so no precision is lost."""
    return "rgb48le" if bit_depth > 8 else "rgb24"


def frame_to_rgb(frame: Any, rgb_format: str) -> np.ndarray:
    """Convert a decoded frame with its own colour matrix and range (not swscale's guess)."""
    converted = frame.reformat(
        format=rgb_format,
        src_color_range=frame.color_range or None,
    )
    return converted.to_ndarray()


def iter_frames(
    path: Path | str,
    stream_index: int,
    start_pts: int,
    count: int,
    *,
    bit_depth: int = 8,
    first_pts: int | None = None,
    cancel: threading.Event | None = None,
) -> Iterator[DecodedFrame]:
    """Yield `count` frames starting at `start_pts` (presentation order)."""
    import av

    rgb_format = rgb_format_for(bit_depth)
    produced = 0
    try:
        with av.open(str(path)) as container:
            stream: Any = container.streams[stream_index]
            stream.thread_type = "AUTO"
            if first_pts is None or start_pts != first_pts:
                container.seek(start_pts, stream=stream, backward=True, any_frame=False)
            for frame in container.decode(stream):
                if cancel is not None and cancel.is_set():
                    raise CancelledError("cancelled while decoding")
                pts = frame.pts
                if pts is None or pts < start_pts:
                    continue
                yield DecodedFrame(pts=pts, rgb=frame_to_rgb(frame, rgb_format))
                produced += 1
                if produced >= count:
                    return
    except av.FFmpegError as exc:
        raise MediaError(
            f"{Path(path).name}: decoding failed after {produced} of {count} frames ({exc})",
            "the file may be corrupt or truncated; re-export it",
        ) from exc
    if produced < count:
        raise MediaError(
            f"{Path(path).name}: expected {count} frames from pts {start_pts}, decoded {produced}",
            "the file may be truncated or have broken timestamps",
        )


def read_frame(path: Path | str, stream_index: int, pts: int, bit_depth: int = 8) -> np.ndarray:
    """Decode the single frame at `pts` (the preview's "before")."""
    import av

    rgb_format = rgb_format_for(bit_depth)
    try:
        with av.open(str(path)) as container:
            stream = container.streams[stream_index]
            container.seek(pts, stream=stream, backward=True, any_frame=False)
            for frame in container.decode(stream):
                if frame.pts is not None and frame.pts >= pts:
                    return frame_to_rgb(frame, rgb_format)
    except av.FFmpegError as exc:
        raise MediaError(f"{Path(path).name}: cannot decode frame at {pts} ({exc})") from exc
    raise MediaError(f"{Path(path).name}: no frame at timestamp {pts}")
