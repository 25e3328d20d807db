"""The Slurm backend: the same chunked job as three submissions on an existing cluster.

split (`vsr worker plan`) → an array of upscale tasks, one per chunk, `afterok` on split →
merge, `afterok` on the array. Tasks share the job's work folder on the cluster's shared
filesystem; progress comes from squeue/scontrol and the workers' progress files (no
accounting database assumed); cancel is scancel of all three.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from vsr_desktop.core.errors import JobError
from vsr_desktop.core.jobs import JobRecord, JobState, JobStore
from vsr_desktop.core.plan import plan_chunks
from vsr_desktop.worker.request import UpscaleRequest, validate_request
from vsr_desktop.worker.stages import read_progress

# Slurm job states (squeue %T / scontrol JobState) grouped the way the app shows them.
_ACTIVE = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED",
           "RESIZING", "SIGNALING", "STAGE_OUT"}
_FAILED = {"FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE",
           "PREEMPTED"}


@dataclass(frozen=True)
class SlurmTarget:
    """Where and how jobs go: the cluster's shared folder and the submission options."""

    workdir_root: Path
    partition: str | None = None
    gpus_per_task: int = 0
    max_parallel: int = 4
    vsr_command: tuple[str, ...] = (sys.executable, "-m", "vsr_desktop.cli")
    # Groundwork only: with a host set, the Slurm clients run there over SSH, but scripts,
    # progress files and the source are still read here, so the app must see the shared
    # folder. Not offered in the CLI or the app until that is done.
    ssh_host: str | None = None
    env: dict[str, str] = field(default_factory=dict)


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

    # ------------------------------------------------------------------ commands
    def run(self, args: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a Slurm client here or on the login host over SSH."""
        if self.target.ssh_host:
            cmd = ["ssh", "-o", "BatchMode=yes", self.target.ssh_host, shlex.join(args)]
        else:
            cmd = args
        try:
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                                    env={**os.environ, **self.target.env})
        except FileNotFoundError as exc:
            raise JobError(f"{args[0]} is not installed here",
                           "install Slurm's client tools or set an SSH login host") from exc
        except subprocess.TimeoutExpired as exc:
            raise JobError(f"{args[0]} did not answer within 60 s",
                           "check the cluster's controller") from exc
        if check and result.returncode != 0:
            raise JobError(f"{args[0]} failed: {result.stderr.strip() or result.stdout.strip()}",
                           "check the partition and options, or ask the cluster admin")
        return result

    # ------------------------------------------------------------------ submit
    def submit(self, request: UpscaleRequest, job: JobRecord | None = None) -> JobRecord:
        """Submit the three jobs (or resubmit an existing record: finished chunks are kept)."""
        info = validate_request(request)
        chunks = len(plan_chunks(info.video, request.chunk_seconds).chunks)
        if job is None:
            job_id = JobStore.new_id()
            workdir = self.target.workdir_root / job_id
            job = self.store.add(JobRecord(
                id=job_id, name=request.source.name, backend=self.name,
                source=str(request.source.resolve()), output=str(request.output.resolve()),
                settings=request.identity(), work_dir=str(workdir),
                log_path=str(workdir / "logs" / "merge.log"),
                frames_total=info.video.frame_count, chunks_total=chunks,
            ))
        workdir = Path(job.work_dir)
        (workdir / "logs").mkdir(parents=True, exist_ok=True)
        _forget_unfinished_progress(workdir)
        ids = self._submit_three(request, workdir, chunks, job.id)
        (workdir / "slurm.json").write_text(json.dumps(vars(ids)))
        self.store.update(job.id, state=JobState.QUEUED, phase="waiting in the Slurm queue",
                          message=f"Slurm jobs {', '.join(ids.all())}")
        return self.store.get(job.id)

    def _submit_three(self, request: UpscaleRequest, workdir: Path, chunks: int,
                      job_id: str) -> SlurmJobIds:
        vsr = shlex.join(self.target.vsr_command)
        logs = workdir / "logs"
        common = [f"--job-name=vsr-{job_id}"]
        if self.target.partition:
            common.append(f"--partition={self.target.partition}")
        plan_cmd = f"{vsr} worker plan {shlex.join(_plan_args(request))} " \
                   f"--workdir {shlex.quote(str(workdir))} --overwrite"
        split = self._sbatch(workdir / "split.sh", [*common, f"--output={logs}/split.log"],
                             plan_cmd)
        array_opts = [*common, f"--array=0-{chunks - 1}%{max(1, self.target.max_parallel)}",
                      f"--output={logs}/chunk_%a.log", f"--dependency=afterok:{split}",
                      "--kill-on-invalid-dep=yes"]
        if self.target.gpus_per_task:
            array_opts.append(f"--gres=gpu:{self.target.gpus_per_task}")
        array = self._sbatch(workdir / "upscale.sh", array_opts,
                             f"{vsr} worker upscale --workdir {shlex.quote(str(workdir))}")
        merge = self._sbatch(workdir / "merge.sh",
                             [*common, f"--output={logs}/merge.log",
                              f"--dependency=afterok:{array}", "--kill-on-invalid-dep=yes"],
                             f"{vsr} worker merge --workdir {shlex.quote(str(workdir))}")
        return SlurmJobIds(split=split, array=array, merge=merge, chunks=chunks)

    def _sbatch(self, script: Path, options: list[str], command: str) -> str:
        lines = ["#!/bin/bash", *(f"#SBATCH {opt}" for opt in options), "set -e",
                 f"exec {command}", ""]
        script.write_text("\n".join(lines))
        result = self.run(["sbatch", "--parsable", str(script)])
        return result.stdout.strip().split(";")[0]

    # ------------------------------------------------------------------ poll / cancel
    def job_ids(self, job: JobRecord) -> SlurmJobIds:
        try:
            return SlurmJobIds(**json.loads((Path(job.work_dir) / "slurm.json").read_text()))
        except (OSError, ValueError, TypeError) as exc:
            raise JobError(f"job {job.id} has no Slurm submission record ({exc})",
                           "resubmit it") from exc

    def slurm_states(self, ids: SlurmJobIds) -> dict[str, list[str]]:
        """Slurm job id → states of its tasks (an array has one per task)."""
        states: dict[str, list[str]] = {i: [] for i in ids.all()}
        queue = self.run(["squeue", "-h", "-r", "-j", ",".join(ids.all()), "-o", "%F %T"],
                         check=False)
        for line in queue.stdout.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] in states:
                states[parts[0]].append(parts[1])
        for slurm_id, found in states.items():
            if not found:
                shown = self.run(["scontrol", "-o", "show", "job", slurm_id], check=False)
                found.extend(_field(line, "JobState") for line in shown.stdout.splitlines()
                             if _field(line, "JobState"))
        return states

    def poll(self, job: JobRecord) -> JobRecord:
        """Refresh one row from Slurm and the progress files."""
        if job.state.is_finished:
            return job
        ids = self.job_ids(job)
        states = self.slurm_states(ids)
        workdir = Path(job.work_dir)
        changes: dict[str, object] = {}
        if (workdir / "plan.json").exists():
            progress = read_progress(workdir)
            changes.update(frames_done=progress.frames_done, frames_total=progress.frames_total,
                           chunks_done=progress.chunks_done, chunks_total=progress.chunks_total)
            failed = [i for i, s in progress.chunk_states.items() if s == "failed"]
        else:
            failed = []
        every = [s for group in states.values() for s in group]
        merge_states = states[ids.merge]
        if merge_states and all(s == "COMPLETED" for s in merge_states):
            changes.update(state=JobState.COMPLETED, phase="", message="")
        elif any(s in _FAILED for s in every) or failed:
            changes.update(state=JobState.FAILED, phase="",
                           message=self._failure_message(workdir, failed, states, ids))
        elif any(s == "CANCELLED" for s in every):
            changes.update(state=JobState.CANCELLED, phase="")
        elif any(s == "RUNNING" for s in every):
            running = [k for k, v in states.items() if "RUNNING" in v]
            phase = {ids.split: "splitting", ids.array: "upscaling",
                     ids.merge: "merging"}.get(running[0], "running")
            changes.update(state=JobState.RUNNING, phase=phase)
        if changes:
            self.store.update(job.id, **changes)  # type: ignore[arg-type]
        return self.store.get(job.id)

    def _failure_message(self, workdir: Path, failed_chunks: list[int],
                         states: dict[str, list[str]], ids: SlurmJobIds) -> str:
        """The failing task's log tail: what the user needs to see in the panel."""
        if failed_chunks:
            log = workdir / "logs" / f"chunk_{failed_chunks[0]}.log"
            return f"chunk {failed_chunks[0]} failed: {_tail(log)}"
        if any(s in _FAILED for s in states[ids.split]):
            return f"split failed: {_tail(workdir / 'logs' / 'split.log')}"
        if any(s in _FAILED for s in states[ids.merge]):
            return f"merge failed: {_tail(workdir / 'logs' / 'merge.log')}"
        return "an upscale task failed; see the logs in " + str(workdir / "logs")

    def cancel(self, job: JobRecord) -> None:
        """scancel every part; finished chunks stay for a resubmit."""
        self.run(["scancel", *self.job_ids(job).all()], check=False)
        self.store.update(job.id, state=JobState.CANCELLED, phase="",
                          message="cancelled; resubmit to continue from the finished chunks")


def _forget_unfinished_progress(workdir: Path) -> None:
    """On resubmit, failed/cancelled progress from the last attempt must not be read as
    this attempt's result; finished chunks keep theirs (their tasks will skip them)."""
    for path in (workdir / "progress").glob("*.json"):
        try:
            state = json.loads(path.read_text()).get("state")
        except (OSError, ValueError):
            state = None
        if state != "done" or path.stem == "merge":
            path.unlink(missing_ok=True)


def _plan_args(request: UpscaleRequest) -> list[str]:
    """`vsr worker plan` options reproducing the request on the cluster."""
    args = [str(request.source.resolve()), "-o", str(request.output.resolve()),
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


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return f"(no log at {path})"
    return " | ".join(text[-lines:])
