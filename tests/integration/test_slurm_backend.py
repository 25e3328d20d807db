"""The Slurm backend against a real one-node Slurm (started by the session fixture), and the
parts of it that need no cluster (targets, a submit that never reaches one)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import av
import pytest

from tests.conftest import ClipFactory
from vsr_desktop.backends.protocol import Backend
from vsr_desktop.backends.registry import default_registry
from vsr_desktop.backends.slurm import SlurmBackend, SlurmTarget, target_of
from vsr_desktop.backends.slurm_remote import SshLogin
from vsr_desktop.cli import main
from vsr_desktop.core.errors import InputError, JobError
from vsr_desktop.core.job_spec import EngineSettings, JobSpec
from vsr_desktop.core.jobs import JobRecord, JobState, JobStore
from vsr_desktop.core.media import EncodeSettings, probe
from vsr_desktop.core.settings import AppSettings, SettingsFile

if TYPE_CHECKING:
    from tests.helpers.slurm_fixture import LocalSlurmCluster


def _cluster_env(cluster: LocalSlurmCluster) -> dict[str, str]:
    """Only what the test cluster's clients need beyond this process's environment (the
    target is stored with the job: not the whole environment)."""
    return {k: v for k, v in cluster.env().items() if os.environ.get(k) != v}


@pytest.fixture
def backend(slurm_cluster: LocalSlurmCluster, tmp_path: Path) -> SlurmBackend:
    target = SlurmTarget(
        workdir_root=tmp_path / "shared", max_parallel=2, env=_cluster_env(slurm_cluster)
    )
    return SlurmBackend(JobStore(tmp_path / "jobs.sqlite3"), target)


def _wait(
    backend: Backend, job: JobRecord, done: Callable[[JobRecord], bool], timeout: float = 240
) -> JobRecord:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = backend.poll(job)
        if done(job):
            return job
        time.sleep(0.5)
    raise AssertionError(f"timed out; last state {job.state} {job.phase} {job.message}")


def _wait_slurm_idle(backend: SlurmBackend, job: JobRecord, timeout: float = 60) -> None:
    """Until none of the job's Slurm jobs is queued or running."""
    ids = backend.job_ids(job)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = backend.slurm_states(ids, job)
        if all(not s or set(s) <= {"CANCELLED", "COMPLETED", "FAILED"} for s in states.values()):
            return
        time.sleep(0.5)
    raise AssertionError(f"Slurm jobs still active: {states}")


def _audio(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(container.streams.audio[0]) if p.size]


def _spec(source: Path, output: Path, **changes: object) -> JobSpec:
    values: dict[str, object] = {
        "source": source,
        "output": output,
        "engine": EngineSettings(outscale=2),
        "chunk_seconds": 0.3,
        "encode": EncodeSettings(preset="ultrafast"),
        **changes,
    }
    return JobSpec(**values)  # type: ignore[arg-type]


@pytest.mark.slurm
def test_split_array_merge_end_to_end(
    backend: SlurmBackend, clip_factory: ClipFactory, tmp_path: Path
) -> None:
    source = clip_factory(frames=24, gop=8, width=48, height=32)
    output = tmp_path / "out.mp4"
    job = backend.submit(_spec(source, output))
    assert job.state is JobState.QUEUED and job.pid is None
    ids = backend.job_ids(job)
    assert ids.chunks == 3
    workdir = Path(job.work_dir)
    script = (workdir / "upscale.sh").read_text()
    assert "--array=0-2%2" in script and f"afterok:{ids.split}" in script
    # The split reads the spec file: the job's settings travel as one file, not as flags.
    split = (workdir / "split.sh").read_text()
    assert f"worker plan --workdir {workdir} --spec {workdir / 'spec.json'}" in split
    assert "--model" not in split and "--scale" not in split
    assert job.spec is not None and job.spec.target["workdir_root"] == str(tmp_path / "shared")
    job = _wait(backend, job, lambda j: j.state.is_finished)
    assert job.state is JobState.COMPLETED, job.message
    assert job.chunks_done == 3 and job.frames_done == 24
    info = probe(output)
    assert info.video.frame_count == 24 and info.video.width == 96
    assert _audio(output) == _audio(source)
    assert not backend.needs_fetch(job) and backend.fetch_output(job) == output


@pytest.mark.slurm
def test_every_setting_reaches_the_workers_spec_unchanged(
    backend: SlurmBackend, clip_factory: ClipFactory, tmp_path: Path
) -> None:
    """What `vsr worker plan` parsed and wrote back is the job's spec, field for field (the
    flags it used to get dropped --cpu-conv, --download and --overwrite)."""
    source = clip_factory(frames=24, gop=8, width=48, height=32)
    output = tmp_path / "out.mkv"
    output.write_bytes(b"an older output: overwrite says replace it")
    engine = EngineSettings(
        model="realesr-general-x4v3",
        outscale=3.0,
        denoise_strength=0.3,
        device="cpu",
        precision="fp32",
        cpu_convolution="winograd",
        tile=32,
        batch_size=2,
        allow_download=True,
    )
    encode = EncodeSettings(codec="h265", crf=30, preset="fast", ten_bit=True)
    job = backend.submit(
        _spec(source, output, engine=engine, encode=encode, chunk_seconds=0.5, overwrite=True)
    )
    plan = Path(job.work_dir) / "plan.json"
    deadline = time.monotonic() + 120
    while not plan.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert plan.exists(), backend.poll(job).message
    backend.cancel(job)  # the model is not here: the chunks must not try to download it
    written = JobSpec.from_json((Path(job.work_dir) / "spec.json").read_text())
    assert written == job.spec
    assert written.engine == engine and written.encode == encode
    assert (written.overwrite, written.chunk_seconds) == (True, 0.5)
    assert written.source_identity is not None
    assert written.source_identity.size == source.stat().st_size
    _wait_slurm_idle(backend, job)


@pytest.mark.slurm
def test_failing_task_shows_its_log_resume_keeps_chunks_restart_forgets_them(
    backend: SlurmBackend, clip_factory: ClipFactory, tmp_path: Path
) -> None:
    source = clip_factory(frames=24, gop=8, width=48, height=32)
    output = tmp_path / "out.mp4"
    job = backend.submit(_spec(source, output))
    # A folder where chunk 1's partial file must go: its encoder cannot open it.
    blocker = Path(job.work_dir) / "chunks" / "chunk_00001.partial.mp4"
    blocker.mkdir(parents=True)
    job = _wait(backend, job, lambda j: j.state.is_finished)
    assert job.state is JobState.FAILED
    assert "chunk 1 failed" in job.message and "Is a directory" in job.message
    assert not output.exists()
    _wait_slurm_idle(backend, job)
    blocker.rmdir()
    old_ids = backend.job_ids(job)
    job = backend.resume(job)
    assert job.state is JobState.QUEUED and backend.job_ids(job) != old_ids
    job = _wait(backend, job, lambda j: j.state.is_finished)
    assert job.state is JobState.COMPLETED, job.message
    assert "already done" in (Path(job.work_dir) / "logs" / "chunk_0.log").read_text()
    assert probe(output).video.frame_count == 24

    # A restart forgets the finished chunks on the cluster (and replaces only with overwrite).
    workdir = Path(job.work_dir)
    assert len(list((workdir / "chunks").glob("chunk_*.mp4"))) == 3
    with pytest.raises(InputError, match="already exists"):
        backend.resume(job, restart=True)
    job = backend.resume(job, restart=True, overwrite=True)
    assert not (workdir / "chunks").exists() and not (workdir / "progress").exists()
    assert job.state is JobState.QUEUED and job.frames_done == 0 and job.chunks_done == 0
    assert job.spec is not None and job.spec.overwrite
    assert JobSpec.from_json((workdir / "spec.json").read_text()).overwrite
    backend.cancel(job)
    _wait_slurm_idle(backend, job)


@pytest.mark.slurm
def test_cancel_scancels_all_three(
    backend: SlurmBackend, clip_factory: ClipFactory, tmp_path: Path
) -> None:
    source = clip_factory(frames=96, gop=8, width=160, height=96)
    job = backend.submit(_spec(source, tmp_path / "out.mp4"))
    _wait(backend, job, lambda j: j.state is JobState.RUNNING)
    assert backend.cancel(job).state is JobState.CANCELLED
    _wait_slurm_idle(backend, job)
    ids = backend.job_ids(job)
    assert backend.store.get(job.id).state is JobState.CANCELLED
    assert "CANCELLED" in backend.slurm_states(ids)[ids.merge]
    assert not (tmp_path / "out.mp4").exists()


@pytest.mark.slurm
def test_gpu_request_reaches_the_tasks(
    slurm_cluster: LocalSlurmCluster, clip_factory: ClipFactory, tmp_path: Path
) -> None:
    target = SlurmTarget(
        workdir_root=tmp_path / "shared", gpus_per_task=1, env=_cluster_env(slurm_cluster)
    )
    backend = SlurmBackend(JobStore(tmp_path / "jobs.sqlite3"), target)
    source = clip_factory(frames=8, gop=8, width=48, height=32)
    job = backend.submit(_spec(source, tmp_path / "out.mp4"))
    assert "--gres=gpu:1" in (Path(job.work_dir) / "upscale.sh").read_text()
    job = _wait(backend, job, lambda j: j.state.is_finished)
    assert job.state is JobState.COMPLETED, job.message


def test_a_submit_without_sbatch_is_failed_with_its_reason_and_removable(
    clip_factory: ClipFactory, tmp_path: Path
) -> None:
    """Never Queued forever: the record says FAILED and why, and remove clears it."""
    no_slurm = tmp_path / "bin"
    no_slurm.mkdir()
    target = SlurmTarget(workdir_root=tmp_path / "shared", env={"PATH": str(no_slurm)})
    backend = SlurmBackend(JobStore(tmp_path / "jobs.sqlite3"), target)
    source = clip_factory(frames=8, gop=8, width=48, height=32)
    with pytest.raises(JobError, match="was not submitted: sbatch is not installed"):
        backend.submit(_spec(source, tmp_path / "out.mp4"))
    [job] = backend.store.all_jobs()
    assert job.state is JobState.FAILED and job.pid is None
    assert "sbatch is not installed" in job.message
    assert backend.poll(job).state is JobState.FAILED  # no cluster is asked about it
    assert Path(job.work_dir).is_dir()  # the scripts were written before sbatch failed
    assert backend.cancel(job).state is JobState.FAILED
    backend.remove(job)
    assert not Path(job.work_dir).exists() and backend.store.all_jobs() == []


def test_records_stuck_before_the_queue_read_as_what_they_are(tmp_path: Path) -> None:
    """A submitter killed mid-send leaves an INTERRUPTED job (resumable at once); one still
    sending is not removed under it; an old app's record that never reached the queue
    (Queued forever) polls as FAILED and is removable."""
    import subprocess
    import sys

    backend = SlurmBackend(
        JobStore(tmp_path / "jobs.sqlite3"), SlurmTarget(workdir_root=tmp_path / "shared")
    )
    target = backend.target.to_dict()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )

    def record(job_id: str, state: JobState, pid: int | None) -> JobRecord:
        work_dir = tmp_path / "shared" / job_id
        (work_dir / "logs").mkdir(parents=True)
        return backend.store.add(
            JobRecord(
                id=job_id,
                name="a.mp4",
                backend="slurm",
                source="/a.mp4",
                output="/b.mp4",
                work_dir=str(work_dir),
                state=state,
                pid=pid,
                phase="uploading the source",
                spec=JobSpec(
                    source=Path("/a.mp4"), output=Path("/b.mp4"), backend="slurm", target=target
                ),
            )
        )

    killed = record("0000000killed", JobState.RUNNING, int(dead.stdout))
    assert backend.poll(killed).state is JobState.INTERRUPTED
    sending = record("00000sending", JobState.RUNNING, os.getpid())
    assert backend.poll(sending).state is JobState.RUNNING
    with pytest.raises(JobError, match="being submitted by this process"):
        backend.remove(sending)
    stuck = record("0000000stuck", JobState.QUEUED, None)
    job = backend.poll(stuck)
    assert job.state is JobState.FAILED and "never reached the Slurm queue" in job.message
    for job in (killed, stuck):
        backend.remove(job)
        assert not Path(job.work_dir).exists() and not backend.store.exists(job.id)


@pytest.mark.slurm
def test_an_array_sbatch_refused_withdraws_the_split_and_fails_the_job(
    slurm_cluster: LocalSlurmCluster, clip_factory: ClipFactory, tmp_path: Path
) -> None:
    """The node has 2 GPUs: sbatch refuses an array asking 3 per task after the split was
    queued; the split is scancelled (half a job must not run) and the record is FAILED."""
    target = SlurmTarget(
        workdir_root=tmp_path / "shared", gpus_per_task=3, env=_cluster_env(slurm_cluster)
    )
    backend = SlurmBackend(JobStore(tmp_path / "jobs.sqlite3"), target)
    source = clip_factory(frames=8, gop=8, width=48, height=32)
    with pytest.raises(JobError, match="was not submitted: sbatch failed"):
        backend.submit(_spec(source, tmp_path / "out.mp4"))
    [job] = backend.store.all_jobs()
    assert job.state is JobState.FAILED and "sbatch failed" in job.message
    # Slurm keeps the refused array as a FAILED record; the split is withdrawn, never run.
    queued = slurm_cluster.run(
        ["squeue", "-h", "-t", "all", "-n", f"vsr-{job.id}", "-o", "%T"]
    ).stdout.split()
    assert "CANCELLED" in queued and set(queued) <= {"CANCELLED", "FAILED"}, queued
    assert not (Path(job.work_dir) / "plan.json").exists()
    backend.remove(job)
    assert not Path(job.work_dir).exists() and not backend.store.exists(job.id)


def test_a_target_travels_in_the_spec_and_old_records_still_say_where(tmp_path: Path) -> None:
    login = SshLogin(host="me@login", port=2222, key="/home/me/.ssh/id", options=("A=b",))
    for target in (
        SlurmTarget(
            workdir_root=tmp_path / "shared",
            partition="gpu",
            gpus_per_task=2,
            max_parallel=7,
            env={"SLURM_CONF": "/c"},
        ),
        SlurmTarget(
            workdir_root=PurePosixPath("/cluster/jobs"),
            ssh=login,
            vsr_command=("apptainer", "exec", "vsr.sif", "vsr"),
        ),
    ):
        assert SlurmTarget.from_dict(target.to_dict()) == target
        job = JobRecord(
            id="0123abcd",
            name="a.mp4",
            backend="slurm",
            source="/a.mp4",
            output="/b.mp4",
            work_dir="/elsewhere/0123abcd",
            spec=JobSpec(
                source=Path("/a.mp4"),
                output=Path("/b.mp4"),
                backend="slurm",
                target=target.to_dict(),
            ),
        )
        assert target_of(job) == target  # the spec wins over the work folder's place
        assert SlurmBackend.for_job(JobStore(tmp_path / "jobs.sqlite3"), job).target == target
    legacy = JobRecord(
        id="4567ef01",
        name="a.mp4",
        backend="slurm",
        source="/a.mp4",
        output="/b.mp4",
        work_dir="/cluster/jobs/4567ef01",
        settings={
            "slurm": {
                "ssh": login.to_dict(),
                "env": {"X": "1"},
                "vsr_command": ["vsr"],
                "ids": None,
            }
        },
    )
    assert target_of(legacy) == SlurmTarget(
        workdir_root=PurePosixPath("/cluster/jobs"), ssh=login, env={"X": "1"}, vsr_command=("vsr",)
    )
    shared = JobRecord(
        id="89abcdef",
        name="a.mp4",
        backend="slurm",
        source="/a.mp4",
        output="/b.mp4",
        work_dir=str(tmp_path / "old" / "89abcdef"),
    )
    assert target_of(shared).workdir_root == tmp_path / "old"


def test_new_jobs_go_to_the_cluster_in_the_settings(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite3")
    with pytest.raises(InputError, match="no Slurm cluster is set up"):
        SlurmBackend.for_job(store, None)
    settings = AppSettings(
        slurm_workdir="/cluster/jobs",
        slurm_partition="gpu",
        slurm_gpus_per_task=1,
        slurm_max_parallel=9,
        slurm_ssh_host="me@login",
        slurm_remote_vsr="/opt/vsr/bin/vsr -q",
    )
    SettingsFile().save(settings)
    backend = default_registry(store).for_name("slurm")
    assert isinstance(backend, SlurmBackend) and not backend.runs_in_process
    assert backend.target == SlurmTarget(
        workdir_root=PurePosixPath("/cluster/jobs"),
        partition="gpu",
        gpus_per_task=1,
        max_parallel=9,
        ssh=SshLogin(host="me@login"),
        vsr_command=("/opt/vsr/bin/vsr", "-q"),
    )


@pytest.mark.slurm
def test_vsr_jobs_cancel_resume_remove_a_slurm_job(
    slurm_cluster: LocalSlurmCluster,
    clip_factory: ClipFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`vsr jobs` reaches a Slurm job through the registry alone, as it does a local one."""
    for name, value in _cluster_env(slurm_cluster).items():
        monkeypatch.setenv(name, value)
    source = clip_factory(frames=24, gop=8, width=48, height=32)
    output = tmp_path / "out.mp4"
    shared = tmp_path / "shared"
    assert (
        main(
            [
                "slurm",
                "submit",
                str(source),
                "-o",
                str(output),
                "--workdir",
                str(shared),
                "--scale",
                "2",
                "--chunk-seconds",
                "0.3",
                "--preset",
                "ultrafast",
                "--max-parallel",
                "1",
            ]
        )
        == 0
    )
    job_id = capsys.readouterr().out.strip()
    store = JobStore()
    registry = default_registry(store)
    backend = registry.for_job(store.get(job_id))
    assert isinstance(backend, SlurmBackend)

    assert main(["jobs", "cancel", job_id]) == 0
    assert store.get(job_id).state is JobState.CANCELLED
    _wait_slurm_idle(backend, store.get(job_id))
    first_ids = backend.job_ids(store.get(job_id))

    assert main(["jobs", "resume", job_id]) == 0
    job = store.get(job_id)
    assert job.state is JobState.QUEUED and backend.job_ids(job) != first_ids
    assert main(["jobs", "remove", job_id]) == JobError.exit_code  # still queued
    assert "cancel it first" in capsys.readouterr().err
    job = _wait(backend, job, lambda j: j.state.is_finished)
    assert job.state is JobState.COMPLETED, job.message
    assert probe(output).video.frame_count == 24

    assert main(["jobs", "remove", job_id]) == 0
    assert not store.exists(job_id) and not (shared / job_id).exists()
    assert output.is_file()  # never the output
