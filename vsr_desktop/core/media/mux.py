"""Merge encoded chunks into the final file with everything of the source but the picture.

Audio is never cut per chunk: its packets are copied bit-exact from the source, with their
original timestamps, next to the concatenated video. That is what keeps long jobs in sync.
Track languages, titles and dispositions, chapters, global tags, the timecode and Matroska
attachments come along; a track the container cannot play is converted, with a note.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from vsr_desktop.core.errors import CancelledError, MediaError
from vsr_desktop.core.media.convert import AudioConverter, SubtitleConverter
from vsr_desktop.core.media.encode import EncodeSettings, raise_for_os_error
from vsr_desktop.core.media.geometry import output_sar
from vsr_desktop.core.media.probe import MediaInfo, metadata_value
from vsr_desktop.core.media.pyav_gaps import set_stream_sample_aspect_ratio
from vsr_desktop.core.media.tracks import (
    chapters_of,
    check_audio_codec,
    copyable_metadata,
    mov_language,
    plan_audio,
    plan_subtitle,
)

log = logging.getLogger(__name__)

#: A cancelled merge stops within this many packets (a few seconds of video at most).
_CANCEL_CHECK_PACKETS = 64

_MUXER_OPTIONS: dict[str, dict[str, str]] = {
    "mp4": {"movflags": "+faststart"},
    "mov": {"movflags": "+faststart"},
}


def _packet_seconds(packet: Any) -> float:
    stamp = packet.dts if packet.dts is not None else packet.pts
    if stamp is None or packet.time_base is None:
        return 0.0
    return float(stamp * packet.time_base)


def _video_packets(chunks: Sequence[ChunkFile]) -> Iterator[Any]:
    """Packets of every chunk in order, with strictly increasing dts across chunk seams."""
    import av

    last_dts: int | None = None
    for chunk in chunks:
        with av.open(str(chunk.path)) as container:
            stream: Any = container.streams.video[0]
            # Chunk timelines start at 0; bring them back to the source's timestamps.
            offset = round(chunk.pts_offset * chunk.source_time_base / stream.time_base)
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue
                if packet.pts is not None:
                    packet.pts += offset
                if packet.dts is not None:
                    packet.dts += offset
                if packet.dts is None and last_dts is not None:
                    packet.dts = last_dts + 1
                if packet.dts is not None and last_dts is not None and packet.dts <= last_dts:
                    # Encoders start each chunk's dts a few ticks early for B-frames; at a
                    # seam with irregular frame intervals that can touch the previous chunk.
                    packet.dts = last_dts + 1
                    if packet.pts is not None and packet.pts < packet.dts:
                        raise MediaError(
                            f"chunk {chunk.path.name} overlaps the one before it",
                            "delete the job's work folder and run it again",
                        )
                if packet.dts is not None:
                    last_dts = packet.dts
                yield packet


@dataclass(frozen=True)
class ChunkFile:
    """An encoded chunk and the source timestamp its timeline starts at."""

    path: Path
    pts_offset: int
    source_time_base: Fraction


@dataclass
class _Route:
    """Where one source stream's packets go: copied onto `stream`, or through `converter`."""

    stream: Any
    converter: AudioConverter | SubtitleConverter | None = None


def _side_packets(
    src: Any,
    routes: dict[int, _Route],
    start: Fraction = Fraction(0),
    priming: bool = True,
    keep: tuple[Fraction | None, Fraction | None] = (None, None),
) -> Iterator[tuple[Any, Any]]:
    """(packet, output stream) for every copied or converted stream, in one pass, moved back
    by `start` seconds like the video (the output starts at the source's presentation start).

    `keep` is a trimmed job's part of the source timeline (core/trim.py kept_window): only
    packets inside it go out, whole. One that starts before it and ends inside is kept only
    with `priming` (the MP4/MOV edit list hides its first part; in Matroska it would move
    the start), so the sound is never more than one audio frame longer than the picture."""
    if not routes:
        return
    if keep != (None, None):
        yield from _side_packets_within(src, routes, start, priming, keep)
        return
    # Before an edit list's start (a clip cut with `-c copy`) packets are marked discard: a
    # player never plays them. With `priming` (MP4/MOV, whose edit list hides it again) the
    # last one before the first played packet is copied, as AAC needs the frame before;
    # Matroska cannot hide it, so there none is: any would move the start.
    held: dict[int, Any] = {}
    for packet in src.demux([src.streams[i] for i in routes]):
        index = packet.stream.index
        route = routes[index]
        if route.converter is not None:
            if packet.size == 0:
                continue
            for converted in route.converter.convert(packet):
                yield _moved_back(converted, start), route.stream
        elif packet.is_discard and packet.size:
            held[index] = packet
        elif not (packet.size == 0 and packet.pts is None):
            primer = held.pop(index, None)
            if primer is not None and priming:
                yield _moved_back(primer, start), route.stream
            yield _moved_back(packet, start), route.stream
    for route in routes.values():
        if route.converter is not None:
            for converted in route.converter.convert(None):
                yield _moved_back(converted, start), route.stream


def _side_packets_within(
    src: Any,
    routes: dict[int, _Route],
    start: Fraction,
    priming: bool,
    keep: tuple[Fraction | None, Fraction | None],
) -> Iterator[tuple[Any, Any]]:
    """_side_packets for a trimmed job: the same packets, less those outside `keep`."""
    begin, end = keep
    for packet, target in _side_packets(src, routes, start, priming):
        stamp = packet.pts if packet.pts is not None else packet.dts
        if stamp is None or packet.time_base is None:
            continue
        at = (stamp * Fraction(packet.time_base)) + start  # back on the source's timeline
        if end is not None and at >= end:
            continue
        if begin is not None and at < begin:
            ends = at + (packet.duration or 0) * Fraction(packet.time_base)
            if not (priming and ends > begin):
                continue
        yield packet, target


def _moved_back(packet: Any, start: Fraction) -> Any:
    """The packet `start` seconds earlier (in its own time base)."""
    if start and packet.time_base is not None:
        shift = round(start / Fraction(packet.time_base))
        if packet.pts is not None:
            packet.pts -= shift
        if packet.dts is not None:
            packet.dts -= shift
    return packet


def _copy_tags(source_stream: Any, target: Any, container_format: str) -> None:
    """Language, title, handler name …, and the dispositions (default, forced, comment …)."""
    target.metadata.update(_stream_tags(source_stream, container_format))
    target.disposition = source_stream.disposition


def _stream_tags(source_stream: Any, container_format: str) -> dict[str, str]:
    """A stream's tags for the output, its title where that container keeps titles."""
    tags = copyable_metadata(source_stream.metadata)
    # MP4/MOV keep a track's title as its handler name (FFmpeg's muxer writes no other):
    # HandBrake, MP4Box and VLC write and show it there. Matroska has a real title.
    title = (
        metadata_value(tags, "title")
        or metadata_value(tags, "name")
        or metadata_value(tags, "handler_name")
    )
    if title:
        renamed = ("title", "name", "handler_name")
        tags = {k: v for k, v in tags.items() if k.lower() not in renamed}
        tags["handler_name" if container_format in ("mp4", "mov") else "title"] = title
    language = metadata_value(tags, "language")
    if language and container_format == "mov":  # its language table knows one form
        tags = {k: v for k, v in tags.items() if k.lower() != "language"}
        tags["language"] = mov_language(language)
    return tags


def _add_video(
    out: Any,
    chunk: ChunkFile,
    source: MediaInfo,
    src: Any,
    notes: list[str],
    encode: EncodeSettings | None = None,
) -> Any:
    """The output's video stream: the chunks' codec, the source's rate, tags and timecode."""
    import av

    with av.open(str(chunk.path)) as first:
        template = first.streams.video[0]
        try:
            vout: Any = out.add_stream_from_template(template)
        except ValueError:  # av.codec.codec.UnknownCodecError
            # An AV1 chunk's codec is its decoder's (libdav1d), which names no encoder:
            # copy the codec parameters as they are instead.
            vout = out.add_stream_from_template(template, opaque=True)
        vout.time_base = template.time_base
        if out.format.name in ("mov", "mp4") and template.codec_context.codec_tag.strip():
            # The template loses it, and MOV then tags any ProRes as HQ (apch): keep ap4h.
            vout.codec_context.codec_tag = template.codec_context.codec_tag
        size = (template.codec_context.width, template.codec_context.height)
    # The rate the headers declare (MKV's default duration, MOV's tmcd rate); without it
    # a Matroska file claims its 1/1000 time base as the frame rate.
    vout.codec_context.framerate = source.video.header_rate()
    source_video = src.streams[source.video.index]
    tags = _stream_tags(source_video, out.format.name)
    vout.metadata.update({k: v for k, v in tags.items() if k.lower() != "timecode"})
    if source.timecode:
        # MOV/MP4 muxers write a tmcd track from it; Matroska a TIMECODE tag.
        vout.metadata["timecode"] = source.timecode
    vout.disposition = source_video.disposition & ~av.stream.Disposition.attached_pic
    if source.video.rotation:
        vout.set_display_rotation(source.video.rotation)
    video = source.video
    encode = encode or EncodeSettings()  # the SAR of --size/--square-pixels (core.media.geometry)
    sar = output_sar(
        (video.width, video.height),
        video.sample_aspect_ratio,
        size,
        width=encode.width,
        height=encode.height,
        fit=encode.fit,
        square_pixels=encode.square_pixels,
    )
    if sar is not None:
        vout.codec_context.sample_aspect_ratio = sar  # MP4/MOV pasp
        # Matroska's display size comes from the stream's own SAR (PyAV cannot set it).
        if not set_stream_sample_aspect_ratio(vout, sar) and out.format.name in (
            "matroska",
            "webm",
        ):
            notes.append(f"the pixel aspect {sar} could not be written into the file's header")
    return vout


def _add_side_streams(
    out: Any, src: Any, source: MediaInfo, container_format: str, audio_codec: str
) -> tuple[dict[int, _Route], list[str]]:
    """Copy, convert or (with a note) drop each audio and subtitle stream of the source."""
    import av

    routes: dict[int, _Route] = {}
    notes: list[str] = []
    for info in source.copied_streams:
        stream = src.streams[info.index]
        if info.kind == "audio":
            plan = plan_audio(info.codec, container_format, audio_codec)
        else:
            plan = plan_subtitle(info.codec, container_format)
        label = f"{info.kind} stream {info.index} ({info.codec})"
        if plan.action == "drop":
            notes.append(f"{label} not copied: {plan.reason}")
            continue
        if plan.action == "convert" and plan.target is not None:
            converter: AudioConverter | SubtitleConverter = (
                AudioConverter(out, stream, plan.target)
                if info.kind == "audio"
                else SubtitleConverter(out, stream, plan.target)
            )
            _copy_tags(stream, converter.stream, container_format)
            routes[info.index] = _Route(converter.stream, converter)
            notes.append(f"{label} converted to {plan.target}: {plan.reason}")
            continue
        try:
            target = out.add_stream_from_template(stream)
        except (av.FFmpegError, ValueError) as exc:
            notes.append(f"{label} not copied: {container_format} cannot hold it ({exc})")
            continue
        target.time_base = stream.time_base
        _copy_tags(stream, target, container_format)
        routes[info.index] = _Route(target)
    return routes, notes


def _add_container_level(
    out: Any,
    src: Any,
    source: MediaInfo,
    container_format: str,
    keep: tuple[Fraction | None, Fraction | None] = (None, None),
) -> list[str]:
    """Global tags, chapters and attachments (fonts); returns notes for what cannot be kept."""
    import av

    notes: list[str] = []
    out.metadata.update(copyable_metadata(src.metadata))
    chapters = chapters_of(src, source.start_seconds, keep[1], trim=keep != (None, None))
    if chapters:
        out.set_chapters(chapters)
    attachments = list(src.streams.attachments)
    if attachments and container_format != "matroska":
        notes.append(
            f"{len(attachments)} attachment(s) (fonts, images) not kept: "
            f"only an .mkv output holds them"
        )
    elif attachments:
        for attachment in attachments:
            try:
                out.add_stream_from_template(attachment)
            except (av.FFmpegError, ValueError) as exc:
                notes.append(f"attachment stream {attachment.index} not kept ({exc})")
    lost = [s for s in src.streams.data if not _rewritten_data_stream(s, bool(chapters))]
    if lost:
        notes.append(f"{len(lost)} data stream(s) (telemetry, captions data …) not copied")
    return notes


def _rewritten_data_stream(stream: Any, has_chapters: bool) -> bool:
    """A QuickTime timecode track or chapter text track: the muxer writes its own anew."""
    if metadata_value(stream.metadata, "timecode"):
        return True
    return has_chapters and getattr(stream, "name", None) == "bin_data"


def merge_chunks(
    chunks: Sequence[ChunkFile],
    source: MediaInfo,
    output: Path,
    container_format: str,
    cancel: threading.Event | None = None,
    audio_codec: str = "auto",
    encode: EncodeSettings | None = None,
    keep: tuple[Fraction | None, Fraction | None] = (None, None),
) -> list[str]:
    """Write `output` from the chunk files plus the source's other streams and tags.

    Audio and subtitles are copied bit-exact where the container plays them, otherwise
    converted (`audio_codec`: "auto" picks lossless where the container allows; see
    tracks.AUDIO_CODEC_CHOICES). Returns notes for the user: each conversion, each track
    that could not be kept. A set ``cancel`` stops it within ``_CANCEL_CHECK_PACKETS``
    packets (CancelledError); the caller removes the unfinished file.
    """
    import av

    if not chunks:
        raise MediaError("nothing to merge: the job produced no chunks")
    check_audio_codec(audio_codec, container_format)
    try:
        out = av.open(
            str(output),
            "w",
            format=container_format,
            options=_MUXER_OPTIONS.get(container_format, {}),
        )
    except OSError as exc:
        raise_for_os_error(exc, output)
    try:
        with av.open(str(source.path)) as src:
            warnings: list[str] = []
            vout = _add_video(out, chunks[0], source, src, warnings, encode)
            routes, notes = _add_side_streams(out, src, source, container_format, audio_codec)
            warnings += notes
            warnings += _add_container_level(out, src, source, container_format, keep)
            video_iter = ((_packet_seconds(p), 0, p, vout) for p in _video_packets(chunks))
            sides = _side_packets(
                src,
                routes,
                source.start_seconds,
                priming=container_format in ("mp4", "mov"),
                keep=keep,  # a trimmed job's part of the source (core/trim.py)
            )
            side_iter = ((_packet_seconds(p), 1, p, t) for p, t in sides)
            merged = heapq.merge(video_iter, side_iter, key=lambda t: (t[0], t[1]))
            for count, (_, _, packet, target) in enumerate(merged):
                if cancel is not None and count % _CANCEL_CHECK_PACKETS == 0 and cancel.is_set():
                    raise CancelledError("merge cancelled")
                time_base: Fraction = packet.time_base
                packet.stream = target
                packet.time_base = time_base
                out.mux(packet)
        out.close()
    except OSError as exc:
        _close_quietly(out)
        raise_for_os_error(exc, output)
    except av.FFmpegError as exc:
        _close_quietly(out)
        raise MediaError(f"merging into {output.name} failed: {exc}") from exc
    except BaseException:
        _close_quietly(out)
        raise
    for warning in warnings:
        log.warning(warning)
    return warnings


def _close_quietly(container: Any) -> None:
    with contextlib.suppress(Exception):
        container.close()
