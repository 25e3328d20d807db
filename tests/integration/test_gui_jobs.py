"""The jobs panel with the real local backend, the real bundled model and real clips.

Every job here really decodes, upscales with Real-ESRGAN on the CPU, encodes and merges;
the panel runs it on the task runner's "jobs" lane and the tests wait on its signals, never
on sleeps. One test registers a third backend (a recording fake: the panel → protocol
boundary is what it checks) to show the panel has no per-backend branch.
"""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtWidgets import QMessageBox

from tests.conftest import ClipFactory
from vsr_desktop.backends.local import LocalBackend
from vsr_desktop.backends.protocol import Backend, Progress
from vsr_desktop.backends.registry import default_registry
from vsr_desktop.core.errors import VsrError
from vsr_desktop.core.job_spec import JobSpec
from vsr_desktop.core.jobs import JobRecord, JobState, JobStore
from vsr_desktop.core.media import EncodeSettings, probe
from vsr_desktop.gui.jobs import job_runner, jobs_model, jobs_panel, remote_poller
from vsr_desktop.gui.jobs.jobs_model import Column, JobsTableModel, Roles
from vsr_desktop.gui.jobs.jobs_panel import JobsPanel

FAST = EncodeSettings(preset="ultrafast")
JOB_TIMEOUT_MS = 120_000

PanelFactory = Callable[..., JobsPanel]


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "jobs.sqlite3"


@pytest.fixture
def make_panel(qtbot: Any, tmp_path: Path, store_path: Path) -> Iterator[PanelFactory]:
    """Panels over a store file in tmp_path; every one is shut down (thread joined) after."""
    panels: list[JobsPanel] = []

    def make(
        opener: Callable[[Path], None] | None = None,
        extra: dict[str, Backend] | None = None,
        store: JobStore | None = None,
    ) -> JobsPanel:
        store = store or JobStore(store_path)  # a new JobStore per panel, like a new start
        registry = default_registry(store)
        for name, backend in (extra or {}).items():
            registry.register(name, _always(backend))
        panel = JobsPanel(
            store,
            backend_factory=lambda: LocalBackend(store, work_root=tmp_path / "work"),
            opener=opener,
            registry=registry,
        )
        qtbot.addWidget(panel)
        panel.resize(900, 300)
        panels.append(panel)
        return panel

    yield make
    for panel in panels:
        panel.shutdown()


def _always(backend: Backend) -> Callable[[JobStore, JobRecord | None], Backend]:
    """A registry factory that answers every job with the one backend."""
    return lambda _store, _job: backend


def _cell(model: JobsTableModel, job_id: str, column: Column, role: int = 0) -> Any:
    return model.index_of(job_id, column).data(role)


def _add(store: JobStore, name: str, state: JobState, created: float, **fields: Any) -> str:
    job = JobRecord(
        id=JobStore.new_id(),
        name=name,
        backend=fields.pop("backend", "local"),
        source=f"/videos/{name}",
        output=f"/videos/{name}.x4.mp4",
        state=state,
        created_at=created,
        **fields,
    )
    store.add(job)
    return job.id


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", ""])  # portable `true`
    proc.wait()
    return proc.pid


def test_model_diffs_store_changes_without_resets(qtmodeltester: Any, store_path: Path) -> None:
    store = JobStore(store_path)
    big = 6_000_000_000  # past 2**32: must not overflow anywhere
    running = _add(
        store,
        "running.mp4",
        JobState.RUNNING,
        100.0,
        pid=os.getpid(),
        phase="chunk 2/3",
        frames_done=int(big * 0.42),
        frames_total=big,
        fps=12.5,
        eta_seconds=3723.0,
        chunks_total=3,
        chunks_done=1,
    )
    crashed = _add(
        store,
        "crashed.mp4",
        JobState.RUNNING,
        90.0,
        pid=_dead_pid(),
        frames_done=8,
        frames_total=16,
        chunks_done=1,
        chunks_total=2,
    )
    failed = _add(store, "failed.mp4", JobState.FAILED, 80.0, message="disk full — free space")
    cloud = _add(
        store,
        "cloud.mp4",
        JobState.RUNNING,
        70.0,
        backend="aws",
        cost_usd=0.37,
        frames_done=5,
        frames_total=10,
    )
    model = JobsTableModel(store)
    qtmodeltester.check(model)

    assert [model.job_at(r).id for r in range(model.rowCount())] == [  # type: ignore[union-attr]
        running,
        crashed,
        failed,
        cloud,
    ]
    assert _cell(model, running, Column.PROGRESS) == "42 %"
    assert _cell(model, running, Column.PROGRESS, Roles.ProgressRole) == pytest.approx(0.42)
    assert _cell(model, running, Column.ETA) == "1:02:03"
    assert _cell(model, running, Column.FPS) == "12.5"
    assert _cell(model, running, Column.STATE) == "Running — chunk 2/3"
    assert _cell(model, crashed, Column.STATE) == "Interrupted — resumable"
    assert JobState(_cell(model, crashed, Column.STATE, Roles.StateRole)) is JobState.INTERRUPTED
    assert _cell(model, failed, Column.NAME, 3) == "disk full — free space"  # ToolTipRole
    assert _cell(model, cloud, Column.COST) == "~$0.37"
    assert _cell(model, cloud, Column.STATE) == "Running"  # drawn like any other row
    assert _cell(model, cloud, Column.NAME, Roles.JobRole).backend == "aws"

    from PySide6.QtCore import QItemSelectionModel

    selection = QItemSelectionModel(model)
    selection.select(
        model.index_of(failed),
        QItemSelectionModel.SelectionFlag.Rows | QItemSelectionModel.SelectionFlag.ClearAndSelect,
    )
    events: list[str] = []
    model.modelReset.connect(lambda: events.append("reset"))
    model.rowsInserted.connect(lambda *_: events.append("insert"))
    model.rowsRemoved.connect(lambda *_: events.append("remove"))
    model.dataChanged.connect(lambda *_: events.append("change"))

    model.refresh()
    assert events == []  # nothing changed: no signal at all
    newest = _add(store, "newest.mp4", JobState.QUEUED, 200.0)
    store.delete(crashed)
    store.update(cloud, frames_done=10, state=JobState.COMPLETED, cost_usd=0.52)
    model.refresh()
    qtmodeltester.check(model)
    assert sorted(events) == ["change", "insert", "remove"]
    assert [model.job_at(r).id for r in range(model.rowCount())] == [  # type: ignore[union-attr]
        newest,
        running,
        failed,
        cloud,
    ]
    assert [i.data(Roles.JobIdRole) for i in selection.selectedRows()] == [failed]
    assert _cell(model, cloud, Column.PROGRESS) == "100 %"

    model.apply_progress(Progress(running, "upscaling", big // 2, big, 2, 3, 20.0, 65.0))
    assert _cell(model, running, Column.PROGRESS) == "50 %"
    assert _cell(model, running, Column.ETA) == "0:01:05"
    assert _cell(model, running, Column.STATE) == "Running — chunk 2/3"  # store's phase
    qtmodeltester.check(model)


def test_job_runs_to_completion_and_survives_restart(
    make_panel: PanelFactory, clip_factory: ClipFactory, tmp_path: Path, qtbot: Any
) -> None:
    opened: list[Path] = []
    panel = make_panel(opener=opened.append)
    source = clip_factory(frames=16, gop=8, width=48, height=32)
    output = tmp_path / "out.mp4"
    seen: list[Progress] = []
    panel.runner.progress.connect(seen.append)  # re-emitted by the runner on the GUI thread

    with qtbot.waitSignal(panel.jobFinished, timeout=JOB_TIMEOUT_MS) as finished:
        job_id = panel.submit(JobSpec(source, output, encode=FAST, chunk_seconds=0.3))
        # A second job waits in the queue; cancelling it drops it before it starts.
        with qtbot.waitSignal(panel.jobCancelled, timeout=1000) as dropped:
            second = panel.submit(JobSpec(source, tmp_path / "second.mp4", encode=FAST))
            assert panel.runner.queued_job_ids == [second]
            assert _cell(panel.model, second, Column.STATE) == "Queued"
            panel.select_job(second)
            assert panel.cancel_action.isEnabled()
            panel.cancel_action.trigger()
        assert dropped.args == [second]
    assert finished.args == [job_id]

    model = panel.model
    assert _cell(model, job_id, Column.STATE) == "Completed ✓"
    assert _cell(model, job_id, Column.PROGRESS) == "100 %"
    assert JobState(_cell(model, second, Column.STATE, Roles.StateRole)) is JobState.CANCELLED
    assert probe(output).video.frame_count == 16
    assert not (tmp_path / "second.mp4").exists()
    assert seen and max(p.frames_done for p in seen) == 16

    panel.select_job(job_id)
    assert panel.open_output_action.isEnabled() and not panel.cancel_action.isEnabled()
    panel.open_output_action.trigger()
    panel.reveal_action.trigger()
    assert opened == [output.resolve(), output.resolve().parent]

    panel.shutdown()
    reopened = make_panel()  # "restart the app": same store file, new everything
    assert {reopened.model.job_at(r).id for r in range(reopened.model.rowCount())} == {  # type: ignore[union-attr]
        job_id,
        second,
    }
    assert _cell(reopened.model, job_id, Column.STATE) == "Completed ✓"


def test_cancel_running_job_leaves_no_output(
    make_panel: PanelFactory, clip_factory: ClipFactory, tmp_path: Path, qtbot: Any
) -> None:
    panel = make_panel()
    source = clip_factory(frames=16, gop=8, width=48, height=32)
    output = tmp_path / "cancelled.mp4"

    clicked: list[str] = []

    def cancel_at_first_progress(progress: Progress) -> None:
        if not clicked:  # later events may still be in flight: click once
            clicked.append(progress.job_id)
            panel.select_job(progress.job_id)
            assert panel.cancel_action.isEnabled()
            panel.cancel_action.trigger()

    panel.runner.progress.connect(cancel_at_first_progress)
    with qtbot.waitSignal(panel.jobCancelled, timeout=JOB_TIMEOUT_MS) as cancelled:
        job_id = panel.submit(JobSpec(source, output, encode=FAST, chunk_seconds=0.3))
    assert cancelled.args == [job_id]
    qtbot.waitUntil(lambda: panel.runner.running_job_id is None)
    job = panel.model.job(job_id)
    assert job is not None and job.state is JobState.CANCELLED
    assert not output.exists() and not list(tmp_path.glob("cancelled*"))
    panel.select_job(job_id)
    assert panel.retry_action.isEnabled() and not panel.cancel_action.isEnabled()
    assert not panel.open_output_action.isEnabled()


class _Crash(BaseException):
    """Stands for the process dying: not an Exception, so no handler records anything."""


class _DyingStore(JobStore):
    """A store whose process "dies" right after it records the first finished chunk."""

    def update(self, job_id: str, *, unless_finished: bool = False, **changes: Any) -> bool:
        written = super().update(job_id, unless_finished=unless_finished, **changes)
        if changes.get("chunks_done") == 1:
            raise _Crash
        return written


def test_crashed_job_shows_resumable_and_resume_finishes(
    make_panel: PanelFactory,
    clip_factory: ClipFactory,
    tmp_path: Path,
    store_path: Path,
    qtbot: Any,
) -> None:
    source = clip_factory(frames=16, gop=8, width=48, height=32)
    output = tmp_path / "crashed.mp4"
    spec = JobSpec(source, output, encode=FAST, chunk_seconds=0.3)
    crashing = LocalBackend(_DyingStore(store_path), work_root=tmp_path / "work")
    with pytest.raises(_Crash):
        crashing.submit(spec)  # chunk 0 finished and recorded, then the "crash"
    job = crashing.store.all_jobs()[0]
    # Its runner is gone (the work folder's lock with it): the store says so at once.
    assert job.state is JobState.INTERRUPTED and set(crashing.store.finished_chunks(job.id)) == {0}

    panel = make_panel()
    assert _cell(panel.model, job.id, Column.STATE) == "Interrupted — resumable"
    panel.select_job(job.id)
    assert panel.resume_action.isEnabled() and panel.retry_action.isEnabled()
    assert not panel.open_output_action.isEnabled()
    with qtbot.waitSignal(panel.jobFinished, timeout=JOB_TIMEOUT_MS):
        panel.resume_action.trigger()
    assert _cell(panel.model, job.id, Column.STATE) == "Completed ✓"
    assert probe(output).video.frame_count == 16
    assert "1/2 chunks already done" in Path(job.log_path).read_text()


def test_bad_input_raises_from_submit(make_panel: PanelFactory, tmp_path: Path) -> None:
    panel = make_panel()
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is not a video")
    with pytest.raises(VsrError) as error:
        panel.submit(JobSpec(fake, tmp_path / "out.mp4"))
    assert error.value.user_message()
    assert panel.model.rowCount() == 0 and panel.runner.running_job_id is None


def test_failure_in_worker_shows_message(
    make_panel: PanelFactory, clip_factory: ClipFactory, tmp_path: Path, qtbot: Any
) -> None:
    panel = make_panel()
    source = tmp_path / "vanishing.mp4"
    source.write_bytes(clip_factory(frames=8, gop=8, width=48, height=32).read_bytes())
    job = panel.local_backend.prepare(JobSpec(source, tmp_path / "out.mp4"))
    panel.local_backend.store.update(job.id, state=JobState.CANCELLED)
    source.unlink()  # the source disappears before the retry: the worker must report it
    panel.model.refresh()
    panel.select_job(job.id)
    with qtbot.waitSignal(panel.jobFailed, timeout=JOB_TIMEOUT_MS) as failed:
        panel.retry_action.trigger()
    job_id, message = failed.args
    assert job_id == job.id and message
    assert _cell(panel.model, job.id, Column.STATE) == "Failed"
    assert _cell(panel.model, job.id, Column.OUTPUT, 3) == message  # ToolTipRole
    assert message in panel.status_label.text()


def test_actions_follow_selection(
    make_panel: PanelFactory, store_path: Path, tmp_path: Path
) -> None:
    store = JobStore(store_path)
    done_output = tmp_path / "done.mp4"
    done_output.write_bytes(b"video")
    log = tmp_path / "work" / "x" / "job.log"
    log.parent.mkdir(parents=True)
    log.write_text("2026-01-01 start\n")
    ids = {
        "queued": _add(store, "q", JobState.QUEUED, 6.0),
        "running": _add(store, "r", JobState.RUNNING, 5.0, pid=os.getpid()),
        "completed": _add(
            store, "c", JobState.COMPLETED, 4.0, log_path=str(log), work_dir=str(log.parent)
        ),
        "failed": _add(store, "f", JobState.FAILED, 3.0, message="boom — try again"),
        "interrupted": _add(store, "i", JobState.INTERRUPTED, 2.0, chunks_done=1, chunks_total=3),
        "cancelled": _add(store, "x", JobState.CANCELLED, 1.0),
    }
    store.update(ids["completed"], output=str(done_output))
    opened: list[Path] = []
    panel = make_panel(opener=opened.append)
    actions = {
        "cancel": panel.cancel_action,
        "resume": panel.resume_action,
        "retry": panel.retry_action,
        "open": panel.open_output_action,
        "log": panel.show_log_action,
        "remove": panel.remove_action,
    }

    def enabled() -> set[str]:
        return {name for name, action in actions.items() if action.isEnabled()}

    assert enabled() == set() and not panel.reveal_action.isEnabled()
    expected = {
        "queued": {"cancel"},
        "running": {"cancel"},
        "completed": {"open", "log", "remove"},
        "failed": {"retry", "remove"},
        "interrupted": {"resume", "retry", "remove"},
        "cancelled": {"retry", "remove"},
    }
    for state, names in expected.items():
        panel.select_job(ids[state])
        assert enabled() == names, state
    panel.select_job(ids["failed"])
    assert "boom — try again" in panel.status_label.text()

    panel.select_job(ids["completed"])
    assert panel.reveal_action.isEnabled()
    panel.show_log_action.trigger()
    viewer = panel.log_dialog
    assert viewer is not None and viewer.isVisible()
    assert viewer.text.toPlainText() == "2026-01-01 start\n"
    viewer.open_button.click()  # "Open in editor"
    viewer.close()
    panel.open_output_action.trigger()
    assert opened == [log, done_output]
    panel.remove_action.trigger()
    assert panel.model.row_of(ids["completed"]) == -1
    assert [j.id for j in store.all_jobs()].count(ids["completed"]) == 0
    assert done_output.exists() and not log.exists()  # the output is the user's: kept


def test_remove_asks_before_deleting_finished_chunks(
    make_panel: PanelFactory, store_path: Path, tmp_path: Path
) -> None:
    """An interrupted job's finished chunks are its resume: Remove asks first; Cancel keeps
    them, Remove deletes them. A job with nothing finished goes at once."""
    store = JobStore(store_path)
    work = tmp_path / "work" / "half"
    work.mkdir(parents=True)
    chunk = work / "chunk_0000.mp4"
    chunk.write_bytes(b"finished chunk")
    half = _add(
        store, "half", JobState.INTERRUPTED, 2.0, chunks_done=1, chunks_total=3, work_dir=str(work)
    )
    empty = _add(store, "empty", JobState.FAILED, 1.0)
    panel = make_panel()

    panel.select_job(empty)
    panel.remove_action.trigger()
    assert panel.remove_box is None and panel.model.row_of(empty) == -1

    panel.select_job(half)
    panel.remove_action.trigger()
    box = panel.remove_box
    assert box is not None and box.isVisible()
    assert "1 of 3 chunks" in box.informativeText()
    assert box.defaultButton() is box.button(QMessageBox.StandardButton.Cancel)
    box.button(QMessageBox.StandardButton.Cancel).click()
    assert panel.model.row_of(half) != -1 and chunk.exists()

    panel.remove_action.trigger()
    box = panel.remove_box
    assert box is not None
    remove = next(b for b in box.buttons() if b.text() == "Remove")
    remove.click()
    assert panel.model.row_of(half) == -1
    assert [j.id for j in JobStore(store_path).all_jobs()] == []
    assert not chunk.exists() and not work.exists()
    assert "Removed “half”" in panel.status_label.text()


def _remove_asks_then_cancel(panel: JobsPanel, job_id: str, says: str) -> None:
    """Remove on the job opens a confirmation saying ``says``; Cancel keeps the row."""
    panel.select_job(job_id)
    panel.remove_action.trigger()
    box = panel.remove_box
    assert box is not None and says in box.informativeText()
    box.button(QMessageBox.StandardButton.Cancel).click()
    assert panel.model.row_of(job_id) != -1


def test_log_viewer_follows_a_growing_log(
    make_panel: PanelFactory, store_path: Path, tmp_path: Path, qtbot: Any
) -> None:
    """Show log opens the end of the log and picks up lines the job writes afterwards; a long
    log shows only its last whole lines."""
    store = JobStore(store_path)
    log = tmp_path / "work" / "y" / "job.log"
    log.parent.mkdir(parents=True)
    old_lines = [f"2026-01-01 00:00:00 chunk {i} done (24 frames)" for i in range(3000)]
    log.write_text("\n".join(old_lines) + "\n")
    job = _add(store, "long", JobState.FAILED, 1.0, log_path=str(log), work_dir=str(log.parent))
    panel = make_panel()
    panel.select_job(job)
    panel.show_log_action.trigger()
    viewer = panel.log_dialog
    assert viewer is not None
    shown = viewer.text.toPlainText().splitlines()
    assert shown[-1] == old_lines[-1] and shown[0] in old_lines  # whole lines only
    assert 0 < len(shown) < len(old_lines)
    assert "the end of" in viewer.status.text()
    with log.open("a") as more:
        more.write("2026-01-01 00:10:00 failed: chunk 7: disk full\n")
    qtbot.waitUntil(lambda: viewer.text.toPlainText().endswith("disk full\n"), timeout=5000)
    log.unlink()
    viewer.refresh()
    assert "Cannot read" in viewer.status.text()
    viewer.close()
    qtbot.waitUntil(lambda: panel.log_dialog is None, timeout=2000)


def test_shutdown_mid_job_cancels_and_joins(
    make_panel: PanelFactory, clip_factory: ClipFactory, tmp_path: Path, qtbot: Any
) -> None:
    panel = make_panel()
    source = clip_factory(frames=16, gop=8, width=48, height=32)
    with qtbot.waitSignal(panel.runner.progress, timeout=JOB_TIMEOUT_MS):
        job_id = panel.submit(JobSpec(source, tmp_path / "closing.mp4", encode=FAST))
        queued = panel.submit(JobSpec(source, tmp_path / "later.mp4", encode=FAST))
    panel.shutdown(cancel_jobs=True)  # returns only once the worker thread has ended
    assert panel.runner.running_job_id is None and panel.runner.is_closed
    states = {j.id: j.state for j in JobStore(panel.model.store.path).all_jobs()}
    assert states == {job_id: JobState.CANCELLED, queued: JobState.CANCELLED}
    assert not (tmp_path / "closing.mp4").exists()
    with pytest.raises(RuntimeError):
        panel.submit(JobSpec(source, tmp_path / "after.mp4", encode=FAST))


class GatedStore(JobStore):
    """A real store that holds the run right after its first finished chunk until the test
    lets it go: the test acts while the job is surely half done."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.reached = threading.Event()
        self.go = threading.Event()

    def record_chunk(self, job_id: str, index: int, frames: int, path: Path) -> None:
        super().record_chunk(job_id, index, frames, path)
        if index == 0:
            self.reached.set()
            self.go.wait(60)


def test_shutdown_keeps_jobs_for_later_by_default(
    make_panel: PanelFactory,
    clip_factory: ClipFactory,
    tmp_path: Path,
    store_path: Path,
    qtbot: Any,
) -> None:
    """Shutting down without cancelling stops the run the way a quitting process would: the
    running job reads INTERRUPTED (its lock is gone) with its first chunk kept, the queued
    one stays queued, both are offered for resuming at the next start, and no output."""
    store = GatedStore(store_path)
    panel = make_panel(store=store)
    source = clip_factory(frames=16, gop=8, width=48, height=32)
    job_id = panel.submit(JobSpec(source, tmp_path / "kept.mp4", encode=FAST, chunk_seconds=0.3))
    queued = panel.submit(JobSpec(source, tmp_path / "waiting.mp4", encode=FAST))
    qtbot.waitUntil(store.reached.is_set, timeout=JOB_TIMEOUT_MS)
    panel.stop_jobs(cancel_jobs=False)
    store.go.set()
    panel.shutdown()  # waits for the run to stop at its next progress report
    after = JobStore(store_path)
    states = {j.id: j.state for j in after.all_jobs()}
    assert states == {job_id: JobState.INTERRUPTED, queued: JobState.QUEUED}
    assert "the process running it stopped" in after.get(job_id).message
    assert set(after.finished_chunks(job_id)) == {0} and after.get(job_id).chunks_done == 1
    assert not (tmp_path / "kept.mp4").exists() and not (tmp_path / "waiting.mp4").exists()
    again = make_panel()
    assert {j.id for j in again.interrupted_jobs()} == {job_id, queued}


def test_visible_panel_polls_rows_written_elsewhere(
    make_panel: PanelFactory, store_path: Path, qtbot: Any
) -> None:
    panel = make_panel()
    panel.show()
    qtbot.waitExposed(panel)
    other_process = JobStore(store_path)  # e.g. `vsr upscale` running in a terminal
    job_id = _add(
        other_process,
        "cli.mp4",
        JobState.RUNNING,
        1.0,
        backend="slurm",
        frames_done=3,
        frames_total=4,
    )
    qtbot.waitUntil(lambda: panel.model.row_of(job_id) == 0, timeout=5000)
    other_process.update(job_id, state=JobState.COMPLETED, frames_done=4)
    qtbot.waitUntil(lambda: _cell(panel.model, job_id, Column.STATE) == "Completed", timeout=5000)
    panel.hide()
    assert not panel._timer.isActive()  # no polling while nobody looks


# --- one protocol, any backend ------------------------------------------------------------


class ElsewhereBackend:
    """A third backend, registered under a name the panel has never heard of.

    A recording fake on purpose: what these tests check is the boundary — that the panel's
    actions reach a backend only through the protocol, off the GUI thread for a backend
    that does not run jobs in process. It writes the store as a real backend would.
    """

    name = "elsewhere"
    runs_in_process = False

    def __init__(self, store: JobStore) -> None:
        self.store = store
        self.calls: list[tuple[str, str]] = []
        self.threads: set[bool] = set()  # True: a call ran on the GUI thread
        self.fetched: set[str] = set()

    def _record(self, what: str, job_id: str) -> None:
        self.calls.append((what, job_id))
        self.threads.add(threading.current_thread() is threading.main_thread())

    def submit(self, spec: JobSpec, progress: Any = None, cancel: Any = None) -> JobRecord:
        job = self.store.add(
            JobRecord(
                id=JobStore.new_id(),
                name=spec.source.name,
                backend=self.name,
                source=str(spec.source),
                output=str(spec.output),
                spec=spec,
                state=JobState.RUNNING,
                phase="sent elsewhere",
            )
        )
        self._record("submit", job.id)
        return job

    def poll(self, job: JobRecord) -> JobRecord:
        self._record("poll", job.id)
        return self.store.get(job.id)

    def cancel(self, job: JobRecord) -> JobRecord:
        self._record("cancel", job.id)
        self.store.update(job.id, state=JobState.CANCELLED, message="cancelled elsewhere")
        return self.store.get(job.id)

    def resume(
        self,
        job: JobRecord,
        progress: Any = None,
        cancel: Any = None,
        *,
        restart: bool = False,
        overwrite: bool = False,
    ) -> JobRecord:
        self._record("restart" if restart else "resume", job.id)
        self.store.update(job.id, state=JobState.RUNNING, phase="sent elsewhere again")
        return self.store.get(job.id)

    def fetch_output(self, job: JobRecord, on_bytes: Any = None, cancel: Any = None) -> Path:
        self._record("fetch", job.id)
        Path(job.output).write_bytes(b"the output, fetched")
        if on_bytes is not None:
            on_bytes(19, 19)
        self.fetched.add(job.id)
        self.store.update(job.id, message="fetched")  # a new version of the row
        return Path(job.output)

    def remove(self, job: JobRecord) -> None:
        self._record("remove", job.id)
        self.store.delete(job.id)

    def needs_fetch(self, job: JobRecord) -> bool:
        return job.state is JobState.COMPLETED and job.id not in self.fetched

    def work_lost_on_remove(self, job: JobRecord) -> str:
        return "its chunks elsewhere are deleted" if job.chunks_done else ""


def test_a_new_backend_gets_every_action_through_the_protocol(
    make_panel: PanelFactory,
    store_path: Path,
    tmp_path: Path,
    qtbot: Any,
    qtmodeltester: Any,
) -> None:
    store = JobStore(store_path)
    elsewhere = ElsewhereBackend(store)
    ids = {
        "running": _add(store, "r", JobState.RUNNING, 4.0, backend="elsewhere"),
        "cancelled": _add(
            store, "c", JobState.CANCELLED, 3.0, backend="elsewhere", chunks_done=1, chunks_total=3
        ),
        "done": _add(store, "d", JobState.COMPLETED, 2.0, backend="elsewhere"),
        "failed": _add(
            store,
            "f",
            JobState.FAILED,
            1.0,
            backend="elsewhere",
            chunks_done=2,
            chunks_total=3,
            message="the far side said no",
        ),
    }
    store.update(ids["done"], output=str(tmp_path / "d.x4.mp4"))
    panel = make_panel(extra={"elsewhere": elsewhere})
    qtmodeltester.check(panel.model)

    def called(what: str, job_id: str) -> None:
        qtbot.waitUntil(lambda: (what, job_id) in elsewhere.calls, timeout=10_000)

    called("poll", ids["running"])  # unfinished rows of a remote backend are polled
    panel.select_job(ids["running"])
    assert panel.cancel_action.isEnabled() and not panel.remove_action.isEnabled()
    panel.cancel_action.trigger()
    called("cancel", ids["running"])
    qtbot.waitUntil(lambda: _cell(panel.model, ids["running"], Column.STATE) == "Cancelled")

    panel.select_job(ids["cancelled"])
    assert panel.resume_action.isEnabled() and panel.retry_action.isEnabled()
    panel.resume_action.trigger()
    called("resume", ids["cancelled"])
    qtbot.waitUntil(lambda: not panel.runner.owns(ids["cancelled"]))  # the call ended
    assert store.get(ids["cancelled"]).state is JobState.RUNNING
    store.update(ids["cancelled"], state=JobState.FAILED)
    panel.model.refresh()
    panel.select_job(ids["cancelled"])
    panel.retry_action.trigger()  # retry = resume from nothing
    called("restart", ids["cancelled"])

    assert _cell(panel.model, ids["done"], Column.STATE) == "Completed — ready to download"
    panel.select_job(ids["done"])
    assert panel.download_action.isEnabled() and not panel.open_output_action.isEnabled()
    panel.download_action.trigger()
    called("fetch", ids["done"])
    qtbot.waitUntil(lambda: _cell(panel.model, ids["done"], Column.STATE) == "Completed")
    qtbot.waitUntil(panel.open_output_action.isEnabled)
    assert not panel.download_action.isEnabled()

    _remove_asks_then_cancel(panel, ids["failed"], "its chunks elsewhere are deleted")
    assert ("remove", ids["failed"]) not in elsewhere.calls
    panel.remove_action.trigger()
    box = panel.remove_box
    assert box is not None
    next(b for b in box.buttons() if b.text() == "Remove").click()
    called("remove", ids["failed"])
    qtbot.waitUntil(lambda: panel.model.row_of(ids["failed"]) == -1)

    source = tmp_path / "new.mp4"
    source.write_bytes(b"not even a video: the backend decides")
    panel.submit(JobSpec(source, tmp_path / "new.x4.mp4", backend="elsewhere"))
    qtbot.waitUntil(lambda: any(what == "submit" for what, _ in elsewhere.calls))
    qtbot.waitUntil(lambda: any(j.name == "new.mp4" for j in store.all_jobs()))
    assert elsewhere.threads == {False}  # never on the GUI thread
    qtmodeltester.check(panel.model)


def test_the_panel_names_no_backend() -> None:
    """Nothing in the jobs panel, its model, runner or poller asks which backend a job is
    on, nor reads a backend's own section of the settings (the model's only backend names
    are the column's display labels)."""
    for module in (jobs_panel, jobs_model, job_runner, remote_poller):
        source = inspect.getsource(module)
        assert not re.search(r"\.backend\s*(==|!=|in\b)", source), module.__name__
        assert not re.search(r"settings\s*(\[|\.get\()", source), module.__name__
        assert "set_remote" not in source, module.__name__
        if module is not jobs_model:
            assert not re.search(r"[\"'](slurm|aws)[\"']", source), module.__name__


def test_offer_resume_at_start_runs_interrupted_jobs_to_the_end(
    make_panel: PanelFactory,
    clip_factory: ClipFactory,
    tmp_path: Path,
    store_path: Path,
    qtbot: Any,
) -> None:
    """A job kept for later (stopped mid-run) is offered at the next start; "Not now"
    leaves it be, "Resume" runs it to the end from its finished chunk."""
    store = GatedStore(store_path)
    panel = make_panel(store=store)
    source = clip_factory(frames=16, gop=8, width=48, height=32)
    output = tmp_path / "later.mp4"
    job_id = panel.submit(JobSpec(source, output, encode=FAST, chunk_seconds=0.3))
    qtbot.waitUntil(store.reached.is_set, timeout=JOB_TIMEOUT_MS)
    panel.stop_jobs(cancel_jobs=False)
    store.go.set()
    panel.shutdown()
    assert JobStore(store_path).get(job_id).state is JobState.INTERRUPTED

    again = make_panel()
    box = again.offer_resume()
    assert box is not None and box.isVisible() and again.resume_box is box
    assert not box.isModal() and f"{source.name} — 1 of 2 chunks done" in box.informativeText()
    next(b for b in box.buttons() if b.text() == "Not now").click()
    assert again.resume_box is None
    assert JobStore(store_path).get(job_id).state is JobState.INTERRUPTED

    box = again.offer_resume()
    assert box is not None
    with qtbot.waitSignal(again.jobFinished, timeout=JOB_TIMEOUT_MS) as finished:
        next(b for b in box.buttons() if b.text() == "Resume").click()
    assert finished.args == [job_id]
    assert JobStore(store_path).get(job_id).state is JobState.COMPLETED
    assert probe(output).video.frame_count == 16
    assert "1/2 chunks already done" in Path(again.model.job(job_id).log_path).read_text()
    assert again.offer_resume() is None  # nothing left to offer


def test_a_failed_submit_is_a_failed_row_that_can_be_removed(
    make_panel: PanelFactory,
    clip_factory: ClipFactory,
    tmp_path: Path,
    qtbot: Any,
) -> None:
    """A Slurm submit that never reached a cluster (no sbatch here) is FAILED with its
    reason, not Queued forever, and Remove takes it away with its work folder."""
    from vsr_desktop.backends.slurm import SlurmBackend, SlurmTarget

    panel = make_panel()
    source = clip_factory(frames=8, gop=8, width=48, height=32)
    shared = tmp_path / "shared"
    shared.mkdir()
    backend = SlurmBackend(
        panel.model.store, SlurmTarget(workdir_root=shared, env={"PATH": str(tmp_path)})
    )
    with qtbot.waitSignal(panel.actionFailed, timeout=30_000) as failed:
        panel.submit(JobSpec(source, tmp_path / "out.mp4", backend="slurm"), backend)
    title, error = failed.args
    assert title == f"Cannot send {source.name}" and "sbatch" in error.user_message()
    panel.model.refresh()
    [job] = panel.model.store.all_jobs()
    assert job.state is JobState.FAILED and "sbatch" in job.message
    assert _cell(panel.model, job.id, Column.STATE) == "Failed"
    panel.select_job(job.id)
    assert "sbatch" in panel.status_label.text()
    assert panel.remove_action.isEnabled() and panel.retry_action.isEnabled()
    panel.remove_action.trigger()  # nothing was finished: no question
    assert panel.remove_box is None
    qtbot.waitUntil(lambda: panel.model.row_of(job.id) == -1, timeout=10_000)
    assert panel.model.store.all_jobs() == [] and not Path(job.work_dir).exists()
