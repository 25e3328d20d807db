"""Python's cyclic garbage collection, run on the GUI thread only.

Why: the collector runs in whichever thread happens to allocate when a threshold trips, such as
a worker thread deep in a boto3 call. If the garbage it finds holds a Qt object, that object is
destroyed off its own thread and the process can crash (seen in the test suite: a segfault
while "Garbage-collecting" in a cloud task's thread). So automatic collection is switched off
and a timer on the GUI thread collects instead, by the same generation thresholds.
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QObject, QTimer, Slot

#: How often the GUI thread checks whether a collection is due.
CHECK_INTERVAL_MS = 500


class GuiThreadGarbageCollector(QObject):
    """While it runs, only the GUI thread collects cyclic garbage; :meth:`stop` hands back."""

    def __init__(self, parent: QObject | None = None, interval_ms: int = CHECK_INTERVAL_MS) -> None:
        super().__init__(parent)
        self._was_enabled = gc.isenabled()
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.collect_if_due)
        gc.disable()
        self._timer.start()

    @Slot()
    def collect_if_due(self) -> int:
        """Collect the oldest generation past its threshold, as automatic collection would."""
        counts = gc.get_count()
        thresholds = gc.get_threshold()
        due = [g for g in range(3) if thresholds[g] and counts[g] > thresholds[g]]
        return gc.collect(max(due)) if due else 0

    def stop(self) -> None:
        """Collect once more here, then give collection back to Python."""
        self._timer.stop()
        gc.collect()
        if self._was_enabled:
            gc.enable()


def install_gui_thread_gc(parent: QObject) -> GuiThreadGarbageCollector:
    """Start collecting on the GUI thread for as long as ``parent`` (the application) lives."""
    return GuiThreadGarbageCollector(parent)
