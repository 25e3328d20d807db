"""Slurm over SSH: a real sshd (tests/ssh_fixture.py) in front of the real one-node Slurm.

The "app side" only knows the local source and output paths; the cluster's work folder is a
different folder that only the SSH side writes. Everything the backend does on the cluster
(scripts, sbatch, squeue, progress, logs, output) must therefore go through ssh.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import av
import pytest

from tests.conftest import ClipFactory
from tests.model_files import custom_x2_model
from tests.ssh_fixture import SshServer
from vsr_desktop.backends.slurm import SlurmBackend, SlurmTarget
from vsr_desktop.backends.slurm_remote import SshLogin, SshTransport
from vsr_desktop.cli import main
from vsr_desktop.core.errors import JobError
from vsr_desktop.core.jobs import JobRecord, JobState, JobStore
from vsr_desktop.core.media import EncodeSettings, probe
from vsr_desktop.worker.request import UpscaleRequest

VSR = (sys.executable, "-m", "vsr_desktop.cli")  # this repo's python, on the "cluster"


def _remote_env(cluster) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """What the login host must set for the test cluster's clients (SLURM_CONF, markers)."""
    return {k: v for k, v in cluster.env().items() if os.environ.get(k) != v}


def _ssh_backend(cluster, ssh_server: SshServer, tmp_path: Path,  # type: ignore[no-untyped-def]
                 cluster_root: Path) -> SlurmBackend:
    """The backend as the app makes it for a login host in front of the test cluster."""
    target = SlurmTarget(workdir_root=PurePosixPath(cluster_root), max_parallel=2,
                         vsr_command=VSR, ssh=ssh_server.login(), env=_remote_env(cluster))
    return SlurmBackend(JobStore(tmp_path / "jobs.sqlite3"), target)


def _audio(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(container.streams.audio[0]) if p.size]


def _wait(backend: SlurmBackend, job: JobRecord, done: Callable[[JobRecord], bool],
          timeout: float = 120) -> JobRecord:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = backend.poll(job)
        if done(job):
            return job
        time.sleep(0.5)
    raise AssertionError(f"timed out; last state {job.state} {job.phase} {job.message}")


def test_transport_files_streams_and_errors(ssh_server: SshServer, tmp_path: Path) -> None:
    ssh = SshTransport(ssh_server.login())
    remote = PurePosixPath(tmp_path / "remote dir's")  # a space and a quote to quote
    ssh.mkdirs(remote / "progress")
    ssh.write_text(remote / "plan.json", '{"a": 1}')
    assert ssh.read_text(remote / "plan.json") == '{"a": 1}'
    for name in ("chunk_00000", "chunk_00001", "merge"):
        ssh.write_text(remote / "progress" / f"{name}.json", f'{{"n": "{name}"}}')
    files = ssh.job_files(remote, tmp_path / "view")
    assert sorted(p.name for p in (files / "progress").iterdir()) == [
        "chunk_00000.json", "chunk_00001.json", "merge.json"]
    assert (files / "progress" / "merge.json").read_text() == '{"n": "merge"}'
    assert ssh.job_files(remote / "missing", tmp_path / "empty") == tmp_path / "empty"

    # Upload resumes a cut-off .part (its first half is kept), download lands whole.
    local = tmp_path / "source.bin"
    local.write_bytes(os.urandom(300_000))
    part = Path(str(remote / "source.bin.part"))
    part.write_bytes(local.read_bytes()[:100_000])
    ssh.upload(local, remote / "source.bin")
    assert Path(str(remote / "source.bin")).read_bytes() == local.read_bytes()
    assert not part.exists()
    down = tmp_path / "down" / "copy.bin"
    down.parent.mkdir()
    ssh.download(remote / "source.bin", down)
    assert down.read_bytes() == local.read_bytes()
    assert list(down.parent.iterdir()) == [down]  # the temporary name is gone

    assert ssh.run(["sh", "-c", "exit 3"], check=False).returncode == 3
    with pytest.raises(JobError, match="false failed"):
        ssh.run(["false"])
    bad = SshTransport(SshLogin(host="root@127.0.0.1", port=ssh_server.port,
                                key=str(tmp_path / "no-such-key"),
                                options=ssh_server.login().options))
    with pytest.raises(JobError, match=r"cannot reach root@127\.0\.0\.1 over SSH"):
        bad.run(["true"])


@pytest.mark.parametrize("over_ssh", [True, False], ids=["ssh", "shared-folder"])
def test_removing_a_job_deletes_only_its_own_folder_on_the_cluster(
    ssh_server: SshServer, tmp_path: Path, over_ssh: bool
) -> None:
    root = tmp_path / "cluster-jobs"
    ssh = ssh_server.login() if over_ssh else None
    backend = SlurmBackend(JobStore(tmp_path / "jobs.sqlite3"),
                           SlurmTarget(workdir_root=PurePosixPath(root), ssh=ssh))
    settings = {"slurm": {"ssh": ssh.to_dict(), "env": {}}} if ssh else {}

    def job_in(folder: Path, job_id: str) -> JobRecord:
        (folder / "chunks").mkdir(parents=True)
        (folder / "chunks" / "chunk_00000.mp4").write_bytes(b"chunk")
        (folder / "split.sh").write_text("#!/bin/sh\n")
        return JobRecord(id=job_id, name="clip.mp4", backend="slurm", source="/a/clip.mp4",
                         output="/a/out.mp4", settings=settings, work_dir=str(folder))

    job = job_in(root / "0123abcd", "0123abcd")
    neighbour = root / "other-job"
    neighbour.mkdir()
    backend.remove_work_folder(job)
    assert not (root / "0123abcd").exists()
    assert neighbour.is_dir()
    backend.remove_work_folder(job)  # already gone: nothing to do, no error
    stray = job_in(root / "shared-results", "4567ef01")  # a folder not named after its job
    with pytest.raises(JobError, match="not a job folder"):
        backend.remove_work_folder(stray)
    assert (root / "shared-results" / "split.sh").exists()


@pytest.mark.slurm
def test_submit_over_ssh_runs_on_the_cluster_and_downloads(
    slurm_cluster, ssh_server: SshServer, clip_factory: ClipFactory,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    cluster_root = tmp_path / "cluster-only"  # the app side never names this folder
    app = tmp_path / "app"
    app.mkdir()
    backend = _ssh_backend(slurm_cluster, ssh_server, tmp_path, cluster_root)
    source = clip_factory(frames=24, gop=8, width=48, height=32)
    output = app / "out.mp4"
    job = backend.submit(UpscaleRequest(source=source, output=output, outscale=2,
                                        chunk_seconds=0.3,
                                        encode=EncodeSettings(preset="ultrafast")))
    workdir = cluster_root / job.id
    assert job.work_dir == str(workdir) and job.settings["slurm"]["ssh"]["port"]
    # The cluster works on its own copy: no script names a path of the app side.
    scripts = "".join((workdir / n).read_text() for n in ("split.sh", "upscale.sh", "merge.sh"))
    assert str(source) not in scripts and str(app) not in scripts
    assert str(workdir / "input" / source.name) in scripts
    assert (workdir / "input" / source.name).read_bytes() == source.read_bytes()
    assert backend.job_ids(job).chunks == 3

    job = _wait(backend, job, lambda j: j.state.is_finished)
    assert job.state is JobState.COMPLETED, job.message
    assert job.chunks_done == 3 and job.frames_done == 24
    assert job.settings["slurm"]["fetched"] is True
    info = probe(output)
    assert info.video.frame_count == 24 and info.video.width == 96
    assert _audio(output) == _audio(source)
    assert sorted(p.name for p in app.iterdir()) == ["out.mp4"]  # no temp file left
    # Downloaded once: a finished row is not fetched again.
    output.unlink()
    assert backend.poll(job).state is JobState.COMPLETED and not output.exists()


@pytest.mark.slurm
def test_a_model_file_of_the_app_side_goes_to_the_cluster(
    slurm_cluster, ssh_server: SshServer, clip_factory: ClipFactory,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    """The cluster cannot read the app's disk: a model given as a file is uploaded with the
    job and the scripts name the cluster's copy (the ×2 output shows it ran)."""
    cluster_root = tmp_path / "cluster-only"
    app = tmp_path / "app"
    model = custom_x2_model(app / "models" / "sharp_x2.safetensors")
    backend = _ssh_backend(slurm_cluster, ssh_server, tmp_path, cluster_root)
    source = clip_factory(frames=12, gop=12, width=48, height=32)
    output = app / "mine.mp4"
    job = backend.submit(UpscaleRequest(source=source, output=output, model=str(model),
                                        encode=EncodeSettings(preset="ultrafast")))
    model_bytes = model.read_bytes()
    model.unlink()  # whatever runs on the cluster must use its own copy
    workdir = cluster_root / job.id
    copy = workdir / "input" / "model" / "sharp_x2.safetensors"
    assert copy.read_bytes() == model_bytes
    scripts = "".join((workdir / n).read_text() for n in ("split.sh", "upscale.sh", "merge.sh"))
    assert str(app) not in scripts and str(copy) in scripts
    job = _wait(backend, job, lambda j: j.state.is_finished)
    assert job.state is JobState.COMPLETED, job.message
    info = probe(output)
    assert info.video.frame_count == 12 and (info.video.width, info.video.height) == (96, 64)


@pytest.mark.slurm
def test_cli_submit_status_cancel_over_ssh(
    slurm_cluster, ssh_server: SshServer, clip_factory: ClipFactory,  # type: ignore[no-untyped-def]
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    login = ssh_server.login()
    source = clip_factory(frames=96, gop=8, width=160, height=96)
    args = ["slurm", "submit", str(source), "-o", str(tmp_path / "app" / "out.mp4"),
            "--workdir", str(tmp_path / "cluster"), "--chunk-seconds", "0.3", "--scale", "2",
            "--max-parallel", "1", "--ssh", login.host, "--ssh-port", str(login.port),
            "--ssh-key", str(login.key), "--remote-vsr", " ".join(VSR)]
    for option in login.options:
        args += ["--ssh-option", option]
    for name, value in _remote_env(slurm_cluster).items():  # the test cluster's SLURM_CONF
        args += ["--ssh-env", f"{name}={value}"]
    (tmp_path / "app").mkdir()
    assert main(args) == 0
    job_id = capsys.readouterr().out.strip()

    store = JobStore()
    job = store.get(job_id)
    assert job.settings["slurm"]["ssh"]["host"] == "root@127.0.0.1"
    assert job.settings["slurm"]["vsr_command"] == list(VSR)
    deadline = time.monotonic() + 60
    while store.get(job_id).state is not JobState.RUNNING and time.monotonic() < deadline:
        assert main(["slurm", "status", job_id]) == 0
        time.sleep(0.5)
    assert job_id in capsys.readouterr().out
    assert main(["slurm", "cancel", job_id]) == 0

    # A backend set up for no cluster at all: the record alone says where the job runs.
    backend = SlurmBackend(store, SlurmTarget(workdir_root=Path("/nowhere-local")))
    ids = backend.job_ids(store.get(job_id))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        states = backend.slurm_states(ids, store.get(job_id))
        if all(not s or set(s) <= {"CANCELLED", "COMPLETED"} for s in states.values()):
            break
        time.sleep(0.5)
    assert "CANCELLED" in states[ids.merge]
    assert store.get(job_id).state is JobState.CANCELLED
    assert not (tmp_path / "app" / "out.mp4").exists()
