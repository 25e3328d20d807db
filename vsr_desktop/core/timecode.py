"""SMPTE timecode (HH:MM:SS:FF) as editors read it, drop-frame included.

Pure arithmetic, no Qt and no media library: the preview's counter, the trim options and the
tests all share it. Drop-frame (29.97 and 59.94 fps) skips frame numbers 0 and 1 (0-3 at
59.94) at the start of every minute except each tenth, so the label stays within a frame
or two of wall-clock time; it is written with ';' before the frames.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

_DAY_HOURS = 24
_PATTERN = re.compile(r"^\s*(\d{1,2}):(\d{2}):(\d{2})([:;.,])(\d{2,3})\s*$")


@dataclass(frozen=True)
class TimecodeRate:
    """The counting base of a timecode: whole frames per second and whether it drops."""

    fps: int
    drop_frame: bool = False

    @classmethod
    def of(cls, rate: Fraction | float | None) -> TimecodeRate:
        """30000/1001 → 30 drop-frame, 60000/1001 → 60 drop-frame, 24000/1001 → 24, 25 → 25.

        A missing or silly rate counts at 25 (a label is still better than none)."""
        value = float(rate) if rate else 0.0
        if not 0 < value <= 1000:
            return cls(25)
        nominal = max(round(value), 1)
        ntsc = nominal in (30, 60) and abs(value - nominal * 1000 / 1001) < 0.005
        return cls(nominal, ntsc)

    @property
    def dropped_per_minute(self) -> int:
        return self.fps // 15 if self.drop_frame else 0  # 2 at 29.97, 4 at 59.94

    def frames_per_day(self) -> int:
        minutes = _DAY_HOURS * 60
        return minutes * 60 * self.fps - self.dropped_per_minute * (minutes - minutes // 10)


def format_timecode(frame: int, rate: TimecodeRate) -> str:
    """Frame number (counted from 00:00:00:00) → "HH:MM:SS:FF" (";" before FF when dropping).

    Wraps at 24 hours, as timecode does; negative numbers count back from midnight."""
    fps, drop = rate.fps, rate.dropped_per_minute
    frame %= rate.frames_per_day()
    if drop:
        per_ten = fps * 600 - drop * 9
        per_minute = fps * 60 - drop
        tens, rest = divmod(frame, per_ten)
        skipped = drop * 9 * tens
        if rest >= drop:
            skipped += drop * ((rest - drop) // per_minute)
        frame += skipped
    seconds, frames = divmod(frame, fps)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    separator = ";" if rate.drop_frame else ":"
    return f"{hours % _DAY_HOURS:02d}:{minutes:02d}:{seconds:02d}{separator}{frames:02d}"


def parse_timecode(text: str, rate: TimecodeRate) -> int:
    """ "HH:MM:SS:FF" (or ';' / '.' before FF) → frame number from 00:00:00:00.

    Raises ValueError for text that is not a timecode or a field out of range."""
    found = _PATTERN.match(text)
    if found is None:
        raise ValueError(f"{text!r} is not a timecode (HH:MM:SS:FF)")
    hours, minutes, seconds, frames = (int(found.group(i)) for i in (1, 2, 3, 5))
    if minutes > 59 or seconds > 59 or frames >= rate.fps:
        raise ValueError(f"{text!r} is out of range at {rate.fps} fps")
    drop = rate.dropped_per_minute
    if drop and seconds == 0 and minutes % 10 and frames < drop:
        raise ValueError(f"{text!r} does not exist in drop-frame timecode")
    total_minutes = hours * 60 + minutes
    count = (total_minutes * 60 + seconds) * rate.fps + frames
    return count - drop * (total_minutes - total_minutes // 10)


@dataclass(frozen=True)
class SourceTimecode:
    """Timecode of a source's frames: its start timecode (when it has one) plus elapsed time.

    Time is taken from the frame's own timestamp, so variable-frame-rate footage reads as a
    player's clock; at a constant rate that is exactly start + frame index."""

    rate: TimecodeRate
    start_frame: int = 0
    #: The real frame rate (23.976 counts as 24 in the label but 24000/1001 per second).
    frame_rate: float = 25.0

    @classmethod
    def of(cls, rate: Fraction | float | None, start: str | None = None) -> SourceTimecode:
        counting = TimecodeRate.of(rate)
        if start and ";" in start and counting.fps in (30, 60):
            counting = TimecodeRate(counting.fps, True)  # the file says drop-frame
        try:
            first = parse_timecode(start, counting) if start else 0
        except ValueError:
            first = 0  # an odd tag must not hide the counter
        real = float(rate) if rate and 0 < float(rate) <= 1000 else float(counting.fps)
        return cls(counting, first, real)

    def at_seconds(self, seconds: float) -> str:
        """Timecode of a frame shown `seconds` after the first frame."""
        elapsed = round(max(seconds, 0.0) * self.frame_rate)
        return format_timecode(self.start_frame + elapsed, self.rate)

    def at_frame(self, offset: int) -> str:
        """Timecode `offset` frames after the first (constant rate)."""
        return format_timecode(self.start_frame + offset, self.rate)
