"""The preview pane's transport: play/pause and J/K/L shuttle, frame and second steps,
In/Out marks, the keys that drive them (keys.BINDINGS), and the upscale rendered ahead of
the playhead while playing (region only, cached; the last one marked stale when the engine
falls behind).

Functions of PreviewPane (assigned in its class body), kept apart so the pane's module
holds its layout and the still-frame rendering.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QWidget

from vsr_desktop.gui.preview import keys
from vsr_desktop.gui.preview.playback import PlaybackFrame
from vsr_desktop.gui.preview.renderer import PreviewRenderer, PreviewResult

if TYPE_CHECKING:
    from vsr_desktop.gui.preview.preview_pane import PreviewPane

#: How long a region render is guessed to take before the first one is timed.
FIRST_GUESS_RENDER_S = 0.3


def _on_playback_frame(pane: PreviewPane, frame: PlaybackFrame) -> None:
    """Paint a decoded frame; show its upscale if rendered ahead, else the last one
    marked stale; and keep the engine working ahead of the playhead."""
    if pane._source is None:
        return
    pane.view.set_frame(frame.index, frame.rgb, keep_stale=True)
    pane.timeline.follow(frame.index)
    region = pane.view.visible_source_region()
    for renderer, key, primary in pane._lanes():
        hit = renderer.cached(pane._request_for(frame.index, region, key))
        if hit is not None:
            pane.view.set_result(hit, primary=primary)
        elif not renderer.busy and key in pane._factories:
            pane._render_ahead(renderer, key, frame.index, region)


def _render_ahead(pane, renderer: PreviewRenderer, key: str, index: int, region: object) -> None:
    assert pane._source is not None and pane._info is not None
    speed = pane.playback.speed
    seconds = pane._render_s.get(key, FIRST_GUESS_RENDER_S)
    lead = math.ceil(seconds * pane.playback.fps() * abs(speed)) + 1
    last = pane._info.video.frame_count - 1
    target = min(max(index + (lead if speed > 0 else -lead), 0), last)
    request = pane._request_for(target, region, key)  # type: ignore[arg-type]
    if renderer.cached(request) is None:
        pane._ahead_since[key] = time.perf_counter()
        renderer.request(request)


def _on_ahead_rendered(pane: PreviewPane, result: PreviewResult, primary: bool) -> None:
    since = pane._ahead_since.pop(result.settings_key, None)
    if since is not None:
        pane._render_s[result.settings_key] = time.perf_counter() - since
    if result.frame_index == pane.view.frame_index and result.deinterlace == pane._deinterlace:
        pane.view.set_result(result, primary=primary)


def _on_playback_state(pane: PreviewPane) -> None:
    playing = pane.playback.playing
    pane.view.set_busy(False)
    if not playing:
        # Paused: the frame on screen gets its upscale (cached, or rendered now).
        pane._requested = None
        pane.timeline.follow(pane.playback.position)
        pane.frameChanged.emit(pane.playback.position)
        pane._render_now()
    pane.playingChanged.emit(playing)


def _run_binding(pane: PreviewPane, method: str) -> None:
    getattr(pane, method)()


def toggle_play(pane: PreviewPane) -> None:
    pane.playback.set_position(pane._current_index())
    pane.playback.toggle()


def shuttle_forward(pane: PreviewPane) -> None:
    if not pane.playback.playing:
        pane.playback.set_position(pane._current_index())
    pane.playback.shuttle(True)


def shuttle_back(pane: PreviewPane) -> None:
    if not pane.playback.playing:
        pane.playback.set_position(pane._current_index())
    pane.playback.shuttle(False)


def pause(pane: PreviewPane) -> None:
    pane.playback.pause()


def _step_to(pane: PreviewPane, index: int) -> None:
    """Stepping pauses; past either end it stops there. Steps count from the frame
    asked for, so quick presses add up even while the picture catches up."""
    pane.playback.pause()
    pane.timeline.set_frame(index)


def step_back(pane: PreviewPane) -> None:
    pane._step_to(pane.timeline.frame() - 1)


def step_forward(pane: PreviewPane) -> None:
    pane._step_to(pane.timeline.frame() + 1)


def second_back(pane: PreviewPane) -> None:
    pane._step_to(pane.timeline.frame() - pane.timeline.frames_per_second())


def second_forward(pane: PreviewPane) -> None:
    pane._step_to(pane.timeline.frame() + pane.timeline.frames_per_second())


def go_first(pane: PreviewPane) -> None:
    pane._step_to(0)


def go_last(pane: PreviewPane) -> None:
    pane._step_to(pane.timeline.frame_count() - 1)


def _current_index(pane: PreviewPane) -> int:
    """The frame the user sees (painted), else the one asked for."""
    painted = pane.timeline.painted_frame()
    return painted if painted >= 0 and pane.view.isVisible() else pane.timeline.frame()


def mark_in(pane: PreviewPane) -> None:
    index, out = pane._current_index(), pane._marks[1]
    pane._set_marks(index, out if out is not None and out >= index else None)


def mark_out(pane: PreviewPane) -> None:
    index, first = pane._current_index(), pane._marks[0]
    pane._set_marks(first if first is not None and first <= index else None, index)


def clear_in(pane: PreviewPane) -> None:
    pane._set_marks(None, pane._marks[1])


def clear_out(pane: PreviewPane) -> None:
    pane._set_marks(pane._marks[0], None)


def _set_marks(pane: PreviewPane, mark_in: int | None, mark_out: int | None) -> None:
    if (mark_in, mark_out) == pane._marks:
        return
    pane._marks = (mark_in, mark_out)
    pane.timeline.set_marks(mark_in, mark_out)
    pane.marksChanged.emit(mark_in, mark_out)


def keyPressEvent(pane: PreviewPane, event: QKeyEvent) -> None:
    """Playback and frame keys work wherever focus is inside the pane (Space holds the
    left side in toggle mode, and plays/pauses otherwise)."""
    if pane._is_toggle_space(event):
        pane.view.hold_before(True)
        return
    binding = keys.binding_for(event)
    if binding is not None:
        pane._run_binding(binding.method)
        event.accept()
    elif not (event.isAutoRepeat() and event.key() == Qt.Key.Key_Space):
        QWidget.keyPressEvent(pane, event)


def keyReleaseEvent(pane: PreviewPane, event: QKeyEvent) -> None:
    if pane._is_toggle_space(event):
        pane.view.hold_before(False)
    else:
        QWidget.keyReleaseEvent(pane, event)


def _is_toggle_space(pane: PreviewPane, event: QKeyEvent) -> bool:
    return (
        event.key() == Qt.Key.Key_Space and pane.view.mode == "toggle" and not event.isAutoRepeat()
    )
