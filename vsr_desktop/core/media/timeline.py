"""Where each source frame lands on the output's timeline.

Normally a frame keeps its source timestamp exactly. One case is not left alone: a
constant-rate source whose time base cannot hold its frame grid (Matroska's milliseconds
for 24 or 29.97 fps, MPEG-TS's 90 kHz for 23.976). Its stored timestamps are the grid
rounded, and an MP4/MOV copy of them declares a slightly wrong average rate (24.0075 fps).
There the frames are put back on the exact grid, in a time base that holds both the grid
and the source's first timestamp: no frame moves by more than one source tick.

Every timestamp is also moved back by the source's presentation start (a TS recorded
mid-broadcast starts at 1.43 s): the output starts at 0 and every stream moves by the same
amount, so the audio/video relation is the one a player shows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from vsr_desktop.core.media.probe import VideoInfo

#: Containers whose own time base can hold the exact grid (Matroska/WebM are milliseconds).
_EXACT_TIME_BASE_CONTAINERS = frozenset({"mp4", "mov"})
#: Largest time base denominator used for a grid (MP4 timescales are 32-bit).
_MAX_DENOMINATOR = 10_000_000


@dataclass(frozen=True)
class OutputTimeline:
    """Maps source timestamps to output timestamps in `time_base`."""

    source_time_base: Fraction
    time_base: Fraction
    #: Output ticks per frame when frames are put on the CFR grid; 0 keeps timestamps.
    frame_ticks: int = 0
    first_pts: int = 0
    #: Seconds of the source's timeline that become the output's 0 (MediaInfo.start_seconds).
    start: Fraction = Fraction(0)

    def to_output(self, pts: int) -> int:
        exact = (pts * self.source_time_base - self.start) / self.time_base
        if not self.frame_ticks:
            return round(exact)
        first = round((self.first_pts * self.source_time_base - self.start) / self.time_base)
        frames = round((exact - first) / self.frame_ticks)
        return first + frames * self.frame_ticks

    @property
    def snaps_to_grid(self) -> bool:
        return self.frame_ticks > 0


def _gcd(a: Fraction, b: Fraction) -> Fraction:
    """The largest time unit of which both durations are whole multiples."""
    return Fraction(math.gcd(a.numerator, b.numerator), math.lcm(a.denominator, b.denominator))


def output_timeline(
    video: VideoInfo, container_format: str, start: Fraction = Fraction(0)
) -> OutputTimeline:
    """The timeline for `video` written into `container_format`, starting at `start` seconds
    of the source (see the module doc)."""
    keep = OutputTimeline(video.time_base, video.time_base, start=start)
    if container_format not in _EXACT_TIME_BASE_CONTAINERS or video.is_variable_frame_rate:
        return keep
    if len(video.frame_pts) < 2:
        return keep
    frame = 1 / video.header_rate()
    ticks = frame / video.time_base
    if ticks.denominator == 1 or ticks < 3:
        return keep  # the time base holds the grid (nothing was rounded), or is too coarse
    fine = _gcd(video.time_base, frame)
    if fine.denominator > _MAX_DENOMINATOR:
        return keep
    first = video.frame_pts[0]
    for pts in video.frame_pts:
        offset = (pts - first) * video.time_base
        index = round(offset / frame)
        if abs(offset - index * frame) > video.time_base:
            return keep  # not the rounded grid: keep the timestamps as they are
    return OutputTimeline(video.time_base, fine, int(frame / fine), first, start)
