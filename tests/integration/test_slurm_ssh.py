"""Slurm over SSH: a real sshd (tests/ssh_fixture.py) in front of the real one-node Slurm.

The "app side" only knows the local source and output paths; the cluster's work folder is a
different folder that only the SSH side writes. Everything the backend does on the cluster
(scripts, sbatch, squeue, progress, logs, output) must therefore go through ssh.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import av
import pytest

from tests.conftest import ClipFactory
from tests.helpers.memory_keyring import MemoryKeyring
from tests.helpers.model_files import custom_x2_model
from tests.helpers.ssh_fixture import SshServer
from tests.integration.test_slurm_backend import _argv, _stub_slurm
from vsr_desktop.backends.slurm import SlurmBackend, SlurmTarget
from vsr_desktop.backends.slurm_remote import KEYRING_SERVICE, SshLogin, SshTransport
from vsr_desktop.cli import main
from vsr_desktop.core.errors import CancelledError, JobError
from vsr_desktop.core.job_spec import EngineSettings, JobSpec
from vsr_desktop.core.jobs import JobRecord, JobState, JobStore
from vsr_desktop.core.media import EncodeSettings, probe

if TYPE_CHECKING:
    from tests.helpers.slurm_fixture import LocalSlurmCluster

VSR = (sys.executable, "-m", "vsr_desktop.cli")  # this repo's python, on the "cluster"


@pytest.fixture
def child_argv(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The argv of every process started (what `ps` shows of it): subprocess.run and
    Popen both go through subprocess.Popen."""
    seen: list[list[str]] = []

    class Recording(subprocess.Popen):  # type: ignore[type-arg]
        def __init__(self, args: Any, *rest: Any, **options: Any) -> None:
            seen.append([str(a) for a in args] if isinstance(args, list | tuple) else [args])
            super().__init__(args, *rest, **options)

    monkeypatch.setattr(subprocess, "Popen", Recording)
    return seen


def _remote_env(cluster: LocalSlurmCluster) -> dict[str, str]:
    """What the login host must set for the test cluster's clients (SLURM_CONF, markers)."""
    return {k: v for k, v in cluster.env().items() if os.environ.get(k) != v}


def _ssh_backend(
    cluster: LocalSlurmCluster, ssh_server: SshServer, tmp_path: Path, cluster_root: Path
) -> SlurmBackend:
    """The backend as the app makes it for a login host in front of the test cluster."""
    target = SlurmTarget(
        workdir_root=PurePosixPath(cluster_root),
        max_parallel=2,
        vsr_command=VSR,
        ssh=ssh_server.login(),
        env=_remote_env(cluster),
    )
    return SlurmBackend(JobStore(tmp_path / "jobs.sqlite3"), target)


def _audio(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(container.streams.audio[0]) if p.size]


def _wait(
    backend: SlurmBackend, job: JobRecord, done: Callable[[JobRecord], bool], timeout: float = 120
) -> JobRecord:
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
        "chunk_00000.json",
        "chunk_00001.json",
        "merge.json",
    ]
    assert (files / "progress" / "merge.json").read_text() == '{"n": "merge"}'
    assert ssh.job_files(remote / "missing", tmp_path / "empty") == tmp_path / "empty"

    # Upload resumes a cut-off .part (its first part is kept), download lands whole; both
    # report their bytes and stop on cancel, keeping what came through for the next try.
    local = tmp_path / "source.bin"
    local.write_bytes(os.urandom(3_000_000))
    part = Path(str(remote / "source.bin.part"))
    part.write_bytes(local.read_bytes()[:100_000])
    stop = threading.Event()
    seen: list[tuple[int, int]] = []

    def cancel_after_one_block(done: int, total: int) -> None:
        seen.append((done, total))
        stop.set()

    with pytest.raises(CancelledError):
        ssh.upload(local, remote / "source.bin", on_bytes=cancel_after_one_block, cancel=stop)
    assert seen[0][0] > 100_000 and seen[0][1] == 3_000_000
    assert not ssh.exists(remote / "source.bin")
    assert local.read_bytes().startswith(part.read_bytes())
    seen.clear()
    ssh.upload(local, remote / "source.bin", on_bytes=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (3_000_000, 3_000_000)
    assert Path(str(remote / "source.bin")).read_bytes() == local.read_bytes()
    assert not part.exists() and ssh.exists(remote / "source.bin")
    down = tmp_path / "down" / "copy.bin"
    down.parent.mkdir()
    stop.clear()
    with pytest.raises(CancelledError):
        ssh.download(remote / "source.bin", down, on_bytes=lambda d, t: stop.set(), cancel=stop)
    assert not down.exists()
    seen.clear()
    ssh.download(remote / "source.bin", down, on_bytes=lambda d, t: seen.append((d, t)))
    assert down.read_bytes() == local.read_bytes() and seen[-1] == (3_000_000, 3_000_000)
    assert list(down.parent.iterdir()) == [down]  # the temporary name is gone

    assert ssh.run(["sh", "-c", "exit 3"], check=False).returncode == 3
    with pytest.raises(JobError, match="false failed"):
        ssh.run(["false"])
    bad = SshTransport(
        SshLogin(
            host="root@127.0.0.1",
            port=ssh_server.port,
            key=str(tmp_path / "no-such-key"),
            options=ssh_server.login().options,
        )
    )
    with pytest.raises(JobError, match=r"cannot reach root@127\.0\.0\.1 over SSH"):
        bad.run(["true"])


@pytest.mark.parametrize("record", ["ssh", "shared-folder", "ssh-before-specs"])
def test_removing_a_job_deletes_only_its_own_folder_on_the_cluster(
    ssh_server: SshServer, tmp_path: Path, record: str
) -> None:
    root = tmp_path / "cluster-jobs"
    ssh = ssh_server.login() if record.startswith("ssh") else None
    target = SlurmTarget(workdir_root=PurePosixPath(root) if ssh else root, ssh=ssh)
    # A backend set up for somewhere else: the record alone says where its folder is.
    backend = SlurmBackend(
        JobStore(tmp_path / "jobs.sqlite3"), SlurmTarget(workdir_root=Path("/nowhere-local"))
    )
    if record == "ssh-before-specs":  # the login in settings["slurm"], no spec
        settings, spec = {"slurm": {"ssh": ssh.to_dict() if ssh else {}, "env": {}}}, None
    else:
        settings = {}
        spec = JobSpec(
            source=Path("/a/clip.mp4"),
            output=Path("/a/out.mp4"),
            backend="slurm",
            target=target.to_dict(),
        )

    def job_in(folder: Path, job_id: str) -> JobRecord:
        (folder / "chunks").mkdir(parents=True)
        (folder / "chunks" / "chunk_00000.mp4").write_bytes(b"chunk")
        (folder / "split.sh").write_text("#!/bin/sh\n")
        return JobRecord(
            id=job_id,
            name="clip.mp4",
            backend="slurm",
            source="/a/clip.mp4",
            output="/a/out.mp4",
            settings=settings,
            work_dir=str(folder),
            spec=spec,
        )

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
    slurm_cluster: LocalSlurmCluster,
    ssh_server: SshServer,
    clip_factory: ClipFactory,
    tmp_path: Path,
) -> None:
    cluster_root = tmp_path / "cluster-only"  # the app side never names this folder
    app = tmp_path / "app"
    app.mkdir()
    backend = _ssh_backend(slurm_cluster, ssh_server, tmp_path, cluster_root)
    source = clip_factory(frames=24, gop=8, width=48, height=32)
    output = app / "out.mp4"
    uploaded: list[int] = []
    job = backend.submit(
        JobSpec(
            source=source,
            output=output,
            engine=EngineSettings(outscale=2),
            chunk_seconds=0.3,
            encode=EncodeSettings(preset="ultrafast"),
        ),
        progress=lambda p: uploaded.append(p.frames_done),
    )
    assert uploaded and uploaded[-1] == source.stat().st_size  # upload progress, in bytes
    workdir = cluster_root / job.id
    assert job.work_dir == str(workdir) and job.spec is not None
    assert job.spec.target["ssh"]["port"] == ssh_server.port and "ssh" not in job.settings
    # The cluster works on its own copy: no script or spec names a path of the app side.
    scripts = "".join((workdir / n).read_text() for n in ("split.sh", "upscale.sh", "merge.sh"))
    assert str(source) not in scripts and str(app) not in scripts
    cluster_spec = JobSpec.from_json((workdir / "spec.json").read_text())
    assert cluster_spec.source == workdir / "input" / source.name
    assert cluster_spec.output == workdir / "output" / output.name
    assert cluster_spec.engine == job.spec.engine and cluster_spec.encode == job.spec.encode
    assert (workdir / "input" / source.name).read_bytes() == source.read_bytes()
    assert backend.job_ids(job).chunks == 3

    job = _wait(backend, job, lambda j: j.state.is_finished)
    assert job.state is JobState.COMPLETED, job.message
    assert job.chunks_done == 3 and job.frames_done == 24
    assert job.settings["slurm"]["fetched"] is True and not backend.needs_fetch(job)
    info = probe(output)
    assert info.video.frame_count == 24 and info.video.width == 96
    assert _audio(output) == _audio(source)
    assert sorted(p.name for p in app.iterdir()) == ["out.mp4"]  # no temp file left
    # Downloaded once: a finished row is not fetched again by a poll...
    output.unlink()
    assert backend.poll(job).state is JobState.COMPLETED and not output.exists()
    # ...but fetch_output brings it again while the job's folder is on the cluster.
    assert backend.fetch_output(job) == output and probe(output).video.frame_count == 24
    assert backend.work_lost_on_remove(job) == ""
    backend.remove(job)
    assert not workdir.exists() and not backend.store.exists(job.id)


@pytest.mark.slurm
def test_a_model_file_of_the_app_side_goes_to_the_cluster(
    slurm_cluster: LocalSlurmCluster,
    ssh_server: SshServer,
    clip_factory: ClipFactory,
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
    job = backend.submit(
        JobSpec(
            source=source,
            output=output,
            engine=EngineSettings(model=str(model)),
            encode=EncodeSettings(preset="ultrafast"),
        )
    )
    model_bytes = model.read_bytes()
    model.unlink()  # whatever runs on the cluster must use its own copy
    workdir = cluster_root / job.id
    copy = workdir / "input" / "model" / "sharp_x2.safetensors"
    assert copy.read_bytes() == model_bytes
    scripts = "".join((workdir / n).read_text() for n in ("split.sh", "upscale.sh", "merge.sh"))
    spec_text = (workdir / "spec.json").read_text()
    assert str(app) not in scripts and str(app) not in spec_text
    assert JobSpec.from_json(spec_text).engine.model == str(copy)
    job = _wait(backend, job, lambda j: j.state.is_finished)
    assert job.state is JobState.COMPLETED, job.message
    info = probe(output)
    assert info.video.frame_count == 12 and (info.video.width, info.video.height) == (96, 64)


@pytest.mark.slurm
def test_cli_submit_status_cancel_over_ssh(
    slurm_cluster: LocalSlurmCluster,
    ssh_server: SshServer,
    clip_factory: ClipFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    memory_keyring: MemoryKeyring,
) -> None:
    """The --ssh-env values (the test cluster's SLURM_CONF) are kept in the keychain: the
    later commands, which rebuild the backend from the job record, send them again."""
    login = ssh_server.login()
    source = clip_factory(frames=96, gop=8, width=160, height=96)
    args = [
        "slurm",
        "submit",
        str(source),
        "-o",
        str(tmp_path / "app" / "out.mp4"),
        "--workdir",
        str(tmp_path / "cluster"),
        "--chunk-seconds",
        "0.3",
        "--scale",
        "2",
        "--max-parallel",
        "1",
        "--ssh",
        login.host,
        "--ssh-port",
        str(login.port),
        "--ssh-key",
        str(login.key),
        "--remote-vsr",
        " ".join(VSR),
    ]
    for option in login.options:
        args += ["--ssh-option", option]
    for name, value in _remote_env(slurm_cluster).items():  # the test cluster's SLURM_CONF
        args += ["--ssh-env", f"{name}={value}"]
    (tmp_path / "app").mkdir()
    assert main(args) == 0
    job_id = capsys.readouterr().out.strip()

    store = JobStore()
    job = store.get(job_id)
    assert job.spec is not None
    assert job.spec.target["ssh"]["host"] == "root@127.0.0.1"
    assert job.spec.target["vsr_command"] == list(VSR)
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
    assert (tmp_path / "cluster" / job_id / "spec.json").exists()
    assert main(["jobs", "remove", job_id]) == 0  # the cluster's folder goes over SSH too
    assert not (tmp_path / "cluster" / job_id).exists() and not store.exists(job_id)


def test_a_submit_that_cannot_reach_the_login_host_is_failed_and_removable(
    clip_factory: ClipFactory, tmp_path: Path
) -> None:
    """ssh fails before anything reaches a cluster: FAILED with the reason, not Queued
    forever, and remove does not need the host it could never reach."""
    with socket.socket() as sock:  # a port on which nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    login = SshLogin(
        host="root@127.0.0.1",
        port=port,
        options=("StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null"),
    )
    backend = SlurmBackend(
        JobStore(tmp_path / "jobs.sqlite3"),
        SlurmTarget(workdir_root=PurePosixPath("/cluster/jobs"), ssh=login),
    )
    source = clip_factory(frames=8, gop=8, width=48, height=32)
    with pytest.raises(JobError, match=r"was not submitted: cannot reach root@127\.0\.0\.1"):
        backend.submit(JobSpec(source=source, output=tmp_path / "out.mp4"))
    [job] = backend.store.all_jobs()
    assert job.state is JobState.FAILED and "cannot reach" in job.message
    assert backend.poll(job).state is JobState.FAILED
    assert backend.work_lost_on_remove(job) == "" and not backend.needs_fetch(job)
    backend.remove(job)
    assert backend.store.all_jobs() == []


def test_variables_go_over_stdin_never_on_a_command_line(
    ssh_server: SshServer, tmp_path: Path, child_argv: list[list[str]]
) -> None:
    """`ps` shows the names only; the remote command sees the exact values; error text
    that echoes a value shows *** instead; a value found nowhere stops the command."""
    secret = f"eyJhbGciOi.{uuid.uuid4().hex}.$(touch {tmp_path}/pwned)`id`;'\"\\ %j"
    ssh = SshTransport(ssh_server.login(), env={"SLURM_JWT": secret, "EMPTY": ""})
    assert ssh.run(["printenv", "SLURM_JWT"]).stdout == secret + "\n"
    assert ssh.run(["printenv", "EMPTY"]).stdout == "\n"
    with pytest.raises(JobError) as failed:
        ssh.run(["sh", "-c", 'echo "token $SLURM_JWT is refused" >&2; exit 3'])
    assert "token *** is refused" in failed.value.message
    assert secret not in failed.value.user_message()
    remote = PurePosixPath(tmp_path / "remote")
    ssh.mkdirs(remote)
    ssh.write_text(remote / "a.txt", "data on stdin")  # file transfers keep their stdin
    assert ssh.read_text(remote / "a.txt") == "data on stdin"
    ssh_calls = [argv for argv in child_argv if argv[0] == "ssh"]
    assert len(ssh_calls) == 6 and any("read -r SLURM_JWT" in argv[-1] for argv in ssh_calls)
    assert not any(secret in part or "eyJhbGciOi" in part for a in child_argv for part in a)
    assert all(argv[-3] == "--" for argv in ssh_calls)  # nothing after the host is an option
    with pytest.raises(JobError, match=r"SLURM_JWT .* neither the keychain nor the environment"):
        SshTransport(ssh_server.login(), env={"SLURM_JWT": None}).run(["true"])
    assert not (tmp_path / "pwned").exists()


@pytest.mark.skipif("sys.platform == 'win32'", reason="stub Slurm clients are bash scripts")
def test_an_ssh_env_secret_reaches_the_login_host_and_nothing_else(
    ssh_server: SshServer,
    clip_factory: ClipFactory,
    tmp_path: Path,
    memory_keyring: MemoryKeyring,
    child_argv: list[list[str]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    isolated_user_dirs: Path,
) -> None:
    """`vsr slurm submit --ssh-env SLURM_JWT=…`: the value reaches sbatch and squeue on the
    login host (stub Slurm clients record their environment), from the keychain in later
    commands or from the environment; it is in no file under the user's folders (job
    store, settings, logs), in no process's argv, in no output or log record."""
    caplog.set_level(logging.DEBUG)
    marker = tmp_path / "pwned"
    token = uuid.uuid4().hex
    secret = f"eyJ.{token}.$(touch {marker})`touch {marker}`;x"
    bin_dir, records = _stub_slurm(tmp_path)
    login = ssh_server.login()
    (tmp_path / "app").mkdir()
    cluster_root = tmp_path / "cluster"
    args = [
        "slurm",
        "submit",
        str(clip_factory(frames=8, gop=8, width=48, height=32)),
        "-o",
        str(tmp_path / "app" / "out.mp4"),
        "--workdir",
        str(cluster_root),
        "--ssh",
        login.host,
        "--ssh-port",
        str(login.port),
        "--ssh-key",
        str(login.key),
        "--remote-vsr",
        str(bin_dir / "vsr"),
        "--ssh-env",
        f"PATH={bin_dir}:{os.environ['PATH']}",
        "--ssh-env",
        f"SLURM_JWT={secret}",
    ]
    for option in login.options:
        args += ["--ssh-option", option]
    assert main(args) == 0
    job_id = capsys.readouterr().out.strip()
    for n in (1, 2, 3):
        assert (records / f"sbatch.{n}.jwt").read_text() == secret
    assert _argv(records / "vsr.1")[:2] == ["worker", "plan"]
    for folder in ("", "logs", "input", "output"):  # owner-only on the cluster
        assert (cluster_root / job_id / folder).stat().st_mode & 0o777 == 0o700, folder
    place = f"ssh://{login.host}:{login.port}"
    assert memory_keyring.items[(KEYRING_SERVICE, f"{place} SLURM_JWT")] == secret
    job = JobStore().get(job_id)
    assert job.spec is not None and job.spec.target["env"] == ["PATH", "SLURM_JWT"]

    # Later commands rebuild the backend from the record: the keychain gives the value.
    assert main(["slurm", "status", job_id]) == 0
    assert (records / "squeue.jwt").read_text() == secret
    # Not in the keychain and not in the environment: refused, by name.
    del memory_keyring.items[(KEYRING_SERVICE, f"{place} SLURM_JWT")]
    monkeypatch.delenv("SLURM_JWT", raising=False)
    assert main(["slurm", "status", job_id]) == JobError.exit_code
    err = capsys.readouterr().err
    assert "SLURM_JWT" in err and "neither the keychain nor the environment" in err
    # From the environment of the command (how a user keeps it out of the keychain).
    monkeypatch.setenv("SLURM_JWT", f"from-env-{token}")
    assert main(["slurm", "status", job_id]) == 0
    assert (records / "squeue.jwt").read_text() == f"from-env-{token}"
    assert main(["slurm", "cancel", job_id]) == 0
    monkeypatch.delenv("SLURM_JWT")

    everything = [p for p in isolated_user_dirs.rglob("*") if p.is_file()]
    everything += [p for p in cluster_root.rglob("*") if p.is_file()]  # spec.json, scripts
    assert any(p.name.startswith("jobs.sqlite3") for p in everything)
    for path in everything:
        assert token.encode() not in path.read_bytes(), path
    for argv in child_argv:
        assert not any(token in part for part in argv), argv
    out, err = capsys.readouterr()
    assert token not in out + err and token not in caplog.text
    memory_keyring.items[(KEYRING_SERVICE, f"{place} SLURM_JWT")] = secret
    assert main(["jobs", "remove", job_id]) == 0  # asks squeue first: the value is needed
    assert not (cluster_root / job_id).exists() and not marker.exists()
