"""Playing the preview: a sequential decoder off the GUI thread and a clock on it.

Why not a seek per frame: seeking lands on a keyframe and decodes up to the frame each time,
which is far too slow to play. So one task (in the pane's TaskRunner, lane "playback")
keeps one container open and decodes forward (core.media.decode.iter_frames, which
positions with frames_from and so survives MPEG-TS seek overshoot), into a small bounded
queue. Backward play decodes short keyframe-aligned runs and hands them over in reverse.
Seeking, or changing direction, cancels the task and starts a new one on a fresh queue.

The GUI-thread `PlaybackController` takes from that queue on a precise timer: it shows the
newest frame that is due by the wall clock (late ones are skipped, so time is kept) and
never a frame before it was decoded. When the decoder starves it waits and re-anchors the
clock at the next frame instead of jumping ahead. No widget is touched off the GUI thread.
"""

from __future__ import annotations

import bisect
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Qt, QTimer, Signal

from vsr_desktop.gui.tasks import Task, TaskRunner

LANE = "playback"
#: Frames decoded ahead of the picture (bounded again by bytes below).
QUEUE_FRAMES = 8
QUEUE_BYTES = 256 * 1024 * 1024
#: The longest backward run decoded at once (bounded by bytes as well).
BACK_RUN_FRAMES = 24
BACK_RUN_BYTES = 384 * 1024 * 1024
SPEEDS = (1, 2, 4)
_PUT_POLL_S = 0.05


@dataclass(frozen=True)
class PlaybackFrame:
    """One decoded frame for the picture: its index and 8-bit RGB pixels."""

    index: int
    rgb: np.ndarray


@dataclass(frozen=True)
class PlaybackEnd:
    """The decoder ran out of frames (end, or start when playing backward)."""


@dataclass(frozen=True)
class PlaybackError:
    message: str


def _frame_bytes(video: Any) -> int:
    return max(int(video.width) * int(video.height) * 3, 1)


def queue_size(video: Any) -> int:
    return max(2, min(QUEUE_FRAMES, QUEUE_BYTES // _frame_bytes(video)))


def _put(frames: queue.Queue[object], item: object, cancel: threading.Event) -> bool:
    """Wait for room without missing a cancel; False when cancelled."""
    while not cancel.is_set():
        try:
            frames.put(item, timeout=_PUT_POLL_S)
            return True
        except queue.Full:
            continue
    return False


def _decode_run(
    info: Any, first: int, last: int, cancel: threading.Event, deinterlace: str = "auto"
) -> Iterator[np.ndarray]:
    """Frames first..last (inclusive) as the job sees them (deinterlaced as `deinterlace`
    says, like the still preview), 8-bit."""
    from vsr_desktop.core.media.decode import iter_frames
    from vsr_desktop.core.media.deinterlace import plan_deinterlace
    from vsr_desktop.core.preview import to_8bit

    video = info.video
    fields = plan_deinterlace(deinterlace, False, video)
    following = last + 1
    for frame in iter_frames(
        info.path,
        video.index,
        video.frame_pts[first : last + 1],
        end_pts=video.frame_pts[following] if following < video.frame_count else None,
        bit_depth=video.bit_depth,
        first_pts=video.frame_pts[0],
        cancel=cancel,
        deinterlacer=fields.decoder(video) if fields is not None else None,
    ):
        yield np.ascontiguousarray(to_8bit(frame.rgb))


def decode_for_playback(
    info: Any,
    start: int,
    backward: bool,
    frames: queue.Queue[object],
    cancel: threading.Event,
    deinterlace: str = "auto",
) -> None:
    """The decoder task: frames from `start` on (or back), then PlaybackEnd; errors as
    PlaybackError. Runs in a task thread; only the queue links it to the GUI."""
    from vsr_desktop.core.errors import CancelledError, VsrError

    video = info.video
    try:
        if not backward:
            ahead = _decode_run(info, start, video.frame_count - 1, cancel, deinterlace)
            for index, rgb in enumerate(ahead, start):
                if not _put(frames, PlaybackFrame(index, rgb), cancel):
                    return
        else:
            keys = sorted(bisect.bisect_left(video.frame_pts, p) for p in video.keyframe_pts)
            run = max(2, min(BACK_RUN_FRAMES, BACK_RUN_BYTES // _frame_bytes(video)))
            last = start
            while last >= 0 and not cancel.is_set():
                key = keys[max(bisect.bisect_right(keys, last) - 1, 0)] if keys else 0
                first = max(min(key, last), last - run + 1, 0)
                pictures: list[np.ndarray] = list(
                    _decode_run(info, first, last, cancel, deinterlace)
                )
                for offset in range(len(pictures) - 1, -1, -1):
                    if not _put(frames, PlaybackFrame(first + offset, pictures[offset]), cancel):
                        return
                last = first - 1
        _put(frames, PlaybackEnd(), cancel)
    except CancelledError:
        return
    except VsrError as exc:
        _put(frames, PlaybackError(exc.user_message()), cancel)
    except Exception as exc:  # shown to the user; playback stops, the app goes on
        _put(frames, PlaybackError(f"Playback stopped: {exc}"), cancel)


class PlaybackController(QObject):
    """Play, pause, shuttle speed and the play clock; frames arrive as `frameDue`."""

    frameDue = Signal(object)  # PlaybackFrame: paint it now
    stateChanged = Signal()  # playing or speed changed
    failed = Signal(str)

    def __init__(self, parent: QObject | None = None, runner: TaskRunner | None = None) -> None:
        super().__init__(parent)
        self._runner = runner or TaskRunner(self)
        self._owns_runner = runner is None
        self._info: Any = None
        self._deinterlace = "auto"  # the job's mode: frames play as the job will see them
        self._speed = 0  # signed: 0 paused, ±1, ±2, ±4
        self._position = 0  # the last frame handed out (or the frame to start from)
        self._generation = 0
        self._task_key = ""
        self._queue: queue.Queue[object] = queue.Queue(maxsize=1)
        self._next: object | None = None
        self._anchor: tuple[float, int] | None = None  # (wall clock, frame index)
        self._starved = False
        self.late_ticks = 0  # ticks with a frame due but none decoded yet (for the bench)
        self._timer = QTimer(self)
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.timeout.connect(self._tick)

    # -- state ---------------------------------------------------------------------------
    @property
    def playing(self) -> bool:
        return self._speed != 0

    @property
    def speed(self) -> int:
        return self._speed

    @property
    def position(self) -> int:
        return self._position

    def fps(self) -> float:
        video = self._info.video if self._info is not None else None
        seconds = video.frame_duration_seconds if video is not None else 0.0
        return 1.0 / seconds if seconds > 0 else 25.0

    def set_media(self, info: Any) -> None:
        """A new source (a core MediaInfo, or None): stops playing, back to frame 0."""
        self.pause()
        self._info = info
        self._position = 0

    def set_deinterlace(self, mode: str) -> None:
        """Decode as the job will (core.media.deinterlace modes); a change while playing
        restarts the decoder at the frame on screen."""
        if mode != self._deinterlace:
            self._deinterlace = mode
            if self.playing:
                self._restart(self._speed)

    def set_position(self, index: int) -> None:
        """Where play starts (the frame on screen); while playing, a seek."""
        self._position = index
        if self.playing:
            self._restart(self._speed)

    # -- control -------------------------------------------------------------------------
    def play(self, speed: int = 1) -> None:
        """Play at a signed speed (1, 2, 4 forward; -1, -2, -4 backward)."""
        if self._info is None or speed == 0:
            return
        count = self._info.video.frame_count
        if speed > 0 and self._position >= count - 1:
            self._position = 0  # played to the end: play again from the start
        if speed < 0 and self._position <= 0:
            return
        if self.playing and (speed > 0) == (self._speed > 0):
            self._speed = speed  # same direction: the decoder goes on, the clock re-anchors
            self._anchor = (time.perf_counter(), self._position)
            self._set_interval()
            self.stateChanged.emit()
            return
        self._restart(speed)

    def shuttle(self, forward: bool) -> None:
        """L (forward) / J (backward): start at 1×, each press again doubles, up to 4×."""
        sign = 1 if forward else -1
        if self._speed * sign > 0:
            faster = next((s for s in SPEEDS if s > abs(self._speed)), SPEEDS[-1])
            self.play(sign * faster)
        else:
            self.play(sign)

    def toggle(self) -> None:
        if self.playing:
            self.pause()
        else:
            self.play(1)

    def pause(self) -> None:
        if not self.playing and not self._task_key:
            return
        was_playing = self.playing
        self._speed = 0
        self._timer.stop()
        self._stop_decoder()
        if was_playing:
            self.stateChanged.emit()

    def shutdown(self) -> None:
        self.pause()
        if self._owns_runner:
            self._runner.shutdown()

    # -- internals -----------------------------------------------------------------------
    def _restart(self, speed: int) -> None:
        self._stop_decoder()
        self._speed = speed
        self._generation += 1
        self._queue = queue.Queue(maxsize=queue_size(self._info.video))
        self._next = None
        self._anchor = None
        self._starved = False
        frames, info, backward, mode = self._queue, self._info, speed < 0, self._deinterlace
        start = self._position + (1 if speed > 0 else -1)
        start = min(max(start, 0), info.video.frame_count - 1)
        key = f"playback-{id(self)}-{self._generation}"
        self._task_key = key
        self._runner.start(
            Task(
                key,
                LANE,
                lambda ctx: decode_for_playback(info, start, backward, frames, ctx.cancel, mode),
                label="decode for playback",
            )
        )
        self._set_interval()
        self._timer.start()
        self.stateChanged.emit()

    def _set_interval(self) -> None:
        frame_ms = 1000.0 / self.fps() / max(abs(self._speed), 1)
        self._timer.setInterval(max(4, min(int(frame_ms / 2), 20)))

    def _stop_decoder(self) -> None:
        if self._task_key:
            self._runner.cancel(self._task_key)
            self._task_key = ""
        self._next = None

    def _due(self, now: float) -> int | None:
        if self._anchor is None:
            return None
        started, index = self._anchor
        elapsed = int((now - started) * self.fps() * abs(self._speed))
        return index + (elapsed if self._speed > 0 else -elapsed)

    def _take(self) -> object | None:
        if self._next is None:
            try:
                self._next = self._queue.get_nowait()
            except queue.Empty:
                return None
        return self._next

    def _tick(self) -> None:
        """Hand out the newest frame that is due; skip late ones, wait when starved."""
        if not self.playing:
            return
        now = time.perf_counter()
        forward = self._speed > 0
        shown: PlaybackFrame | None = None
        while True:
            item = self._take()
            if item is None:
                if shown is None:
                    self._starved = True
                    self.late_ticks += 1
                break
            if isinstance(item, PlaybackError):
                self.pause()
                self.failed.emit(item.message)
                return
            if isinstance(item, PlaybackEnd):
                if shown is None:
                    self.pause()  # the last frame stays on screen
                break
            assert isinstance(item, PlaybackFrame)
            if self._anchor is None or self._starved:
                self._anchor = (now, item.index)  # first frame, or after a stall: no jump
                self._starved = False
            due = self._due(now)
            if due is not None and (item.index > due if forward else item.index < due):
                break  # not yet
            shown, self._next = item, None
        if shown is not None:
            self._position = shown.index
            self.frameDue.emit(shown)
