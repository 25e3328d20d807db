"""The preview as the main window embeds it: comparison, mode and zoom controls, timeline.

It turns "which frame" (timeline) and "which part" (the view's visible region) into render
requests, debounced so a drag or a held arrow key does not queue a render per event.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent, QKeyEvent
from PySide6.QtWidgets import (
    QButtonGroup,
    QHBoxLayout,
    QLabel,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from vsr_desktop.core.upscaler import FrameUpscaler
from vsr_desktop.gui.preview.comparison_view import ComparisonView
from vsr_desktop.gui.preview.renderer import (
    DecodedFrame,
    PreviewRenderer,
    PreviewResult,
    RenderRequest,
    SourceFailed,
    SourceOpened,
)
from vsr_desktop.gui.preview.timeline import TimelineScrubber

RENDER_DEBOUNCE_MS = 80
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

    def __init__(
        self, parent: QWidget | None = None, renderer: PreviewRenderer | None = None
    ) -> None:
        super().__init__(parent)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self._renderer = renderer or PreviewRenderer(self)
        self._source: Path | None = None
        self._info: object | None = None
        self._settings_key = ""
        self._has_factory = False
        self._scale_guess = 1.0
        self._requested: RenderRequest | None = None

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
        self._update_zoom_label()

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
        bar.addStretch(1)
        state = self.view.view_state
        zooms = (
            ("Fit", "Fit the picture (0)", state.fit),
            ("100 %", "One output pixel per screen pixel (1)", lambda: state.set_zoom(1.0)),
            ("200 %", "Two screen pixels per output pixel (2)", lambda: state.set_zoom(2.0)),
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
        changed = settings_key != self._settings_key or not self._has_factory
        self._settings_key, self._has_factory = settings_key, True
        if changed:
            self.view.clear_result()
            self._render_now()

    def set_mode(self, mode: str) -> None:
        """Comparison mode: "split", "side-by-side" or "toggle"."""
        self.view.set_mode(mode)

    def set_frame(self, index: int) -> None:
        self.timeline.set_frame(index)

    def current_frame(self) -> int:
        return self.timeline.frame()

    def shutdown(self) -> None:
        """Stop the render thread (call before the window goes away)."""
        self._debounce.stop()
        self.view.set_busy(False)
        self._renderer.shutdown()

    def closeEvent(self, event: QCloseEvent) -> None:
        self.shutdown()
        super().closeEvent(event)

    # -- rendering -----------------------------------------------------------------------------
    def _schedule_render(self, *_args: object) -> None:
        if self._info is not None:
            self._debounce.start()
            if self._has_factory:
                self.view.set_busy(True)  # part of the picture is not upscaled yet

    def _render_now(self) -> None:
        self._debounce.stop()
        if self._source is None or self._info is None:
            return
        request = RenderRequest(
            self._source,
            self.timeline.frame(),
            self.view.visible_source_region(),
            self._settings_key,
        )
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
        if frame.source != self._source:
            return
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
        video = opened.info.video
        self.view.set_display(video.rotation, video.sample_aspect_ratio)  # as a player shows it
        scale = self._scale_guess
        self.view.set_sizes(
            (video.width, video.height),
            (max(int(video.width * scale), 1), max(int(video.height * scale), 1)),
        )
        self.timeline.set_video(video)
        self._render_now()

    def _on_source_failed(self, failure: SourceFailed) -> None:
        if failure.source != self._source:
            return
        self.view.clear(f"Cannot preview this file.\n\n{failure.message}")
        self.sourceFailed.emit(failure.message)

    def _on_frame_changed(self, index: int) -> None:
        self.frameChanged.emit(index)
        self._schedule_render()

    # -- controls ------------------------------------------------------------------------------
    def _on_mode_changed(self, mode: str) -> None:
        self._mode_buttons[mode].setChecked(True)
        self.modeChanged.emit(mode)

    def _update_zoom_label(self) -> None:
        state = self.view.view_state
        percent = f"{state.zoom * 100:.0f} %"
        self._zoom_label.setText(f"Fit · {percent}" if state.fit_mode else percent)

    def zoom_text(self) -> str:
        return self._zoom_label.text()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        """Frame keys (and Space in toggle mode) work wherever focus is inside the pane."""
        if self._is_toggle_space(event):
            self.view.hold_before(True)
        elif not self.timeline.handle_key(event):
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
