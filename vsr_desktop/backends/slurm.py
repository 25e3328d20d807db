"""The Slurm backend: the same chunked job as three submissions on an existing cluster.

split (`vsr worker plan`) → an array of upscale tasks, one per chunk, `afterok` on split →
merge, `afterok` on the array. Tasks share the job's work folder on the cluster's shared
filesystem; progress comes from squeue/scontrol and the workers' progress files (no
accounting database assumed); cancel is scancel of all three.

With an SSH login (SlurmTarget.ssh) the app's machine needs neither Slurm nor the shared folder:
the source goes up into WORKDIR/input/, the scripts are written there, every Slurm client and
progress read runs over ssh (slurm_remote.SshTransport), and the merged output comes back to
the local output path when the merge has finished. The job record keeps the login in
settings["slurm"], so status/cancel/resubmit from the CLI or the app reach the same cluster.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePath, PurePosixPath
from typing import Any

from vsr_desktop.backends.slurm_remote import LocalTransport, SshLogin, SshTransport, Transport
from vsr_desktop.core.errors import JobError
from vsr_desktop.core.jobs import JobRecord, JobState, JobStore
from vsr_desktop.core.plan import plan_chunks
from vsr_desktop.worker.request import UpscaleRequest, user_model_files, validate_request
from vsr_desktop.worker.stages import read_progress

# Slurm job states (squeue %T / scontrol JobState) grouped the way the app shows them.
_ACTIVE = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED",
           "RESIZING", "SIGNALING", "STAGE_OUT"}
_FAILED = {"FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE",
           "PREEMPTED"}


@dataclass(frozen=True)
class SlurmTarget:
    """Where and how jobs go: the cluster's shared folder and the submission options.

    `workdir_root` is a path on the cluster; with `ssh` set it need not exist here.
    `vsr_command` is how the cluster runs vsr (over SSH: `vsr`, a venv's, or apptainer).
    """

    workdir_root: PurePath
    partition: str | None = None
    gpus_per_task: int = 0
    max_parallel: int = 4
    vsr_command: tuple[str, ...] = (sys.executable, "-m", "vsr_desktop.cli")
    ssh: SshLogin | None = None
    env: dict[str, str] = field(default_factory=dict)  # for the Slurm clients (here or remote)


@dataclass(frozen=True)
class SlurmJobIds:
    split: str
    array: str
    merge: str
    chunks: int

    def all(self) -> list[str]:
        return [self.split, self.array, self.merge]


class SlurmBackend:
    """Submit, poll, cancel and resubmit chunked jobs on a Slurm cluster."""

    name = "slurm"

    def __init__(self, store: JobStore, target: SlurmTarget) -> None:
        self.store = store
        self.target = target

    # ------------------------------------------------------------------ transports
    def transport(self, job: JobRecord | None = None) -> Transport:
        """The job's own login (remembered at submit) wins over the current target, so a
        job sent over SSH is polled over SSH whatever the app's settings say now."""
        remote = _slurm_settings(job) if job is not None else {}
        if remote.get("ssh"):
            return SshTransport(SshLogin.from_dict(remote["ssh"]),
                                env=dict(remote.get("env") or {}))
        if job is None and self.target.ssh is not None:
            return SshTransport(self.target.ssh, env=dict(self.target.env))
        return LocalTransport(env=dict(self.target.env))

    def run(self, args: list[str], check: bool = True,
            job: JobRecord | None = None) -> subprocess.CompletedProcess[str]:
        """Run a Slurm client here or on the login host over SSH."""
        return self.transport(job).run(args, check=check)

    @staticmethod
    def workdir(job: JobRecord) -> PurePath:
        """The job's folder on the cluster (a local path unless it went over SSH)."""
        return PurePosixPath(job.work_dir) if _slurm_settings(job).get("ssh") \
            else Path(job.work_dir)

    def remove_work_folder(self, job: JobRecord) -> None:
        """Delete the job's own folder on the cluster (source copy, scripts, chunks, logs,
        output): what *Remove* in the jobs panel frees. Only a folder named after the job."""
        workdir = self.workdir(job)
        if workdir.name != job.id or not workdir.is_absolute() or len(workdir.parts) < 3:
            raise JobError(f"{workdir} is not a job folder of this app",
                           "nothing was deleted; remove the folder by hand if it is one")
        self.transport(job).remove_tree(workdir)

    # ------------------------------------------------------------------ submit
    def submit(self, request: UpscaleRequest, job: JobRecord | None = None) -> JobRecord:
        """Submit the three jobs (or resubmit an existing record: finished chunks are kept)."""
        info = validate_request(request)
        chunks = len(plan_chunks(info.video, request.chunk_seconds).chunks)
        if job is None:
            job = self._new_record(request, info.video.frame_count, chunks)
        transport = self.transport(job)
        workdir = self.workdir(job)
        remote = _slurm_settings(job)
        models = user_model_files(request.model)  # a model given as a file of this machine
        if remote.get("ssh"):
            assert isinstance(transport, SshTransport)
            source, output = _remote_paths(workdir, request.source.name, request.output.name)
            transport.mkdirs(workdir / "logs", source.parent, output.parent)
            self.store.update(job.id, phase="uploading the source")
            transport.upload(request.source, source)
            if models:  # the cluster cannot read this disk: the model goes with the job
                model_dir = workdir / "input" / "model"
                transport.mkdirs(model_dir)
                for path in models:
                    transport.upload(path, model_dir / path.name)
                request = replace(request, model=str(model_dir / models[0].name))
            vsr = tuple(remote.get("vsr_command") or self.target.vsr_command)
        else:
            source, output = request.source.resolve(), request.output.resolve()
            if models:  # the nodes start in other folders: name it absolutely
                request = replace(request, model=str(models[0].resolve()))
            transport.mkdirs(workdir / "logs")
            vsr = self.target.vsr_command
        _forget_unfinished_progress(transport, workdir)
        ids = self._submit_three(transport, request, workdir, chunks, job.id,
                                 (str(source), str(output)), vsr)
        transport.write_text(workdir / "slurm.json", json.dumps(vars(ids)))
        self._remember(job, ids=vars(ids), fetched=False)
        self.store.update(job.id, state=JobState.QUEUED, phase="waiting in the Slurm queue",
                          message=f"Slurm jobs {', '.join(ids.all())}")
        return self.store.get(job.id)

    def _new_record(self, request: UpscaleRequest, frames: int, chunks: int) -> JobRecord:
        job_id = JobStore.new_id()
        settings: dict[str, Any] = request.identity()
        if self.target.ssh is not None:
            workdir: PurePath = PurePosixPath(self.target.workdir_root) / job_id
            settings["slurm"] = {"ssh": self.target.ssh.to_dict(), "env": self.target.env,
                                 "vsr_command": list(self.target.vsr_command)}
            log_path = ""  # on the cluster, not readable here
        else:
            workdir = Path(self.target.workdir_root) / job_id
            log_path = str(workdir / "logs" / "merge.log")
        return self.store.add(JobRecord(
            id=job_id, name=request.source.name, backend=self.name,
            source=str(request.source.resolve()), output=str(request.output.resolve()),
            settings=settings, work_dir=str(workdir), log_path=log_path,
            frames_total=frames, chunks_total=chunks,
        ))

    def _remember(self, job: JobRecord, **changes: Any) -> None:
        """Backend state of an SSH job lives in its settings (there is no local folder)."""
        current = self.store.get(job.id)
        if not _slurm_settings(current).get("ssh"):
            return
        settings = dict(current.settings)
        settings["slurm"] = {**_slurm_settings(current), **changes}
        self.store.update(job.id, settings=settings)

    def _submit_three(self, transport: Transport, request: UpscaleRequest, workdir: PurePath,
                      chunks: int, job_id: str, paths: tuple[str, str],
                      vsr_command: tuple[str, ...]) -> SlurmJobIds:
        vsr = shlex.join(vsr_command)
        logs = workdir / "logs"
        where = f"--workdir {shlex.quote(str(workdir))}"
        common = [f"--job-name=vsr-{job_id}"]
        if self.target.partition:
            common.append(f"--partition={self.target.partition}")
        plan_cmd = f"{vsr} worker plan {shlex.join(_plan_args(request, *paths))} " \
                   f"{where} --overwrite"
        split = self._sbatch(transport, workdir / "split.sh",
                             [*common, f"--output={logs}/split.log"], plan_cmd)
        array_opts = [*common, f"--array=0-{chunks - 1}%{max(1, self.target.max_parallel)}",
                      f"--output={logs}/chunk_%a.log", f"--dependency=afterok:{split}",
                      "--kill-on-invalid-dep=yes"]
        if self.target.gpus_per_task:
            array_opts.append(f"--gres=gpu:{self.target.gpus_per_task}")
        array = self._sbatch(transport, workdir / "upscale.sh", array_opts,
                             f"{vsr} worker upscale {where}")
        merge = self._sbatch(transport, workdir / "merge.sh",
                             [*common, f"--output={logs}/merge.log",
                              f"--dependency=afterok:{array}", "--kill-on-invalid-dep=yes"],
                             f"{vsr} worker merge {where}")
        return SlurmJobIds(split=split, array=array, merge=merge, chunks=chunks)

    @staticmethod
    def _sbatch(transport: Transport, script: PurePath, options: list[str],
                command: str) -> str:
        lines = ["#!/bin/bash", *(f"#SBATCH {opt}" for opt in options), "set -e",
                 f"exec {command}", ""]
        transport.write_text(script, "\n".join(lines))
        result = transport.run(["sbatch", "--parsable", str(script)])
        return result.stdout.strip().split(";")[0]

    # ------------------------------------------------------------------ poll / cancel
    def job_ids(self, job: JobRecord) -> SlurmJobIds:
        try:
            known = _slurm_settings(job).get("ids")
            if known:
                return SlurmJobIds(**known)
            return SlurmJobIds(**json.loads(
                self.transport(job).read_text(self.workdir(job) / "slurm.json")))
        except (OSError, ValueError, TypeError, JobError) as exc:
            raise JobError(f"job {job.id} has no Slurm submission record ({exc})",
                           "resubmit it") from exc

    def slurm_states(self, ids: SlurmJobIds,
                     job: JobRecord | None = None) -> dict[str, list[str]]:
        """Slurm job id → states of its tasks (an array has one per task)."""
        transport = self.transport(job)
        states: dict[str, list[str]] = {i: [] for i in ids.all()}
        queue = transport.run(["squeue", "-h", "-r", "-j", ",".join(ids.all()), "-o", "%F %T"],
                              check=False)
        for line in queue.stdout.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] in states:
                states[parts[0]].append(parts[1])
        for slurm_id, found in states.items():
            if not found:
                shown = transport.run(["scontrol", "-o", "show", "job", slurm_id], check=False)
                found.extend(_field(line, "JobState") for line in shown.stdout.splitlines()
                             if _field(line, "JobState"))
        return states

    def poll(self, job: JobRecord) -> JobRecord:
        """Refresh one row from Slurm and the progress files (fetching the output of an SSH
        job once its merge has finished: only then is the row COMPLETED)."""
        if job.state.is_finished:
            return job
        ids = self.job_ids(job)
        transport = self.transport(job)
        states = self.slurm_states(ids, job)
        workdir = self.workdir(job)
        changes: dict[str, object] = {}
        with tempfile.TemporaryDirectory(prefix="vsr-slurm-") as tmp:
            files = transport.job_files(workdir, Path(tmp))
            if (files / "plan.json").exists():
                progress = read_progress(files)
                changes.update(frames_done=progress.frames_done,
                               frames_total=progress.frames_total,
                               chunks_done=progress.chunks_done,
                               chunks_total=progress.chunks_total)
                failed = [i for i, s in progress.chunk_states.items() if s == "failed"]
            else:
                failed = []
        every = [s for group in states.values() for s in group]
        merge_states = states[ids.merge]
        if merge_states and all(s == "COMPLETED" for s in merge_states):
            changes.update(self._finish(job, transport))
        elif any(s in _FAILED for s in every) or failed:
            changes.update(state=JobState.FAILED, phase="", message=self._failure_message(
                transport, workdir, failed, states, ids))
        elif any(s == "CANCELLED" for s in every):
            changes.update(state=JobState.CANCELLED, phase="")
        elif any(s == "RUNNING" for s in every):
            running = [k for k, v in states.items() if "RUNNING" in v]
            phase = {ids.split: "splitting", ids.array: "upscaling",
                     ids.merge: "merging"}.get(running[0], "running")
            changes.update(state=JobState.RUNNING, phase=phase)
        if changes:
            self.store.update(job.id, unless_finished=True, **changes)
        return self.store.get(job.id)

    def _finish(self, job: JobRecord, transport: Transport) -> dict[str, object]:
        """Changes for a job whose merge completed: an SSH job's output comes down first."""
        remote = _slurm_settings(job)
        if not remote.get("ssh") or remote.get("fetched"):
            return {"state": JobState.COMPLETED, "phase": "", "message": ""}
        assert isinstance(transport, SshTransport)
        local = Path(job.output)
        _, output = _remote_paths(self.workdir(job), Path(job.source).name, local.name)
        self.store.update(job.id, unless_finished=True, state=JobState.RUNNING,
                          phase="downloading the output")
        try:
            transport.download(output, local)
        except (JobError, OSError) as exc:
            # Stay unfinished: the next poll tries again (a dropped connection is no failure).
            return {"state": JobState.RUNNING, "phase": "downloading the output",
                    "message": f"download failed, retrying: {exc}"}
        self._remember(job, fetched=True)
        return {"state": JobState.COMPLETED, "phase": "", "message": ""}

    @staticmethod
    def _failure_message(transport: Transport, workdir: PurePath, failed_chunks: list[int],
                         states: dict[str, list[str]], ids: SlurmJobIds) -> str:
        """The failing task's log tail: what the user needs to see in the panel."""
        logs = workdir / "logs"
        if failed_chunks:
            return f"chunk {failed_chunks[0]} failed: " \
                   f"{transport.tail(logs / f'chunk_{failed_chunks[0]}.log')}"
        if any(s in _FAILED for s in states[ids.split]):
            return f"split failed: {transport.tail(logs / 'split.log')}"
        if any(s in _FAILED for s in states[ids.merge]):
            return f"merge failed: {transport.tail(logs / 'merge.log')}"
        return "an upscale task failed; see the logs in " + str(logs)

    def cancel(self, job: JobRecord) -> None:
        """scancel every part; finished chunks stay for a resubmit."""
        self.run(["scancel", *self.job_ids(job).all()], check=False, job=job)
        self.store.update(job.id, state=JobState.CANCELLED, phase="",
                          message="cancelled; resubmit to continue from the finished chunks")


def _slurm_settings(job: JobRecord | None) -> dict[str, Any]:
    """The backend's own section of a job's settings (empty for jobs on a shared folder)."""
    section = job.settings.get("slurm") if job is not None else None
    return dict(section) if isinstance(section, dict) else {}


def _remote_paths(workdir: PurePath, source: str, output: str) -> tuple[PurePath, PurePath]:
    """Where an SSH job's source and output live on the cluster (by their local names)."""
    return workdir / "input" / source, workdir / "output" / output


def _forget_unfinished_progress(transport: Transport, workdir: PurePath) -> None:
    """On resubmit, failed/cancelled progress from the last attempt must not be read as
    this attempt's result; finished chunks keep theirs (their tasks will skip them)."""
    stale: list[PurePath] = []
    with tempfile.TemporaryDirectory(prefix="vsr-slurm-") as tmp:
        files = transport.job_files(workdir, Path(tmp))
        for path in (files / "progress").glob("*.json"):
            try:
                state = json.loads(path.read_text()).get("state")
            except (OSError, ValueError):
                state = None
            if state != "done" or path.stem == "merge":
                stale.append(workdir / "progress" / path.name)
    transport.remove(stale)


def _plan_args(request: UpscaleRequest, source: str, output: str) -> list[str]:
    """`vsr worker plan` options reproducing the request on the cluster (its own paths)."""
    args = [source, "-o", output,
            "--model", request.model, "--codec", request.encode.codec,
            "--chunk-seconds", str(request.chunk_seconds), "--device", request.device,
            "--precision", request.precision, "--tile", str(request.tile),
            "--batch-size", str(request.batch_size)]
    optional = {"--scale": request.outscale, "--denoise": request.denoise_strength,
                "--crf": request.encode.crf, "--bitrate": request.encode.bitrate,
                "--preset": request.encode.preset}
    for flag, value in optional.items():
        if value is not None:
            args += [flag, str(value)]
    if request.encode.ten_bit:
        args.append("--ten-bit")
    return args


def _field(line: str, name: str) -> str:
    for token in line.split():
        if token.startswith(name + "="):
            return token.split("=", 1)[1]
    return ""
