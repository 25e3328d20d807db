"""Frame scrubber: slider, step buttons and a frame/timecode label from the real timestamps.

The label follows the slider live; `frameChanged` is held back while the slider is dragged
(debounced) so scrubbing does not queue a render per pixel of mouse travel.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSlider, QStyle, QToolButton, QWidget

from vsr_desktop.core.media.probe import VideoInfo

DRAG_DEBOUNCE_MS = 120
BIG_STEP = 10


def format_timecode(seconds: float) -> str:
    """HH:MM:SS.mmm, as editors read it."""
    millis = max(round(seconds * 1000), 0)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{millis:03d}"


class TimelineScrubber(QWidget):
    """Choose the preview frame; keys: Left/Right ±1, Shift ±10, Home/End."""

    frameChanged = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self._video: VideoInfo | None = None
        self._emitted = -1
        self._slider = QSlider(Qt.Orientation.Horizontal, self)
        self._slider.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # keys are ours, with Shift steps
        self._slider.setRange(0, 0)
        self._slider.setPageStep(BIG_STEP)
        self._slider.valueChanged.connect(self._on_value_changed)
        self._slider.sliderReleased.connect(self._emit_now)
        self._label = QLabel(self)
        self._label.setMinimumWidth(
            self._label.fontMetrics().horizontalAdvance("Frame 000000 / 000000  ·  00:00:00.000")
        )
        self._label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(DRAG_DEBOUNCE_MS)
        self._debounce.timeout.connect(self._emit_now)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 2, 4, 2)
        icons = QStyle.StandardPixmap
        buttons = (
            (icons.SP_MediaSkipBackward, "First frame (Home)", self.go_first),
            (icons.SP_MediaSeekBackward, "Previous frame (Left; Shift+Left: −10)", self.step_back),
            (icons.SP_MediaSeekForward, "Next frame (Right; Shift+Right: +10)", self.step_forward),
            (icons.SP_MediaSkipForward, "Last frame (End)", self.go_last),
        )
        self._buttons = []
        for icon, tip, slot in buttons:
            button = QToolButton(self)
            button.setIcon(self.style().standardIcon(icon))
            button.setToolTip(tip)
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            button.setAutoRepeat(slot in (self.step_back, self.step_forward))
            button.clicked.connect(slot)
            self._buttons.append(button)
            layout.addWidget(button)
        layout.addWidget(self._slider, 1)
        layout.addWidget(self._label)
        self._set_enabled(False)
        self._update_label()

    # -- public --------------------------------------------------------------------------------
    def set_video(self, video: VideoInfo | None) -> None:
        """New source (or none): range, label and position reset to frame 0."""
        self._video = video
        count = video.frame_count if video is not None else 0
        self._debounce.stop()
        self._slider.blockSignals(True)
        self._slider.setRange(0, max(count - 1, 0))
        self._slider.setValue(0)
        self._slider.blockSignals(False)
        self._emitted = 0 if video is not None else -1
        self._set_enabled(video is not None)
        self._update_label()

    def frame(self) -> int:
        return self._slider.value()

    def frame_count(self) -> int:
        return self._video.frame_count if self._video is not None else 0

    def label_text(self) -> str:
        return self._label.text()

    def set_frame(self, index: int) -> None:
        """Go to a frame (clamped) and announce it at once."""
        self._slider.setValue(min(max(index, 0), self._slider.maximum()))
        self._emit_now()

    def step(self, delta: int) -> None:
        self.set_frame(self.frame() + delta)

    def step_back(self) -> None:
        self.step(-1)

    def step_forward(self) -> None:
        self.step(1)

    def go_first(self) -> None:
        self.set_frame(0)

    def go_last(self) -> None:
        self.set_frame(self._slider.maximum())

    def timecode(self, index: int) -> str:
        """Timecode of a frame from its own timestamp (right for variable frame rate)."""
        video = self._video
        if video is None or not 0 <= index < video.frame_count:
            return format_timecode(0.0)
        return format_timecode(video.pts_to_seconds(video.frame_pts[index]))

    # -- internals -----------------------------------------------------------------------------
    def _set_enabled(self, enabled: bool) -> None:
        self._slider.setEnabled(enabled)
        for button in self._buttons:
            button.setEnabled(enabled)

    def _update_label(self) -> None:
        if self._video is None:
            self._label.setText("No video")
            return
        index = self.frame()
        self._label.setText(
            f"Frame {index + 1} / {self._video.frame_count}  ·  {self.timecode(index)}"
        )

    def _on_value_changed(self, _value: int) -> None:
        self._update_label()
        if self._slider.isSliderDown():
            self._debounce.start()
        else:
            self._emit_now()

    def _emit_now(self) -> None:
        self._debounce.stop()
        index = self.frame()
        if self._video is not None and index != self._emitted:
            self._emitted = index
            self.frameChanged.emit(index)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if not self.handle_key(event):
            super().keyPressEvent(event)

    def handle_key(self, event: QKeyEvent) -> bool:
        """Frame keys; the preview pane forwards the ones its picture does not use."""
        key, shift = event.key(), bool(event.modifiers() & Qt.KeyboardModifier.ShiftModifier)
        step = BIG_STEP if shift else 1
        if key == Qt.Key.Key_Left:
            self.step(-step)
        elif key == Qt.Key.Key_Right:
            self.step(step)
        elif key == Qt.Key.Key_Home:
            self.go_first()
        elif key == Qt.Key.Key_End:
            self.go_last()
        else:
            return False
        event.accept()
        return True
