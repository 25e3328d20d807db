"""The Slurm backend against a real one-node Slurm (started by the session fixture)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import av
import pytest

from tests.conftest import ClipFactory
from vsr_desktop.backends.slurm import SlurmBackend, SlurmTarget
from vsr_desktop.core.jobs import JobRecord, JobState, JobStore
from vsr_desktop.core.media import EncodeSettings, probe
from vsr_desktop.worker.request import UpscaleRequest

pytestmark = pytest.mark.slurm


@pytest.fixture
def backend(slurm_cluster, tmp_path: Path) -> SlurmBackend:  # type: ignore[no-untyped-def]
    target = SlurmTarget(workdir_root=tmp_path / "shared", max_parallel=2,
                         env=slurm_cluster.env())
    return SlurmBackend(JobStore(tmp_path / "jobs.sqlite3"), target)


def _wait(backend: SlurmBackend, job: JobRecord, done: Callable[[JobRecord], bool],
          timeout: float = 240) -> JobRecord:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = backend.poll(job)
        if done(job):
            return job
        time.sleep(0.5)
    raise AssertionError(f"timed out; last state {job.state} {job.phase} {job.message}")


def _audio(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(container.streams.audio[0]) if p.size]


def _request(source: Path, output: Path) -> UpscaleRequest:
    return UpscaleRequest(source=source, output=output, outscale=2, chunk_seconds=0.3,
                          encode=EncodeSettings(preset="ultrafast"))


def test_split_array_merge_end_to_end(backend: SlurmBackend, clip_factory: ClipFactory,
                                      tmp_path: Path) -> None:
    source = clip_factory(frames=24, gop=8, width=48, height=32)
    output = tmp_path / "out.mp4"
    job = backend.submit(_request(source, output))
    ids = backend.job_ids(job)
    assert ids.chunks == 3
    script = (Path(job.work_dir) / "upscale.sh").read_text()
    assert "--array=0-2%2" in script and f"afterok:{ids.split}" in script
    job = _wait(backend, job, lambda j: j.state.is_finished)
    assert job.state is JobState.COMPLETED, job.message
    assert job.chunks_done == 3 and job.frames_done == 24
    info = probe(output)
    assert info.video.frame_count == 24 and info.video.width == 96
    assert _audio(output) == _audio(source)


def test_failing_task_shows_its_log_then_resubmit_resumes(
    backend: SlurmBackend, clip_factory: ClipFactory, tmp_path: Path
) -> None:
    source = clip_factory(frames=24, gop=8, width=48, height=32)
    output = tmp_path / "out.mp4"
    job = backend.submit(_request(source, output))
    # A folder where chunk 1's partial file must go: its encoder cannot open it.
    blocker = Path(job.work_dir) / "chunks" / "chunk_00001.partial.mp4"
    blocker.mkdir(parents=True)
    job = _wait(backend, job, lambda j: j.state.is_finished)
    assert job.state is JobState.FAILED
    assert "chunk 1 failed" in job.message and "Is a directory" in job.message
    assert not output.exists()
    blocker.rmdir()
    job = backend.submit(_request(source, output), job=backend.store.get(job.id))
    job = _wait(backend, job, lambda j: j.state.is_finished)
    assert job.state is JobState.COMPLETED, job.message
    assert "already done" in (Path(job.work_dir) / "logs" / "chunk_0.log").read_text()
    assert probe(output).video.frame_count == 24


def test_cancel_scancels_all_three(backend: SlurmBackend, clip_factory: ClipFactory,
                                   tmp_path: Path) -> None:
    source = clip_factory(frames=96, gop=8, width=160, height=96)
    job = backend.submit(_request(source, tmp_path / "out.mp4"))
    _wait(backend, job, lambda j: j.state is JobState.RUNNING)
    backend.cancel(job)
    ids = backend.job_ids(job)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        states = backend.slurm_states(ids)
        if all(not s or set(s) <= {"CANCELLED", "COMPLETED"} for s in states.values()):
            break
        time.sleep(0.5)
    assert backend.store.get(job.id).state is JobState.CANCELLED
    assert "CANCELLED" in backend.slurm_states(ids)[ids.merge]
    assert not (tmp_path / "out.mp4").exists()


def test_gpu_request_reaches_the_tasks(slurm_cluster, clip_factory: ClipFactory,  # type: ignore[no-untyped-def]
                                       tmp_path: Path) -> None:
    target = SlurmTarget(workdir_root=tmp_path / "shared", gpus_per_task=1,
                         env=slurm_cluster.env())
    backend = SlurmBackend(JobStore(tmp_path / "jobs.sqlite3"), target)
    source = clip_factory(frames=8, gop=8, width=48, height=32)
    job = backend.submit(_request(source, tmp_path / "out.mp4"))
    assert "--gres=gpu:1" in (Path(job.work_dir) / "upscale.sh").read_text()
    job = _wait(backend, job, lambda j: j.state.is_finished)
    assert job.state is JobState.COMPLETED, job.message
