"""A job does exactly what was asked, across kills, resumes and a second runner.

Real `vsr` processes killed with SIGKILL, real encoded clips, the real bundled model: the
resumed job must use the settings it was started with, refuse a replaced source, and let
only one runner at a time work in its folder.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest

from tests.conftest import ClipFactory
from vsr_desktop.backends.local import LocalBackend
from vsr_desktop.core.errors import InputError, JobError
from vsr_desktop.core.job_lock import runner_pid
from vsr_desktop.core.job_spec import EngineSettings, JobSpec
from vsr_desktop.core.jobs import JobRecord, JobState, JobStore
from vsr_desktop.core.media import EncodeSettings, probe

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX-only")

FAST = EncodeSettings(preset="ultrafast")


def vsr(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vsr_desktop.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
    )


def start_vsr(*args: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "vsr_desktop.cli", *map(str, args)],
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def upscale_args(source: Path, output: Path | None, *extra: object) -> list[object]:
    """`vsr upscale` of a tiny clip in 0.3 s chunks (several chunks to kill between)."""
    args: list[object] = [
        "upscale",
        source,
        "--preset",
        "ultrafast",
        "--chunk-seconds",
        "0.3",
        "--quiet",
        *extra,
    ]
    return args if output is None else [*args, "-o", output]


def frames_of(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def job_for(output: Path) -> JobRecord | None:
    jobs = [j for j in JobStore().all_jobs() if j.output == str(output.resolve())]
    return jobs[0] if jobs else None


def kill_after_chunks(proc: subprocess.Popen[str], output: Path, chunks: int) -> str:
    """SIGKILL `proc` once `chunks` chunks of its job are recorded; returns the job id."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        job = job_for(output) if (Path(os.environ["XDG_DATA_HOME"])).exists() else None
        if job is not None and len(JobStore().finished_chunks(job.id)) >= chunks:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            return job.id
        time.sleep(0.02)
    proc.kill()
    proc.wait(timeout=30)
    raise AssertionError(f"the job ended before {chunks} chunk(s) could be recorded")


def test_kill_then_resume_by_id_keeps_every_engine_setting(
    clip_factory: ClipFactory, tmp_path: Path
) -> None:
    """The settings were lost on resume before: tiling alone changes ~6 % of the values
    here, and fp32 differs from the bf16 that auto picks on a CPU with AMX."""
    source = clip_factory(frames=24, gop=8, width=32, height=24)
    precision = "fp32"
    engine_flags = ["--precision", precision, "--cpu-conv", "onednn", "--tile", "16"]
    args = upscale_args(source, None, *engine_flags, "--scale", "2")
    reference = tmp_path / "reference.mp4"
    assert vsr(*args, "-o", reference).returncode == 0

    output = tmp_path / "killed.mp4"
    job_id = kill_after_chunks(start_vsr(*args, "-o", output), output, 1)
    # At once, with no other command looking first: the dead runner's job is resumable.
    resumed = vsr("jobs", "resume", job_id, "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming job {job_id}" in resumed.stderr
    job = JobStore().get(job_id)
    assert job.state is JobState.COMPLETED
    assert job.spec is not None and job.spec.engine.precision == precision
    assert (job.spec.engine.tile, job.spec.engine.cpu_convolution) == (16, "onednn")
    got, want = frames_of(output), frames_of(reference)
    assert len(got) == len(want) == 24
    assert all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))


def test_a_replaced_source_is_refused_and_restart_starts_over(
    clip_factory: ClipFactory, tmp_path: Path
) -> None:
    source = tmp_path / "clip.mp4"
    shutil.copy(clip_factory(frames=24, gop=8, width=32, height=24), source)
    output = tmp_path / "out.mp4"
    args = upscale_args(source, output, "--precision", "fp32", "--scale", "2")
    job_id = kill_after_chunks(start_vsr(*args), output, 1)
    shutil.copy(clip_factory(frames=16, gop=8, width=32, height=24, fps=24), source)

    refused = vsr("jobs", "resume", job_id)
    assert refused.returncode == JobError.exit_code
    assert "changed since" in refused.stderr and "--restart" in refused.stderr
    assert not output.exists()
    again = vsr(*args)  # the same command again: it would resume, so it is refused too
    assert again.returncode == JobError.exit_code and "changed since" in again.stderr

    restarted = vsr("jobs", "resume", job_id, "--restart", "--quiet")
    assert restarted.returncode == 0, restarted.stderr
    assert probe(output).video.frame_count == 16  # all of the new clip, none of the old


def test_two_resumes_at_once_leave_one_run_and_a_whole_output(
    clip_factory: ClipFactory, tmp_path: Path
) -> None:
    source = clip_factory(frames=32, gop=8, width=48, height=32)
    output = tmp_path / "out.mp4"
    args = upscale_args(source, output, "--precision", "fp32")
    job_id = kill_after_chunks(start_vsr(*args), output, 1)
    work_dir = Path(JobStore().get(job_id).work_dir)

    first = start_vsr("jobs", "resume", job_id, "--quiet")
    deadline = time.monotonic() + 60
    while runner_pid(work_dir) != first.pid and first.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    second = vsr("jobs", "resume", job_id)
    _, first_err = first.communicate(timeout=600)

    assert first.returncode == 0, first_err
    if second.returncode == 0:  # only when the first had finished before it looked
        assert "already completed" in second.stderr
    else:
        assert second.returncode == JobError.exit_code
        assert f"already running in process {first.pid}" in second.stderr
    job = JobStore().get(job_id)
    assert job.state is JobState.COMPLETED
    assert probe(output).video.frame_count == 32
    assert not list(work_dir.glob("chunk_*")) and not list(tmp_path.glob("*.partial*"))


class _DiesBeforeCompleted(JobStore):
    """A store whose process 'dies' right after the output's rename, before COMPLETED."""

    def update(self, job_id: str, *, unless_finished: bool = False, **changes: object) -> bool:
        if changes.get("state") is JobState.COMPLETED:
            raise _Killed
        return super().update(job_id, unless_finished=unless_finished, **changes)


class _Killed(BaseException):
    pass


def test_a_whole_output_with_a_stale_running_record_reads_completed(
    clip_factory: ClipFactory, tmp_path: Path
) -> None:
    source = clip_factory(frames=16, gop=8, width=32, height=24)
    output = tmp_path / "out.mp4"
    store_path = tmp_path / "jobs.sqlite3"
    dying = LocalBackend(_DiesBeforeCompleted(store_path), work_root=tmp_path / "work")
    spec = JobSpec(
        source=source,
        output=output,
        encode=FAST,
        chunk_seconds=0.3,
        engine=EngineSettings(precision="fp32", outscale=2),
    )
    with pytest.raises(_Killed):
        dying.submit(spec)
    assert output.exists()
    store = JobStore(store_path)
    job = store.get(dying.store.all_jobs()[0].id)
    assert job.state is JobState.INTERRUPTED  # its runner is gone: no lock holder

    backend = LocalBackend(store, work_root=tmp_path / "work")
    assert backend.poll(job).state is JobState.COMPLETED
    assert not list(Path(job.work_dir).glob("chunk_*"))


def test_resume_with_overwrite_replaces_an_output_that_appeared(
    clip_factory: ClipFactory, tmp_path: Path
) -> None:
    source = clip_factory(frames=16, gop=8, width=32, height=24)
    output = tmp_path / "out.mp4"
    args = upscale_args(source, output, "--precision", "fp32", "--scale", "2")
    job_id = kill_after_chunks(start_vsr(*args), output, 1)
    output.write_bytes(b"the user's own file")

    refused = vsr("jobs", "resume", job_id)
    assert refused.returncode == InputError.exit_code and "--overwrite" in refused.stderr
    assert output.read_bytes() == b"the user's own file"
    assert JobStore().get(job_id).state is JobState.FAILED

    done = vsr("jobs", "resume", job_id, "--overwrite", "--quiet")
    assert done.returncode == 0, done.stderr
    assert probe(output).video.frame_count == 16


def test_jobs_remove_deletes_work_files_and_cancel_reaches_another_process(
    clip_factory: ClipFactory, tmp_path: Path
) -> None:
    source = clip_factory(frames=48, gop=8, width=40, height=32)
    output = tmp_path / "out.mp4"
    proc = start_vsr(*upscale_args(source, output, "--precision", "fp32"))
    deadline = time.monotonic() + 120
    while (job := job_for(output)) is None or runner_pid(Path(job.work_dir)) is None:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.02)
    busy = vsr("jobs", "remove", job.id)
    assert busy.returncode == JobError.exit_code and "cancel it first" in busy.stderr

    assert vsr("jobs", "cancel", job.id).returncode == 0
    assert proc.wait(timeout=120) == 130  # stopped cooperatively, resumable
    job = JobStore().get(job.id)
    assert job.state is JobState.CANCELLED
    work_dir = Path(job.work_dir)
    assert work_dir.is_dir()

    removed = vsr("jobs", "remove", job.id)
    assert removed.returncode == 0, removed.stderr
    assert not work_dir.exists() and not output.exists()
    assert job_for(output) is None


def test_jobs_list_survives_a_closed_pipe(clip_factory: ClipFactory, tmp_path: Path) -> None:
    store = JobStore()
    for index in range(50):
        store.add(
            JobRecord(
                id=f"job{index:03d}",
                name="x",
                backend="local",
                source="s",
                output=str(tmp_path / f"{index}.mp4"),
            )
        )
    shell = subprocess.run(
        f"{sys.executable} -m vsr_desktop.cli jobs list | head -1",
        shell=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shell.stdout.count("\n") == 1
    assert "Traceback" not in shell.stderr and "BrokenPipe" not in shell.stderr
