"""The three stages of a distributed job, run as separate processes on a shared work folder.

`plan` once, then `upscale` once per chunk (a Slurm array task, an AWS Batch array child),
then `merge` once. Each stage reads and writes only files in the work folder, so any machine
that sees the folder can run any stage, and a stage run twice does no harm:

    WORKDIR/spec.json                   the job spec (source, output, every setting)
    WORKDIR/media.json, plan.json       the probe and the chunk plan, made once by `plan`
    WORKDIR/chunks/chunk_00003.mp4      finished chunks (written as .partial, then renamed)
    WORKDIR/progress/chunk_00003.json   state, frames done, fps — read by the app to show progress
    WORKDIR/progress/merge.json
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from vsr_desktop.core.atomic_file import write_text_atomic
from vsr_desktop.core.errors import CancelledError, JobError, VsrError
from vsr_desktop.core.job_spec import EngineSettings, JobSpec
from vsr_desktop.core.media.deinterlace import job_deinterlace, merge_inputs, output_frame_count
from vsr_desktop.core.media.deinterlace import notes as deinterlace_notes
from vsr_desktop.core.media.encode import EncodeSettings, container_for
from vsr_desktop.core.media.image_sequence import chunk_frame_count
from vsr_desktop.core.media.probe import (
    MediaInfo,
    media_info_from_json,
    media_info_to_json,
)
from vsr_desktop.core.plan import Plan
from vsr_desktop.core.trim import plan_for
from vsr_desktop.core.upscaler import FrameUpscaler
from vsr_desktop.worker.job_report import summary, verify_output
from vsr_desktop.worker.job_setup import (
    build_engine,
    check_source_unchanged,
    damaged_note,
    source_notes,
    validate_spec,
)
from vsr_desktop.worker.merge import merge_job
from vsr_desktop.worker.upscale_chunk import upscale_chunk

PROGRESS_INTERVAL_SECONDS = 1.0


@dataclass(frozen=True)
class WorkFolder:
    """Paths inside one job's shared work folder."""

    root: Path

    @property
    def spec_file(self) -> Path:
        return self.root / "spec.json"

    @property
    def media_file(self) -> Path:
        return self.root / "media.json"

    @property
    def plan_file(self) -> Path:
        return self.root / "plan.json"

    def chunk_file(self, index: int, suffix: str) -> Path:
        return self.root / "chunks" / f"chunk_{index:05d}{suffix}"

    def progress_file(self, name: str) -> Path:
        return self.root / "progress" / f"{name}.json"

    def load(self) -> tuple[JobSpec, MediaInfo, Plan]:
        """Everything `plan` wrote; a clear error when it has not run (or the folder is wrong)."""
        try:
            spec = JobSpec.from_json(self.spec_file.read_text())
            media = media_info_from_json(self.media_file.read_text())
            plan = Plan.from_json(self.plan_file.read_text())
        except FileNotFoundError as exc:
            raise JobError(
                f"{self.root} holds no planned job ({exc.filename} is missing)",
                "run `vsr worker plan` first, with the same --workdir",
            ) from exc
        return spec, media, plan


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Readers on other machines never see half a file."""
    write_text_atomic(path, json.dumps(data))


def plan_stage(spec: JobSpec, workdir: Path) -> Plan:
    """Validate the spec, probe the source once, cut the plan, and record all three."""
    folder = WorkFolder(workdir)
    # Other machines run the later stages from other folders: store absolute paths.
    spec = replace(
        spec, source=spec.source.expanduser().resolve(), output=spec.output.expanduser().resolve()
    )
    media = validate_spec(spec)
    check_source_unchanged(spec, check_mtime=False)
    plan = plan_for(spec, media)  # only the trimmed range, when there is one
    workdir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(folder.spec_file, spec.to_json())
    folder.media_file.write_text(media_info_to_json(media))
    folder.plan_file.write_text(plan.to_json())
    return plan


ProgressHook = Callable[[dict[str, Any], bool], None]
"""Sees every progress record a stage writes, and whether it was forced (a state change):
the S3 worker mirrors them to progress objects."""


def progress_record(
    state: str, frames_done: int, frames_total: int, fps: float = 0.0, message: str = ""
) -> dict[str, Any]:
    """One progress file's content: the same fields in a work folder and in S3."""
    return {
        "state": state,
        "frames_done": frames_done,
        "frames_total": frames_total,
        "fps": fps,
        "message": message,
        "updated_at": time.time(),
        "host": os.uname().nodename,
    }


@dataclass
class _ProgressWriter:
    """Throttled progress file for one stage."""

    path: Path
    frames_total: int
    frames_done: int = 0
    started: float = field(default_factory=time.monotonic)
    last_write: float = 0.0
    mirror: ProgressHook | None = None
    #: Source frames that could not be decoded and were filled (--allow-damaged).
    damaged: int = 0

    def write(self, state: str, message: str = "", force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last_write < PROGRESS_INTERVAL_SECONDS:
            return
        self.last_write = now
        elapsed = now - self.started
        record = progress_record(
            state,
            self.frames_done,
            self.frames_total,
            self.frames_done / elapsed if elapsed > 0 else 0.0,
            message,
        )
        if self.damaged:
            record["damaged"] = self.damaged
        write_json_atomic(self.path, record)
        if self.mirror is not None:
            self.mirror(record, force)

    def add(self, frames: int) -> None:
        self.frames_done += frames
        self.write("running")


def upscale_stage(
    workdir: Path,
    index: int,
    *,
    cancel: threading.Event | None = None,
    engine_factory: Callable[[EngineSettings], FrameUpscaler] = build_engine,
    on_progress: ProgressHook | None = None,
    publish: Callable[[Path], None] | None = None,
) -> bool:
    """Upscale chunk `index`; returns False when it was already done (idempotent).

    `publish` gets the finished chunk before progress says done (the S3 worker uploads it).
    """
    folder = WorkFolder(workdir)
    spec, media, plan = folder.load()
    if not 0 <= index < len(plan.chunks):
        raise JobError(
            f"chunk {index} does not exist; the plan has {len(plan.chunks)}",
            f"use an index from 0 to {len(plan.chunks) - 1}",
        )
    chunk = plan.chunks[index]
    target = folder.chunk_file(index, spec.output.suffix)
    progress = _ProgressWriter(
        folder.progress_file(f"chunk_{index:05d}"), chunk.frame_count, mirror=on_progress
    )
    if _chunk_complete(target, output_frame_count(spec, chunk.frame_count)):
        progress.frames_done = chunk.frame_count
        progress.write("done", "already done", force=True)
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    progress.write("running", force=True)
    try:
        engine = engine_factory(worker_engine_settings(spec.engine))
        where = f"chunk {index}: {_describe(engine)}"
        if _describe(engine).startswith("CPU") and _given_gpus():
            where += " — WARNING: this task was given a GPU but runs on the CPU"
        print(where, file=sys.stderr, flush=True)  # the task's log says where it ran
        progress.write("running", where, force=True)
        result = upscale_chunk(
            media,
            chunk,
            engine,
            worker_encode_settings(spec.encode),
            target,
            container_format=container_for(spec.output),
            batch_size=spec.engine.batch_size,
            on_frames=progress.add,
            cancel=cancel,
            allow_damaged=spec.allow_damaged,
            deinterlace=job_deinterlace(spec, media.video),
        )
        progress.damaged = result.damaged
        if publish is not None:
            publish(target)
    except CancelledError:
        progress.write("cancelled", "stopped before the end; run again to redo it", force=True)
        raise
    except VsrError as exc:
        progress.write("failed", exc.user_message(), force=True)
        raise
    except Exception as exc:
        progress.write("failed", f"{type(exc).__name__}: {exc}", force=True)
        raise
    progress.write("done", damaged_note(result.damaged) if result.damaged else "", force=True)
    return True


def worker_engine_settings(engine: EngineSettings) -> EngineSettings:
    """The engine a worker task runs: the device it was given (``cuda`` where the scheduler
    gave it GPUs: core.gpu_checks.worker_device), one device, NVDEC decode if asked."""
    from vsr_desktop.core.gpu_checks import worker_device
    from vsr_desktop.core.hardware_codecs import use_hardware_decode

    use_hardware_decode(engine.hardware_decode)
    return replace(engine, device=worker_device(engine.device), devices="")


def worker_encode_settings(encode: EncodeSettings) -> EncodeSettings:
    """A task encodes one chunk of many, on whatever node it got: ``auto`` could pick NVENC
    on one node and x264 on another, and chunks of two encoders do not join into one stream.
    So workers use software unless the job named a hardware encoder (which then must open)."""
    return replace(encode, encoder="software") if encode.encoder == "auto" else encode


def _given_gpus() -> bool:
    from vsr_desktop.core.gpu_checks import assigned_gpus

    return assigned_gpus()


def _describe(engine: FrameUpscaler) -> str:
    describe = getattr(engine, "describe", None)
    return str(describe()) if callable(describe) else type(engine).__name__


def merge_stage(
    workdir: Path,
    *,
    on_progress: ProgressHook | None = None,
    publish: Callable[[Path], None] | None = None,
    cancel: threading.Event | None = None,
    verify_source: bool = True,
) -> list[str]:
    """Join every chunk into the output (temp name, then rename); all chunks must be done.

    `publish` gets the finished output before progress says done (the S3 worker uploads it).
    Without `verify_source` (a cloud merge from the side file: the source is not here) the
    report says the output was not compared with the source.
    """
    folder = WorkFolder(workdir)
    spec, media, plan = folder.load()
    suffix = spec.output.suffix
    missing = [
        c.index
        for c in plan.chunks
        if not _chunk_complete(
            folder.chunk_file(c.index, suffix), output_frame_count(spec, c.frame_count)
        )
    ]
    if missing:
        raise JobError(
            f"{len(missing)} chunk(s) are not finished: {missing[:10]}",
            "run the upscale stage for them, then merge again",
        )
    progress = _ProgressWriter(folder.progress_file("merge"), plan.frame_count, mirror=on_progress)
    progress.write("running", force=True)
    fields = job_deinterlace(spec, media.video)
    warnings = deinterlace_notes(fields) + source_notes(media)
    damaged = sum(
        int((_read_json(folder.progress_file(f"chunk_{c.index:05d}")) or {}).get("damaged", 0))
        for c in plan.chunks
    )
    if damaged:
        warnings.append(damaged_note(damaged))
    try:
        warnings += merge_job(
            *merge_inputs(fields, media, plan),
            [folder.chunk_file(c.index, suffix) for c in plan.chunks],
            spec.output,
            cancel,
            audio_codec=spec.encode.audio_codec,
            encode=spec.encode,
        )
        if publish is not None:
            publish(spec.output)
    except CancelledError:
        progress.write("cancelled", "stopped before the end; run again to redo it", force=True)
        raise
    except VsrError as exc:
        progress.write("failed", exc.user_message(), force=True)
        raise
    report = verify_output(media, spec) if verify_source else unverified_report(spec)
    write_json_atomic(folder.progress_file("verify"), report)
    progress.frames_done = plan.frame_count
    progress.write("done", "; ".join([*warnings, summary(report)]), force=True)
    return warnings


def unverified_report(spec: JobSpec) -> dict[str, Any]:
    """The verify report of a merge that has no source to compare with (worker/segments.py)."""
    return {
        "ok": False,
        "lines": [
            "not compared with the source here (the cloud merge reads only the chunks and the "
            f"side file): run `vsr verify {spec.source.name} OUTPUT` after the download"
        ],
    }


@dataclass(frozen=True)
class JobProgress:
    """What the app shows for a distributed job, read from the progress files."""

    frames_done: int
    frames_total: int
    chunks_done: int
    chunks_total: int
    chunk_states: dict[int, str]
    merge_state: str | None
    messages: dict[int, str]


def read_progress(workdir: Path) -> JobProgress:
    folder = WorkFolder(workdir)
    try:
        plan = Plan.from_json(folder.plan_file.read_text())
    except OSError as exc:
        raise JobError(
            f"{workdir} holds no planned job ({exc.strerror}: {folder.plan_file})",
            "check --workdir, or wait for the plan stage to run",
        ) from exc
    frames = 0
    states: dict[int, str] = {}
    messages: dict[int, str] = {}
    for chunk in plan.chunks:
        data = _read_json(folder.progress_file(f"chunk_{chunk.index:05d}"))
        if data is None:
            continue
        states[chunk.index] = str(data.get("state", ""))
        frames += min(int(data.get("frames_done", 0)), chunk.frame_count)
        if data.get("message"):
            messages[chunk.index] = str(data["message"])
    merge = _read_json(folder.progress_file("merge"))
    return JobProgress(
        frames_done=frames,
        frames_total=plan.frame_count,
        chunks_done=sum(s == "done" for s in states.values()),
        chunks_total=len(plan.chunks),
        chunk_states=states,
        merge_state=None if merge is None else str(merge.get("state")),
        messages=messages,
    )


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _chunk_complete(path: Path, frames: set[int]) -> bool:
    return chunk_frame_count(path) in frames  # a video file, or a folder of images
