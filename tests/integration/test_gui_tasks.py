"""The app's one task runner: lanes, keys, cancel, progress, and answers on the GUI thread."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from vsr_desktop.core.errors import CancelledError, JobError
from vsr_desktop.gui.lanes import current_lane
from vsr_desktop.gui.tasks import CANCELLED, DONE, FAILED, Task, TaskContext, TaskResult, TaskRunner

BIG = 6_000_000_000  # past 2**32: a byte count must not overflow on its way


def test_a_lane_runs_one_task_at_a_time_and_lanes_run_side_by_side(qtbot: Any) -> None:
    runner = TaskRunner()
    gate = threading.Event()
    active: dict[str, int] = {"a": 0}
    most = {"a": 0}
    lock = threading.Lock()
    results: list[TaskResult] = []
    answered_on: set[bool] = set()

    def in_lane_a(ctx: TaskContext) -> object:
        with lock:
            active["a"] += 1
            most["a"] = max(most["a"], active["a"])
        gate.wait(10)
        with lock:
            active["a"] -= 1
        return current_lane()

    def on_done(result: TaskResult) -> None:
        answered_on.add(threading.current_thread() is threading.main_thread())
        results.append(result)

    for n in range(3):
        runner.start(Task(f"a{n}", "a", in_lane_a, on_done=on_done))
    assert runner.start(Task("a0", "a", in_lane_a)) == "a0"  # a key is not started twice
    assert [t.key for t in runner.queued_in("a")] == ["a1", "a2"]
    with qtbot.waitSignal(runner.finished, timeout=10_000) as other:
        runner.start(Task("b", "b", lambda ctx: "b ran while a waits", on_done=on_done))
    assert other.args == ["b", "b ran while a waits"]
    with qtbot.waitSignal(runner.idle, timeout=20_000):
        gate.set()
    assert most["a"] == 1 and [r.key for r in results] == ["b", "a0", "a1", "a2"]
    assert {r.value for r in results if r.key.startswith("a")} == {"a"}  # current_lane()
    assert answered_on == {True} and not runner.is_busy()
    runner.shutdown()


def test_cancel_drops_a_queued_task_and_stops_a_running_one(qtbot: Any) -> None:
    runner = TaskRunner()
    started = threading.Event()
    seen: list[object] = []

    def cooperative(ctx: TaskContext) -> object:
        started.set()
        ctx.report(BIG)
        while not ctx.cancel.wait(0.01):
            pass
        raise CancelledError("stopped")

    outcomes: dict[str, str] = {}

    def record(result: TaskResult) -> None:
        outcomes[result.key] = result.outcome

    runner.start(Task("run", "x", cooperative, on_progress=seen.append, on_done=record))
    runner.start(Task("next", "x", lambda ctx: 1, on_done=record))
    qtbot.waitUntil(started.is_set, timeout=10_000)
    assert runner.cancel("next") and outcomes == {"next": CANCELLED}
    with qtbot.waitSignal(runner.cancelled, timeout=10_000) as cancelled:
        assert runner.cancel("run")
    assert cancelled.args == ["run"] and outcomes["run"] == CANCELLED
    assert seen == [BIG] and not runner.cancel("gone")
    runner.shutdown()


def test_failures_are_answered_and_the_lane_goes_on(qtbot: Any) -> None:
    runner = TaskRunner()
    outcomes: list[tuple[str, str]] = []

    def boom(ctx: TaskContext) -> object:
        raise JobError("the far side said no")

    def crash(ctx: TaskContext) -> object:
        raise KeyboardInterrupt  # not even an Exception: the lane must not stall

    for key, fn in (("boom", boom), ("crash", crash), ("fine", lambda ctx: "ok")):
        runner.start(Task(key, "y", fn, on_done=lambda r: outcomes.append((r.key, r.outcome))))
    qtbot.waitUntil(lambda: len(outcomes) == 3, timeout=10_000)
    assert outcomes == [("boom", FAILED), ("crash", FAILED), ("fine", DONE)]
    runner.shutdown()


def test_shutdown_cancels_and_waits_for_every_thread(qtbot: Any) -> None:
    runner = TaskRunner()
    started = threading.Event()
    stopped = threading.Event()

    def waits(ctx: TaskContext) -> object:
        started.set()
        ctx.cancel.wait(10)
        stopped.set()
        return None

    runner.start(Task("waits", "z", waits))
    runner.start(Task("queued", "z", lambda ctx: None))
    qtbot.waitUntil(started.is_set, timeout=10_000)
    runner.shutdown()
    assert stopped.is_set() and runner.is_closed and not runner.tasks()
    with pytest.raises(RuntimeError):
        runner.start(Task("late", "z", lambda ctx: None))
