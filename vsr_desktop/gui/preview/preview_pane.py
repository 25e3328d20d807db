"""The preview as the main window embeds it: comparison, mode, side and zoom controls,
timeline, playback and In/Out marks.

It turns "which frame" (timeline or playback) and "which part" (the view's visible region)
into render requests, debounced so a drag or a held arrow key does not queue a render per
event. While playing, frames come from the sequential decoder (playback.py) and only the
visible region is upscaled ahead of the playhead, into the renderer's cache; a frame whose
upscale is not ready shows the source with the last upscale marked stale.

Model A/B: each side shows the source, bicubic, the settings' model or any other model; a
second model renders in a second renderer (its own thread and engine), same frame, same
region. The parts live beside it: toolbar.py (the row above the picture), pane_models.py
(Model A/B), pane_transport.py (playback, stepping, In/Out marks and their keys).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent
from PySide6.QtWidgets import QVBoxLayout, QWidget

from vsr_desktop.core.preview import Region
from vsr_desktop.core.upscaler import FrameUpscaler
from vsr_desktop.gui.preview import keys, pane_models, pane_transport, sides
from vsr_desktop.gui.preview.comparison_view import ComparisonView
from vsr_desktop.gui.preview.playback import PlaybackController
from vsr_desktop.gui.preview.renderer import (
    DecodedFrame,
    PreviewRenderer,
    PreviewResult,
    RenderRequest,
    SourceFailed,
    SourceOpened,
)
from vsr_desktop.gui.preview.sides import (
    MODEL,  # noqa: F401 - re-exported
    SideChooser,
)
from vsr_desktop.gui.preview.timeline import TimelineScrubber
from vsr_desktop.gui.preview.toolbar import PreviewToolbar

#: name → (settings key, engine factory) for a model shown on one side (A/B comparison).
ModelProvider = Callable[[str], tuple[str, Callable[[], FrameUpscaler]]]
RENDER_DEBOUNCE_MS = 80


class PreviewPane(QWidget):
    """Before/after preview of one source with the current engine settings."""

    frameChanged = Signal(int)  # the timeline moved to this frame index
    renderStarted = Signal()  # a render was requested (answered from the cache or not)
    renderFinished = Signal()  # the newest result is on screen, or the render failed;
    # a request superseded by a newer one gets no renderFinished of its own.
    renderFailed = Signal(str)  # user message of a failed render (model, decode…)
    sourceFailed = Signal(str)  # user message when set_source's file cannot be opened
    modeChanged = Signal(str)  # the comparison mode changed (buttons, set_mode), to persist it
    marksChanged = Signal(object, object)  # In and Out frame indices (None: not set)
    playingChanged = Signal(bool)

    # Model A/B and the transport: functions of pane_models and pane_transport.
    set_side = pane_models.set_side
    _model_keys = pane_models._model_keys
    _lanes = pane_models._lanes
    _second_renderer = pane_models._second_renderer
    _update_sides = pane_models._update_sides
    _side_for = pane_models._side_for
    _on_second_rendered = pane_models._on_second_rendered
    _note_speed = pane_models._note_speed

    _on_playback_frame = pane_transport._on_playback_frame
    _render_ahead = pane_transport._render_ahead
    _on_ahead_rendered = pane_transport._on_ahead_rendered
    _on_playback_state = pane_transport._on_playback_state
    _run_binding = pane_transport._run_binding
    toggle_play = pane_transport.toggle_play
    shuttle_forward = pane_transport.shuttle_forward
    shuttle_back = pane_transport.shuttle_back
    pause = pane_transport.pause
    _step_to = pane_transport._step_to
    step_back = pane_transport.step_back
    step_forward = pane_transport.step_forward
    second_back = pane_transport.second_back
    second_forward = pane_transport.second_forward
    go_first = pane_transport.go_first
    go_last = pane_transport.go_last
    _current_index = pane_transport._current_index
    mark_in = pane_transport.mark_in
    mark_out = pane_transport.mark_out
    clear_in = pane_transport.clear_in
    clear_out = pane_transport.clear_out
    _set_marks = pane_transport._set_marks
    keyPressEvent = pane_transport.keyPressEvent
    keyReleaseEvent = pane_transport.keyReleaseEvent
    _is_toggle_space = pane_transport._is_toggle_space

    def __init__(
        self, parent: QWidget | None = None, renderer: PreviewRenderer | None = None
    ) -> None:
        super().__init__(parent)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self._renderer = renderer or PreviewRenderer(self)
        self._source: Path | None = None
        self._info: Any = None  # a core MediaInfo once probed
        self._settings_key = ""
        self._has_factory = False
        self._scale_guess = 1.0
        self._requested: RenderRequest | None = None
        self._marks: tuple[int | None, int | None] = (None, None)
        self._deinterlace = "auto"  # as the job will: core.media.deinterlace modes
        self._shown_mode = ""  # the mode of the frame on screen
        self._choices = [sides.BICUBIC, sides.SETTINGS]  # left, right
        self._provider: ModelProvider | None = None
        self._factories: dict[str, Callable[[], FrameUpscaler]] = {}
        self._second: PreviewRenderer | None = None  # the other model of an A/B pair
        self._render_s: dict[str, float] = {}  # how long a region render takes, per key
        self._ahead_since: dict[str, float] = {}
        self._speed_noted: set[str] = set()
        self.playback = PlaybackController(self)
        self.left_chooser = SideChooser("Left", parent=self)
        self.right_chooser = SideChooser("Right", parent=self)
        self.left_chooser.chosen.connect(lambda choice: self.set_side(0, choice))
        self.right_chooser.chosen.connect(lambda choice: self.set_side(1, choice))

        self.view = ComparisonView(self)
        self.timeline = TimelineScrubber(self)
        self._zoom_text = ""
        self._build_layout()

        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(RENDER_DEBOUNCE_MS)
        self._debounce.timeout.connect(self._render_now)

        self.view.visibleRegionChanged.connect(self._schedule_render)
        self.view.modeChanged.connect(self._on_mode_changed)
        self.view.view_state.changed.connect(self._update_zoom_label)
        self.timeline.frameChanged.connect(self._on_frame_changed)
        self._renderer.rendered.connect(self._on_rendered)
        self._renderer.failed.connect(self._on_render_failed)
        self._renderer.frameDecoded.connect(self._on_decoded)
        self._renderer.sourceOpened.connect(self._on_opened)
        self._renderer.sourceFailed.connect(self._on_source_failed)
        self.view.framePainted.connect(self.timeline.show_painted)
        self.playback.frameDue.connect(self._on_playback_frame)
        self.playback.stateChanged.connect(self._on_playback_state)
        self.playback.failed.connect(self._on_render_failed)
        self._actions = keys.make_actions(self, self._run_binding)
        self._update_zoom_label()
        self._update_sides()

    def _build_layout(self) -> None:
        self.toolbar = PreviewToolbar(
            self.left_chooser, self.right_chooser, self.set_mode, self.view.run_zoom,
            self.view.mode, self,
        )  # fmt: skip
        self._mode_buttons = self.toolbar.mode_buttons
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.toolbar)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.timeline)

    # -- public API ----------------------------------------------------------------------------
    @property
    def renderer(self) -> PreviewRenderer:
        return self._renderer

    def set_source(self, path: Path) -> None:
        """Open a video: probed in the render thread; errors come back as `sourceFailed`."""
        self.playback.set_media(None)
        self._set_marks(None, None)
        self._source = Path(path)
        self._info = None
        self._requested = None
        self._debounce.stop()
        self._renderer.cancel()
        self.view.view_state.fit()  # a new video starts whole
        self.timeline.set_video(None)
        self.view.clear(f"Opening {self._source.name}…")
        self.view.set_display(0, None)
        self._renderer.open_source(self._source)

    def set_engine_factory(self, settings_key: str, factory: Callable[[], FrameUpscaler]) -> None:
        """Model/settings for the "after" side; a new key re-renders the current view."""
        self._renderer.set_engine_factory(settings_key, factory)
        self._factories[settings_key] = factory
        changed = settings_key != self._settings_key or not self._has_factory
        self._settings_key, self._has_factory = settings_key, True
        if changed:
            self.view.clear_result()  # the old model's picture never stays under the new name
            self._update_sides()
            self._render_now()

    def set_deinterlace(self, mode: str) -> None:
        """Show frames as the job will upscale them: "auto" (deinterlaced when the source
        is interlaced), "off" (as decoded), "bwdif" or "yadif" (always)."""
        if mode == self._deinterlace:
            return
        self._deinterlace = mode
        self.playback.set_deinterlace(mode)
        if self._source is None or self._info is None:
            return
        self._requested = None
        self._renderer.cancel()
        if self._second is not None:
            self._second.cancel()
        self.view.clear_result()  # an upscale of the other picture never stays on screen
        self._render_now()

    def deinterlace(self) -> str:
        return self._deinterlace

    def set_model_provider(self, provider: ModelProvider | None) -> None:
        """How a side gets any model by name (the window builds it from its settings)."""
        self._provider = provider

    def side_labels(self) -> tuple[str, str]:
        return self.view.side_labels()

    def marks(self) -> tuple[int | None, int | None]:
        """In and Out points as frame indices (None where not set), for a trimmed job."""
        return self._marks

    def playback_actions(self) -> list[QAction]:
        """The Playback menu's actions (shortcuts active while focus is in the pane)."""
        return list(self._actions)

    def set_mode(self, mode: str) -> None:
        """Comparison mode: "split", "side-by-side" or "toggle"."""
        self.view.set_mode(mode)

    def set_frame(self, index: int) -> None:
        self.timeline.set_frame(index)

    def current_frame(self) -> int:
        return self.timeline.frame()

    def shutdown(self) -> None:
        """Stop the render threads and the decoder (call before the window goes away)."""
        self._debounce.stop()
        self.view.set_busy(False)
        self.playback.shutdown()
        self._renderer.shutdown()
        if self._second is not None:
            self._second.shutdown()

    def closeEvent(self, event: QCloseEvent) -> None:
        self.shutdown()
        super().closeEvent(event)

    # -- rendering -----------------------------------------------------------------------------

    def _request_for(self, frame: int, region: Region, key: str) -> RenderRequest:
        assert self._source is not None
        return RenderRequest(self._source, frame, region, key, self._deinterlace)

    def _schedule_render(self, *_args: object) -> None:
        if self._info is not None and not self.playback.playing:
            self._debounce.start()
            if self._has_factory:
                self.view.set_busy(True)  # part of the picture is not upscaled yet

    def _render_now(self) -> None:
        self._debounce.stop()
        if self._source is None or self._info is None or self.playback.playing:
            return
        lanes = self._lanes()
        frame, region = self.timeline.frame(), self.view.visible_source_region()
        for renderer, key, _primary in lanes[1:]:
            renderer.request(self._request_for(frame, region, key))
        request = self._request_for(frame, region, lanes[0][1])
        if request == self._requested:
            # Already on its way, or shown; anything else may still come from the cache.
            self.view.set_busy(self._renderer.busy and self._has_factory)
            return
        shown = self.view.current_result
        if shown is not None and _covers(shown, request):
            # Zooming in: the picture on screen already holds every pixel needed.
            self._requested = request
            self._renderer.cancel()
            self.view.set_busy(False)
            return
        self._requested = request
        self.renderStarted.emit()
        if not self._renderer.request(request) and self._has_factory:
            self.view.set_busy(True)

    def _on_rendered(self, result: PreviewResult) -> None:
        self._note_speed(result)
        if self.playback.playing:
            self._on_ahead_rendered(result, primary=True)
            return
        request = self._requested
        if request is None or not _result_matches(result, request):
            return
        width = result.source_rgb.shape[1]
        self._scale_guess = result.output_size[0] / max(width, 1)
        self.view.set_result(result)
        self.view.set_busy(False)
        self.renderFinished.emit()

    def _on_render_failed(self, message: str) -> None:
        self._requested = None
        self.view.set_busy(False)
        if self.view.frame_index < 0:  # not even the frame could be shown
            self.view.show_message(f"Cannot show this frame.\n\n{message}")
        self.view.set_error(message)
        self.renderFailed.emit(message)
        self.renderFinished.emit()

    def _on_decoded(self, frame: DecodedFrame) -> None:
        if frame.source != self._source or self.playback.playing:
            return  # while playing, the decoder shows frames; renders only fill the cache
        if frame.deinterlace != self._deinterlace:
            return  # decoded before the setting changed
        if frame.output_size is not None:
            height, width = frame.rgb.shape[:2]
            self._scale_guess = frame.output_size[0] / max(width, 1)
            self.view.set_sizes((width, height), frame.output_size)
        self.view.set_frame(
            frame.frame_index, frame.rgb, force=frame.deinterlace != self._shown_mode
        )
        self._shown_mode = frame.deinterlace
        if frame.region is not None and frame.before_rgb is not None:
            self.view.set_placeholder(frame.frame_index, frame.region, frame.before_rgb)
        if not self._has_factory:
            self._requested = None
            self.view.set_error("Choose a model to see the upscaled picture")

    def _on_opened(self, opened: SourceOpened) -> None:
        if opened.source != self._source:
            return
        self._info = opened.info
        self.playback.set_media(opened.info)
        video = opened.info.video
        self.view.set_display(video.rotation, video.sample_aspect_ratio)  # as a player shows it
        scale = self._scale_guess
        self.view.set_sizes(
            (video.width, video.height),
            (max(int(video.width * scale), 1), max(int(video.height * scale), 1)),
        )
        self.timeline.set_video(video, getattr(opened.info, "timecode", None))
        self._render_now()

    def _on_source_failed(self, failure: SourceFailed) -> None:
        if failure.source != self._source:
            return
        self.view.clear(f"Cannot preview this file.\n\n{failure.message}")
        self.sourceFailed.emit(failure.message)

    def _on_frame_changed(self, index: int) -> None:
        if self.playback.playing:
            self.playback.set_position(index)  # a click on the timeline while playing: seek
            return
        self.playback.set_position(index)
        self.frameChanged.emit(index)
        self._schedule_render()

    # -- playback ------------------------------------------------------------------------------

    # -- In/Out marks --------------------------------------------------------------------------

    # -- controls ------------------------------------------------------------------------------
    def _on_mode_changed(self, mode: str) -> None:
        self._mode_buttons[mode].setChecked(True)
        self.modeChanged.emit(mode)

    def _update_zoom_label(self) -> None:
        state = self.view.view_state
        percent = f"{state.display_zoom * 100:.0f} %"
        self._zoom_text = percent
        self.toolbar.show_zoom(f"Fit · {percent}" if state.fit_mode else percent)

    def zoom_text(self) -> str:
        """The zoom as the user reads it ("100 %": one output pixel per screen pixel)."""
        return self._zoom_text


def _covers(result: PreviewResult, request: RenderRequest) -> bool:
    """Same frame and settings, and the result's region contains the requested one."""
    have, want = result.region, request.region
    return (
        (result.source, result.frame_index, result.settings_key, result.deinterlace)
        == (request.source, request.frame_index, request.settings_key, request.deinterlace)
        and have.x <= want.x
        and have.y <= want.y
        and have.x + have.width >= want.x + want.width
        and have.y + have.height >= want.y + want.height
    )


def _result_matches(result: PreviewResult, request: RenderRequest) -> bool:
    return (result.source, result.frame_index, result.settings_key, result.deinterlace) == (
        request.source,
        request.frame_index,
        request.settings_key,
        request.deinterlace,
    ) and result.region == request.region.clamp(*result.source_rgb.shape[1::-1])
