"""Which task lane the current thread works for (no Qt: the cloud context reads it too).

A lane of the TaskRunner runs one task at a time, so what is kept per lane between its
tasks (a boto3 session and its clients, say) is never used by two threads at once, and a
lane's next task — on a thread of its own — finds it again instead of opening another.
"""

from __future__ import annotations

import threading

_here = threading.local()


def current_lane() -> str | None:
    """The lane of the task running on this thread; None off a task thread."""
    return getattr(_here, "lane", None)


def set_lane(lane: str | None) -> None:
    """Called by the task runner's worker around each task."""
    _here.lane = lane
