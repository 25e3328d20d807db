"""Trim: which source frames a job upscales, from what the user typed or marked.

Every form names one frame of the source, counted in presentation order from its first
shown frame (frame 0, time 0):

- ``240``: a frame number. A bare number is always a frame, never seconds.
- ``12.5s``: seconds from the first frame; the frame shown at that moment.
- ``00:01:02.5`` or ``1:02.5``: hours:minutes:seconds (or minutes:seconds), a dot for the
  fraction; the frame shown at that moment.
- ``01:00:05:12`` (SMPTE) or ``01:00:05;12`` (drop-frame, a ``;`` before the frames): frames
  counted at the nominal rate (25, 30 for 29.97 …). When the source has a start timecode and
  the value is at or after it, the value is on the source's timecode (01:00:05:00 in a source
  starting at 01:00:00:00 is 5 s in); earlier values count from 00:00:00:00 = frame 0.

The end is inclusive, as an editor's out point is: the frame it names is the last one kept.
``frame_range`` returns the half-open range [first, end) the plan cuts.
"""

from __future__ import annotations

import bisect
import math
import re
from dataclasses import replace
from fractions import Fraction
from typing import Any

from vsr_desktop.core.errors import InputError
from vsr_desktop.core.media.probe import MediaInfo, VideoInfo
from vsr_desktop.core.media.timeline import output_timeline
from vsr_desktop.core.plan import Plan, plan_chunks

#: What --start/--end take, for help texts and hints.
FORMATS_HELP = "a frame number (240), seconds (12.5s), 00:00:12.5, or SMPTE 01:00:12:12 (;12 drop)"

_FRAME = re.compile(r"^\d+$")
_SECONDS = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)s$")
_CLOCK = re.compile(r"^(?:(\d+):)?(\d{1,2}):(\d{1,2}(?:\.\d+)?)$")
_SMPTE = re.compile(r"^(\d{1,2})[:;](\d{2})[:;](\d{2})([:;])(\d{1,3})$")


def frame_range(
    start: str | int | None,
    end: str | int | None,
    video: VideoInfo,
    start_timecode: str | None = None,
) -> tuple[int, int]:
    """[first, end) frame indices for an in point `start` and an inclusive out point `end`
    (None: the source's first or last frame). InputError for garbage or a frame outside."""
    count = video.frame_count
    if count == 0:
        raise InputError("the source has no frames to trim")
    first = 0 if start is None else frame_of(start, video, start_timecode, "--start")
    last = count - 1 if end is None else frame_of(end, video, start_timecode, "--end")
    if last < first:
        raise InputError(
            f"the end ({end}, frame {last}) is before the start ({start}, frame {first})",
            "give an end at or after the start",
        )
    return first, last + 1


def frame_of(value: str | int, video: VideoInfo, start_timecode: str | None, what: str) -> int:
    """The frame index a --start/--end value names (see the module doc)."""
    text = str(value).strip()
    count = video.frame_count
    if _FRAME.match(text):
        frame = int(text)
    elif match := _SECONDS.match(text):
        frame = _frame_at(Fraction(match.group(1)), video, what, text)
    elif match := _CLOCK.match(text):
        hours, minutes, seconds = match.groups()
        if int(minutes) >= 60 or Fraction(seconds) >= 60:
            raise InputError(f"{what} {text!r}: minutes and seconds go up to 59", _hint())
        total = (int(hours or 0) * 60 + int(minutes)) * 60 + Fraction(seconds)
        frame = _frame_at(total, video, what, text)
    elif _SMPTE.match(text):
        rate = nominal_rate(video.header_rate())
        frame = timecode_frames(text, rate, what)
        if start_timecode:
            try:
                origin = timecode_frames(start_timecode, rate, "the source's timecode")
            except InputError:
                origin = None
            if origin is not None and frame >= origin:
                frame -= origin
    else:
        if re.match(r"^\d*\.\d+$", text):
            raise InputError(
                f"{what} {text!r} is not a whole frame number", f"for seconds write {text}s"
            )
        raise InputError(f"{what} {text!r} is not a frame, a time or a timecode", _hint())
    if frame >= count:
        raise InputError(
            f"{what} {text!r} is frame {frame}; the source has {count} frames "
            f"(0 to {count - 1}, {video.duration_seconds:.3f} s)",
            "give a point inside the source",
        )
    return frame


def _hint() -> str:
    return f"use {FORMATS_HELP}"


def _frame_at(seconds: Fraction, video: VideoInfo, what: str, text: str) -> int:
    """The frame shown `seconds` after the first one (half a tick of slack for rounding)."""
    if seconds >= Fraction(video.duration_seconds):
        raise InputError(
            f"{what} {text!r} is past the end of the source ({video.duration_seconds:.3f} s)",
            "give a point inside the source",
        )
    pts0 = video.frame_pts[0]
    ticks = math.floor(seconds / video.time_base + Fraction(1, 2))
    return max(0, bisect.bisect_right(video.frame_pts, pts0 + ticks) - 1)


def nominal_rate(rate: Fraction) -> int:
    """The whole frames per second a timecode counts (30 for 29.97)."""
    return max(1, round(rate))


def timecode_frames(text: str, rate: int, what: str = "timecode") -> int:
    """Frames since 00:00:00:00 of an SMPTE timecode (drop-frame when `;` precedes the frames)."""
    match = _SMPTE.match(text.strip())
    if match is None:
        raise InputError(f"{what} {text!r} is not an SMPTE timecode", _hint())
    hours, minutes, seconds, separator, frames = match.groups()
    h, m, s, f = int(hours), int(minutes), int(seconds), int(frames)
    drop = separator == ";"
    if m >= 60 or s >= 60 or f >= rate:
        raise InputError(
            f"{what} {text!r}: minutes and seconds go up to 59, frames up to {rate - 1}", _hint()
        )
    total = ((h * 60 + m) * 60 + s) * rate + f
    if not drop:
        return total
    dropped = _dropped_per_minute(rate, what, text)
    if s == 0 and f < dropped and m % 10:
        raise InputError(f"{what} {text!r} does not exist in drop-frame timecode", _hint())
    minutes_total = h * 60 + m
    return total - dropped * (minutes_total - minutes_total // 10)


def _dropped_per_minute(rate: int, what: str, text: str) -> int:
    if rate % 30:
        raise InputError(
            f"{what} {text!r} is drop-frame, which exists only at 29.97 and 59.94 fps",
            "write the frames after a colon (01:00:00:00)",
        )
    return 2 * rate // 30


def timecode_of(frames: int, rate: int, drop: bool = False) -> str:
    """The SMPTE label of frame `frames` since 00:00:00:00 (wraps at 24 hours)."""
    if drop:
        dropped = _dropped_per_minute(rate, "timecode", "")
        per_10_minutes = rate * 600 - dropped * 9
        per_minute = rate * 60 - dropped
        tens, rest = divmod(frames, per_10_minutes)
        frames += dropped * 9 * tens
        if rest > dropped:
            frames += dropped * ((rest - dropped) // per_minute)
    frames %= rate * 86400
    f = frames % rate
    s = frames // rate % 60
    m = frames // (rate * 60) % 60
    h = frames // (rate * 3600)
    return f"{h:02d}:{m:02d}:{s:02d}{';' if drop else ':'}{f:02d}"


def moved_timecode(timecode: str | None, seconds: Fraction, rate: Fraction) -> str | None:
    """The start timecode of a file cut `seconds` after the source's first frame
    (01:00:00:00 cut at 5 s at 25 fps → 01:00:05:00); None stays None, an unreadable one
    is kept as it is."""
    if not timecode:
        return timecode
    nominal = nominal_rate(rate)
    drop = ";" in timecode
    try:
        origin = timecode_frames(timecode, nominal)
        frames = round(seconds * rate)  # a timecode labels each frame in turn
        return timecode_of(origin + frames, nominal, drop)
    except InputError:
        return timecode


def job_range(spec: Any, media: MediaInfo) -> tuple[int, int] | None:
    """The frame range of a job spec's trim (its trim_start/trim_end), None when untrimmed."""
    start, end = getattr(spec, "trim_start", None), getattr(spec, "trim_end", None)
    if start is None and end is None:
        return None
    return frame_range(start, end, media.video, media.timecode)


def with_marks(spec: Any, marks: tuple[int | None, int | None]) -> Any:
    """`spec` trimmed to the preview's In/Out marks (frame indices, Out inclusive, None:
    not set), written as frame numbers; unchanged when neither is set."""
    first, last = marks
    if first is None and last is None:
        return spec
    return replace(
        spec,
        trim_start=None if first is None else str(first),
        trim_end=None if last is None else str(last),
    )


def plan_for(spec: Any, media: MediaInfo) -> Plan:
    """The job's chunk plan: the spec's chunk length over its trimmed range (every backend
    plans through here, so the trim travels with the spec)."""
    return plan_chunks(media.video, spec.chunk_seconds, job_range(spec, media))


def kept_window(video: VideoInfo, first: int, end: int) -> tuple[Fraction | None, Fraction | None]:
    """The kept part of the source's timeline in seconds of its own timestamps: from frame
    `first` (None: from the top) to frame `end` (None: to the end), for the other streams."""
    pts, base = video.frame_pts, video.time_base
    start = pts[first] * base if first > 0 else None
    stop = pts[end] * base if end < len(pts) else None
    return start, stop


def plan_range(plan: Plan) -> tuple[int, int]:
    """[first, end) of the frames a plan covers."""
    return plan.chunks[0].start_frame, plan.chunks[-1].end_frame


def trimmed_source(
    source: MediaInfo, plan: Plan, container: str
) -> tuple[MediaInfo, tuple[Fraction | None, Fraction | None]]:
    """What the merge of a trimmed plan needs: the source with its presentation start at the
    first kept frame (on the output's frame grid, so that frame lands exactly on 0) and its
    timecode moved there, and the kept window of the other streams (kept_window).
    An untrimmed plan gets the source unchanged and (None, None)."""
    video = source.video
    first, end = plan_range(plan)
    keep = kept_window(video, first, end)
    if first == 0:
        return source, keep
    grid = output_timeline(video, container)  # start 0: the output's time of that frame
    start = grid.to_output(video.frame_pts[first]) * grid.time_base
    offset = (video.frame_pts[first] - video.frame_pts[0]) * video.time_base
    timecode = moved_timecode(source.timecode, offset, video.header_rate())
    return replace(source, start_seconds=start, timecode=timecode), keep


def describe(first: int, end: int, video: VideoInfo) -> str:
    """`frames 125–249 (5.000–9.960 s)`: the range in words for notes and logs."""
    return (
        f"frames {first}–{end - 1} ({video.pts_to_seconds(video.frame_pts[first]):.3f}–"
        f"{video.pts_to_seconds(video.frame_pts[end - 1]):.3f} s)"
    )
