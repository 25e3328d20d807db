"""Chunk planning at keyframes and the SQLite job store."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from tests.conftest import ClipFactory
from vsr_desktop.core.errors import JobError
from vsr_desktop.core.job_spec import EngineSettings, JobSpec
from vsr_desktop.core.jobs import JobRecord, JobState, JobStore
from vsr_desktop.core.media import probe
from vsr_desktop.core.plan import Plan, plan_chunks


def test_chunks_start_on_keyframes_and_cover_every_frame(clip_factory: ClipFactory) -> None:
    video = probe(clip_factory(frames=40, gop=8)).video
    plan = plan_chunks(video, chunk_seconds=0.5)  # 12 frames → next keyframe
    assert sum(c.frame_count for c in plan.chunks) == video.frame_count == 40
    assert all(c.start_pts in video.keyframe_pts for c in plan.chunks)
    assert [c.start_frame for c in plan.chunks] == [0, 16, 32]
    ends = [c.end_frame for c in plan.chunks]
    assert ends == [c.start_frame for c in plan.chunks[1:]] + [40]


def test_long_chunks_give_one_chunk_and_plan_round_trips(clip_factory: ClipFactory) -> None:
    video = probe(clip_factory(variable_frame_rate=True)).video
    assert len(plan_chunks(video, 600).chunks) == 1
    plan = plan_chunks(video, 0.01)
    assert len(plan.chunks) == len(video.keyframe_pts)
    assert Plan.from_json(plan.to_json()) == plan
    with pytest.raises(JobError):
        plan_chunks(video, 0)
    with pytest.raises(JobError, match="unreadable"):
        Plan.from_json("{}")


def _job(store: JobStore, **changes: object) -> JobRecord:
    job = JobRecord(
        id=store.new_id(),
        name="a.mp4",
        backend="local",
        source="/a.mp4",
        output="/b.mp4",
        settings={"model": "m"},
    )
    for key, value in changes.items():
        setattr(job, key, value)
    return store.add(job)


def test_store_round_trip_update_and_chunks(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite3")
    job = _job(store)
    store.update(
        job.id, state=JobState.RUNNING, frames_total=10, frames_done=5, fps=2.5, pid=os.getpid()
    )  # a live runner, or get() would read it interrupted
    again = JobStore(tmp_path / "jobs.sqlite3").get(job.id)
    assert again.state is JobState.RUNNING and again.progress == 0.5 and again.fps == 2.5
    store.record_chunk(job.id, 0, 12, tmp_path / "c0.mp4")
    assert store.finished_chunks(job.id) == {0: (12, tmp_path / "c0.mp4")}
    with pytest.raises(JobError, match="unknown job fields"):
        store.update(job.id, colour="red")
    store.delete(job.id)
    with pytest.raises(JobError, match="no job"):
        store.get(job.id)


def test_running_job_of_dead_process_becomes_resumable(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite3")
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    job = _job(store, state=JobState.RUNNING, pid=int(dead.stdout))
    alive = _job(store, state=JobState.RUNNING, pid=os.getpid())
    states = {j.id: j.state for j in store.all_jobs()}
    assert states[job.id] is JobState.INTERRUPTED
    assert states[alive.id] is JobState.RUNNING
    spec = JobSpec(source=Path("/a.mp4"), output=Path("/b.mp4"), engine=EngineSettings(model="m"))
    store.update(job.id, spec=spec)
    found = store.find_resumable(spec)
    assert found is not None and found.id == job.id
    other = replace(spec, engine=EngineSettings(model="other"))
    assert store.find_resumable(other) is None
    # Every engine setting is part of what a resume must match, precision included.
    assert (
        store.find_resumable(replace(spec, engine=EngineSettings(model="m", precision="bf16")))
        is None
    )


def test_unopenable_store_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "jobs.sqlite3"
    bad.write_bytes(b"not a database" * 100)
    with pytest.raises(JobError, match="cannot open the jobs database"):
        JobStore(bad)
