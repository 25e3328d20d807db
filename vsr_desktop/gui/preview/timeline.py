"""Frame scrubber: slider with In/Out marks, step buttons, and a frame/SMPTE timecode label.

The label names the frame actually painted (`show_painted`), never the one merely asked
for, so under load the counter can lag the slider but never run ahead of the picture.
`frameChanged` is held back while the slider is dragged (debounced) so scrubbing does not
queue a render per pixel of mouse travel. Timecode is SMPTE (drop-frame at 29.97/59.94)
from the source's start timecode, computed from each frame's own timestamp.
"""

from __future__ import annotations

from PySide6.QtCore import QRect, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QKeyEvent, QPainter, QPaintEvent
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QSlider,
    QStyle,
    QStyleOptionSlider,
    QToolButton,
    QWidget,
)

from vsr_desktop.core.media.probe import VideoInfo
from vsr_desktop.core.timecode import SourceTimecode

DRAG_DEBOUNCE_MS = 120
MARK_COLOR = QColor(255, 170, 0)


class MarkedSlider(QSlider):
    """A slider that shows the In/Out range (and either mark alone) over its groove."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(Qt.Orientation.Horizontal, parent)
        self.marks: tuple[int | None, int | None] = (None, None)

    def mark_x(self, value: int) -> int:
        """Widget x of a slider value (the handle's centre there)."""
        option = QStyleOptionSlider()
        self.initStyleOption(option)
        style = self.style()
        groove = style.subControlRect(
            QStyle.ComplexControl.CC_Slider, option, QStyle.SubControl.SC_SliderGroove, self
        )
        handle = style.subControlRect(
            QStyle.ComplexControl.CC_Slider, option, QStyle.SubControl.SC_SliderHandle, self
        )
        span = max(groove.width() - handle.width(), 1)
        offset = QStyle.sliderPositionFromValue(self.minimum(), self.maximum(), value, span)
        return groove.left() + handle.width() // 2 + offset

    def paintEvent(self, event: QPaintEvent) -> None:
        super().paintEvent(event)
        mark_in, mark_out = self.marks
        if mark_in is None and mark_out is None:
            return
        painter = QPainter(self)
        left = self.mark_x(mark_in if mark_in is not None else self.minimum())
        right = self.mark_x(mark_out if mark_out is not None else self.maximum())
        band = QColor(MARK_COLOR)
        band.setAlpha(90)
        painter.fillRect(QRect(left, 0, max(right - left, 1), self.height()), band)
        for value in (mark_in, mark_out):
            if value is not None:
                painter.fillRect(QRect(self.mark_x(value) - 1, 0, 3, self.height()), MARK_COLOR)
        painter.end()


def format_seconds(seconds: float) -> str:
    """HH:MM:SS.mmm (the trim options and logs also take plain seconds)."""
    millis = max(round(seconds * 1000), 0)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{millis:03d}"


class TimelineScrubber(QWidget):
    """Choose the preview frame; keys: Left/Right ±1 frame, Shift ±1 second, Home/End."""

    frameChanged = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self._video: VideoInfo | None = None
        self._timecode = SourceTimecode.of(None)
        self._emitted = -1
        self._painted = -1
        self._slider = MarkedSlider(self)
        self._slider.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # keys are ours, with Shift steps
        self._slider.setRange(0, 0)
        self._slider.valueChanged.connect(self._on_value_changed)
        self._slider.sliderReleased.connect(self._emit_now)
        self._label = QLabel(self)
        self._label.setMinimumWidth(
            self._label.fontMetrics().horizontalAdvance("Frame 000000 / 000000  ·  00:00:00;00")
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
            (icons.SP_MediaSeekBackward, "Previous frame (Left; Shift+Left: −1 s)", self.step_back),
            (icons.SP_MediaSeekForward, "Next frame (Right; Shift+Right: +1 s)", self.step_forward),
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
    def set_video(self, video: VideoInfo | None, start_timecode: str | None = None) -> None:
        """New source (or none): range, label and position reset to frame 0; timecode counts
        from the source's start timecode (MediaInfo.timecode) when it has one."""
        self._video = video
        self._timecode = SourceTimecode.of(video.header_rate() if video else None, start_timecode)
        self._painted = -1
        self._slider.marks = (None, None)
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

    def painted_frame(self) -> int:
        """The frame the label names: the one last painted (-1 before any)."""
        return self._painted

    def show_painted(self, index: int) -> None:
        """The picture now shows frame `index`: the counter says so."""
        self._painted = index
        self._update_label()

    def follow(self, index: int) -> None:
        """Move the slider to a playing frame without asking for a render."""
        self._debounce.stop()
        self._slider.blockSignals(True)
        self._slider.setValue(min(max(index, 0), self._slider.maximum()))
        self._slider.blockSignals(False)
        self._emitted = self._slider.value()

    def set_marks(self, mark_in: int | None, mark_out: int | None) -> None:
        self._slider.marks = (mark_in, mark_out)
        self._slider.update()

    def marks(self) -> tuple[int | None, int | None]:
        return self._slider.marks

    def mark_x(self, index: int) -> int:
        """Where a frame lies on the slider, in timeline coordinates (for tests)."""
        return self._slider.mark_x(index) + self._slider.x()

    def frames_per_second(self) -> int:
        """Shift+arrow steps: one second of frames (the counting rate of the timecode)."""
        return self._timecode.rate.fps

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
        """SMPTE timecode of a frame from its own timestamp (right for variable frame rate)."""
        video = self._video
        if video is None or not 0 <= index < video.frame_count:
            return self._timecode.at_frame(0)
        return self._timecode.at_seconds(video.pts_to_seconds(video.frame_pts[index]))

    # -- internals -----------------------------------------------------------------------------
    def _set_enabled(self, enabled: bool) -> None:
        self._slider.setEnabled(enabled)
        for button in self._buttons:
            button.setEnabled(enabled)

    def _update_label(self) -> None:
        if self._video is None:
            self._label.setText("No video")
            return
        index = self._painted
        if index < 0:
            self._label.setText(f"Frame – / {self._video.frame_count}")
            return
        self._label.setText(
            f"Frame {index + 1} / {self._video.frame_count}  ·  {self.timecode(index)}"
        )

    def _on_value_changed(self, _value: int) -> None:
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

    def handle_key(self, event: QKeyEvent) -> bool:
        """Frame keys; the preview pane forwards the ones its picture does not use (keys
        pressed on the timeline itself go up to the pane, which pauses playback first)."""
        key, shift = event.key(), bool(event.modifiers() & Qt.KeyboardModifier.ShiftModifier)
        step = self.frames_per_second() if shift else 1
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
