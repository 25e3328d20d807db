"""Decode a range of frames as RGB arrays, by exact presentation timestamp.

A range starts on a keyframe (the plan guarantees it), so seeking there and dropping
anything earlier gives exactly the frames the plan counted, B-frames included. A frame the
probe listed but the decoder cannot give (damaged data) is filled and counted, never lost
silently: the job decides whether that is allowed (`--allow-damaged`).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from vsr_desktop.core.colour_convert import YuvPlanes, planes_of, planes_wanted
from vsr_desktop.core.errors import CancelledError, MediaError
from vsr_desktop.core.hardware_codecs import hardware_decode_frames
from vsr_desktop.core.media.alpha import decode_frames, rgba_format_for, split_rgba


class DecodedFrame:
    """One source frame: its presentation timestamp and its RGB pixels (uint8 or uint16).

    A GPU pipeline converts YUV on the device (core.colour_convert): then the decoder hands
    over the frame's planes (``yuv``) and converts to RGB here only if someone asks for
    ``rgb`` (a CPU engine, a 10-bit frame): the conversion runs once, on first access.
    """

    __slots__ = ("_convert", "_rgb", "alpha", "pts", "yuv")

    def __init__(
        self,
        pts: int,
        rgb: np.ndarray | None = None,
        alpha: np.ndarray | None = None,
        *,
        yuv: YuvPlanes | None = None,
        convert: Callable[[], np.ndarray] | None = None,
    ) -> None:
        if rgb is None and convert is None:
            raise ValueError("a DecodedFrame needs its pixels or a way to convert them")
        if rgb is not None and rgb.ndim == 3 and rgb.shape[2] == 4:  # decoded as RGBA: the
            rgb, alpha = split_rgba(rgb)  # model takes RGB, the alpha travels beside it
        self.pts = pts
        self._rgb = rgb
        #: The alpha plane when the source's alpha is kept (core.media.alpha), else None.
        self.alpha = alpha
        self.yuv = yuv
        self._convert = convert

    @property
    def rgb(self) -> np.ndarray:
        if self._rgb is None:
            assert self._convert is not None
            self._rgb, self._convert = self._convert(), None
        return self._rgb

    def repeated(self, pts: int) -> DecodedFrame:
        """The same picture at another timestamp (a damaged frame's stand-in)."""
        if self._rgb is not None:
            return DecodedFrame(pts, self._rgb, self.alpha)
        return DecodedFrame(pts, alpha=self.alpha, yuv=self.yuv, convert=lambda: self.rgb)


def rgb_format_for(bit_depth: int) -> str:
    """8-bit sources decode to rgb24; deeper ones to rgb48 so no precision is lost."""
    return "rgb48le" if bit_depth > 8 else "rgb24"


def frame_to_rgb(frame: Any, rgb_format: str) -> np.ndarray:
    """Convert a decoded frame with its own colour matrix and range (not swscale's guess);
    an untagged YUV frame with the matrix players assume for its size (color_tags)."""
    from vsr_desktop.core.media.color_tags import SPC_UNSPECIFIED, yuv_matrix_for

    space = None
    if int(frame.colorspace) == SPC_UNSPECIFIED and not frame.format.is_rgb:
        space = yuv_matrix_for(frame.width, frame.height)
    converted = frame.reformat(
        format=rgb_format,
        src_colorspace=space,
        src_color_range=frame.color_range or None,
    )
    return converted.to_ndarray()


@dataclass
class DecodeTally:
    """What a decode of one range found missing: frames the probe listed (their packets
    were read) that the decoder could not give, each replaced by its nearest neighbour."""

    missing: list[int] = field(default_factory=list)


def iter_frames(
    path: Path | str,
    stream_index: int,
    expected_pts: Sequence[int],
    *,
    end_pts: int | None = None,
    bit_depth: int = 8,
    first_pts: int | None = None,
    cancel: threading.Event | None = None,
    tally: DecodeTally | None = None,
    deinterlacer: Any = None,
    alpha: bool = False,
    planes: bool | None = None,
) -> Iterator[DecodedFrame]:
    """Yield one frame per timestamp of `expected_pts` (sorted, presentation order).

    Decoding starts at the keyframe at or before the first timestamp (no seek when it is
    the stream's `first_pts`) and stops at `end_pts` (the next range's first frame) or at
    the end of the stream. A listed frame the decoder did not give (damaged data) is filled
    with the previous decoded picture (the next one at the very start), so timestamps and
    counts stay whole, and is recorded in `tally`; a range with no decodable frame fails.
    With a `deinterlacer`, frames pass through it before conversion to RGB, and every
    timestamp here is on its output's time base (one frame per field at double rate).
    With `alpha`, each frame also carries its alpha plane (VP8/VP9 via libvpx).
    With `planes` (default: when a GPU pipeline asked, core.colour_convert), 8-bit 4:2:0
    frames carry their YUV planes and convert to RGB only if asked.
    """
    import av

    if not expected_pts:
        return
    rgb_format = rgba_format_for(bit_depth) if alpha else rgb_format_for(bit_depth)
    start_pts = expected_pts[0]
    produced = 0
    waiting = 0  # index into expected_pts of the next frame to give
    previous: DecodedFrame | None = None
    count = len(expected_pts)
    if planes is None:
        planes = planes_wanted()
    planes = planes and deinterlacer is None and not alpha and bit_depth <= 8

    def fill_until(pts: int | None, picture: DecodedFrame) -> Iterator[DecodedFrame]:
        nonlocal waiting
        while waiting < count and (pts is None or expected_pts[waiting] < pts):
            if tally is not None:
                tally.missing.append(expected_pts[waiting])
            yield picture.repeated(expected_pts[waiting])
            waiting += 1

    try:
        with contextlib.ExitStack() as resources:
            frames: Iterator[Any]
            if deinterlacer is not None:  # a deinterlace.FieldDecoder: timestamps are its output's
                # Its filter graph takes the stream's parameters from an open stream.
                container = resources.enter_context(av.open(str(path)))
                frames = deinterlacer.decode(
                    lambda pts, first: frames_from(path, stream_index, pts, first, alpha=alpha),
                    container.streams[stream_index],
                    start_pts,
                )
            else:
                frames = frames_from(path, stream_index, start_pts, first_pts, alpha=alpha)
            for frame in frames:
                if cancel is not None and cancel.is_set():
                    raise CancelledError("cancelled while decoding")
                pts = frame.pts
                if pts is None or pts < start_pts:
                    continue
                if end_pts is not None and pts >= end_pts:
                    break
                if waiting >= count or pts < expected_pts[waiting]:
                    continue  # a frame the probe did not list (a duplicate timestamp)
                decoded = _decoded(frame, rgb_format, planes)
                yield from fill_until(pts, decoded if previous is None else previous)
                if waiting < count and expected_pts[waiting] == pts:
                    yield decoded
                    waiting += 1
                    produced += 1
                previous = decoded
                if waiting >= count:
                    return
    except av.FFmpegError as exc:
        raise MediaError(
            f"{Path(path).name}: decoding failed after {produced} of {count} frames ({exc})",
            "the file may be corrupt or truncated; re-export it",
        ) from exc
    if previous is None:
        raise MediaError(
            f"{Path(path).name}: none of the {count} frames from pts {start_pts} could be decoded",
            "the file is damaged here; re-export or re-download it",
        )
    yield from fill_until(None, previous)


def _decoded(frame: Any, rgb_format: str, planes: bool) -> DecodedFrame:
    """A decoded frame as RGB now, or with planes a GPU converts (RGB then only on demand)."""
    if planes:
        from vsr_desktop.core.media.color_tags import SPC_UNSPECIFIED, yuv_matrix_for

        space = int(frame.colorspace)
        if space == SPC_UNSPECIFIED:
            space = yuv_matrix_for(frame.width, frame.height)
        yuv = planes_of(frame, space)
        if yuv is not None:
            return DecodedFrame(frame.pts, yuv=yuv, convert=lambda: frame_to_rgb(frame, rgb_format))
    return DecodedFrame(frame.pts, frame_to_rgb(frame, rgb_format))


#: How far before a wanted frame the first re-seek aims (doubled on each retry).
_RESEEK_SECONDS = 1.0
_RESEEKS = 6


def frames_from(
    path: Path | str,
    stream_index: int,
    start_pts: int,
    first_pts: int | None = None,
    *,
    alpha: bool = False,
) -> Iterator[Any]:
    """Decoded frames of one stream from a keyframe at or before `start_pts` (earlier
    frames included: the caller skips them).

    A seek in MPEG-TS (and some AVI/MPEG-PS) lands on a later keyframe than asked; taking
    frames from there would silently give the wrong pictures. So the first frame is checked,
    and an overshooting seek is retried further back, then decoding starts from the top.
    """
    import av

    margin = 0
    for attempt in range(_RESEEKS + 1):
        target = start_pts - margin
        from_top = attempt == _RESEEKS or (first_pts is not None and target <= first_pts)
        with av.open(str(path)) as container:
            stream: Any = container.streams[stream_index]
            stream.thread_type = "AUTO"
            if not from_top:
                container.seek(target, stream=stream, backward=True, any_frame=False)
            # --hwdecode: NVDEC where it opens (core.hardware_codecs), else the CPU's decoder.
            hardware = None if alpha else hardware_decode_frames(container, stream)
            source = hardware if hardware is not None else decode_frames(container, stream, alpha)
            decoded = (f for f in source if f.pts is not None)
            first = next(decoded, None)
            if first is None:
                if from_top:
                    return
            elif from_top or first.pts <= start_pts:
                yield first
                yield from decoded
                return
            seconds = _RESEEK_SECONDS * 2**attempt
            margin = max(margin + 1, round(seconds / Fraction(stream.time_base)))


def read_frame(path: Path | str, stream_index: int, pts: int, bit_depth: int = 8) -> np.ndarray:
    """Decode the single frame at `pts` (the preview's "before")."""
    import av

    rgb_format = rgb_format_for(bit_depth)
    try:
        for frame in frames_from(path, stream_index, pts):
            if frame.pts >= pts:
                return frame_to_rgb(frame, rgb_format)
    except av.FFmpegError as exc:
        raise MediaError(f"{Path(path).name}: cannot decode frame at {pts} ({exc})") from exc
    raise MediaError(f"{Path(path).name}: no frame at timestamp {pts}")
