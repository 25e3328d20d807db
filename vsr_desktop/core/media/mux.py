"""Merge encoded chunks into the final file and copy the source's audio and subtitles once.

Audio is never cut per chunk: its packets are copied bit-exact from the source, with their
original timestamps, next to the concatenated video. That is what keeps long jobs in sync.
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
from vsr_desktop.core.media.encode import raise_for_os_error
from vsr_desktop.core.media.probe import MediaInfo

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


def _source_packets(source: Path, indices: Sequence[int]) -> Iterator[Any]:
    import av

    if not indices:
        return
    with av.open(str(source)) as container:
        streams = [container.streams[i] for i in indices]
        for packet in container.demux(streams):
            if packet.size == 0 and packet.pts is None:
                continue
            yield packet


def merge_chunks(
    chunks: Sequence[ChunkFile],
    source: MediaInfo,
    output: Path,
    container_format: str,
    cancel: threading.Event | None = None,
) -> list[str]:
    """Write `output` from the chunk files plus the source's copied streams.

    Returns warnings (streams that the output container cannot hold, for instance). A set
    ``cancel`` stops it within ``_CANCEL_CHECK_PACKETS`` packets (CancelledError); the
    caller removes the unfinished file.
    """
    import av

    warnings: list[str] = []
    if not chunks:
        raise MediaError("nothing to merge: the job produced no chunks")
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
        with av.open(str(chunks[0].path)) as first:
            vtemplate = first.streams.video[0]
            vout = out.add_stream_from_template(vtemplate)
            vout.time_base = vtemplate.time_base
            if source.video.rotation:
                vout.set_display_rotation(source.video.rotation)
        copied: dict[int, Any] = {}
        with av.open(str(source.path)) as src:
            for info in source.copied_streams:
                stream = src.streams[info.index]
                try:
                    copied[info.index] = out.add_stream_from_template(stream)
                    copied[info.index].time_base = stream.time_base
                except (av.FFmpegError, ValueError) as exc:
                    warnings.append(
                        f"{info.kind} stream {info.index} ({info.codec}) not copied: "
                        f"{container_format} cannot hold it ({exc})"
                    )
        video_iter = ((_packet_seconds(p), 0, p) for p in _video_packets(chunks))
        side_iter = ((_packet_seconds(p), 1, p) for p in _source_packets(source.path, list(copied)))
        merged = heapq.merge(video_iter, side_iter, key=lambda t: (t[0], t[1]))
        for count, (_, kind, packet) in enumerate(merged):
            if cancel is not None and count % _CANCEL_CHECK_PACKETS == 0 and cancel.is_set():
                raise CancelledError("merge cancelled")
            target = vout if kind == 0 else copied[packet.stream.index]
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
