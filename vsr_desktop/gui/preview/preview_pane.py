"""The preview as the main window embeds it: comparison, mode, side and zoom controls,
timeline, playback and In/Out marks.

It turns "which frame" (timeline or playback) and "which part" (the view's visible region)
into render requests, debounced so a drag or a held arrow key does not queue a render per
event. While playing, frames come from the sequential decoder (playback.py) and only the
visible region is upscaled ahead of the playhead, into the renderer's cache; a frame whose
upscale is not ready shows the source with the last upscale marked stale.

Model A/B: each side shows the source, bicubic, the settings' model or any other model; a
second model renders in a second renderer (its own thread and engine), same frame, same
region.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QKeyEvent
from PySide6.QtWidgets import (
    QButtonGroup,
    QHBoxLayout,
    QLabel,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from vsr_desktop.core.upscaler import FrameUpscaler
from vsr_desktop.gui.preview import keys, sides
from vsr_desktop.gui.preview.comparison_view import MODEL, ComparisonView
from vsr_desktop.gui.preview.playback import PlaybackController, PlaybackFrame
from vsr_desktop.gui.preview.renderer import (
    DecodedFrame,
    PreviewRenderer,
    PreviewResult,
    RenderRequest,
    SourceFailed,
    SourceOpened,
)
from vsr_desktop.gui.preview.sides import Side, SideChooser
from vsr_desktop.gui.preview.timeline import TimelineScrubber

#: name → (settings key, engine factory) for a model shown on one side (A/B comparison).
ModelProvider = Callable[[str], tuple[str, Callable[[], FrameUpscaler]]]
RENDER_DEBOUNCE_MS = 80
FIRST_GUESS_RENDER_S = 0.3
MODE_BUTTONS = (
    ("split", "Split", "Wipe between before and after; drag the divider"),
    ("side-by-side", "Side by side", "Before and after next to each other"),
    ("toggle", "Toggle", "After; hold Space to see before"),
)


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
        self._mode_group = QButtonGroup(self)
        self._mode_group.setExclusive(True)
        self._mode_buttons: dict[str, QToolButton] = {}
        self._zoom_label = QLabel(self)
        self._zoom_label.setMinimumWidth(
            self._zoom_label.fontMetrics().horizontalAdvance("Fit · 3200 %") + 8
        )
        self._zoom_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
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
        bar = QHBoxLayout()
        bar.setContentsMargins(4, 4, 4, 0)
        for mode, text, tip in MODE_BUTTONS:
            button = QToolButton(self)
            button.setText(text)
            button.setToolTip(tip)
            button.setCheckable(True)
            button.setChecked(mode == self.view.mode)
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            button.clicked.connect(lambda _checked=False, m=mode: self.set_mode(m))
            self._mode_group.addButton(button)
            self._mode_buttons[mode] = button
            bar.addWidget(button)
        bar.addSpacing(8)
        bar.addWidget(self.left_chooser)
        bar.addWidget(self.right_chooser)
        bar.addStretch(1)
        state = self.view.view_state
        zooms = (
            ("Fit", "Fit the picture (0)", state.fit),
            ("100 %", "One output pixel per screen pixel (1)", lambda: state.set_display_zoom(1.0)),
            (
                "200 %",
                "Two screen pixels per output pixel (2)",
                lambda: state.set_display_zoom(2.0),
            ),
        )
        for text, tip, slot in zooms:
            button = QToolButton(self)
            button.setText(text)
            button.setToolTip(tip)
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            button.clicked.connect(slot)
            bar.addWidget(button)
        bar.addWidget(self._zoom_label)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addLayout(bar)
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

    def set_model_provider(self, provider: ModelProvider | None) -> None:
        """How a side gets any model by name (the window builds it from its settings)."""
        self._provider = provider

    def set_side(self, index: int, choice: str) -> None:
        """Side 0 (left/before) or 1 (right/after): "source", "bicubic", "settings" (the
        settings' model) or "model:<name>"."""
        if choice.startswith(sides.MODEL_PREFIX) and self._provider is not None:
            key, factory = self._provider(choice.removeprefix(sides.MODEL_PREFIX))
            self._factories[key] = factory
        self._choices[index] = choice
        self._update_sides()
        self._requested = None
        self._render_now()

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
    def _model_keys(self) -> list[str]:
        """Settings keys to render: the right side's model first (the main renderer), then
        the left's (the second renderer); the settings' model when no side shows one (its
        result carries the bicubic picture and the output size)."""
        found = [s.key for s in reversed(self.view.sides) if s.kind == MODEL and s.key]
        found = list(dict.fromkeys(found))
        return found or [self._settings_key]

    def _lanes(self) -> list[tuple[PreviewRenderer, str, bool]]:
        """(renderer, key, primary) for each model being compared."""
        keys = self._model_keys()
        lanes = [(self._renderer, keys[0], True)]
        if len(keys) > 1:
            lanes.append((self._second_renderer(), keys[1], False))
        for renderer, key, _primary in lanes:
            if key in self._factories:
                renderer.set_engine_factory(key, self._factories[key])
        return lanes

    def _second_renderer(self) -> PreviewRenderer:
        if self._second is None:
            self._second = PreviewRenderer(self)
            self._second.rendered.connect(self._on_second_rendered)
            self._second.failed.connect(self._on_render_failed)
        return self._second

    def _update_sides(self) -> None:
        made = [self._side_for(choice) for choice in self._choices]
        self.view.set_sides(made[0], made[1])
        for chooser, choice, side in zip(
            (self.left_chooser, self.right_chooser), self._choices, made, strict=True
        ):
            chooser.show_choice(choice, side.label)

    def _side_for(self, choice: str) -> Side:
        if choice == sides.SOURCE:
            return Side(sides.SOURCE, label="Source")
        if choice == sides.BICUBIC:
            return Side(sides.BICUBIC, label="Bicubic")
        if choice.startswith(sides.MODEL_PREFIX) and self._provider is not None:
            key, _factory = self._provider(choice.removeprefix(sides.MODEL_PREFIX))
            return Side(MODEL, key, sides.label_for_key(key))
        if not self._has_factory:
            return Side(MODEL, "", "No model")
        return Side(MODEL, self._settings_key, sides.label_for_key(self._settings_key))

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
            renderer.request(RenderRequest(self._source, frame, region, key))
        request = RenderRequest(self._source, frame, region, lanes[0][1])
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

    def _on_second_rendered(self, result: PreviewResult) -> None:
        self._note_speed(result)
        if self.playback.playing:
            self._on_ahead_rendered(result, primary=False)
        elif result.frame_index == self.timeline.frame() and result.settings_key in {
            s.key for s in self.view.sides
        }:
            self.view.set_result(result, primary=False)

    def _note_speed(self, result: PreviewResult) -> None:
        """The first render of each model records its speed on this machine."""
        model = sides.model_of_key(result.settings_key)
        pixels = result.region.width * result.region.height
        if model and result.upscale_ms > 0 and pixels and model not in self._speed_noted:
            self._speed_noted.add(model)
            sides.record_speed(model, result.upscale_ms / (pixels / 1e6))

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
        if frame.output_size is not None:
            height, width = frame.rgb.shape[:2]
            self._scale_guess = frame.output_size[0] / max(width, 1)
            self.view.set_sizes((width, height), frame.output_size)
        self.view.set_frame(frame.frame_index, frame.rgb)
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
    def _on_playback_frame(self, frame: PlaybackFrame) -> None:
        """Paint a decoded frame; show its upscale if rendered ahead, else the last one
        marked stale; and keep the engine working ahead of the playhead."""
        if self._source is None:
            return
        self.view.set_frame(frame.index, frame.rgb, keep_stale=True)
        self.timeline.follow(frame.index)
        region = self.view.visible_source_region()
        for renderer, key, primary in self._lanes():
            hit = renderer.cached(RenderRequest(self._source, frame.index, region, key))
            if hit is not None:
                self.view.set_result(hit, primary=primary)
            elif not renderer.busy and key in self._factories:
                self._render_ahead(renderer, key, frame.index, region)

    def _render_ahead(
        self, renderer: PreviewRenderer, key: str, index: int, region: object
    ) -> None:
        assert self._source is not None and self._info is not None
        speed = self.playback.speed
        seconds = self._render_s.get(key, FIRST_GUESS_RENDER_S)
        lead = math.ceil(seconds * self.playback.fps() * abs(speed)) + 1
        last = self._info.video.frame_count - 1
        target = min(max(index + (lead if speed > 0 else -lead), 0), last)
        request = RenderRequest(self._source, target, region, key)  # type: ignore[arg-type]
        if renderer.cached(request) is None:
            self._ahead_since[key] = time.perf_counter()
            renderer.request(request)

    def _on_ahead_rendered(self, result: PreviewResult, primary: bool) -> None:
        since = self._ahead_since.pop(result.settings_key, None)
        if since is not None:
            self._render_s[result.settings_key] = time.perf_counter() - since
        if result.frame_index == self.view.frame_index:
            self.view.set_result(result, primary=primary)

    def _on_playback_state(self) -> None:
        playing = self.playback.playing
        self.view.set_busy(False)
        if not playing:
            # Paused: the frame on screen gets its upscale (cached, or rendered now).
            self._requested = None
            self.timeline.follow(self.playback.position)
            self.frameChanged.emit(self.playback.position)
            self._render_now()
        self.playingChanged.emit(playing)

    def _run_binding(self, method: str) -> None:
        getattr(self, method)()

    def toggle_play(self) -> None:
        self.playback.set_position(self._current_index())
        self.playback.toggle()

    def shuttle_forward(self) -> None:
        if not self.playback.playing:
            self.playback.set_position(self._current_index())
        self.playback.shuttle(True)

    def shuttle_back(self) -> None:
        if not self.playback.playing:
            self.playback.set_position(self._current_index())
        self.playback.shuttle(False)

    def pause(self) -> None:
        self.playback.pause()

    def _step_to(self, index: int) -> None:
        """Stepping pauses; past either end it stops there. Steps count from the frame
        asked for, so quick presses add up even while the picture catches up."""
        self.playback.pause()
        self.timeline.set_frame(index)

    def step_back(self) -> None:
        self._step_to(self.timeline.frame() - 1)

    def step_forward(self) -> None:
        self._step_to(self.timeline.frame() + 1)

    def second_back(self) -> None:
        self._step_to(self.timeline.frame() - self.timeline.frames_per_second())

    def second_forward(self) -> None:
        self._step_to(self.timeline.frame() + self.timeline.frames_per_second())

    def go_first(self) -> None:
        self._step_to(0)

    def go_last(self) -> None:
        self._step_to(self.timeline.frame_count() - 1)

    def _current_index(self) -> int:
        """The frame the user sees (painted), else the one asked for."""
        painted = self.timeline.painted_frame()
        return painted if painted >= 0 and self.view.isVisible() else self.timeline.frame()

    # -- In/Out marks --------------------------------------------------------------------------
    def mark_in(self) -> None:
        index, out = self._current_index(), self._marks[1]
        self._set_marks(index, out if out is not None and out >= index else None)

    def mark_out(self) -> None:
        index, first = self._current_index(), self._marks[0]
        self._set_marks(first if first is not None and first <= index else None, index)

    def clear_in(self) -> None:
        self._set_marks(None, self._marks[1])

    def clear_out(self) -> None:
        self._set_marks(self._marks[0], None)

    def _set_marks(self, mark_in: int | None, mark_out: int | None) -> None:
        if (mark_in, mark_out) == self._marks:
            return
        self._marks = (mark_in, mark_out)
        self.timeline.set_marks(mark_in, mark_out)
        self.marksChanged.emit(mark_in, mark_out)

    # -- controls ------------------------------------------------------------------------------
    def _on_mode_changed(self, mode: str) -> None:
        self._mode_buttons[mode].setChecked(True)
        self.modeChanged.emit(mode)

    def _update_zoom_label(self) -> None:
        state = self.view.view_state
        percent = f"{state.display_zoom * 100:.0f} %"
        self._zoom_label.setText(f"Fit · {percent}" if state.fit_mode else percent)

    def zoom_text(self) -> str:
        return self._zoom_label.text()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        """Playback and frame keys work wherever focus is inside the pane (Space holds the
        left side in toggle mode, and plays/pauses otherwise)."""
        if self._is_toggle_space(event):
            self.view.hold_before(True)
            return
        binding = keys.binding_for(event)
        if binding is not None:
            self._run_binding(binding.method)
            event.accept()
        elif not (event.isAutoRepeat() and event.key() == Qt.Key.Key_Space):
            super().keyPressEvent(event)

    def keyReleaseEvent(self, event: QKeyEvent) -> None:
        if self._is_toggle_space(event):
            self.view.hold_before(False)
        else:
            super().keyReleaseEvent(event)

    def _is_toggle_space(self, event: QKeyEvent) -> bool:
        return (
            event.key() == Qt.Key.Key_Space
            and self.view.mode == "toggle"
            and not event.isAutoRepeat()
        )


def _covers(result: PreviewResult, request: RenderRequest) -> bool:
    """Same frame and settings, and the result's region contains the requested one."""
    have, want = result.region, request.region
    return (
        (result.source, result.frame_index, result.settings_key)
        == (request.source, request.frame_index, request.settings_key)
        and have.x <= want.x
        and have.y <= want.y
        and have.x + have.width >= want.x + want.width
        and have.y + have.height >= want.y + want.height
    )


def _result_matches(result: PreviewResult, request: RenderRequest) -> bool:
    return (result.source, result.frame_index, result.settings_key) == (
        request.source,
        request.frame_index,
        request.settings_key,
    ) and result.region == request.region.clamp(*result.source_rgb.shape[1::-1])
