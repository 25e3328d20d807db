"""Probe a video file: what the plan, the decoder and the muxer need to know up front.

Frame count, timestamps and keyframes come from demuxing packets (no decoding), so a probe
of a long file costs seconds, and the counts are exact even when the header lies.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from vsr_desktop.core.errors import InputError, MediaError
from vsr_desktop.core.media.alpha import stream_has_alpha
from vsr_desktop.core.media.color_tags import hdr_fields


@dataclass(frozen=True)
class ColorInfo:
    """Colour metadata as FFmpeg enum values (kept so the output is tagged like the source)."""

    primaries: int = 2
    trc: int = 2
    space: int = 2
    range: int = 0
    #: HDR10 side data of the first frame in x265's syntax (core.media.color_tags), or None.
    master_display: str | None = None
    max_cll: str | None = None


@dataclass(frozen=True)
class StreamInfo:
    """An audio or subtitle stream that is copied to the output untouched."""

    index: int
    kind: str
    codec: str
    language: str | None = None
    sample_rate: int | None = None
    channels: int | None = None
    title: str | None = None
    #: Disposition flag names (default, forced, comment, hearing_impaired …), as FFmpeg names them.
    dispositions: tuple[str, ...] = ()


#: Frame rates cameras and editors use; a source whose header lies is snapped to one of these.
_COMMON_RATES = tuple(
    Fraction(n, d)
    for n, d in (
        (24000, 1001),
        (24, 1),
        (25, 1),
        (30000, 1001),
        (30, 1),
        (48, 1),
        (50, 1),
        (60000, 1001),
        (60, 1),
        (120, 1),
        (100, 1),
        (15, 1),
        (12, 1),
        (10, 1),
        (8, 1),
        (16, 1),
        (18, 1),
        (20, 1),
        (48000, 1001),
        (120000, 1001),
        (144, 1),
        (240, 1),
    )
)


@dataclass(frozen=True)
class VideoInfo:
    """The first video stream, with the exact presentation timestamps of every frame."""

    index: int
    codec: str
    width: int
    height: int
    pix_fmt: str
    bit_depth: int
    time_base: Fraction
    average_rate: Fraction
    frame_pts: tuple[int, ...]
    keyframe_pts: tuple[int, ...]
    rotation: int = 0
    color: ColorInfo = field(default_factory=ColorInfo)
    #: Pixel aspect (None: square or unknown); the output keeps the display aspect it gives.
    sample_aspect_ratio: Fraction | None = None
    #: The stream's declared base rate (FFmpeg's r_frame_rate), a hint for header_rate().
    base_rate: Fraction | None = None
    #: An alpha plane (transparency) in the pixels, or VP8/VP9 alpha (core.media.alpha).
    has_alpha: bool = False
    #: Frames before the first decodable picture (a stream cut mid-GOP), left out as a
    #: player leaves them out.
    leading_dropped: int = 0
    #: Field order of an interlaced source ("tff"/"bff"), None when progressive.
    interlaced: str | None = None

    @property
    def frame_count(self) -> int:
        return len(self.frame_pts)

    @property
    def duration_seconds(self) -> float:
        """Presentation span including the last frame's duration."""
        if not self.frame_pts:
            return 0.0
        last = self.frame_pts[-1] - self.frame_pts[0]
        return float(last * self.time_base) + self.frame_duration_seconds

    @property
    def frame_duration_seconds(self) -> float:
        """Typical (median) frame interval; containers disagree on average rates."""
        if len(self.frame_pts) >= 2:
            deltas = sorted(b - a for a, b in zip(self.frame_pts, self.frame_pts[1:], strict=False))
            return float(deltas[len(deltas) // 2] * self.time_base)
        if self.average_rate:
            return float(1 / self.average_rate)
        return 0.0

    @property
    def is_variable_frame_rate(self) -> bool:
        """True when frame intervals differ by more than one tick (VFR footage, phone clips)."""
        if len(self.frame_pts) < 3:
            return False
        deltas = {b - a for a, b in zip(self.frame_pts, self.frame_pts[1:], strict=False)}
        return max(deltas) - min(deltas) > 1

    def header_rate(self) -> Fraction:
        """The frame rate to declare in the output's headers.

        The source's declared rate when its timestamps agree with it (CFR), else the nearest
        common rate they agree with, else their measured average (VFR): a muxer that is given
        no rate, or the time base's, tells players "1000 fps".
        """
        declared = [r for r in (self.average_rate, self.base_rate) if r and 0 < r <= 1000]
        if len(self.frame_pts) < 2:
            return declared[0] if declared else Fraction(25)
        intervals = len(self.frame_pts) - 1
        span = (self.frame_pts[-1] - self.frame_pts[0]) * self.time_base
        if span <= 0:
            return declared[0] if declared else Fraction(25)

        def error(rate: Fraction) -> Fraction:
            return abs(intervals / rate - span)

        # Timestamps rounded to the time base put first and last frame off by a tick at most.
        tolerance = self.time_base + Fraction(1, 1_000_000)
        for rate in declared:
            if error(rate) <= tolerance:
                return rate
        closest = min(_COMMON_RATES, key=error)
        if not self.is_variable_frame_rate and error(closest) <= tolerance:
            return closest
        return (intervals / span).limit_denominator(1001)

    def pts_to_seconds(self, pts: int) -> float:
        return float((pts - self.frame_pts[0]) * self.time_base) if self.frame_pts else 0.0


@dataclass(frozen=True)
class MediaInfo:
    """Everything known about a source file after probing."""

    path: Path
    container: str
    size_bytes: int
    video: VideoInfo
    audio: tuple[StreamInfo, ...] = ()
    subtitles: tuple[StreamInfo, ...] = ()
    data_streams: int = 0
    #: Start timecode (HH:MM:SS:FF) from a QuickTime tmcd track or a container/stream tag.
    timecode: str | None = None
    chapters: int = 0
    #: Matroska attachments (fonts for styled subtitles, cover images).
    attachments: int = 0
    #: Where a player starts presenting, in seconds of the source's timeline: the earliest
    #: first shown frame or sample of the video and the copied streams. The output is shifted
    #: so this becomes 0 (a TS recorded mid-broadcast starts at 1.43 s, say). Never negative.
    start_seconds: Fraction = Fraction(0)
    #: Why frames the file promises cannot all be read (truncated, damaged), or None.
    damage: str | None = None

    @property
    def copied_streams(self) -> tuple[StreamInfo, ...]:
        return self.audio + self.subtitles


def bit_depth_of(pix_fmt: str) -> int:
    """Bits per component of a pixel format name (yuv420p10le → 10)."""
    import av

    try:
        fmt = av.VideoFormat(pix_fmt)
    except (ValueError, av.FFmpegError):
        return 8
    bits = [c.bits for c in fmt.components]
    return max(bits) if bits else 8


def _open_input(path: Path) -> Any:
    import av

    if not path.exists():
        raise InputError(f"{path} does not exist", "check the path and try again")
    if path.is_dir():
        raise InputError(f"{path} is a folder, not a video file", "choose a video file")
    if not os.access(path, os.R_OK):
        raise InputError(f"{path} cannot be read", "check the file's permissions")
    try:
        return av.open(str(path))
    except av.FFmpegError as exc:
        raise MediaError(
            f"{path.name} is not a video FFmpeg can read ({exc.__class__.__name__})",
            "choose a video file (mp4, mkv, mov, webm, avi…)",
        ) from exc


def probe(path: Path | str) -> MediaInfo:
    """Read stream layout, exact frame timestamps and keyframes of a video file."""
    import av

    path = Path(path)
    _check_frame_fits(path)
    container = _open_input(path)
    with container:
        videos = [s for s in container.streams if s.type == "video"]
        # Cover art is a single attached picture, not footage.
        videos = [s for s in videos if not (s.disposition & av.stream.Disposition.attached_pic)]
        if not videos:
            raise MediaError(f"{path.name} has no video stream", "choose a video file")
        vstream = videos[0]
        ctx = vstream.codec_context
        audio = tuple(_stream_info(s, "audio") for s in container.streams.audio)
        subtitles = tuple(_stream_info(s, "subtitle") for s in container.streams.subtitles)
        timecode = find_timecode(container, vstream)
        chapters = len(container.chapters())
        attachments = len(container.streams.attachments)
        scan = _scan_packets(container, vstream)
        rotation, color, first_shown = _first_frame_metadata(path, vstream.index)
        frame_pts, keyframe_pts, leading = _from_first_shown(scan, first_shown)
        pix_fmt = ctx.format.name if ctx.format is not None else "yuv420p"
        rate = vstream.average_rate or vstream.guessed_rate or Fraction(25)
        if not frame_pts:
            raise MediaError(f"{path.name} contains no video frames", "the file may be truncated")
        time_base = Fraction(vstream.time_base)
        return MediaInfo(
            path=path,
            container=container.format.name,
            size_bytes=path.stat().st_size,
            video=VideoInfo(
                index=vstream.index,
                codec=ctx.name,
                width=ctx.width,
                height=ctx.height,
                pix_fmt=pix_fmt,
                bit_depth=bit_depth_of(pix_fmt),
                time_base=time_base,
                average_rate=Fraction(rate),
                frame_pts=tuple(frame_pts),
                keyframe_pts=tuple(keyframe_pts),
                rotation=rotation,
                color=color,
                sample_aspect_ratio=_sample_aspect_ratio(vstream),
                base_rate=Fraction(vstream.base_rate) if vstream.base_rate else None,
                has_alpha=stream_has_alpha(pix_fmt, ctx.name, vstream.metadata),
                leading_dropped=leading,
                interlaced=_field_order(path, vstream.index),
            ),
            audio=audio,
            subtitles=subtitles,
            data_streams=len(container.streams.data),
            timecode=timecode,
            chapters=chapters,
            attachments=attachments,
            start_seconds=_presentation_start(
                frame_pts[0] * time_base, [*container.streams.audio, *container.streams.subtitles]
            ),
            damage=_damage_of(scan, int(vstream.frames or 0), path),
        )


def _check_frame_fits(path: Path) -> None:
    """Refuse a file whose one frame cannot be decoded here (a 16000x16000 picture in a
    1.5 MB file) before FFmpeg's stream probing or the colour-tag decode touches it."""
    from vsr_desktop.core.memory_guard import check_decode_memory, frame_size_from_header

    if not path.is_file():
        return  # _open_input says why
    size = frame_size_from_header(path)
    if size is not None:
        check_decode_memory(*size)


def _presentation_start(video_start: Fraction, others: list[Any]) -> Fraction:
    """The earliest start of the shown video and the other streams, clamped at 0: a source
    that already starts at or before 0 (AAC priming, edit lists) is left as it is."""
    starts = [video_start]
    for stream in others:
        if stream.start_time is not None and stream.time_base is not None:
            starts.append(stream.start_time * Fraction(stream.time_base))
    return max(Fraction(0), min(starts))


def _damage_of(scan: _PacketScan, promised: int, path: Path) -> str | None:
    """A read error mid-file, or fewer packets than the header promises (a cut-off MP4)."""
    if scan.error is not None:
        stopped = f"reading stopped after {scan.packets} frames"
        return f"{path.name} is damaged: {stopped} ({scan.error})"
    if promised > scan.packets:
        return (
            f"{path.name} is truncated: its header promises {promised} frames, "
            f"{scan.packets} can be read"
        )
    return None


def _field_order(path: Path, stream_index: int) -> str | None:
    """Interlaced or not (see core.media.deinterlace, which owns the detection)."""
    from vsr_desktop.core.media.deinterlace import detect_field_order

    return detect_field_order(path, stream_index)


def _sample_aspect_ratio(vstream: Any) -> Fraction | None:
    """The pixel aspect, None when square or unknown (0:1 in FFmpeg)."""
    sar = vstream.codec_context.sample_aspect_ratio or vstream.sample_aspect_ratio
    if not sar or sar == 1:
        return None
    return Fraction(sar)


def metadata_value(metadata: dict[str, str], key: str) -> str | None:
    """A tag by name, whatever its case (Matroska writes TITLE, MP4 title)."""
    key = key.lower()
    for name, value in metadata.items():
        if name.lower() == key and value:
            return value
    return None


def disposition_names(stream: Any) -> tuple[str, ...]:
    """The stream's disposition flags by FFmpeg's names, in FFmpeg's order."""
    import av

    flags = stream.disposition
    return tuple(
        name
        for name, member in av.stream.Disposition.__members__.items()
        if member.value and flags & member
    )


def _stream_info(stream: Any, kind: str) -> StreamInfo:
    ctx = stream.codec_context
    return StreamInfo(
        index=stream.index,
        kind=kind,
        codec=codec_name(stream),
        language=stream.language,
        sample_rate=ctx.sample_rate if kind == "audio" else None,
        channels=ctx.channels if kind == "audio" else None,
        title=metadata_value(stream.metadata, "title"),
        dispositions=disposition_names(stream),
    )


def codec_name(stream: Any) -> str:
    """The codec's own name as ffprobe prints it (subrip, not the decoder's "srt")."""
    ctx = stream.codec_context
    if ctx is None:
        return "unknown"
    return str(ctx.codec.canonical_name or ctx.name)


def find_timecode(container: Any, vstream: Any) -> str | None:
    """The start timecode: the video stream's tag (MOV exports its tmcd track there), a tmcd
    data stream's, then the container's (Matroska, MXF)."""
    for metadata in (
        vstream.metadata,
        *(s.metadata for s in container.streams.data),
        container.metadata,
    ):
        value = metadata_value(metadata, "timecode")
        if value:
            return value
    return None


@dataclass
class _PacketScan:
    """The video packets as the demuxer gives them: shown timestamps (edit-list discards
    left out) and keyframes, plus how many packets it read and why it stopped early."""

    pts: list[int]
    keys: list[int]
    packets: int = 0
    error: str | None = None


def _scan_packets(container: Any, vstream: Any) -> _PacketScan:
    """Collect presentation timestamps (sorted) and keyframe timestamps of the video stream."""
    import av

    scan = _PacketScan([], [])
    try:
        for packet in container.demux(vstream):
            if packet.size == 0:
                continue
            scan.packets += 1
            if packet.is_discard:
                continue  # before an edit list's start: decoded for reference, never shown
            stamp = packet.pts if packet.pts is not None else packet.dts
            if stamp is None:
                continue
            scan.pts.append(stamp)
            if packet.is_keyframe:
                scan.keys.append(stamp)
    except av.FFmpegError as exc:
        scan.error = str(exc)
    scan.pts.sort()
    scan.keys.sort()
    return scan


def _from_first_shown(
    scan: _PacketScan, first_shown: int | None
) -> tuple[list[int], list[int], int]:
    """Frames from the first one the decoder gives: those before it (a stream cut mid-GOP
    has no reference for them) are dropped, as a player drops them, and counted."""
    pts, keys = scan.pts, scan.keys
    leading = 0
    if first_shown is not None:
        kept = [p for p in pts if p >= first_shown]
        leading = len(pts) - len(kept)
        pts = kept
        keys = [k for k in keys if k >= first_shown]
    if pts and (not keys or keys[0] != pts[0]):
        # Decoding frame 0 always starts from the stream's beginning: it is a cut point.
        keys.insert(0, pts[0])
    return pts, keys, leading


def _first_frame_metadata(path: Path, stream_index: int) -> tuple[int, ColorInfo, int | None]:
    """Rotation and colour tags live on decoded frames in FFmpeg 7+; decode just one. Its
    timestamp is where a player starts showing the stream."""
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams[stream_index]
            frame: Any
            for frame in container.decode(stream):
                color = ColorInfo(
                    primaries=int(frame.color_primaries),
                    trc=int(frame.color_trc),
                    space=int(frame.colorspace),
                    range=int(frame.color_range),
                    **hdr_fields(frame),
                )
                return int(frame.rotation or 0), color, frame.pts
    except av.FFmpegError as exc:
        raise MediaError(
            f"{path.name} could not be decoded ({exc})", "the file may be corrupt or truncated"
        ) from exc
    raise MediaError(f"{path.name} has no decodable video frame", "the file may be truncated")


def media_info_to_json(info: MediaInfo) -> str:
    """Serialise a probe so remote workers need not demux the whole source again."""
    import json

    def fraction(value: Fraction | None) -> list[int] | None:
        return None if value is None else [value.numerator, value.denominator]

    video = info.video
    data = {
        "path": str(info.path),
        "container": info.container,
        "size_bytes": info.size_bytes,
        "data_streams": info.data_streams,
        "timecode": info.timecode,
        "chapters": info.chapters,
        "attachments": info.attachments,
        "start_seconds": fraction(info.start_seconds),
        "damage": info.damage,
        "audio": [vars(s) for s in info.audio],
        "subtitles": [vars(s) for s in info.subtitles],
        "video": {
            **{
                k: getattr(video, k)
                for k in (
                    "index",
                    "codec",
                    "width",
                    "height",
                    "pix_fmt",
                    "bit_depth",
                    "rotation",
                    "leading_dropped",
                    "interlaced",
                    "has_alpha",
                )
            },
            "time_base": fraction(video.time_base),
            "average_rate": fraction(video.average_rate),
            "sample_aspect_ratio": fraction(video.sample_aspect_ratio),
            "base_rate": fraction(video.base_rate),
            "frame_pts": list(video.frame_pts),
            "keyframe_pts": list(video.keyframe_pts),
            "color": vars(video.color),
        },
    }
    return json.dumps(data)


def media_info_from_json(text: str) -> MediaInfo:
    import json

    try:
        data = json.loads(text)
        v = dict(data["video"])
        v["time_base"] = Fraction(*v["time_base"])
        v["average_rate"] = Fraction(*v["average_rate"])
        sar = v.get("sample_aspect_ratio")
        v["sample_aspect_ratio"] = Fraction(*sar) if sar else None
        base = v.get("base_rate")
        v["base_rate"] = Fraction(*base) if base else None
        v["frame_pts"] = tuple(v["frame_pts"])
        v["keyframe_pts"] = tuple(v["keyframe_pts"])
        v["color"] = ColorInfo(**v["color"])
        return MediaInfo(
            path=Path(data["path"]),
            container=data["container"],
            size_bytes=int(data["size_bytes"]),
            video=VideoInfo(**v),
            audio=tuple(_stream_from_json(s) for s in data["audio"]),
            subtitles=tuple(_stream_from_json(s) for s in data["subtitles"]),
            data_streams=int(data["data_streams"]),
            timecode=data.get("timecode"),
            chapters=int(data.get("chapters", 0)),
            attachments=int(data.get("attachments", 0)),
            start_seconds=Fraction(*data.get("start_seconds") or (0, 1)),
            damage=data.get("damage"),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise MediaError(f"the saved probe is unreadable ({exc})", "plan the job again") from exc


def _stream_from_json(data: dict[str, Any]) -> StreamInfo:
    """A saved stream; probes saved before titles and dispositions were kept still load."""
    fields = dict(data)
    fields["dispositions"] = tuple(fields.get("dispositions", ()))
    return StreamInfo(**fields)
