"""The Slurm backend: the same chunked job as three submissions on an existing cluster.

split (`vsr worker plan --spec WORKDIR/spec.json`) → an array of upscale tasks, one per chunk,
`afterok` on split → merge, `afterok` on the array. The job spec travels as WORKDIR/spec.json
(with the cluster's own source, output and model paths), never as flags, so every engine and
encoder setting reaches the workers unchanged. Tasks share the job's work folder on the
cluster's shared filesystem; progress comes from squeue/scontrol and the workers' progress
files (no accounting database assumed); cancel is scancel of all three.

With an SSH login (SlurmTarget.ssh) the app's machine needs neither Slurm nor the shared folder:
the source goes up into WORKDIR/input/, the scripts are written there, every Slurm client and
progress read runs over ssh (slurm_remote.SshTransport), and the merged output comes back to
the local output path when the merge has finished.

Where a job runs is part of its spec (`spec.target`, SlurmTarget.to_dict), so status, cancel,
resume and remove from the CLI or the app reach the same cluster whatever the app's settings
say now. `settings["slurm"]` keeps only the run's own state: the Slurm job ids, whether the
merge finished and whether its output came down.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePath, PurePosixPath
from typing import TYPE_CHECKING, Any

from vsr_desktop.backends.protocol import Progress, ProgressCallback
from vsr_desktop.backends.slurm_remote import (
    LOCAL_PLACE,
    LocalTransport,
    SshLogin,
    SshTransport,
    Transport,
    keep_in_keychain,
    resolve_env,
)
from vsr_desktop.core import safe_values
from vsr_desktop.core.errors import CancelledError, InputError, JobError, VsrError
from vsr_desktop.core.job_spec import JobSpec
from vsr_desktop.core.jobs import VERIFY_REPORT_KEY, JobRecord, JobState, JobStore
from vsr_desktop.core.trim import plan_for
from vsr_desktop.worker.job_report import read_report, summary
from vsr_desktop.worker.job_setup import (
    check_source_unchanged,
    spec_of,
    user_model_files,
    validate_spec,
)
from vsr_desktop.worker.stages import read_progress

if TYPE_CHECKING:
    from vsr_desktop.core.settings import AppSettings

log = logging.getLogger(__name__)

# Slurm job states (squeue %T / scontrol JobState) grouped the way the app shows them.
_ACTIVE = {
    "PENDING",
    "CONFIGURING",
    "RUNNING",
    "COMPLETING",
    "SUSPENDED",
    "REQUEUED",
    "RESIZING",
    "SIGNALING",
    "STAGE_OUT",
}
_FAILED = {"FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "PREEMPTED"}

#: How nodes that share this machine's installation run vsr.
DEFAULT_VSR_COMMAND = (sys.executable, "-m", "vsr_desktop.cli")


@dataclass(frozen=True)
class SlurmTarget:
    """Where and how jobs go: the cluster's shared folder and the submission options.

    `workdir_root` is a path on the cluster; with `ssh` set it need not exist here.
    `vsr_command` is how the cluster runs vsr (over SSH: `vsr`, a venv's, or apptainer).
    `env_names` are variables the Slurm clients need (on the login host over SSH); their
    values (`env`, possibly a secret such as SLURM_JWT) live only in memory and in the OS
    keychain: a target compares, prints and serialises by the names alone.

    Every field is checked when a target is made, however it is made (the command line,
    the settings, a job rebuilt from the store): InputError names the field.
    """

    workdir_root: PurePath
    partition: str | None = None
    gpus_per_task: int = 0
    max_parallel: int = 4
    vsr_command: tuple[str, ...] = DEFAULT_VSR_COMMAND
    ssh: SshLogin | None = None
    env: dict[str, str] = field(default_factory=dict, compare=False, repr=False)
    env_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        root = self.workdir_root
        if self.ssh is None:  # a folder here: checked as the absolute path Slurm will get
            root = Path(root).expanduser().absolute()
        safe_values.workdir(str(root), "work folder")
        if self.partition is not None:
            safe_values.partition(self.partition, "partition")
        safe_values.whole_number(self.gpus_per_task, "GPUs per task", 0, 1024)
        safe_values.whole_number(self.max_parallel, "tasks at once", 1, 100_000)
        if not isinstance(self.vsr_command, tuple):
            raise InputError("the vsr command must be a list of words")
        safe_values.command_words(self.vsr_command, "vsr command")
        if self.ssh is not None and not isinstance(self.ssh, SshLogin):
            raise InputError("the ssh login is not a login")
        for name, value in self.env.items():
            safe_values.env_name(name, "environment variable")
            safe_values.env_value(value, f"the value of {name}")
        if not isinstance(self.env_names, tuple):
            raise InputError("environment variables must be a list of names")
        names = {safe_values.env_name(n, "environment variable") for n in self.env_names}
        object.__setattr__(self, "env_names", tuple(sorted(names | set(self.env))))

    @property
    def place(self) -> str:
        """Which cluster this is, for the keychain (an SSH login, or this machine)."""
        return self.ssh.place if self.ssh is not None else LOCAL_PLACE

    def to_dict(self) -> dict[str, Any]:
        """The plain JSON a job's spec keeps as its target: names and paths, never a
        secret (environment variables by name only)."""
        return {
            "workdir_root": str(self.workdir_root),
            "partition": self.partition,
            "gpus_per_task": self.gpus_per_task,
            "max_parallel": self.max_parallel,
            "vsr_command": list(self.vsr_command),
            "ssh": self.ssh.to_dict() if self.ssh is not None else None,
            "env": list(self.env_names),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SlurmTarget:
        """A stored target, checked as strictly as one typed by the user: a job store
        edited to hold a command in any field is refused, never run."""
        try:
            ssh = SshLogin.from_dict(data["ssh"]) if data.get("ssh") else None
            root = data["workdir_root"]
            if not isinstance(root, str):
                raise InputError("work folder must be text")
            command = data.get("vsr_command") or list(DEFAULT_VSR_COMMAND)
            if not isinstance(command, list):
                raise InputError("the vsr command must be a list of words")
            stored_env = data.get("env") or []
            if isinstance(stored_env, dict):  # written by an older app: values too
                names, values = list(stored_env), {str(k): v for k, v in stored_env.items()}
            elif isinstance(stored_env, list):
                names, values = stored_env, {}
            else:
                raise InputError("environment variables must be a list of names")
            return cls(
                workdir_root=PurePosixPath(root) if ssh is not None else Path(root),
                partition=data.get("partition") or None,
                gpus_per_task=_whole(data.get("gpus_per_task"), 0),
                max_parallel=_whole(data.get("max_parallel"), 4),
                vsr_command=tuple(command),
                ssh=ssh,
                env=values,
                env_names=tuple(names),
            )
        except InputError as exc:
            raise JobError(
                f"the job's stored Slurm target is refused: {exc.message}",
                "the job store was changed outside vsr; remove the job and submit it again",
            ) from exc
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise JobError(
                f"the job's Slurm target is unreadable ({exc})", "submit the job again"
            ) from exc

    @classmethod
    def from_settings(cls, settings: AppSettings) -> SlurmTarget:
        """The cluster set in the app's settings (Jobs → Run on… → Slurm cluster); a field that
        holds what a shell would read as a command is refused, by name."""
        from vsr_desktop.core.settings import SLURM_FIELD_LABELS, check_slurm_settings

        check_slurm_settings(settings)
        root = settings.slurm_workdir.strip()
        if not root:
            raise InputError(
                "no Slurm cluster is set up (Jobs → Run on… → Slurm cluster)",
                "fill in Jobs → Run on… → Slurm cluster → Work folder, or pass the "
                "target (`vsr slurm submit --workdir DIR [--ssh USER@HOST]`)",
            )
        target = cls(
            workdir_root=Path(root).expanduser(),
            partition=settings.slurm_partition.strip() or None,
            gpus_per_task=settings.slurm_gpus_per_task,
            max_parallel=settings.slurm_max_parallel,
        )
        if settings.slurm_ssh_host.strip():  # the cluster is reached over SSH: its own paths
            target = replace(
                target,
                ssh=SshLogin(host=settings.slurm_ssh_host.strip()),
                workdir_root=PurePosixPath(root),
                vsr_command=safe_values.split_command(
                    settings.slurm_remote_vsr or "vsr", SLURM_FIELD_LABELS["slurm_remote_vsr"]
                ),
            )
        return target


def _partition_gpus(transport: Transport, partition: str | None) -> int:
    """1 when the partition's nodes have GPUs (`sinfo` Gres lists a gpu), else 0; 0 too when
    sinfo cannot say (a job without a GPU still runs, on the CPU)."""
    args = ["sinfo", "--noheader", "--format=%G"]
    if partition:
        args.append(f"--partition={safe_values.partition(partition)}")
    try:
        result = transport.run(args, check=False)
    except VsrError:
        return 0
    if result.returncode != 0:
        return 0
    entries = result.stdout.replace(",", " ").split()  # e.g. gpu:a100:4(S:0-1), or (null)
    return 1 if any(entry.startswith("gpu") for entry in entries) else 0


def _whole(value: object, default: int) -> int:
    """A stored count: an int (JSON has no other), or the default when absent."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{value!r} is not a whole number")
    return value


@dataclass(frozen=True)
class SlurmJobIds:
    split: str
    array: str
    merge: str
    chunks: int

    def all(self) -> list[str]:
        return [self.split, self.array, self.merge]


def target_of(job: JobRecord) -> SlurmTarget:
    """Where a stored job runs: its spec's target. A record written before specs carried it
    has its SSH login in settings["slurm"], or (shared folder) only its work folder."""
    if job.spec is not None and job.spec.target.get("workdir_root"):
        return SlurmTarget.from_dict(job.spec.target)
    if not job.work_dir:
        raise JobError(f"job {job.id} does not say where it runs", "submit it again")
    legacy = _run_state(job)
    if legacy.get("ssh"):
        legacy_env = legacy.get("env") or {}
        try:
            return SlurmTarget(
                workdir_root=PurePosixPath(job.work_dir).parent,
                ssh=SshLogin.from_dict(legacy["ssh"]),
                # values (written by an older app) or, once moved to the keychain, names
                env=dict(legacy_env) if isinstance(legacy_env, dict) else {},
                env_names=tuple(legacy_env) if isinstance(legacy_env, list) else (),
                vsr_command=tuple(legacy.get("vsr_command") or ("vsr",)),
            )
        except (InputError, KeyError, TypeError, ValueError) as exc:
            raise JobError(
                f"job {job.id}'s stored Slurm login is refused ({exc})",
                "the job store was changed outside vsr; remove the job and submit it again",
            ) from exc
    root = Path(job.work_dir).parent
    with contextlib.suppress(VsrError, OSError):  # the settings may hold its options
        from vsr_desktop.core.settings import SettingsFile

        saved = SlurmTarget.from_settings(SettingsFile().load())
        if saved.ssh is None and Path(saved.workdir_root).resolve() == root:
            return replace(saved, workdir_root=root)
    try:
        return SlurmTarget(workdir_root=root)
    except InputError as exc:
        raise JobError(
            f"job {job.id}'s work folder is refused ({exc.message})",
            "the job store was changed outside vsr; remove the job and submit it again",
        ) from exc


class SlurmBackend:
    """Submit, poll, cancel, resume, fetch and remove chunked jobs on a Slurm cluster."""

    name = "slurm"
    runs_in_process = False

    def __init__(self, store: JobStore, target: SlurmTarget) -> None:
        self.store = store
        if target.ssh is None:  # nodes start in other folders: name the shared one absolutely
            target = replace(target, workdir_root=Path(target.workdir_root).expanduser().resolve())
        self.target = target

    @classmethod
    def for_job(cls, store: JobStore, job: JobRecord | None) -> SlurmBackend:
        """The backend that reaches `job`'s cluster (its spec's target); for new jobs (None),
        the cluster in the app's settings, or an InputError saying to set one."""
        if job is None:
            from vsr_desktop.core.settings import SettingsFile

            return cls(store, SlurmTarget.from_settings(SettingsFile().load()))
        if _refusal(job) is not None:
            # A record whose target is refused (edited outside vsr): every operation that
            # would reach a cluster raises that refusal; remove forgets the record alone.
            return cls(store, SlurmTarget(workdir_root=Path("/")))
        return cls(store, target_of(job))

    # ------------------------------------------------------------------ transports
    def transport(self, job: JobRecord | None = None) -> Transport:
        """The job's own target (recorded at submit) wins over this backend's, so a job sent
        over SSH is polled over SSH whatever the app's settings say now."""
        return self._reach(target_of(job) if job is not None else self.target)

    def _known_values(self, target: SlurmTarget) -> dict[str, str]:
        """Variable values this process holds for `target`: given to this backend for the
        same cluster (never another's), or kept by an older record."""
        known = dict(target.env)
        if self.target.place == target.place:
            known.update(self.target.env)
        return {k: v for k, v in known.items() if k in target.env_names}

    def _reach(self, target: SlurmTarget) -> Transport:
        """A transport to `target`, its variables resolved now: values this process holds,
        else the keychain's for that cluster, else this process's environment."""
        env = resolve_env(target.place, target.env_names, self._known_values(target))
        if target.ssh is not None:
            return SshTransport(target.ssh, env=env)
        return LocalTransport(env=env)

    def _keep_values(self, target: SlurmTarget) -> None:
        """Values given for this submission go to the keychain (the spec keeps names only),
        so later commands and the app after a restart can send them again."""
        known = self._known_values(target)
        if known:
            keep_in_keychain(target.place, known)

    def run(
        self, args: list[str], check: bool = True, job: JobRecord | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a Slurm client here or on the login host over SSH."""
        return self.transport(job).run(args, check=check)

    @staticmethod
    def workdir(job: JobRecord) -> PurePath:
        """The job's folder on the cluster (a local path unless it went over SSH), checked
        like any path that reaches a script."""
        try:
            text = safe_values.workdir(job.work_dir, "work folder")
        except InputError as exc:
            raise JobError(
                f"job {job.id}'s work folder is refused ({exc.message})",
                "the job store was changed outside vsr; remove the job and submit it again",
            ) from exc
        return PurePosixPath(text) if target_of(job).ssh is not None else Path(text)

    def remove_work_folder(self, job: JobRecord) -> None:
        """Delete the job's own folder on the cluster (source copy, scripts, chunks, logs,
        output): what *Remove* frees. Only a folder named after the job."""
        workdir = self.workdir(job)
        if workdir.name != job.id or not workdir.is_absolute() or len(workdir.parts) < 3:
            raise JobError(
                f"{workdir} is not a job folder of this app",
                "nothing was deleted; remove the folder by hand if it is one",
            )
        self.transport(job).remove_tree(workdir)

    # ------------------------------------------------------------------ submit / resume
    def submit(
        self,
        spec: JobSpec,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> JobRecord:
        """Check the spec here, record the job, then send it (upload over SSH, spec.json,
        three sbatch). A send that fails leaves the record FAILED with its reason."""
        info = validate_spec(spec)
        spec = replace(
            spec,
            backend=self.name,
            target=self.target.to_dict(),
            source=spec.source.expanduser().resolve(),
            output=spec.output.expanduser().resolve(),
        ).with_source_identity()
        plan = plan_for(spec, info)  # the plan stage cuts the same chunks (and trim)
        job = self._new_record(spec, plan.frame_count, len(plan.chunks))
        self._keep_values(self.target)
        return self._send(job, spec, progress=progress, cancel=cancel)

    def resume(
        self,
        job: JobRecord,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
        *,
        restart: bool = False,
        overwrite: bool = False,
    ) -> JobRecord:
        """Resubmit: finished chunks are kept (their tasks skip them); restart forgets them
        (chunk files, progress, plan) on the cluster and records the source as it is now."""
        job = self.store.get(job.id)
        if job.state is JobState.COMPLETED and not restart:
            return job
        self._refuse_if_busy(job)
        target = target_of(job)
        self._keep_values(target)
        spec = spec_of(job)
        spec = replace(
            spec, backend=self.name, target=target.to_dict(), overwrite=spec.overwrite or overwrite
        )
        self.store.update(job.id, spec=spec)  # an older record's variable values go
        if "env" in _run_state(job):
            settings = dict(job.settings)
            settings["slurm"] = {k: v for k, v in _run_state(job).items() if k != "env"}
            self.store.update(job.id, settings=settings)
        if _run_state(job).get("merged") and not restart:
            finished = self._complete_merged(self.store.get(job.id), target, cancel)
            if finished is not None:
                return finished
        info = validate_spec(spec)
        old_identity = spec.source_identity
        if restart or old_identity is None:
            spec = spec.with_source_identity()
        else:
            check_source_unchanged(spec, job_id=job.id)
        self.store.update(
            job.id,
            spec=spec,
            frames_total=plan_for(spec, info).frame_count,
            chunks_total=len(plan_for(spec, info).chunks),
        )
        if restart:
            self.store.update(job.id, frames_done=0, chunks_done=0)
            self._remember(job.id, merged=False, fetched=False)
        return self._send(
            self.store.get(job.id),
            spec,
            restart=restart,
            new_source=restart and old_identity != spec.source_identity,
            progress=progress,
            cancel=cancel,
        )

    def _new_record(self, spec: JobSpec, frames: int, chunks: int) -> JobRecord:
        """RUNNING with this process's pid while it is sent: a process killed mid-upload
        leaves a job every command sees as INTERRUPTED (resumable), never Queued forever."""
        job_id = JobStore.new_id()
        if self.target.ssh is not None:
            workdir: PurePath = PurePosixPath(self.target.workdir_root) / job_id
            log_path = ""  # on the cluster, not readable here
        else:
            workdir = Path(self.target.workdir_root) / job_id
            log_path = str(workdir / "logs" / "merge.log")
        return self.store.add(
            JobRecord(
                id=job_id,
                name=spec.source.name,
                backend=self.name,
                source=str(spec.source),
                output=str(spec.output),
                spec=spec,
                work_dir=str(workdir),
                log_path=log_path,
                frames_total=frames,
                chunks_total=chunks,
                state=JobState.RUNNING,
                phase="submitting",
                pid=os.getpid(),
            )
        )

    def _send(
        self,
        job: JobRecord,
        spec: JobSpec,
        *,
        restart: bool = False,
        new_source: bool = False,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> JobRecord:
        """Put the job on the cluster and sbatch it; the record says how far that got."""
        self.store.update(
            job.id, state=JobState.RUNNING, phase="submitting", message="", pid=os.getpid()
        )
        self._remember(job.id, ids=None)
        target = target_of(job)
        transport = self._reach(target)
        workdir = self.workdir(job)
        try:
            self._stage(
                job,
                spec,
                target,
                transport,
                workdir,
                restart=restart,
                new_source=new_source,
                progress=progress,
                cancel=cancel,
            )
            if cancel is not None and cancel.is_set():
                raise CancelledError("the submission was cancelled")
            ids = self._submit_three(
                transport,
                target,
                workdir,
                job.chunks_total,
                job.id,
                gpu_wanted=spec.engine.device.strip().lower() != "cpu",
            )
            transport.write_text(workdir / "slurm.json", json.dumps(vars(ids)))
        except CancelledError:
            self.store.update(
                job.id,
                state=JobState.CANCELLED,
                phase="",
                pid=None,
                message="cancelled before it reached the Slurm queue; resume to send it again",
            )
            raise
        except Exception as exc:
            reason = (
                exc.user_message()
                if isinstance(exc, VsrError)
                else f"{exc.strerror or exc}"
                if isinstance(exc, OSError)
                else repr(exc)
            )
            self.store.update(
                job.id,
                state=JobState.FAILED,
                phase="",
                pid=None,
                message=f"not submitted: {reason}",
            )
            if isinstance(exc, VsrError):
                raise JobError(f"job {job.id} was not submitted: {exc.message}", exc.hint) from exc
            if isinstance(exc, OSError):
                raise JobError(
                    f"job {job.id} was not submitted: {reason}",
                    "check the shared work folder exists and is writable",
                ) from exc
            raise
        self._remember(job.id, ids=vars(ids))
        queued = self.store.update(
            job.id,
            unless_finished=True,
            state=JobState.QUEUED,
            phase="waiting in the Slurm queue",
            pid=None,
            message=f"Slurm jobs {', '.join(ids.all())}",
        )
        if not queued:  # cancelled (by another command) while it was being sent
            self.run(["scancel", *ids.all()], check=False, job=job)
            self.store.update(job.id, pid=None)
        return self.store.get(job.id)

    def _stage(
        self,
        job: JobRecord,
        spec: JobSpec,
        target: SlurmTarget,
        transport: Transport,
        workdir: PurePath,
        *,
        restart: bool,
        new_source: bool,
        progress: ProgressCallback | None,
        cancel: threading.Event | None,
    ) -> None:
        """Everything the tasks read, in the work folder: the source (SSH), a model file,
        and spec.json with the cluster's own paths."""
        models = user_model_files(spec.engine.model)  # a model given as a file of this machine
        model = spec.engine.model
        if target.ssh is not None:
            assert isinstance(transport, SshTransport)
            source, output = _remote_paths(workdir, spec.source.name, spec.output.name)
            transport.mkdirs(workdir, workdir / "logs", source.parent, output.parent)
            if new_source:  # a restart after the source changed: the old copy must go
                transport.remove([source, source.with_name(source.name + ".part")])
            self.store.update(job.id, phase="uploading the source")

            def on_bytes(done: int, total: int) -> None:
                if progress is not None:
                    progress(
                        Progress(
                            job.id,
                            "uploading the source",
                            done,
                            total,
                            0,
                            job.chunks_total,
                            0.0,
                            None,
                        )
                    )

            transport.upload(spec.source, source, on_bytes=on_bytes, cancel=cancel)
            if models:  # the cluster cannot read this disk: the model goes with the job
                model_dir = workdir / "input" / "model"
                transport.mkdirs(model_dir)
                for path in models:
                    transport.upload(path, model_dir / path.name, cancel=cancel)
                model = str(model_dir / models[0].name)
            self.store.update(job.id, phase="submitting")
        else:
            source, output = spec.source, spec.output
            transport.mkdirs(workdir, workdir / "logs")
            if models:  # the nodes start in other folders: name it absolutely
                model = str(models[0].resolve())
        if restart:
            _forget_all_work(transport, workdir, remote=target.ssh is not None)
        else:
            _forget_unfinished_progress(transport, workdir)
        cluster_spec = replace(
            spec,
            source=Path(str(source)),
            output=Path(str(output)),
            engine=replace(spec.engine, model=model),
        )
        transport.write_text(workdir / "spec.json", cluster_spec.to_json())

    @classmethod
    def _submit_three(
        cls,
        transport: Transport,
        target: SlurmTarget,
        workdir: PurePath,
        chunks: int,
        job_id: str,
        gpu_wanted: bool = True,
    ) -> SlurmJobIds:
        """split → array → merge. Every option goes to sbatch as one argument of its own
        (never a `#SBATCH` line, which sbatch splits at spaces and `#`); the scripts hold
        only the vsr command, each word quoted."""
        vsr = shlex.join(safe_values.command_words(target.vsr_command, "vsr command"))
        logs = _log_pattern(workdir / "logs")
        where = f"--workdir {shlex.quote(str(workdir))}"
        common = [f"--job-name=vsr-{job_id}"]
        if target.partition:
            common.append(f"--partition={safe_values.partition(target.partition)}")
        submitted: list[str] = []
        try:
            submitted.append(
                cls._sbatch(
                    transport,
                    workdir / "split.sh",
                    [*common, f"--output={logs}/split.log"],
                    f"{vsr} worker plan {where} --spec {shlex.quote(str(workdir / 'spec.json'))}",
                )
            )
            array_opts = [
                *common,
                f"--array=0-{chunks - 1}%{max(1, target.max_parallel)}",
                f"--output={logs}/chunk_%a.log",
                f"--dependency=afterok:{submitted[0]}",
                "--kill-on-invalid-dep=yes",
            ]
            # Each array task its own GPU(s): Slurm binds them (CUDA_VISIBLE_DEVICES), so
            # tasks sharing a node never all take GPU 0. 0 = one where the partition has GPUs.
            gpus = target.gpus_per_task or (
                _partition_gpus(transport, target.partition) if gpu_wanted else 0
            )
            if gpus:
                gpus = safe_values.whole_number(gpus, "GPUs per task", 1, 1024)
                array_opts.append(f"--gres=gpu:{gpus}")
            submitted.append(
                cls._sbatch(
                    transport, workdir / "upscale.sh", array_opts, f"{vsr} worker upscale {where}"
                )
            )
            submitted.append(
                cls._sbatch(
                    transport,
                    workdir / "merge.sh",
                    [
                        *common,
                        f"--output={logs}/merge.log",
                        f"--dependency=afterok:{submitted[1]}",
                        "--kill-on-invalid-dep=yes",
                    ],
                    f"{vsr} worker merge {where}",
                )
            )
        except VsrError:
            if submitted:  # half a job must not run: withdraw what went in
                with contextlib.suppress(VsrError):
                    transport.run(["scancel", *submitted], check=False)
            raise
        return SlurmJobIds(
            split=submitted[0], array=submitted[1], merge=submitted[2], chunks=chunks
        )

    @staticmethod
    def _sbatch(transport: Transport, script: PurePath, options: list[str], command: str) -> str:
        for option in options:  # one argument each; no line of any script comes from them
            safe_values.plain_text(option, "an sbatch option")
        text = "\n".join(["#!/bin/bash", "set -e", f"exec {command}", ""])
        if text.count("\n") != 3:
            raise InputError("a job script would span more than one command line")
        transport.write_text(script, text)
        result = transport.run(["sbatch", "--parsable", *options, str(script)])
        slurm_id = result.stdout.strip().split(";")[0]
        if not slurm_id.isdigit():
            raise JobError(
                f"sbatch gave no job id ({result.stdout.strip()!r})", "check the cluster's sbatch"
            )
        return slurm_id

    # ------------------------------------------------------------------ poll / cancel
    def job_ids(self, job: JobRecord) -> SlurmJobIds:
        ids = self._known_ids(job)
        if ids is None:
            raise JobError(f"job {job.id} has no Slurm submission record", "resume it")
        return ids

    def _known_ids(self, job: JobRecord) -> SlurmJobIds | None:
        """The Slurm ids of the job's last submission; None if it never reached the queue.
        Records from before ids were kept in settings have them in WORKDIR/slurm.json."""
        state = _run_state(job)
        try:
            if "ids" in state:
                return SlurmJobIds(**state["ids"]) if state["ids"] else None
            if target_of(job).ssh is not None or not job.work_dir:
                return None
            return SlurmJobIds(**json.loads((Path(job.work_dir) / "slurm.json").read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def slurm_states(self, ids: SlurmJobIds, job: JobRecord | None = None) -> dict[str, list[str]]:
        """Slurm job id → states of its tasks (an array has one per task)."""
        transport = self.transport(job)
        states: dict[str, list[str]] = {i: [] for i in ids.all()}
        queue = transport.run(
            ["squeue", "-h", "-r", "-j", ",".join(ids.all()), "-o", "%F %T"], check=False
        )
        for line in queue.stdout.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] in states:
                states[parts[0]].append(parts[1])
        for slurm_id, found in states.items():
            if not found:
                shown = transport.run(["scontrol", "-o", "show", "job", slurm_id], check=False)
                found.extend(
                    _field(line, "JobState")
                    for line in shown.stdout.splitlines()
                    if _field(line, "JobState")
                )
        return states

    def poll(self, job: JobRecord) -> JobRecord:
        """Refresh one row from Slurm and the progress files (fetching the output of an SSH
        job once its merge has finished: only then is the row COMPLETED)."""
        job = self.store.get(job.id)  # a submitter that died reads as INTERRUPTED
        if job.state.is_finished:
            return job
        ids = self._known_ids(job)
        if ids is None:
            if job.state is not JobState.INTERRUPTED and job.pid is None:
                # Sent by no one and queued nowhere (a record of an older app): say so.
                self.store.update(
                    job.id,
                    unless_finished=True,
                    state=JobState.FAILED,
                    phase="",
                    message="it never reached the Slurm queue; resume to submit it again",
                )
            return self.store.get(job.id)
        target = target_of(job)
        transport = self._reach(target)
        states = self.slurm_states(ids, job)
        workdir = self.workdir(job)
        changes: dict[str, object] = {}
        with tempfile.TemporaryDirectory(prefix="vsr-slurm-") as tmp:
            files = transport.job_files(workdir, Path(tmp))
            if (files / "plan.json").exists():
                progress = read_progress(files)
                changes.update(
                    frames_done=progress.frames_done,
                    frames_total=progress.frames_total,
                    chunks_done=progress.chunks_done,
                    chunks_total=progress.chunks_total,
                )
                failed = [i for i, s in progress.chunk_states.items() if s == "failed"]
            else:
                failed = []
            report = read_report(files / "progress" / "verify.json")
        every = [s for group in states.values() for s in group]
        merge_states = states[ids.merge]
        if merge_states and all(s == "COMPLETED" for s in merge_states):
            finished = self._finish(job, target, transport)
            if report is not None and finished.get("state") is JobState.COMPLETED:
                # The merge's "nothing lost" check, made on the cluster beside both files.
                settings = {**self.store.get(job.id).settings, VERIFY_REPORT_KEY: report}
                finished.update(settings=settings, message=summary(report))
            changes.update(finished)
        elif any(s in _FAILED for s in every) or failed:
            changes.update(
                state=JobState.FAILED,
                phase="",
                message=self._failure_message(transport, workdir, failed, states, ids),
            )
        elif any(s == "CANCELLED" for s in every):
            changes.update(state=JobState.CANCELLED, phase="")
        elif any(s == "RUNNING" for s in every):
            running = [k for k, v in states.items() if "RUNNING" in v]
            phase = {ids.split: "splitting", ids.array: "upscaling", ids.merge: "merging"}.get(
                running[0], "running"
            )
            changes.update(state=JobState.RUNNING, phase=phase)
        if changes:
            self.store.update(job.id, unless_finished=True, **changes)
        return self.store.get(job.id)

    def _finish(
        self, job: JobRecord, target: SlurmTarget, transport: Transport
    ) -> dict[str, object]:
        """Changes for a job whose merge completed: an SSH job's output comes down first."""
        self._remember(job.id, merged=True)
        done: dict[str, object] = {"state": JobState.COMPLETED, "phase": "", "message": ""}
        if target.ssh is None or _run_state(job).get("fetched"):
            return done
        self.store.update(
            job.id, unless_finished=True, state=JobState.RUNNING, phase="downloading the output"
        )
        try:
            self._download(job, transport)
        except InputError as exc:  # the output appeared meanwhile: never clobber it
            return {"state": JobState.FAILED, "phase": "", "message": exc.user_message()}
        except (JobError, OSError) as exc:
            # Stay unfinished: the next poll tries again (a dropped connection is no failure).
            return {
                "state": JobState.RUNNING,
                "phase": "downloading the output",
                "message": f"download failed, retrying: {exc}",
            }
        return done

    def _download(
        self,
        job: JobRecord,
        transport: Transport,
        on_bytes: Callable[[int, int], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> Path:
        """The cluster's output to the job's local output path (refusing to replace a file
        that appeared meanwhile unless the spec says overwrite)."""
        assert isinstance(transport, SshTransport)
        local = Path(job.output)
        overwrite = job.spec.overwrite if job.spec is not None else False
        if local.exists() and not overwrite and not _run_state(job).get("fetched"):
            raise InputError(
                f"{local} appeared while the job ran",
                f"move it away, or resume with `vsr jobs resume {job.id} --overwrite`",
            )
        _, output = _remote_paths(self.workdir(job), Path(job.source).name, local.name)
        transport.download(output, local, on_bytes=on_bytes, cancel=cancel)
        self._remember(job.id, fetched=True)
        return local

    def _complete_merged(
        self, job: JobRecord, target: SlurmTarget, cancel: threading.Event | None
    ) -> JobRecord | None:
        """A job whose merge finished needs no new run: fetch its output (SSH) or find it
        whole in place. None when the output is gone and the job must run again."""
        if target.ssh is not None:
            transport = self._reach(target)
            assert isinstance(transport, SshTransport)
            _, output = _remote_paths(
                self.workdir(job), Path(job.source).name, Path(job.output).name
            )
            if not (_run_state(job).get("fetched") and Path(job.output).is_file()):
                if not transport.exists(output):
                    self._remember(job.id, merged=False)
                    return None
                self._download(job, transport, cancel=cancel)
        else:
            from vsr_desktop.core.media.probe import probe

            try:
                whole = probe(Path(job.output)).video.frame_count == job.frames_total
            except (VsrError, OSError):
                whole = False
            if not whole:
                self._remember(job.id, merged=False)
                return None
        self.store.update(
            job.id,
            state=JobState.COMPLETED,
            phase="",
            message="",
            frames_done=job.frames_total,
            chunks_done=job.chunks_total,
        )
        return self.store.get(job.id)

    @staticmethod
    def _failure_message(
        transport: Transport,
        workdir: PurePath,
        failed_chunks: list[int],
        states: dict[str, list[str]],
        ids: SlurmJobIds,
    ) -> str:
        """The failing task's log tail: what the user needs to see in the panel."""
        logs = workdir / "logs"
        if failed_chunks:
            return (
                f"chunk {failed_chunks[0]} failed: "
                f"{transport.tail(logs / f'chunk_{failed_chunks[0]}.log')}"
            )
        if any(s in _FAILED for s in states[ids.split]):
            return f"split failed: {transport.tail(logs / 'split.log')}"
        if any(s in _FAILED for s in states[ids.merge]):
            return f"merge failed: {transport.tail(logs / 'merge.log')}"
        return "an upscale task failed; see the logs in " + str(logs)

    def cancel(self, job: JobRecord) -> JobRecord:
        """scancel every part; finished chunks stay for a resume. A finished record keeps
        its state (a FAILED job's remaining tasks are still withdrawn)."""
        job = self.store.get(job.id)
        ids = self._known_ids(job)
        if ids is not None:
            self.run(["scancel", *ids.all()], check=False, job=job)
        self.store.update(
            job.id,
            unless_finished=True,
            state=JobState.CANCELLED,
            phase="",
            message="cancelled; resume to continue from the finished chunks",
        )
        return self.store.get(job.id)

    # ------------------------------------------------------------------ output / removal
    def fetch_output(
        self,
        job: JobRecord,
        on_bytes: Callable[[int, int], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> Path:
        """SSH jobs: download the merged output to the local output path. Shared-folder
        jobs: the merge wrote it there already."""
        job = self.store.get(job.id)
        target = target_of(job)
        local = Path(job.output)
        if target.ssh is None:
            if job.state is JobState.COMPLETED and local.is_file():
                return local
            raise JobError(
                f"job {job.id} has no finished output", "wait for it to finish, or resume it"
            )
        state = _run_state(job)
        if not (state.get("merged") or job.state is JobState.COMPLETED):
            raise JobError(
                f"job {job.id} has not finished on the cluster", "wait for its merge, or resume it"
            )
        if state.get("fetched") and local.is_file():
            return local
        self._download(job, self._reach(target), on_bytes, cancel)
        self.store.update(job.id, state=JobState.COMPLETED, phase="", message="")
        return local

    def needs_fetch(self, job: JobRecord) -> bool:
        try:
            remote = target_of(job).ssh is not None
        except JobError:
            return False
        state = _run_state(job)
        return (
            remote
            and bool(state.get("merged") or job.state is JobState.COMPLETED)
            and not state.get("fetched")
        )

    def work_lost_on_remove(self, job: JobRecord) -> str:
        refused = _refusal(job)
        if refused is not None:
            return (
                f"{refused.message}. Only the record is removed: its folder on the cluster, "
                "if any, is left in place."
            )
        if self.needs_fetch(job):
            return (
                "Its output is still on the cluster and has not been downloaded. Removing "
                "the job deletes its folder there, output included."
            )
        if job.state is not JobState.COMPLETED and job.chunks_done > 0:
            return (
                f"{job.chunks_done} of {job.chunks_total} chunks are finished. Removing the "
                "job deletes them: it can no longer be resumed, only started again."
            )
        return ""

    def remove(self, job: JobRecord) -> None:
        """Delete the job's folder on the cluster, then its record; refused while its Slurm
        jobs are queued or running. A job that never reached the queue is removed even when
        the cluster cannot be reached (nothing of it may be there)."""
        job = self.store.get(job.id)
        refused = _refusal(job)
        if refused is not None:  # nothing it names is contacted: only the record goes
            log.warning("job %s: %s; removing its record only", job.id, refused.message)
            self.store.delete(job.id)
            return
        self._refuse_if_busy(job)
        if self._known_ids(job) is not None:
            self.remove_work_folder(job)
        else:
            with contextlib.suppress(VsrError, OSError):
                self.remove_work_folder(job)
        self.store.delete(job.id)

    def _refuse_if_busy(self, job: JobRecord) -> None:
        """A job being sent by a live process, or with Slurm jobs in the queue, is not
        resubmitted or removed: cancel first."""
        if job.state is JobState.RUNNING and job.pid is not None:  # get() saw it alive
            where = "this process" if job.pid == os.getpid() else f"process {job.pid}"
            raise JobError(
                f"job {job.id} is being submitted by {where}", "wait for it, or cancel it first"
            )
        ids = self._known_ids(job)
        if ids is None:
            return
        states = self.slurm_states(ids, job)
        active = [i for i, found in states.items() if any(s in _ACTIVE for s in found)]
        if active:
            raise JobError(
                f"job {job.id} still has Slurm jobs in the queue ({', '.join(active)})",
                f"cancel it first (`vsr jobs cancel {job.id}`)",
            )

    def _remember(self, job_id: str, **changes: Any) -> None:
        """The run's own state (ids, merged, fetched) lives in settings["slurm"]."""
        current = self.store.get(job_id)
        settings = dict(current.settings)
        settings["slurm"] = {**_run_state(current), **changes}
        self.store.update(job_id, settings=settings)


def _refusal(job: JobRecord) -> JobError | None:
    """Why a stored job's target or work folder is refused, or None when both are fine."""
    try:
        SlurmBackend.workdir(job)  # the target too
    except JobError as exc:
        return exc
    return None


def _run_state(job: JobRecord | None) -> dict[str, Any]:
    """The backend's own section of a job's settings (run state; older records also kept
    their SSH login there)."""
    section = job.settings.get("slurm") if job is not None else None
    return dict(section) if isinstance(section, dict) else {}


def _log_pattern(folder: PurePath) -> str:
    """A folder as the start of an sbatch --output pattern: `%` doubled, so a `%j` in a
    folder's name stays the folder's name (a backslash, which turns patterns off, is
    refused in work folders)."""
    return str(folder).replace("%", "%%")


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


def _forget_all_work(transport: Transport, workdir: PurePath, *, remote: bool) -> None:
    """A restart: chunk files, progress, plan and probe of the last run go (over SSH the
    cluster's copy of the output too); the logs folder and an uploaded source stay."""
    for folder in ("chunks", "progress", *(("output",) if remote else ())):
        transport.remove_tree(workdir / folder)
    transport.remove(
        [workdir / name for name in ("plan.json", "media.json", "spec.json", "slurm.json")]
    )
    if remote:
        transport.mkdirs(workdir / "output")


def _field(line: str, name: str) -> str:
    for token in line.split():
        if token.startswith(name + "="):
            return token.split("=", 1)[1]
    return ""
