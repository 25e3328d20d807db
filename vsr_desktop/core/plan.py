"""Split a video into chunks at keyframes: the unit of progress, resume and distribution.

A chunk starts on a keyframe so it can be decoded (or stream-copied) on its own; it is
described by frame numbers and exact source timestamps so every backend cuts it identically.
"""

from __future__ import annotations

import bisect
import json
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any

from vsr_desktop.core.errors import JobError
from vsr_desktop.core.media.probe import VideoInfo

DEFAULT_CHUNK_SECONDS = 60.0


@dataclass(frozen=True)
class Chunk:
    """Frames [start_frame, start_frame + frame_count) of the source, in presentation order."""

    index: int
    start_frame: int
    frame_count: int
    start_pts: int

    @property
    def end_frame(self) -> int:
        return self.start_frame + self.frame_count

    def file_name(self, suffix: str) -> str:
        return f"chunk_{self.index:05d}{suffix}"


@dataclass(frozen=True)
class Plan:
    """The chunk layout of one source; serialisable so remote workers get the same cut.

    `frame_count` is the frames the chunks hold (fewer than the source's when trimmed)."""

    frame_count: int
    first_pts: int
    time_base: Fraction
    chunks: tuple[Chunk, ...]

    def to_json(self) -> str:
        data: dict[str, Any] = {
            "frame_count": self.frame_count,
            "first_pts": self.first_pts,
            "time_base": [self.time_base.numerator, self.time_base.denominator],
            "chunks": [asdict(c) for c in self.chunks],
        }
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> Plan:
        try:
            data = json.loads(text)
            return cls(
                frame_count=int(data["frame_count"]),
                first_pts=int(data["first_pts"]),
                time_base=Fraction(*data["time_base"]),
                chunks=tuple(Chunk(**c) for c in data["chunks"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise JobError(f"the job plan is unreadable ({exc})", "start the job again") from exc


def plan_chunks(
    video: VideoInfo,
    chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
    frame_range: tuple[int, int] | None = None,
) -> Plan:
    """Cut at the first keyframe at or after each `chunk_seconds` boundary.

    With `frame_range` ([first, end), core/trim.py) the chunks cover only those frames; the
    first may start between keyframes (its decoder starts at the keyframe before it)."""
    if chunk_seconds <= 0:
        raise JobError(f"chunk length must be positive, got {chunk_seconds}")
    frame_pts = video.frame_pts
    if not frame_pts:
        raise JobError("the video has no frames to plan")
    first, end = frame_range if frame_range is not None else (0, len(frame_pts))
    if not 0 <= first < end <= len(frame_pts):
        raise JobError(f"frames {first}–{end} are not inside the video's {len(frame_pts)}")
    tick_limit = chunk_seconds / float(video.time_base)
    starts = [first]
    chunk_start_pts = frame_pts[first]
    for key in video.keyframe_pts:
        if key - chunk_start_pts >= tick_limit:
            frame = bisect.bisect_left(frame_pts, key)
            if frame < end and frame > starts[-1]:
                starts.append(frame)
                chunk_start_pts = frame_pts[frame]
    ends = [*starts[1:], end]
    chunks = tuple(
        Chunk(index=i, start_frame=s, frame_count=e - s, start_pts=frame_pts[s])
        for i, (s, e) in enumerate(zip(starts, ends, strict=True))
    )
    return Plan(
        frame_count=end - first,
        first_pts=frame_pts[0],
        time_base=video.time_base,
        chunks=chunks,
    )
