"""The Slurm backend against a real one-node Slurm (started by the session fixture), and the
parts of it that need no cluster (targets, a submit that never reaches one)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import av
import pytest

from tests.conftest import ClipFactory
from vsr_desktop.backends.protocol import Backend
from vsr_desktop.backends.registry import default_registry
from vsr_desktop.backends.slurm import SlurmBackend, SlurmTarget, target_of
from vsr_desktop.backends.slurm_remote import LocalTransport, SshLogin
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


@pytest.fixture
def sbatch_calls(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The argv of every Slurm client the backend runs here (sbatch options included: they
    are arguments, never lines of a script)."""
    calls: list[list[str]] = []
    real = LocalTransport.run

    def run(self: LocalTransport, args: Sequence[str], check: bool = True) -> Any:
        calls.append(list(args))
        return real(self, args, check=check)

    monkeypatch.setattr(LocalTransport, "run", run)
    return calls


def _sbatch_options(calls: list[list[str]], script: str) -> list[str]:
    [found] = [c for c in calls if c[0] == "sbatch" and c[-1].endswith("/" + script)]
    return found[1:-1]


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
    backend: SlurmBackend,
    clip_factory: ClipFactory,
    tmp_path: Path,
    sbatch_calls: list[list[str]],
) -> None:
    source = clip_factory(frames=24, gop=8, width=48, height=32)
    output = tmp_path / "out.mp4"
    job = backend.submit(_spec(source, output))
    assert job.state is JobState.QUEUED and job.pid is None
    ids = backend.job_ids(job)
    assert ids.chunks == 3
    workdir = Path(job.work_dir)
    options = _sbatch_options(sbatch_calls, "upscale.sh")
    assert "--array=0-2%2" in options and f"--dependency=afterok:{ids.split}" in options
    assert "#SBATCH" not in (workdir / "upscale.sh").read_text()
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
    # The merge's "nothing lost" check, made on the cluster, reaches the row.
    assert job.verify_report == {"ok": True, "lines": []}, job.verify_report
    assert "verified" in job.message


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
    slurm_cluster: LocalSlurmCluster,
    clip_factory: ClipFactory,
    tmp_path: Path,
    sbatch_calls: list[list[str]],
) -> None:
    target = SlurmTarget(
        workdir_root=tmp_path / "shared", gpus_per_task=1, env=_cluster_env(slurm_cluster)
    )
    backend = SlurmBackend(JobStore(tmp_path / "jobs.sqlite3"), target)
    source = clip_factory(frames=8, gop=8, width=48, height=32)
    job = backend.submit(_spec(source, tmp_path / "out.mp4"))
    assert "--gres=gpu:1" in _sbatch_options(sbatch_calls, "upscale.sh")
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
    login = SshLogin(
        host="me@login", port=2222, key="/home/me/.ssh/id", options=("ConnectTimeout=30",)
    )
    for target in (
        SlurmTarget(
            workdir_root=tmp_path / "shared",
            partition="gpu",
            gpus_per_task=2,
            max_parallel=7,
            env={"SLURM_CONF": "/etc/slurm-alt/slurm.conf"},
        ),
        SlurmTarget(
            workdir_root=PurePosixPath("/cluster/jobs"),
            ssh=login,
            vsr_command=("apptainer", "exec", "vsr.sif", "vsr"),
        ),
    ):
        assert SlurmTarget.from_dict(target.to_dict()) == target
        # Variables travel by name; their values never leave this process (keychain aside).
        assert target.to_dict()["env"] == sorted(target.env)
        assert "slurm-alt" not in json.dumps(target.to_dict())
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


# --------------------------------------------------------------------------- hostile input


def _stub_slurm(tmp_path: Path) -> tuple[Path, Path]:
    """`sbatch`, `squeue`, `scontrol`, `scancel` and `vsr` stubs in a folder of their own:
    each records its argv (NUL-separated) and the SLURM_JWT it was given; sbatch checks its
    script with `bash -n`, runs it with a real bash (as Slurm would) and answers an id."""
    bin_dir, records = tmp_path / "stub-bin", tmp_path / "records"
    bin_dir.mkdir()
    records.mkdir()
    rec = shlex.quote(str(records))
    scripts = {
        "sbatch": f"""n=$(( $(ls {rec} | grep -c '^sbatch\\.[0-9]*$') + 1 ))
printf '%s\\0' "$@" > {rec}/sbatch.$n
printf '%s' "${{SLURM_JWT-(unset)}}" > {rec}/sbatch.$n.jwt
script="${{@: -1}}"
bash -n "$script" || exit 9
SLURM_ARRAY_TASK_ID=0 bash "$script" > {rec}/sbatch.$n.out 2>&1 || exit 8
echo $(( 1000 + n ))
""",
        "vsr": f"""n=$(( $(ls {rec} | grep -c '^vsr\\.[0-9]*$') + 1 ))
printf '%s\\0' "$@" > {rec}/vsr.$n
""",
    }
    for name in ("squeue", "scontrol", "scancel"):
        scripts[name] = f"""printf '%s\\0' "$@" >> {rec}/{name}
printf '%s' "${{SLURM_JWT-(unset)}}" > {rec}/{name}.jwt
"""
    for name, body in scripts.items():
        (bin_dir / name).write_text("#!/bin/bash\n" + body)
        (bin_dir / name).chmod(0o755)
    return bin_dir, records


def _argv(path: Path) -> list[str]:
    return [a.decode() for a in path.read_bytes().split(b"\0")[:-1]]


def _evil(marker: Path) -> str:
    """Shell syntax in every form, printable: legal data wherever any text is allowed."""
    return f"$(touch {marker}) `touch {marker}`;touch {marker}|&'\"\\ %j %a é"


@pytest.mark.skipif("sys.platform == 'win32'", reason="stub Slurm clients are bash scripts")
def test_hostile_values_arrive_as_data_through_real_scripts_and_a_real_shell(
    clip_factory: ClipFactory, tmp_path: Path
) -> None:
    """Work folder, vsr command words and a variable's value full of shell syntax: the
    scripts pass `bash -n`, a real bash runs them, and the stubs receive every value
    verbatim as one argument; no marker file appears."""
    marker = tmp_path / "pwned"
    evil = _evil(marker)
    bin_dir, records = _stub_slurm(tmp_path)
    root = tmp_path / f"shared {evil.replace(chr(92), '')}"  # a backslash is refused
    vsr = (str(bin_dir / "vsr"), f"--x={evil}", evil)
    target = SlurmTarget(
        workdir_root=root,
        partition="gpu,debug",
        gpus_per_task=1,
        max_parallel=2,
        vsr_command=vsr,
        env={"PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JWT": evil},
    )
    backend = SlurmBackend(JobStore(tmp_path / "jobs.sqlite3"), target)
    source = clip_factory(frames=24, gop=8, width=48, height=32)
    job = backend.submit(_spec(source, tmp_path / "out.mp4"))
    assert job.state is JobState.QUEUED, job.message
    workdir = root / job.id
    assert Path(job.work_dir) == workdir and workdir.is_dir()
    logs = str(workdir / "logs").replace("%", "%%")  # Slurm's own pattern escape
    common = ["--parsable", f"--job-name=vsr-{job.id}", "--partition=gpu,debug"]
    assert _argv(records / "sbatch.1") == [
        *common,
        f"--output={logs}/split.log",
        str(workdir / "split.sh"),
    ]
    assert _argv(records / "sbatch.2") == [
        *common,
        "--array=0-2%2",
        f"--output={logs}/chunk_%a.log",
        "--dependency=afterok:1001",
        "--kill-on-invalid-dep=yes",
        "--gres=gpu:1",
        str(workdir / "upscale.sh"),
    ]
    where = ["--workdir", str(workdir)]
    assert _argv(records / "vsr.1") == [
        *vsr[1:],
        "worker",
        "plan",
        *where,
        "--spec",
        str(workdir / "spec.json"),
    ]
    assert _argv(records / "vsr.2") == [*vsr[1:], "worker", "upscale", *where]
    assert _argv(records / "vsr.3") == [*vsr[1:], "worker", "merge", *where]
    for n in (1, 2, 3):
        assert (records / f"sbatch.{n}.jwt").read_text() == evil
    for name in ("split.sh", "upscale.sh", "merge.sh"):
        script = workdir / name
        subprocess.run(["bash", "-n", str(script)], check=True)
        lines = script.read_text().splitlines()
        assert len(lines) == 3 and lines[0] == "#!/bin/bash", lines
    assert JobSpec.from_json((workdir / "spec.json").read_text()).target["env"] == [
        "PATH",
        "SLURM_JWT",
    ]
    backend.poll(job)  # squeue and scontrol with the same variables
    assert (records / "squeue.jwt").read_text() == evil
    assert backend.cancel(job).state is JobState.CANCELLED
    assert _argv(records / "scancel") == ["1001", "1002", "1003"]
    # The job's folders are owner-only, and tightened when found looser (on resubmit).
    assert [(workdir / n).stat().st_mode & 0o777 for n in ("", "logs")] == [0o700, 0o700]
    workdir.chmod(0o755)
    assert backend.resume(job).state is JobState.QUEUED
    assert workdir.stat().st_mode & 0o777 == 0o700
    assert _argv(records / "sbatch.4")[-1] == str(workdir / "split.sh")
    backend.cancel(job)
    backend.remove(job)
    assert not workdir.exists() and root.is_dir()
    assert not marker.exists()


MARKER = "/tmp/vsr-test-pwned"
_SSH = ["--ssh", "me@login.invalid", "--workdir", "/cluster/jobs"]
HOSTILE_FLAGS = [
    (f"--partition=gpu\ntouch {MARKER}", []),
    (f"--partition=gpu;touch {MARKER}", []),
    (f"--partition=$(touch {MARKER})", []),
    (f"--partition=`touch {MARKER}`", []),
    ("--partition=-p", []),
    ("--partition=gpu\x00x", []),
    (f"--partition=gpu\x85touch {MARKER}", []),
    (f"--partition=gpu\u2028touch {MARKER}", []),
    (f"--workdir=/shared\ntouch {MARKER}", []),
    ("--workdir=/shared\x1b]0;title\x07", []),
    ("--workdir=/shared\\jobs", []),
    (f"--workdir=jobs/$(touch {MARKER})", ["--ssh", "me@login"]),
    ("--max-parallel=0", []),
    ("--gpus-per-task=-1", []),
    (f"--ssh=-oProxyCommand=touch {MARKER}", ["--workdir", "/cluster/jobs"]),
    (f"--ssh=login;touch {MARKER}", ["--workdir", "/cluster/jobs"]),
    (f"--ssh=$(touch {MARKER})@login", ["--workdir", "/cluster/jobs"]),
    (f"--ssh=me@login\ntouch {MARKER}", ["--workdir", "/cluster/jobs"]),
    ("--ssh-port=70000", _SSH),
    (f"--ssh-key=-oProxyCommand=touch {MARKER}", _SSH),
    (f"--ssh-key=/k\ntouch {MARKER}", _SSH),
    (f"--ssh-option=ProxyCommand=touch {MARKER}", _SSH),
    (f"--ssh-option=LocalCommand=touch {MARKER}", _SSH),
    ("--ssh-option=PermitLocalCommand=yes", _SSH),
    (f"--ssh-option=ConnectTimeout=5\ntouch {MARKER}", _SSH),
    (f"--ssh-option=-oProxyCommand=touch {MARKER}", _SSH),
    (f"--ssh-env=A;touch {MARKER};B=1", _SSH),
    (f"--ssh-env=$(touch {MARKER})=1", _SSH),
    ("--ssh-env=1A=x", _SSH),
    (f"--ssh-env=X=v\ntouch {MARKER}", _SSH),
    ("--ssh-env=X=\x00", _SSH),
    (f"--remote-vsr=vsr\ntouch {MARKER}", _SSH),
    (f"--remote-vsr=-c touch {MARKER}", _SSH),
    ("--remote-vsr=vsr 'unclosed", _SSH),
]


@pytest.mark.parametrize(("flag", "context"), HOSTILE_FLAGS, ids=ascii)
def test_every_slurm_flag_refuses_what_a_shell_would_run(
    flag: str,
    context: list[str],
    clip_factory: ClipFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Refused where it enters, with exit 2, naming the flag; nothing is recorded, no
    script written, no ssh started."""
    source = clip_factory(frames=8, gop=8, width=48, height=32)
    args = ["slurm", "submit", str(source), "-o", str(tmp_path / "out.mp4")]
    if not any(a.startswith("--workdir") for a in (flag, *context)):
        args += ["--workdir", str(tmp_path / "shared")]
    assert main([*args, *context, flag]) == InputError.exit_code
    err = capsys.readouterr().err
    assert err.startswith("vsr: error: " + flag.split("=")[0]), err
    assert err.count("\n") == 1  # one line: the value is shown escaped
    assert JobStore().all_jobs() == [] and not (tmp_path / "shared").exists()
    assert not Path(MARKER).exists()


TAMPERED = [
    ("workdir_root", f"/shared\ntouch {MARKER}"),
    ("workdir_root", ["/shared"]),
    ("partition", f"gpu\ntouch {MARKER}"),
    ("partition", f"gpu;touch {MARKER}"),
    ("vsr_command", ["vsr", f"x\ntouch {MARKER}"]),
    ("vsr_command", f"touch {MARKER}"),  # a string, not a list of words
    ("vsr_command", ["-c", f"touch {MARKER}"]),
    ("env", [f"A;touch {MARKER};B"]),
    ("env", {"X": f"v\ntouch {MARKER}"}),  # an older record's values
    ("env", "PATH"),
    ("gpus_per_task", "1\ntouch"),
    ("max_parallel", -1),
    ("ssh", {"host": f"-oProxyCommand=touch {MARKER}"}),
    ("ssh", {"host": "me@login", "options": [f"ProxyCommand=touch {MARKER}"]}),
    ("ssh", {"host": "me@login", "options": f"ProxyCommand=touch {MARKER}"}),
    ("ssh", {"host": "me@login", "key": f"-oProxyCommand=touch {MARKER}"}),
    ("ssh", {"host": "me@login", "port": "22; touch"}),
]


@pytest.mark.parametrize(("field", "value"), TAMPERED, ids=ascii)
def test_a_tampered_job_store_is_refused_never_run(
    field: str, value: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A job whose stored target was edited to hold a command: every operation that would
    reach a cluster is refused (JobError, exit 6) and runs nothing; remove forgets the
    record alone (nothing it names is contacted)."""
    store = JobStore()  # where `vsr` looks
    target = {**SlurmTarget(workdir_root=tmp_path / "shared").to_dict(), field: value}
    job = store.add(
        JobRecord(
            id="0123abcd0123",
            name="a.mp4",
            backend="slurm",
            source="/a.mp4",
            output=str(tmp_path / "b.mp4"),
            work_dir=str(tmp_path / "shared" / "0123abcd0123"),
            state=JobState.QUEUED,
            settings={"slurm": {"ids": {"split": "1", "array": "2", "merge": "3", "chunks": 1}}},
            spec=JobSpec(
                source=Path("/a.mp4"), output=tmp_path / "b.mp4", backend="slurm", target=target
            ),
        )
    )
    backend = SlurmBackend.for_job(store, job)
    for operation in (backend.poll, backend.cancel, backend.resume, backend.fetch_output):
        with pytest.raises(JobError, match=r"stored Slurm target is refused|unreadable"):
            operation(job)
    assert "left in place" in backend.work_lost_on_remove(job)
    for command in (["slurm", "status"], ["jobs", "cancel"], ["jobs", "resume"]):
        assert main([*command, job.id]) == JobError.exit_code
        assert "Slurm target" in capsys.readouterr().err
    assert store.exists(job.id)
    assert main(["jobs", "remove", job.id]) == 0
    assert not store.exists(job.id) and not Path(MARKER).exists()


def test_a_tampered_work_folder_is_refused(tmp_path: Path) -> None:
    job = JobRecord(
        id="0123abcd0123",
        name="a.mp4",
        backend="slurm",
        source="/a.mp4",
        output="/b.mp4",
        work_dir=f"/shared\ntouch {MARKER}/0123abcd0123",
        spec=JobSpec(
            source=Path("/a.mp4"),
            output=Path("/b.mp4"),
            backend="slurm",
            target=SlurmTarget(workdir_root=tmp_path).to_dict(),
        ),
    )
    with pytest.raises(JobError, match="work folder is refused"):
        SlurmBackend.workdir(job)
    store = JobStore(tmp_path / "jobs.sqlite3")
    store.add(job)
    backend = SlurmBackend.for_job(store, job)
    with pytest.raises(JobError, match="work folder is refused"):
        backend.remove_work_folder(job)
    backend.remove(job)  # the record alone
    assert not store.exists(job.id) and not Path(MARKER).exists()


def test_hostile_settings_never_make_a_target(tmp_path: Path) -> None:
    """Run on… → Slurm cluster, field by field (an edited file or the form): refused with
    the field's name before anything is built."""
    base = AppSettings(slurm_workdir="/cluster/jobs", slurm_ssh_host="me@login")
    for name, value, label in (
        ("slurm_partition", f"gpu\ntouch {MARKER}", "Partition"),
        ("slurm_workdir", f"/cluster\ntouch {MARKER}", "Work folder"),
        ("slurm_ssh_host", f"-oProxyCommand=touch {MARKER}", "Login host"),
        ("slurm_remote_vsr", f"vsr\ntouch {MARKER}", "vsr on the cluster"),
        ("slurm_max_parallel", 0, "Tasks at once"),
    ):
        settings = AppSettings(**{**base.__dict__, name: value})
        with pytest.raises(InputError, match=f"Jobs → Run on… → Slurm cluster → {label}"):
            SlurmTarget.from_settings(settings)
    assert not Path(MARKER).exists()


@pytest.mark.slurm
def test_a_work_folder_full_of_shell_syntax_runs_on_the_real_cluster(
    slurm_cluster: LocalSlurmCluster, clip_factory: ClipFactory, tmp_path: Path
) -> None:
    """Spaces, quotes, `$(…)`, backticks, `;` and Slurm's own `%j`/`%a` in the work folder:
    Slurm runs the job there, the logs land under their literal names, nothing else runs."""
    marker = tmp_path / "pwned"
    root = tmp_path / _evil(marker).replace("\\", "")
    target = SlurmTarget(
        workdir_root=root,
        partition=slurm_cluster.partition,
        max_parallel=2,
        env=_cluster_env(slurm_cluster),
    )
    backend = SlurmBackend(JobStore(tmp_path / "jobs.sqlite3"), target)
    source = clip_factory(frames=16, gop=8, width=48, height=32)
    output = tmp_path / "out.mp4"
    job = _wait(backend, backend.submit(_spec(source, output)), lambda j: j.state.is_finished)
    assert job.state is JobState.COMPLETED, job.message
    assert probe(output).video.frame_count == 16
    logs = sorted(p.name for p in (root / job.id / "logs").iterdir())
    assert logs == ["chunk_0.log", "chunk_1.log", "merge.log", "split.log"], logs
    assert not marker.exists()
