"""The local backend: run a job's chunks in order on this machine, resumably.

The same plan and the same worker stages as the cloud and Slurm backends; chunks finished
before a crash or kill are recorded in the job store and skipped when the job resumes.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from vsr_desktop.core.errors import (
    CancelledError,
    InputError,
    JobError,
    VsrError,
)
from vsr_desktop.core.jobs import JobRecord, JobState, JobStore
from vsr_desktop.core.media.encode import container_for
from vsr_desktop.core.media.probe import MediaInfo, probe
from vsr_desktop.core.plan import Plan, plan_chunks
from vsr_desktop.core.upscaler import FrameUpscaler
from vsr_desktop.worker.merge import merge_job
from vsr_desktop.worker.request import (
    UpscaleRequest,
    build_engine,
    request_from_job,
    validate_request,
)
from vsr_desktop.worker.upscale_chunk import upscale_chunk

# The request API is re-exported: callers think of it as "what the local backend runs".
__all__ = [
    "EngineFactory",
    "LocalBackend",
    "Progress",
    "ProgressCallback",
    "UpscaleRequest",
    "build_engine",
    "request_from_job",
    "validate_request",
]


@dataclass(frozen=True)
class Progress:
    """A progress report: frames, chunks, speed and time left."""

    job_id: str
    phase: str
    frames_done: int
    frames_total: int
    chunks_done: int
    chunks_total: int
    fps: float
    eta_seconds: float | None


ProgressCallback = Callable[[Progress], None]
EngineFactory = Callable[[UpscaleRequest], FrameUpscaler]


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

    def prepare(self, request: UpscaleRequest) -> JobRecord:
        """Validate, then find the unfinished job to resume or record a new one."""
        info = validate_request(request)
        source = str(request.source.expanduser().resolve())
        output = str(request.output.expanduser().resolve())
        existing = self.store.find_resumable(source, output, request.identity())
        if existing is not None:
            self._probed[existing.id] = info
            return existing
        job_id = JobStore.new_id()
        work_dir = self.work_root / job_id
        job = JobRecord(
            id=job_id, name=Path(source).name, backend=self.name, source=source, output=output,
            settings=request.identity(),  # what find_resumable matches on
            work_dir=str(work_dir), log_path=str(work_dir / "job.log"),
        )
        self._probed[job.id] = info
        return self.store.add(job)

    def run(
        self,
        request: UpscaleRequest,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
        job: JobRecord | None = None,
    ) -> JobRecord:
        """Run (or resume) the job to completion; raises VsrError on failure or cancel."""
        job = job or self.prepare(request)
        work_dir = Path(job.work_dir)
        work_dir.mkdir(parents=True, exist_ok=True)
        self.store.update(job.id, state=JobState.RUNNING, pid=os.getpid(), message="",
                          phase="starting")
        self._log(job, f"start: {request.source} -> {request.output}")
        try:
            info = self._probed.pop(job.id, None) or validate_request(
                replace(request, overwrite=True))
            plan = plan_chunks(info.video, request.chunk_seconds)
            (work_dir / "plan.json").write_text(plan.to_json())
            self._run_chunks(job, request, info, plan, progress, cancel)
            self.store.update(job.id, phase="merging", eta_seconds=None)
            self._emit(progress, job.id, "merging", plan.frame_count, plan, len(plan.chunks),
                       self.store.get(job.id).fps)
            paths = [work_dir / c.file_name(Path(request.output).suffix) for c in plan.chunks]
            if request.output.exists() and not request.overwrite:
                raise InputError(f"{request.output} appeared while the job ran",
                                 "move it away and resume the job")
            warnings = merge_job(info, plan, paths, request.output.expanduser(), cancel)
        except CancelledError:
            self.store.update(job.id, state=JobState.CANCELLED, phase="",
                              message="cancelled; resume to continue from the last chunk")
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
        self.store.update(job.id, state=JobState.COMPLETED, phase="", eta_seconds=0.0,
                          message="; ".join(warnings))
        self._log(job, "completed")
        self._cleanup(job)
        return self.store.get(job.id)

    def _run_chunks(
        self, job: JobRecord, request: UpscaleRequest, info: MediaInfo, plan: Plan,
        progress: ProgressCallback | None, cancel: threading.Event | None,
    ) -> None:
        work_dir = Path(job.work_dir)
        suffix = Path(request.output).suffix
        finished = self._valid_finished_chunks(job, plan)
        frames_done = sum(plan.chunks[i].frame_count for i in finished)
        self.store.update(job.id, frames_total=plan.frame_count, chunks_total=len(plan.chunks),
                          frames_done=frames_done, chunks_done=len(finished))
        if finished:
            self._log(job, f"resuming: {len(finished)}/{len(plan.chunks)} chunks already done")
        todo = [c for c in plan.chunks if c.index not in finished]
        if not todo:
            return
        self.store.update(job.id, phase="loading model")
        engine = self._engine_factory(request)
        meter = _RateMeter()
        meter.add(frames_done)
        last_report = 0.0
        state = {"frames": frames_done, "chunks": len(finished)}

        def on_frames(count: int) -> None:
            nonlocal last_report
            state["frames"] += count
            fps = meter.add(state["frames"])
            now = time.monotonic()
            if now - last_report >= 0.5 or state["frames"] == plan.frame_count:
                last_report = now
                self._emit(progress, job.id, "upscaling", state["frames"], plan,
                           state["chunks"], fps, store=True)

        for chunk in todo:
            if cancel is not None and cancel.is_set():
                raise CancelledError("cancelled")
            self.store.update(job.id, phase=f"chunk {chunk.index + 1}/{len(plan.chunks)}")
            result = upscale_chunk(
                info, chunk, engine, request.encode, work_dir / chunk.file_name(suffix),
                container_format=container_for(Path(request.output)),
                batch_size=request.batch_size, on_frames=on_frames, cancel=cancel,
            )
            self.store.record_chunk(job.id, chunk.index, result.frames, result.path)
            state["chunks"] += 1
            self.store.update(job.id, chunks_done=state["chunks"])
            self._log(job, f"chunk {chunk.index} done ({result.frames} frames)")

    def _valid_finished_chunks(self, job: JobRecord, plan: Plan) -> set[int]:
        """Recorded chunks whose file still exists with the planned frame count."""
        valid = set()
        for index, (frames, path) in self.store.finished_chunks(job.id).items():
            if index < len(plan.chunks) and plan.chunks[index].frame_count == frames:
                with contextlib.suppress(VsrError):
                    if path.exists() and probe(path).video.frame_count == frames:
                        valid.add(index)
        return valid

    def _emit(
        self, progress: ProgressCallback | None, job_id: str, phase: str, frames: int,
        plan: Plan, chunks_done: int, fps: float, store: bool = False,
    ) -> None:
        remaining = plan.frame_count - frames
        eta = remaining / fps if fps > 0 else None
        if store:
            self.store.update(job_id, frames_done=frames, fps=fps, eta_seconds=eta,
                              chunks_done=chunks_done)
        if progress is not None:
            progress(Progress(job_id, phase, frames, plan.frame_count, chunks_done,
                              len(plan.chunks), fps, eta))

    def _log(self, job: JobRecord, line: str) -> None:
        with contextlib.suppress(OSError):
            Path(job.log_path).parent.mkdir(parents=True, exist_ok=True)
            with open(job.log_path, "a", encoding="utf-8") as log:
                log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")

    def _cleanup(self, job: JobRecord) -> None:
        """Remove chunk files once the output is complete; keep the log."""
        work_dir = Path(job.work_dir)
        for path in [*work_dir.glob("chunk_*"), work_dir / "plan.json"]:
            path.unlink(missing_ok=True)
        self.store.forget_chunks(job.id)
