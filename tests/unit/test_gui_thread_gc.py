"""Cyclic garbage is collected on the GUI thread, never in a worker that happens to allocate."""

from __future__ import annotations

import gc
import threading
from typing import ClassVar

from vsr_desktop.gui.gui_thread_gc import GuiThreadGarbageCollector


class _CycleMember:
    """Half of a reference cycle that records the thread which finally frees it."""

    freed_in: ClassVar[list[str]] = []

    def __init__(self) -> None:
        self.partner: _CycleMember | None = None

    def __del__(self) -> None:
        _CycleMember.freed_in.append(threading.current_thread().name)


def _make_cycle() -> None:
    a, b = _CycleMember(), _CycleMember()
    a.partner, b.partner = b, a


def _allocate_in_worker() -> list[list[int]]:
    """Enough container allocations to trip generation 0's threshold many times over."""
    kept: list[list[int]] = []

    def work() -> None:
        kept.extend([i] for i in range(50 * gc.get_threshold()[0]))

    worker = threading.Thread(target=work, name="busy-worker")
    worker.start()
    worker.join()
    return kept


def test_a_worker_never_collects_and_the_gui_thread_does(qtbot) -> None:
    # The conftest fixture already runs one collector for Qt tests; this test drives its own.
    collector = GuiThreadGarbageCollector(interval_ms=20)
    try:
        assert not gc.isenabled()
        _CycleMember.freed_in.clear()
        _make_cycle()
        kept = _allocate_in_worker()
        assert _CycleMember.freed_in == []  # the worker did not collect
        qtbot.waitUntil(lambda: len(_CycleMember.freed_in) == 2, timeout=5000)
        assert set(_CycleMember.freed_in) == {threading.main_thread().name}
        del kept
    finally:
        collector.stop()


def test_without_it_the_allocating_worker_collects() -> None:
    """The hazard itself, so the test above is known to test something."""
    assert gc.isenabled()
    gc.collect()
    _CycleMember.freed_in.clear()
    _make_cycle()
    _allocate_in_worker()
    assert "busy-worker" in _CycleMember.freed_in


def test_stop_collects_and_hands_collection_back(qtbot) -> None:
    outer_enabled = gc.isenabled()  # False here: the conftest collector runs
    collector = GuiThreadGarbageCollector(interval_ms=60_000)
    _CycleMember.freed_in.clear()
    _make_cycle()
    collector.stop()
    assert len(_CycleMember.freed_in) == 2
    assert gc.isenabled() == outer_enabled
