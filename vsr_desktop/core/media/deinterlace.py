"""Interlaced sources: find their field order, and make whole frames before the model.

A model upscales what it is given: two fields woven into one frame come out as sharpened
combing. So interlaced footage goes through libavfilter's bwdif (or yadif) first, in PyAV:
single rate makes one frame per frame (same timestamps), double rate one per field (the
second at the midpoint to the next frame, in half the source's time base).

Each chunk is filtered as a continuous run would be: its decode starts one frame early and
ends one frame late, so the filter sees the same neighbours on both sides of a seam.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

from vsr_desktop.core.errors import InputError, MediaError
from vsr_desktop.core.media.probe import MediaInfo, VideoInfo
from vsr_desktop.core.plan import Chunk, Plan

MODES = ("auto", "off", "bwdif", "yadif")
#: Frames looked at to find the field order (flags, then idet when the flags say nothing).
DETECT_FRAMES = 30
#: Above this many lines no broadcast or tape format is interlaced: idet is not run there.
_MAX_INTERLACED_HEIGHT = 1152
#: FFmpeg's AVFieldOrder: the first letter is the field shown first (TB is what the
#: ffmpeg CLI writes for top-field-first footage).
_FIELD_ORDERS = {2: "tff", 3: "bff", 4: "tff", 5: "bff"}
_ORDER_WORDS = {"tff": "top field first", "bff": "bottom field first"}


def check_mode(mode: str, double_rate: bool = False) -> None:
    """Refuse a mode this version does not know (a spec written by hand, say)."""
    if mode not in MODES:
        raise InputError(f"unknown deinterlace mode {mode!r}", f"use one of {', '.join(MODES)}")
    if double_rate and mode == "off":
        raise InputError(
            "--double-rate makes one frame per field, which needs deinterlacing",
            "drop --double-rate, or use --deinterlace auto|bwdif|yadif",
        )


@dataclass(frozen=True)
class Deinterlace:
    """How one job's frames are deinterlaced; passed to the decoder (iter_frames)."""

    method: str  # "bwdif" or "yadif"
    field_order: str  # "tff" or "bff"
    double_rate: bool = False
    #: Chosen by --deinterlace auto: the user is told once.
    automatic: bool = False

    @property
    def rate_factor(self) -> int:
        """Output frames per source frame."""
        return 2 if self.double_rate else 1

    def note(self) -> str:
        """The line that tells the user what auto did ("" when they asked for it)."""
        if not self.automatic:
            return ""
        rate = " at field rate" if self.double_rate else ""
        return (
            f"interlaced source ({_ORDER_WORDS[self.field_order]}): deinterlacing with "
            f"{self.method}{rate} (--deinterlace off keeps the fields)"
        )

    # ---------------------------------------------------------------- timestamps
    def output_pts(self, pts: int) -> int:
        """A source frame's timestamp on the filter's output time base."""
        return pts * self.rate_factor

    def output_video(self, video: VideoInfo) -> VideoInfo:
        """The video as the filter hands it on: at double rate one frame per field, in
        half the time base (exactly the timestamps bwdif/yadif give)."""
        if not self.double_rate:
            return video
        return replace(
            video,
            time_base=video.time_base / 2,
            average_rate=video.average_rate * 2,
            base_rate=video.base_rate * 2 if video.base_rate else None,
            frame_pts=field_pts(video.frame_pts),
            keyframe_pts=tuple(2 * p for p in video.keyframe_pts),
        )

    def output_media(self, info: MediaInfo) -> MediaInfo:
        return replace(info, video=self.output_video(info.video))

    def output_plan(self, plan: Plan) -> Plan:
        """The plan counted in output frames (what the chunk files hold)."""
        if not self.double_rate:
            return plan
        return Plan(
            frame_count=plan.frame_count * 2,
            first_pts=plan.first_pts * 2,
            time_base=plan.time_base / 2,
            chunks=tuple(
                Chunk(c.index, c.start_frame * 2, c.frame_count * 2, c.start_pts * 2)
                for c in plan.chunks
            ),
        )

    def output_chunk(self, chunk: Chunk) -> Chunk:
        """A chunk counted in output frames and timestamps."""
        f = self.rate_factor
        return Chunk(chunk.index, chunk.start_frame * f, chunk.frame_count * f, chunk.start_pts * f)

    def counting_source_frames(
        self, on_frames: Callable[[int], None] | None
    ) -> Callable[[int], None] | None:
        """Progress in source frames (what the plan counts) from a count of output frames."""
        if on_frames is None or not self.double_rate:
            return on_frames
        seen = [0]

        def count(n: int) -> None:
            before = seen[0] // 2
            seen[0] += n
            if seen[0] // 2 > before:
                on_frames(seen[0] // 2 - before)

        return count

    def decoder(self, video: VideoInfo) -> FieldDecoder:
        """The object iter_frames filters a range's frames through."""
        return FieldDecoder(self, video.frame_pts)

    # ---------------------------------------------------------------- filtering
    def filter_frames(
        self, frames: Iterable[Any], stream: Any, from_pts: int | None = None
    ) -> Iterator[Any]:
        """Push decoded frames (from `from_pts` on) through the filter; yield its output
        with timestamps on the source's time base (single rate) or half of it (double)."""
        import av

        graph = self._graph(stream)
        time_base = Fraction(stream.time_base) / self.rate_factor
        for frame in frames:
            if frame.pts is None or (from_pts is not None and frame.pts < from_pts):
                continue
            try:
                graph.vpush(frame)
            except av.FFmpegError as exc:
                raise MediaError(
                    f"deinterlacing failed at pts {frame.pts} ({exc})",
                    "try --deinterlace off, or re-export the source",
                ) from exc
            yield from _retimed(_drain(graph), time_base)
        graph.vpush(None)
        yield from _retimed(_drain(graph), time_base)

    def _graph(self, stream: Any) -> Any:
        import av
        import av.filter

        mode = "send_field" if self.double_rate else "send_frame"
        parity = self.field_order
        try:
            graph = av.filter.Graph()
            source = graph.add_buffer(template=stream)
            deint = graph.add(self.method, f"mode={mode}:parity={parity}:deint=all")
            sink = graph.add("buffersink")
            source.link_to(deint)
            deint.link_to(sink)
            graph.configure()
        except (av.FFmpegError, ValueError) as exc:
            raise MediaError(
                f"cannot set up {self.method} for this video ({exc})",
                "use --deinterlace off",
            ) from exc
        return graph


@dataclass(frozen=True)
class FieldDecoder:
    """Decodes a range of output frames: seeks one source frame early (the filter's
    "previous" at the seam), filters, and hands on frames on the output's time base."""

    deinterlace: Deinterlace
    source_pts: tuple[int, ...]

    def lead_in_pts(self, start_pts: int) -> int:
        """The source frame before the one that gives output `start_pts`."""
        source = start_pts // self.deinterlace.rate_factor
        i = bisect.bisect_left(self.source_pts, source)
        return self.source_pts[i - 1] if i > 0 else self.source_pts[0] if self.source_pts else 0

    def decode(
        self, frames_at: Callable[[int, int | None], Iterator[Any]], stream: Any, start_pts: int
    ) -> Iterator[Any]:
        """Deinterlaced frames from output timestamp `start_pts` on (and a few before it,
        which the caller skips as it skips any frame before its range). `frames_at(pts,
        first_pts)` decodes the source from a keyframe at or before `pts` (decode.frames_from)."""
        lead = self.lead_in_pts(start_pts)
        first = self.source_pts[0] if self.source_pts else None
        return self.deinterlace.filter_frames(frames_at(lead, first), stream, lead)


def _retimed(frames: Iterator[Any], time_base: Fraction) -> Iterator[Any]:
    """FFmpeg 8's bwdif/yadif always halve the time base (even one frame per frame)."""
    for frame in frames:
        if frame.pts is not None and frame.time_base and frame.time_base != time_base:
            frame.pts = round(frame.pts * Fraction(frame.time_base) / time_base)
            frame.time_base = time_base
        yield frame


def _drain(graph: Any) -> Iterator[Any]:
    import av

    while True:
        try:
            yield graph.vpull()
        except (av.BlockingIOError, av.EOFError):
            return


def field_pts(frame_pts: tuple[int, ...]) -> tuple[int, ...]:
    """Per frame 2·p and p + next (the midpoint), in half the time base; the last frame's
    next is extrapolated from the one before, as bwdif and yadif do at the end."""
    out: list[int] = []
    for i, p in enumerate(frame_pts):
        if i + 1 < len(frame_pts):
            nxt = frame_pts[i + 1]
        else:
            nxt = 2 * p - frame_pts[i - 1] if i > 0 else p
        out += [2 * p, p + nxt]
    return tuple(out)


def plan_deinterlace(mode: str, double_rate: bool, video: VideoInfo) -> Deinterlace | None:
    """The job's deinterlacer, or None when frames go to the model as decoded.

    auto: bwdif for an interlaced source, nothing for a progressive one; bwdif/yadif: that
    filter whatever the flags say (in the source's field order, top first when unknown).
    """
    check_mode(mode, double_rate)
    if mode == "off":
        return None
    if mode == "auto":
        if video.interlaced is None:
            return None
        return Deinterlace("bwdif", video.interlaced, double_rate, automatic=True)
    return Deinterlace(mode, video.interlaced or "tff", double_rate)


def job_deinterlace(spec: Any, video: VideoInfo) -> Deinterlace | None:
    """plan_deinterlace for a JobSpec (its `deinterlace` and `double_rate` fields)."""
    return plan_deinterlace(
        getattr(spec, "deinterlace", "auto"), getattr(spec, "double_rate", False), video
    )


def output_frame_count(spec: Any, frames: int) -> set[int]:
    """Frame counts a finished file of `frames` source frames may hold under this spec
    (a resume's check, without probing the source's fields again)."""
    if getattr(spec, "double_rate", False) and getattr(spec, "deinterlace", "auto") != "off":
        return {frames, 2 * frames}
    return {frames}


# -------------------------------------------------------------------- detection
def detect_field_order(path: Path | str, stream_index: int) -> str | None:
    """ "tff", "bff" or None (progressive) from the stream's field order and the first
    frames' flags; when neither says anything, libavfilter's idet over the first frames."""
    import av

    try:
        with av.open(str(path)) as container:
            stream: Any = container.streams[stream_index]
            ctx = stream.codec_context
            declared = int(getattr(ctx, "field_order", 0) or 0)
            run_idet = declared == 0 and 0 < (ctx.height or 0) <= _MAX_INTERLACED_HEIGHT
            idet = _idet_graph(stream) if run_idet else None
            flagged = False
            last_meta: dict[str, str] = {}
            frame: Any
            for count, frame in enumerate(container.decode(stream)):
                flagged = flagged or bool(frame.interlaced_frame)
                if idet is not None:
                    idet.vpush(frame)
                    for out in _drain(idet):
                        last_meta = dict(out.metadata)
                if count + 1 >= DETECT_FRAMES:
                    break
            order = _FIELD_ORDERS.get(int(getattr(ctx, "field_order", 0) or declared))
    except av.FFmpegError:
        return None  # the probe reports undecodable files itself
    if order is not None:
        return order
    if flagged:
        return _idet_order(last_meta) or "tff"
    return _idet_order(last_meta)


def _idet_graph(stream: Any) -> Any:
    import av
    import av.filter

    try:
        graph = av.filter.Graph()
        source = graph.add_buffer(template=stream)
        idet = graph.add("idet")
        sink = graph.add("buffersink")
        source.link_to(idet)
        idet.link_to(sink)
        graph.configure()
    except (av.FFmpegError, ValueError):
        return None
    return graph


def _idet_order(meta: dict[str, str]) -> str | None:
    """idet's multi-frame verdict, only when clear: most frames show one field order and
    far more than look progressive (undetermined frames, e.g. still ones, say nothing)."""

    def count(name: str) -> float:
        try:
            return float(meta.get(f"lavfi.idet.multiple.{name}", "0"))
        except ValueError:
            return 0.0

    tff, bff, prog = count("tff"), count("bff"), count("progressive")
    total = tff + bff + prog + count("undetermined")
    fields = tff + bff
    if total == 0 or fields < max(4.0, total / 2) or fields < 3 * prog:
        return None
    return "tff" if tff >= bff else "bff"


def merge_inputs(
    deinterlace: Deinterlace | None, info: MediaInfo, plan: Plan
) -> tuple[MediaInfo, Plan]:
    """What the merge joins: at double rate the chunks hold field-rate video."""
    if deinterlace is None:
        return info, plan
    return deinterlace.output_media(info), deinterlace.output_plan(plan)


def notes(deinterlace: Deinterlace | None) -> list[str]:
    """The job's notes about fields (said once, with the merge's)."""
    note = deinterlace.note() if deinterlace is not None else ""
    return [note] if note else []
