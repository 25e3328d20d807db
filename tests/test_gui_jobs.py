"""The jobs panel with the real local backend, the real bundled model and real clips.

Every job here really decodes, upscales with Real-ESRGAN on the CPU, encodes and merges;
the panel runs it on its worker thread and the tests wait on its signals, never on sleeps.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtWidgets import QMessageBox

from tests.conftest import ClipFactory
from vsr_desktop.backends.local import LocalBackend, Progress, UpscaleRequest
from vsr_desktop.core.errors import VsrError
from vsr_desktop.core.jobs import JobRecord, JobState, JobStore
from vsr_desktop.core.media import EncodeSettings, probe
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

    def make(opener: Callable[[Path], None] | None = None) -> JobsPanel:
        store = JobStore(store_path)  # a new JobStore per panel, like a fresh app start
        panel = JobsPanel(
            store,
            backend_factory=lambda: LocalBackend(store, work_root=tmp_path / "work"),
            opener=opener,
        )
        qtbot.addWidget(panel)
        panel.resize(900, 300)
        panels.append(panel)
        return panel

    yield make
    for panel in panels:
        panel.shutdown()


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
    proc = subprocess.Popen(["true"])
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
        job_id = panel.submit(UpscaleRequest(source, output, encode=FAST, chunk_seconds=0.3))
        # A second job waits in the queue; cancelling it drops it before it starts.
        with qtbot.waitSignal(panel.jobCancelled, timeout=1000) as dropped:
            second = panel.submit(UpscaleRequest(source, tmp_path / "second.mp4", encode=FAST))
            assert panel.runner.queued_job_ids == [second]
            assert _cell(panel.model, second, Column.STATE) == "Queued"
            panel.select_job(second)
            assert panel.cancel_action.isEnabled()
            panel.cancel_action.trigger()
        assert dropped.args == [second]
    assert finished.args == [job_id]

    model = panel.model
    assert _cell(model, job_id, Column.STATE) == "Completed"
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
    assert _cell(reopened.model, job_id, Column.STATE) == "Completed"


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
        job_id = panel.submit(UpscaleRequest(source, output, encode=FAST, chunk_seconds=0.3))
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

    def update(self, job_id: str, **changes: Any) -> None:
        super().update(job_id, **changes)
        if changes.get("chunks_done") == 1:
            raise _Crash


def test_crashed_job_shows_resumable_and_resume_finishes(
    make_panel: PanelFactory,
    clip_factory: ClipFactory,
    tmp_path: Path,
    store_path: Path,
    qtbot: Any,
) -> None:
    source = clip_factory(frames=16, gop=8, width=48, height=32)
    output = tmp_path / "crashed.mp4"
    request = UpscaleRequest(source, output, encode=FAST, chunk_seconds=0.3)
    crashing = LocalBackend(_DyingStore(store_path), work_root=tmp_path / "work")
    with pytest.raises(_Crash):
        crashing.run(request)  # chunk 0 finished and recorded, then the "crash"
    job = crashing.store.all_jobs()[0]
    assert job.state is JobState.RUNNING and set(crashing.store.finished_chunks(job.id)) == {0}
    crashing.store.update(job.id, pid=_dead_pid())  # the process that ran it is gone

    panel = make_panel()
    assert _cell(panel.model, job.id, Column.STATE) == "Interrupted — resumable"
    panel.select_job(job.id)
    assert panel.resume_action.isEnabled() and panel.retry_action.isEnabled()
    assert not panel.open_output_action.isEnabled()
    with qtbot.waitSignal(panel.jobFinished, timeout=JOB_TIMEOUT_MS):
        panel.resume_action.trigger()
    assert _cell(panel.model, job.id, Column.STATE) == "Completed"
    assert probe(output).video.frame_count == 16
    assert "1/2 chunks already done" in Path(job.log_path).read_text()


def test_bad_input_raises_from_submit(make_panel: PanelFactory, tmp_path: Path) -> None:
    panel = make_panel()
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is not a video")
    with pytest.raises(VsrError) as error:
        panel.submit(UpscaleRequest(fake, tmp_path / "out.mp4"))
    assert error.value.user_message()
    assert panel.model.rowCount() == 0 and panel.runner.running_job_id is None


def test_failure_in_worker_shows_message(
    make_panel: PanelFactory, clip_factory: ClipFactory, tmp_path: Path, qtbot: Any
) -> None:
    panel = make_panel()
    source = tmp_path / "vanishing.mp4"
    source.write_bytes(clip_factory(frames=8, gop=8, width=48, height=32).read_bytes())
    job = panel.runner.backend.prepare(UpscaleRequest(source, tmp_path / "out.mp4"))
    panel.runner.backend.store.update(job.id, state=JobState.CANCELLED)
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
    half = _add(store, "half", JobState.INTERRUPTED, 2.0, chunks_done=1, chunks_total=3,
                work_dir=str(work))
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


def test_remove_asks_before_forgetting_an_undownloaded_cloud_output(
    make_panel: PanelFactory, store_path: Path
) -> None:
    store = JobStore(store_path)
    cloud = _add(store, "cloud", JobState.COMPLETED, 1.0, backend="aws",
                 settings={"aws": {"downloaded": False}})
    panel = make_panel()
    _remove_asks_then_cancel(panel, cloud, "not been downloaded")
    # A Slurm job over SSH whose output is still only on the cluster: the same question.
    cluster = _add(store, "cluster", JobState.COMPLETED, 2.0, backend="slurm",
                   settings={"slurm": {"ssh": {"host": "me@login"}, "fetched": False}})
    panel.model.refresh()
    _remove_asks_then_cancel(panel, cluster, "still on the cluster")


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
        job_id = panel.submit(UpscaleRequest(source, tmp_path / "closing.mp4", encode=FAST))
        queued = panel.submit(UpscaleRequest(source, tmp_path / "later.mp4", encode=FAST))
    panel.shutdown()  # returns only once the worker thread has ended
    assert panel.runner.running_job_id is None and panel.runner.is_closed
    states = {j.id: j.state for j in JobStore(panel.model.store.path).all_jobs()}
    assert states == {job_id: JobState.CANCELLED, queued: JobState.CANCELLED}
    assert not (tmp_path / "closing.mp4").exists()
    with pytest.raises(RuntimeError):
        panel.submit(UpscaleRequest(source, tmp_path / "after.mp4", encode=FAST))


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
