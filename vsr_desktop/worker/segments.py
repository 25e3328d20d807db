"""Cut a source once into per-chunk segments and a side file, so no cloud task needs it all.

The split stage has the source; every other cloud task should not. Each chunk's video
packets (stream copy, no re-encode) become one small segment file that decodes on its own:
it starts at the chunk's keyframe and keeps the source's exact timestamps in the source's
time base, so the chunk pipeline (worker/upscale_chunk.py) runs on it with the source's
MediaInfo and the plan's frame list unchanged; only the path differs. A container is used
only after its copy proved exact (the segment's packet timestamps are read back and must be
the chunk's frame_pts): MOV with the source's timescale for MP4/MOV, Matroska for
Matroska/WebM (milliseconds either way), MPEG-TS for TS; the others are tried in turn.

The side file is what the merge copies besides the picture (core/media/mux.py): the source
remuxed by its own muxer with every audio, subtitle and attachment stream, the tags
and chapters, and the video stream holding only its first packet (the merge reads that
stream's tags and disposition, never its picture). Stream indices may differ from the
source's; `side_media` maps them so merge_chunks gets a MediaInfo that fits the file.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

from vsr_desktop.core.errors import CancelledError, MediaError
from vsr_desktop.core.media.probe import MediaInfo
from vsr_desktop.core.plan import Plan


@dataclass(frozen=True)
class SegmentFormat:
    """A container a segment can be written in."""

    muxer: str
    suffix: str

    def options(self, time_base: Fraction) -> dict[str, str]:
        """MOV rounds an unset timescale up past 10 000 (1/25 → 1/12800): keep the source's."""
        if self.muxer == "mov" and time_base.numerator == 1:
            return {"video_track_timescale": str(time_base.denominator)}
        return {}


MOV = SegmentFormat("mov", ".mov")
MATROSKA = SegmentFormat("matroska", ".mkv")
MPEGTS = SegmentFormat("mpegts", ".ts")
NUT = SegmentFormat("nut", ".nut")
_ALL = (MOV, MATROSKA, MPEGTS, NUT)


def segment_formats(container: str) -> list[SegmentFormat]:
    """The containers to try for a source demuxed as `container`, likeliest exact first."""
    first = MPEGTS if "mpegts" in container else MATROSKA if "matroska" in container else MOV
    return [first, *(f for f in _ALL if f != first)]


class InexactSegmentError(MediaError):
    """A segment's timestamps are not the chunk's: that container cannot keep them."""


def cut_segments(
    media: MediaInfo,
    plan: Plan,
    folder: Path,
    on_segment: Callable[[int, Path], None],
    cancel: threading.Event | None = None,
) -> SegmentFormat:
    """Write one segment per chunk into `folder` in one pass over the source; each goes to
    `on_segment(index, path)` as soon as it is complete and checked (the S3 split uploads and
    deletes it, so the disk holds the source and one segment). Returns the format used;
    MediaError when no container keeps the timestamps exactly."""
    tried: list[str] = []
    for fmt in segment_formats(media.container):
        try:
            _cut(media, plan, folder, fmt, on_segment, cancel)
            return fmt
        except InexactSegmentError as exc:
            tried.append(f"{fmt.muxer}: {exc}")
    raise MediaError(
        "no container keeps this source's timestamps in a segment (" + "; ".join(tried) + ")",
        "the chunks read the whole source instead",
    )


def segment_path(folder: Path, index: int, fmt: SegmentFormat) -> Path:
    return folder / f"segment_{index:05d}{fmt.suffix}"


class _Writer:
    """One segment being written: its container and the shown timestamps it holds."""

    def __init__(self, path: Path, fmt: SegmentFormat, template: Any) -> None:
        import av

        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        time_base = Fraction(template.time_base)
        self.out = av.open(str(path), "w", format=fmt.muxer, options=fmt.options(time_base))
        self.stream = self.out.add_stream_from_template(template)
        self.stream.time_base = template.time_base

    def write(self, packet: Any) -> None:
        packet.stream = self.stream
        self.out.mux(packet)

    def close(self) -> None:
        self.out.close()


def _copy(packet: Any) -> Any:
    """A second packet with the same data and timing (muxing consumes a packet's data)."""
    import av

    twin = av.Packet(bytes(packet))
    twin.pts, twin.dts, twin.time_base = packet.pts, packet.dts, packet.time_base
    twin.is_keyframe = packet.is_keyframe
    return twin


def _cut(
    media: MediaInfo,
    plan: Plan,
    folder: Path,
    fmt: SegmentFormat,
    on_segment: Callable[[int, Path], None],
    cancel: threading.Event | None,
) -> None:
    """The single pass: packets in decode order from each chunk's keyframe to the next's.

    Chunk 0 takes everything before its first frame too (references the source decodes from
    the top). An open GOP's leading pictures (after the next keyframe in decode order, shown
    before it) stay with the chunk that shows them, with a copy of that keyframe they
    reference; the decoder stops at the chunk's end, so the extra frame is never used.
    A trimmed plan (core/trim.py) starts at the keyframe at or before its first frame and
    stops after the first keyframe past its last one (and that keyframe's leading pictures).
    """
    import av

    starts = [c.start_pts for c in plan.chunks]
    begin, stop = _trimmed_bounds(media, plan)
    with av.open(str(media.path)) as src:
        stream: Any = src.streams[media.video.index]
        current = _Writer(segment_path(folder, 0, fmt), fmt, stream)
        index = 0
        previous: _Writer | None = None  # the chunk before, open while leading pictures come
        key_copy: Any = None
        stopping_at: int | None = None  # the keyframe past a trimmed plan's end, once seen
        try:
            for count, packet in enumerate(src.demux(stream)):
                if cancel is not None and count % 64 == 0 and cancel.is_set():
                    raise CancelledError("cancelled while cutting segments")
                if packet.size == 0:
                    continue
                pts = packet.pts if packet.pts is not None else packet.dts
                if begin is not None:  # before a trimmed plan's keyframe: not needed
                    if not (packet.is_keyframe and pts == begin):
                        continue
                    begin = None
                if stopping_at is not None:  # only that keyframe's leading pictures still
                    if pts is None or pts >= stopping_at:
                        break
                    current.write(packet)
                    continue
                if (
                    stop is not None
                    and index == len(starts) - 1
                    and previous is None
                    and packet.is_keyframe
                    and pts is not None
                    and pts >= stop
                ):
                    stopping_at = pts
                    current.write(packet)
                    continue
                nxt = index + 1
                if nxt < len(starts) and packet.is_keyframe and pts == starts[nxt]:
                    if previous is not None:
                        _finish(previous, plan, media, index - 1, on_segment)
                    previous = current
                    current = _Writer(segment_path(folder, nxt, fmt), fmt, stream)
                    index = nxt
                    key_copy = _copy(packet)
                    current.write(packet)
                    continue
                if previous is not None and pts is not None and pts < starts[index]:
                    if key_copy is not None:  # a leading picture: it needs the keyframe
                        previous.write(key_copy)
                        key_copy = None
                    previous.write(packet)
                    continue
                if previous is not None:
                    _finish(previous, plan, media, index - 1, on_segment)
                    previous, key_copy = None, None
                current.write(packet)
            if previous is not None:
                _finish(previous, plan, media, index - 1, on_segment)
                previous = None
            _finish(current, plan, media, index, on_segment)
        except BaseException:
            for writer in (previous, current):
                if writer is not None:
                    _close_quietly(writer)
            raise
    if index != len(starts) - 1:
        raise MediaError(
            f"the source has no keyframe at chunk {index + 1}'s start",
            "the source changed since the plan; submit the job again",
        )


def _trimmed_bounds(media: MediaInfo, plan: Plan) -> tuple[int | None, int | None]:
    """(the keyframe a trimmed plan's first segment starts at, the pts its last frame is
    followed by); None for each side that is not trimmed."""
    frame_pts = media.video.frame_pts
    first, end = plan.chunks[0].start_frame, plan.chunks[-1].end_frame
    begin = None
    if first > 0:
        before = [k for k in media.video.keyframe_pts if k <= frame_pts[first]]
        begin = max(before) if before else None
    return begin, frame_pts[end] if end < len(frame_pts) else None


def _finish(
    writer: _Writer,
    plan: Plan,
    media: MediaInfo,
    index: int,
    on_segment: Callable[[int, Path], None],
) -> None:
    writer.close()
    check_segment(writer.path, media, plan, index)
    on_segment(index, writer.path)


def _close_quietly(writer: _Writer) -> None:
    with contextlib.suppress(Exception):  # already failing: the first error is the one to tell
        writer.out.close()
    writer.path.unlink(missing_ok=True)


def chunk_range(media: MediaInfo, plan: Plan, index: int) -> tuple[int, int | None]:
    """[start_pts, end_pts) of chunk `index` (None: to the end)."""
    chunk = plan.chunks[index]
    frame_pts = media.video.frame_pts
    end = frame_pts[chunk.end_frame] if chunk.end_frame < len(frame_pts) else None
    return chunk.start_pts, end


def check_segment(path: Path, media: MediaInfo, plan: Plan, index: int) -> None:
    """The segment's shown timestamps inside the chunk's range must be the chunk's frame_pts,
    read back from the file (InexactSegmentError otherwise)."""
    import av

    chunk = plan.chunks[index]
    start, end = chunk_range(media, plan, index)
    want = list(media.video.frame_pts[chunk.start_frame : chunk.end_frame])
    with av.open(str(path)) as seg:
        stream = seg.streams.video[0]
        found = sorted(
            p.pts for p in seg.demux(stream) if p.size and p.pts is not None and not p.is_discard
        )
    inside = [p for p in found if p >= start and (end is None or p < end)]
    if inside != want:
        raise InexactSegmentError(
            f"chunk {index}: {len(inside)} of {len(want)} frame timestamps kept"
        )


@dataclass(frozen=True)
class SideFile:
    """The side file and, for each source stream it holds, its index there."""

    path: Path
    indices: dict[int, int]


def side_format(media: MediaInfo, suffix: str) -> tuple[str, str]:
    """(muxer, suffix) for the side file: the source's own container holds its streams."""
    name = media.container
    if "mp4" in name or "mov" in name:
        return ("mov", ".mov") if suffix.lower() == ".mov" else ("mp4", ".mp4")
    if "matroska" in name:
        return "matroska", ".mkv"
    if "mpegts" in name:
        return "mpegts", ".ts"
    return "matroska", ".mkv"


def write_side_file(media: MediaInfo, stem: Path, source_suffix: str) -> SideFile:
    """Write `<stem><suffix>`: the source without its picture (see the module docstring).

    MediaError when an audio or subtitle stream cannot be copied: the merge would lose it,
    so the caller falls back to the source instead."""
    import av

    muxer, suffix = side_format(media, source_suffix)
    path = stem.with_name(stem.name + suffix)
    path.parent.mkdir(parents=True, exist_ok=True)
    needed = {s.index for s in media.copied_streams}
    with av.open(str(media.path)) as src, av.open(str(path), "w", format=muxer) as out:
        out.metadata.update(dict(src.metadata))
        chapters = src.chapters()
        if chapters:
            out.set_chapters(chapters)
        indices: dict[int, int] = {}
        targets: dict[int, Any] = {}
        for stream in src.streams:
            if stream.type not in ("video", "audio", "subtitle", "attachment"):
                continue  # data (tmcd, telemetry): the merge never copies one
            if stream.type == "video" and stream.index != media.video.index:
                continue  # cover art and the like: the merge does not copy them
            try:
                target = out.add_stream_from_template(stream)
            except (av.FFmpegError, ValueError) as exc:
                if stream.index in needed or stream.index == media.video.index:
                    raise MediaError(
                        f"stream {stream.index} ({stream.type}) cannot go in a {muxer} side "
                        f"file ({exc})"
                    ) from exc
                continue
            if stream.type != "attachment":
                target.time_base = stream.time_base
            # A timecode tag makes MOV write a tmcd track the single packet cannot carry;
            # the merge takes the timecode from the MediaInfo (media.json) anyway.
            tags = {k: v for k, v in stream.metadata.items() if k.lower() != "timecode"}
            target.metadata.update(tags)
            target.disposition = stream.disposition
            indices[stream.index] = target.index
            targets[stream.index] = target
        copied = [src.streams[i] for i in targets if src.streams[i].type != "attachment"]
        video_done = False
        for packet in src.demux(copied):
            index = packet.stream.index
            if packet.size == 0 and packet.pts is None:
                continue
            if index == media.video.index:
                if video_done or not packet.size:
                    continue
                video_done = True  # the first packet only: the stream's header is kept
            packet.stream = targets[index]
            out.mux(packet)
    return SideFile(path, indices)


def side_media(media: MediaInfo, side: SideFile) -> MediaInfo:
    """The source's MediaInfo for the merge: the side file's path and stream indices."""
    return replace(
        media,
        path=side.path,
        video=replace(media.video, index=side.indices[media.video.index]),
        audio=tuple(replace(s, index=side.indices[s.index]) for s in media.audio),
        subtitles=tuple(replace(s, index=side.indices[s.index]) for s in media.subtitles),
    )


def segment_media(media: MediaInfo, path: Path) -> MediaInfo:
    """The source's MediaInfo for one chunk's task: every fact the same, the segment's path
    (its video is stream 0); the decoder seeks to the chunk's keyframe, the segment's first."""
    return replace(media, path=path, video=replace(media.video, index=0))
