"""The local backend: run a job's chunks in order on this machine, resumably.

The same plan and the same worker stages as the cloud and Slurm backends; chunks finished
before a crash or kill are recorded in the job store and skipped when the job resumes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from vsr_desktop.backends.protocol import Progress, ProgressCallback
from vsr_desktop.core.device_pool import DevicePool, parse_devices
from vsr_desktop.core.errors import (
    CancelledError,
    InputError,
    JobError,
    VsrError,
)
from vsr_desktop.core.hardware_codecs import use_hardware_decode
from vsr_desktop.core.job_lock import LOCK_NAME, JobLock, runner_pid
from vsr_desktop.core.job_spec import EngineSettings, JobSpec
from vsr_desktop.core.jobs import JobRecord, JobState, JobStore
from vsr_desktop.core.media.deinterlace import job_deinterlace, merge_inputs, output_frame_count
from vsr_desktop.core.media.deinterlace import notes as deinterlace_notes
from vsr_desktop.core.media.encode import container_for
from vsr_desktop.core.media.image_sequence import chunk_frame_count
from vsr_desktop.core.media.probe import MediaInfo, probe
from vsr_desktop.core.plan import Chunk, Plan
from vsr_desktop.core.private_files import append_private
from vsr_desktop.core.trim import plan_for
from vsr_desktop.core.upscaler import FrameUpscaler
from vsr_desktop.worker.job_report import REPORT_KEY, summary, verify_output
from vsr_desktop.worker.job_setup import (
    build_engine,
    check_source_unchanged,
    damaged_note,
    source_notes,
    spec_of,
    validate_spec,
)
from vsr_desktop.worker.merge import merge_job
from vsr_desktop.worker.upscale_chunk import ChunkResult, partial_path, upscale_chunk

__all__ = ["EngineFactory", "LocalBackend", "Progress", "ProgressCallback"]

EngineFactory = Callable[[EngineSettings], FrameUpscaler]
_STOPPED = (JobState.INTERRUPTED, JobState.FAILED, JobState.CANCELLED)


def default_work_root() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir("vsr_desktop", appauthor=False)) / "work"


class _RateMeter:
    """Frames per second over the last few seconds (a whole-run average hides slowdowns)."""

    def __init__(self, window_seconds: float = 10.0) -> None:
        self._samples: deque[tuple[float, int]] = deque()
        self._window = window_seconds

    def add(self, total_frames: int) -> float:
        now = time.monotonic()
        self._samples.append((now, total_frames))
        while len(self._samples) > 2 and now - self._samples[0][0] > self._window:
            self._samples.popleft()
        first_t, first_n = self._samples[0]
        return (total_frames - first_n) / (now - first_t) if now > first_t else 0.0


class LocalBackend:
    """Runs jobs in this process; the store makes them visible to the GUI and resumable."""

    name = "local"
    runs_in_process = True

    def __init__(
        self,
        store: JobStore,
        work_root: Path | None = None,
        engine_factory: EngineFactory = build_engine,
    ) -> None:
        self.store = store
        self.work_root = work_root or default_work_root()
        self._engine_factory = engine_factory
        # prepare() has probed the source already; run() reuses it instead of demuxing the
        # whole file again (a queued job may run on another thread: dict ops are atomic).
        self._probed: dict[str, MediaInfo] = {}
        #: Cancel events of the jobs this process runs now, for cancel() from other threads.
        self._running: dict[str, threading.Event] = {}

    # ------------------------------------------------------------------ protocol
    def submit(
        self,
        spec: JobSpec,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> JobRecord:
        """Record (or find the unfinished run of) the job, then run it to the end here."""
        return self.run(self.prepare(spec), progress, cancel)

    def resume(
        self,
        job: JobRecord,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
        *,
        restart: bool = False,
        overwrite: bool = False,
    ) -> JobRecord:
        job = self.poll(job)
        if job.state is JobState.COMPLETED and not restart:
            return job
        if job.state in (JobState.RUNNING, JobState.QUEUED) and not self._is_queued_here(job):
            pid = runner_pid(Path(job.work_dir)) if job.work_dir else None
            if pid is not None:
                where = f"in process {pid}" if pid > 0 else "in another process"
                raise JobError(
                    f"job {job.id} is already running {where}",
                    "wait for it to finish, or cancel it first",
                )
        spec = spec_of(job)
        if overwrite and not spec.overwrite:
            spec = replace(spec, overwrite=True)
            self.store.update(job.id, spec=spec)
        return self.run(self.store.get(job.id), progress, cancel, restart=restart)

    def poll(self, job: JobRecord) -> JobRecord:
        """The row from the facts: a dead runner's job is INTERRUPTED, and one stopped after
        its output was complete (between the rename and the store update) is COMPLETED."""
        job = self.store.get(job.id)  # get() marks a dead runner's job interrupted
        if job.state in _STOPPED and self._output_complete(job):
            return self._complete_from_output(job)
        return job

    def _complete_from_output(self, job: JobRecord) -> JobRecord:
        self.store.update(
            job.id,
            state=JobState.COMPLETED,
            phase="",
            eta_seconds=0.0,
            frames_done=job.frames_total,
            message="",
        )
        self._log(job, "completed (the output was whole; the run had stopped after it)")
        self._cleanup(job)
        return self.store.get(job.id)

    def cancel(self, job: JobRecord) -> JobRecord:
        """Stop the run wherever it is on this machine: this process, or another one (the
        CLI stops cooperatively on SIGTERM and leaves the job resumable)."""
        event = self._running.get(job.id)
        if event is not None:
            event.set()
            return self.store.get(job.id)
        pid = runner_pid(Path(job.work_dir)) if job.work_dir else None
        if pid is not None and pid > 0 and pid != os.getpid():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGTERM)
            return self.store.get(job.id)
        if not job.state.is_finished:
            self.store.update(
                job.id,
                state=JobState.CANCELLED,
                phase="",
                message="cancelled before it ran; resume to start it",
            )
        return self.store.get(job.id)

    def fetch_output(
        self,
        job: JobRecord,
        on_bytes: Callable[[int, int], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> Path:
        """A local job writes its output in place: nothing to bring."""
        output = Path(job.output)
        if job.state is not JobState.COMPLETED or not output.is_file():
            raise JobError(f"job {job.id} has no finished output", "resume it first")
        return output

    def needs_fetch(self, job: JobRecord) -> bool:
        return False

    def work_lost_on_remove(self, job: JobRecord) -> str:
        if job.state is not JobState.COMPLETED and job.chunks_done > 0:
            return (
                f"{job.chunks_done} of {job.chunks_total} chunks are finished. Removing the "
                "job deletes them: it can no longer be resumed, only started again."
            )
        return ""

    def remove(self, job: JobRecord) -> None:
        """Delete the job's own work files (chunks, plan, log, lock), then its record; never
        the output. A job that a live process runs is refused."""
        if job.work_dir and runner_pid(Path(job.work_dir)) is not None:
            raise JobError(f"job {job.id} is running", "cancel it first, then remove it")
        remove_work_files(job)
        self.store.delete(job.id)

    def clean_stale_outputs(self) -> list[Path]:
        """Delete `NAME.partial.EXT` left in the user's folder by runs that died mid-merge
        (a kill skips the cleanup); returns what was deleted. Runs at every start."""
        removed = []
        for job in self.store.all_jobs():  # marks dead runners' jobs interrupted first
            if job.backend != self.name or job.state not in _STOPPED:
                continue
            stale = partial_path(Path(job.output))
            if stale.is_file():
                with contextlib.suppress(OSError):
                    stale.unlink()
                    removed.append(stale)
                    self._log(job, f"removed the unfinished output {stale.name}")
        return removed

    # ------------------------------------------------------------------ running
    def prepare(self, spec: JobSpec, *, restart: bool = False) -> JobRecord:
        """Validate, then find the unfinished job to resume or record a new one."""
        info = validate_spec(spec)
        spec = replace(
            spec,
            backend=self.name,
            source=spec.source.expanduser().resolve(),
            output=spec.output.expanduser().resolve(),
        )
        existing = None if restart else self.store.find_resumable(spec)
        if existing is not None:
            self._probed[existing.id] = info
            if existing.spec is not None and existing.spec.overwrite != spec.overwrite:
                self.store.update(
                    existing.id, spec=replace(existing.spec, overwrite=spec.overwrite)
                )
            return self.store.get(existing.id)
        job_id = JobStore.new_id()
        work_dir = self.work_root / job_id
        job = JobRecord(
            id=job_id,
            name=spec.source.name,
            backend=self.name,
            source=str(spec.source),
            output=str(spec.output),
            spec=spec.with_source_identity(),
            work_dir=str(work_dir),
            log_path=str(work_dir / "job.log"),
            pid=os.getpid(),  # queued by this process: if it quits first, the job reads stopped
        )
        self._probed[job.id] = info
        return self.store.add(job)

    def run(
        self,
        job: JobRecord,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
        *,
        restart: bool = False,
    ) -> JobRecord:
        """Run (or resume) the job to completion; raises VsrError on failure or cancel.

        The work folder's lock is taken before anything is written: a second runner is
        refused with the first one's pid and leaves the job as it was."""
        cancel = cancel or threading.Event()
        work_dir = Path(job.work_dir)
        with JobLock(work_dir, job.id):
            self._running[job.id] = cancel
            try:
                return self._run_locked(self.store.get(job.id), progress, cancel, restart)
            finally:
                self._running.pop(job.id, None)

    def _run_locked(
        self,
        job: JobRecord,
        progress: ProgressCallback | None,
        cancel: threading.Event,
        restart: bool,
    ) -> JobRecord:
        spec = spec_of(job)
        if not restart and self._output_complete(job):
            return self._complete_from_output(job)
        self.store.update(
            job.id, state=JobState.RUNNING, pid=os.getpid(), message="", phase="starting"
        )
        self._log(job, f"start: {spec.source} -> {spec.output}")
        self._log(job, f"settings: {_settings_for_log(spec)}")
        try:
            spec = self._check_source(job, spec, restart)
            info = self._probed.pop(job.id, None) or validate_spec(replace(spec, overwrite=True))
            plan = plan_for(spec, info)  # only the trimmed range, when there is one
            work_dir = Path(job.work_dir)
            (work_dir / "plan.json").write_text(plan.to_json())
            damaged = self._run_chunks(job, spec, info, plan, progress, cancel)
            self.store.update(job.id, phase="merging", eta_seconds=None)
            self._emit(
                progress,
                job.id,
                "merging",
                plan.frame_count,
                plan,
                len(plan.chunks),
                self.store.get(job.id).fps,
            )
            paths = [work_dir / c.file_name(spec.output.suffix) for c in plan.chunks]
            if spec.output.exists() and not spec.overwrite:
                raise InputError(
                    f"{spec.output} appeared while the job ran",
                    f"move it away, or resume with `vsr jobs resume {job.id} --overwrite`",
                )
            fields = job_deinterlace(spec, info.video)
            warnings = deinterlace_notes(fields) + source_notes(info)
            if damaged:
                warnings.append(damaged_note(damaged))
            warnings += merge_job(
                *merge_inputs(fields, info, plan),
                paths,
                spec.output.expanduser(),
                cancel,
                audio_codec=spec.encode.audio_codec,
                encode=spec.encode,
            )
        except CancelledError:
            self.store.update(
                job.id,
                state=JobState.CANCELLED,
                phase="",
                message="cancelled; resume to continue from the last chunk",
            )
            self._log(job, "cancelled")
            raise
        except VsrError as exc:
            self.store.update(job.id, state=JobState.FAILED, phase="", message=exc.user_message())
            self._log(job, f"failed: {exc.user_message()}")
            raise
        except Exception as exc:
            self.store.update(job.id, state=JobState.FAILED, phase="", message=str(exc))
            self._log(job, f"crashed: {exc!r}")
            raise JobError(f"the job failed unexpectedly: {exc}", "see the job log") from exc
        self.store.update(job.id, phase="verifying")
        report = verify_output(info, spec)
        settings = {**self.store.get(job.id).settings, REPORT_KEY: report}
        self.store.update(
            job.id,
            state=JobState.COMPLETED,
            phase="",
            eta_seconds=0.0,
            message="; ".join([*warnings, summary(report)]),
            settings=settings,
        )
        for line in report["lines"]:
            self._log(job, f"verify: {line}")
        self._log(job, "completed")
        self._cleanup(job)
        return self.store.get(job.id)

    def _check_source(self, job: JobRecord, spec: JobSpec, restart: bool) -> JobSpec:
        """Refuse a source replaced since the job started (never splice two files); with
        restart, forget the old chunks and record the source as it is now."""
        if restart:
            self.store.forget_chunks(job.id)
            remove_chunk_files(Path(job.work_dir))
            spec = spec.with_source_identity()
            self.store.update(job.id, spec=spec, frames_done=0, chunks_done=0)
            return spec
        if spec.source_identity is None:  # a job recorded before identities existed
            spec = spec.with_source_identity()
            self.store.update(job.id, spec=spec)
            return spec
        check_source_unchanged(spec, job_id=job.id)
        return spec

    def _output_complete(self, job: JobRecord) -> bool:
        """Every chunk was recorded and the output is a whole file written by this job."""
        output = Path(job.output)
        if job.state is JobState.COMPLETED or not job.chunks_total:
            return False
        if len(self.store.finished_chunks(job.id)) != job.chunks_total:
            return False
        try:
            if not output.is_file() or output.stat().st_mtime < job.created_at:
                return False
            frames = output_frame_count(spec_of(job), job.frames_total)
            return probe(output).video.frame_count in frames
        except (OSError, VsrError):
            return False

    def _is_queued_here(self, job: JobRecord) -> bool:
        return job.state is JobState.QUEUED and job.id not in self._running

    def _run_chunks(
        self,
        job: JobRecord,
        spec: JobSpec,
        info: MediaInfo,
        plan: Plan,
        progress: ProgressCallback | None,
        cancel: threading.Event | None,
    ) -> int:
        """Upscale the chunks not yet done; returns how many damaged frames were filled."""
        work_dir = Path(job.work_dir)
        suffix = spec.output.suffix
        finished = self._valid_finished_chunks(job, plan)
        frames_done = sum(plan.chunks[i].frame_count for i in finished)
        self.store.update(
            job.id,
            frames_total=plan.frame_count,
            chunks_total=len(plan.chunks),
            frames_done=frames_done,
            chunks_done=len(finished),
        )
        if finished:
            self._log(job, f"resuming: {len(finished)}/{len(plan.chunks)} chunks already done")
        todo = [c for c in plan.chunks if c.index not in finished]
        damaged = 0
        if not todo:
            return damaged
        self.store.update(job.id, phase="loading model")
        use_hardware_decode(spec.engine.hardware_decode)  # --hwdecode (NVDEC, with fallback)
        devices = parse_devices(spec.engine.devices)  # --devices: one engine per device
        engine = self._engine_factory(spec.engine) if len(devices) < 2 else None
        meter = _RateMeter()
        meter.add(frames_done)
        last_report = 0.0
        state = {"frames": frames_done, "chunks": len(finished)}
        lock = threading.Lock()  # several devices report frames from their own threads

        def on_frames(count: int) -> None:
            nonlocal last_report
            with lock:
                state["frames"] += count
                fps = meter.add(state["frames"])
                now = time.monotonic()
                if now - last_report < 0.5 and state["frames"] != plan.frame_count:
                    return
                last_report = now
                self._emit(
                    progress,
                    job.id,
                    "upscaling",
                    state["frames"],
                    plan,
                    state["chunks"],
                    fps,
                    store=True,
                )

        def run_chunk(
            chunk: Chunk, chunk_engine: FrameUpscaler, stop: threading.Event | None
        ) -> ChunkResult:
            return upscale_chunk(
                info,
                chunk,
                chunk_engine,
                spec.encode,
                work_dir / chunk.file_name(suffix),
                container_format=container_for(spec.output),
                batch_size=spec.engine.batch_size,
                on_frames=on_frames,
                cancel=stop,
                allow_damaged=spec.allow_damaged,
                deinterlace=job_deinterlace(spec, info.video),
            )

        def record(chunk: Chunk, result: ChunkResult, device: str = "") -> None:
            nonlocal damaged
            damaged += result.damaged
            self.store.record_chunk(job.id, chunk.index, result.frames, result.path)
            state["chunks"] += 1
            self.store.update(job.id, chunks_done=state["chunks"])
            where = f" on {device}" if device else ""
            self._log(job, f"chunk {chunk.index} done ({result.frames} frames){where}")
            if result.damaged:
                self._log(job, f"chunk {chunk.index}: {damaged_note(result.damaged)}")

        if engine is None:
            self._log(job, f"chunks spread over {', '.join(devices)}, one engine each")
            self.store.update(job.id, phase=f"upscaling on {len(devices)} devices")
            pool: DevicePool[Chunk, FrameUpscaler, ChunkResult] = DevicePool(
                devices,
                lambda device: self._engine_factory(
                    replace(spec.engine, device=device, devices="")
                ),
                run_chunk,
            )
            pool.run(todo, record, cancel)
            return damaged
        for chunk in todo:
            if cancel is not None and cancel.is_set():
                raise CancelledError("cancelled")
            self.store.update(job.id, phase=f"chunk {chunk.index + 1}/{len(plan.chunks)}")
            record(chunk, run_chunk(chunk, engine, cancel))
        return damaged

    def _valid_finished_chunks(self, job: JobRecord, plan: Plan) -> set[int]:
        """Recorded chunks whose file still exists with the planned frame count."""
        valid = set()
        for index, (frames, path) in self.store.finished_chunks(job.id).items():
            if index < len(plan.chunks) and plan.chunks[index].frame_count == frames:
                with contextlib.suppress(VsrError):
                    written = output_frame_count(spec_of(job), frames)
                    if path.exists() and chunk_frame_count(path) in written:
                        valid.add(index)
        return valid

    def _emit(
        self,
        progress: ProgressCallback | None,
        job_id: str,
        phase: str,
        frames: int,
        plan: Plan,
        chunks_done: int,
        fps: float,
        store: bool = False,
    ) -> None:
        remaining = plan.frame_count - frames
        eta = remaining / fps if fps > 0 else None
        if store:
            self.store.update(
                job_id, frames_done=frames, fps=fps, eta_seconds=eta, chunks_done=chunks_done
            )
        if progress is not None:
            progress(
                Progress(
                    job_id, phase, frames, plan.frame_count, chunks_done, len(plan.chunks), fps, eta
                )
            )

    def _log(self, job: JobRecord, line: str) -> None:
        with contextlib.suppress(OSError):
            append_private(Path(job.log_path), f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")

    def _cleanup(self, job: JobRecord) -> None:
        """Remove chunk files once the output is complete; keep the log."""
        remove_chunk_files(Path(job.work_dir))
        self.store.forget_chunks(job.id)


def _settings_for_log(spec: JobSpec) -> str:
    """The spec as JSON for the job log, so a result can be traced to the settings that
    made it; a target's secrets (an env, a token, a key) never reach the file."""
    import json

    from vsr_desktop.core.redact import redact_secrets

    data = spec.to_dict()
    data.pop("source_identity", None)
    data["target"] = {
        key: value
        for key, value in dict(data.get("target") or {}).items()
        if not any(word in key.lower() for word in ("env", "secret", "token", "password", "key"))
    }
    return redact_secrets(json.dumps(data, sort_keys=True))


def remove_chunk_files(work_dir: Path) -> None:
    for path in [*work_dir.glob("chunk_*"), work_dir / "plan.json"]:
        with contextlib.suppress(OSError):
            if path.is_dir():  # an image-sequence chunk: a folder of frames
                shutil.rmtree(path)
            path.unlink(missing_ok=True)


def remove_work_files(job: JobRecord) -> None:
    """Delete the job's own files (chunks, plan, log, lock), never anything else.

    The folder comes from the database, so only names this backend writes are removed,
    and the folder itself only when that leaves it empty."""
    if not job.work_dir:
        return
    work_dir = Path(job.work_dir)
    if not work_dir.is_dir():
        return
    remove_chunk_files(work_dir)
    for name in ("job.log", LOCK_NAME):
        with contextlib.suppress(OSError):
            (work_dir / name).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        work_dir.rmdir()
