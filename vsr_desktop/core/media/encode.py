"""Encode upscaled RGB frames into a video-only file, keeping the source's timestamps.

Frames keep their source presentation timestamps (same time base), so variable frame rate
survives and chunk files line up end to end with no offset arithmetic at merge time.
"""

from __future__ import annotations

import contextlib
import errno
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from vsr_desktop.core.errors import DiskFullError, InputError, MediaError
from vsr_desktop.core.media.probe import ColorInfo


@dataclass(frozen=True)
class CodecProfile:
    """How one user-facing codec name maps onto an FFmpeg encoder."""

    encoder: str
    pix_fmt_8bit: str
    pix_fmt_10bit: str
    default_crf: int | None
    default_preset: str | None
    default_container: str


CODECS: dict[str, CodecProfile] = {
    "h264": CodecProfile("libx264", "yuv420p", "yuv420p10le", 18, "medium", "mp4"),
    "h265": CodecProfile("libx265", "yuv420p", "yuv420p10le", 20, "medium", "mp4"),
    "av1": CodecProfile("libsvtav1", "yuv420p", "yuv420p10le", 28, "8", "mp4"),
    "prores": CodecProfile("prores_ks", "yuv422p10le", "yuv422p10le", None, None, "mov"),
    "vp9": CodecProfile("libvpx-vp9", "yuv420p", "yuv420p", 30, None, "webm"),
}

# Output suffix → FFmpeg muxer name.
CONTAINERS: dict[str, str] = {
    ".mp4": "mp4",
    ".m4v": "mp4",
    ".mov": "mov",
    ".mkv": "matroska",
    ".webm": "webm",
}

_CONTAINER_CODECS: dict[str, set[str]] = {
    "mp4": {"h264", "h265", "av1", "vp9"},
    "mov": {"h264", "h265", "prores"},
    "matroska": set(CODECS),
    "webm": {"vp9", "av1"},
}


@dataclass(frozen=True)
class EncodeSettings:
    """What the user chose for the output file."""

    codec: str = "h264"
    crf: int | None = None
    bitrate: int | None = None
    preset: str | None = None
    ten_bit: bool | None = None  # None: follow the source's bit depth
    extra_options: dict[str, str] = field(default_factory=dict)

    def profile(self) -> CodecProfile:
        try:
            return CODECS[self.codec]
        except KeyError:
            raise InputError(
                f"unknown codec {self.codec!r}", f"choose one of {', '.join(CODECS)}"
            ) from None

    def pix_fmt(self, source_bit_depth: int) -> str:
        profile = self.profile()
        ten = self.ten_bit if self.ten_bit is not None else source_bit_depth > 8
        return profile.pix_fmt_10bit if ten else profile.pix_fmt_8bit

    def codec_options(self) -> dict[str, str]:
        """Encoder private options: quality and speed, quiet logs."""
        profile = self.profile()
        options: dict[str, str] = {}
        crf = self.crf if self.crf is not None else profile.default_crf
        if self.bitrate is None and crf is not None:
            options["crf"] = str(crf)
            if profile.encoder == "libvpx-vp9":
                options["b"] = "0"
        preset = self.preset or profile.default_preset
        if preset is not None:
            options["preset"] = preset
        if profile.encoder == "libx265":
            options["x265-params"] = "log-level=error"
        if profile.encoder == "libvpx-vp9":
            options.setdefault("row-mt", "1")
            options.setdefault("deadline", "good")
            options.setdefault("cpu-used", "4")
        if profile.encoder == "prores_ks":
            options.setdefault("profile", "3")
        options.update(self.extra_options)
        return options


def container_for(path: Path) -> str:
    """The muxer for an output path, or a clear error for an unsupported suffix."""
    suffix = path.suffix.lower()
    if suffix not in CONTAINERS:
        raise InputError(
            f"unsupported output type {suffix or '(no suffix)'} for {path.name}",
            f"use one of {', '.join(sorted(CONTAINERS))}",
        )
    return CONTAINERS[suffix]


def check_codec_fits_container(codec: str, container: str) -> None:
    if codec not in _CONTAINER_CODECS.get(container, set(CODECS)):
        raise InputError(
            f"codec {codec} cannot be stored in a {container} file",
            "choose another output suffix (.mkv takes every codec)",
        )


def raise_for_os_error(exc: OSError, path: Path) -> None:
    """Turn disk-full into its own error so the user is told to free space."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        raise DiskFullError(
            f"the disk holding {path.parent} is full", "free some space, then resume the job"
        ) from exc
    raise MediaError(f"cannot write {path}: {exc.strerror or exc}") from exc


class ChunkEncoder:
    """Write RGB frames with given timestamps to one video-only file."""

    def __init__(
        self,
        path: Path,
        settings: EncodeSettings,
        *,
        container_format: str,
        width: int,
        height: int,
        time_base: Fraction,
        rate: Fraction,
        source_bit_depth: int,
        color: ColorInfo,
        rotation: int = 0,
        threads: int = 0,
        pts_offset: int = 0,
    ) -> None:
        import av

        self.path = path
        # Chunks start their own timeline at 0: an mp4 edit list for a late start is stored
        # in the movie's 1/1000 timescale and would round the timestamps. Merge adds it back.
        self.pts_offset = pts_offset
        self._rgb_format = "rgb48le" if source_bit_depth > 8 else "rgb24"
        self._color = color
        self._pix_fmt = settings.pix_fmt(source_bit_depth)
        self.frames_written = 0
        profile = settings.profile()
        try:
            self._container: Any = av.open(str(path), "w", format=container_format)
            stream: Any = self._container.add_stream(
                profile.encoder, rate=rate, options=settings.codec_options()
            )
        except av.FFmpegError as exc:
            raise MediaError(f"cannot start the {settings.codec} encoder: {exc}") from exc
        except OSError as exc:
            raise_for_os_error(exc, path)
        stream.width = width
        stream.height = height
        stream.pix_fmt = self._pix_fmt
        stream.time_base = time_base
        ctx = stream.codec_context
        ctx.time_base = time_base
        ctx.framerate = rate
        if threads:
            ctx.thread_count = threads
        ctx.color_primaries = color.primaries
        ctx.color_trc = color.trc
        ctx.colorspace = color.space
        ctx.color_range = color.range or 1  # limited range unless the source was full
        if settings.bitrate is not None:
            ctx.bit_rate = settings.bitrate
        if rotation:
            stream.set_display_rotation(rotation)
        self._stream = stream

    def write(self, pts: int, rgb: np.ndarray) -> None:
        """Encode one frame at the source timestamp `pts`."""
        import av

        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format=self._rgb_format)
        space = self._color.space if self._color.space not in (0, 2) else None
        frame = frame.reformat(
            format=self._pix_fmt,
            dst_colorspace=space,
            dst_color_range=self._color.range or 1,
        )
        frame.pts = pts - self.pts_offset
        frame.time_base = self._stream.codec_context.time_base
        self._mux(self._stream.encode(frame))
        self.frames_written += 1

    def close(self) -> None:
        """Flush the encoder and finish the file."""
        self._mux(self._stream.encode(None))
        try:
            self._container.close()
        except OSError as exc:
            raise_for_os_error(exc, self.path)

    def abort(self) -> None:
        """Close without flushing; the caller deletes the partial file."""
        with contextlib.suppress(Exception):
            self._container.close()

    def _mux(self, packets: Any) -> None:
        import av

        try:
            self._container.mux(packets)
        except OSError as exc:
            raise_for_os_error(exc, self.path)
        except av.FFmpegError as exc:
            raise MediaError(f"encoding {self.path.name} failed: {exc}") from exc
