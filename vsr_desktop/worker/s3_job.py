"""The worker stages of an AWS job: `vsr worker split|upscale|merge` reading and writing S3.

Each stage copies what it needs from the job prefix (docs/cloud-contract.md) into a local
temporary work folder, runs the very stage the Slurm backend runs (stages.py) on it, and
uploads its results. So a chunk upscaled on Batch is made by the same code as a local one,
and any stage may be run again: upscale skips a chunk already in S3, split and merge redo.

The request in job.json carries the user's local paths; a worker substitutes its own temporary
ones, keeping the output's file name (hence container) and every setting except two that
belong to the machine: `device` (a desktop's "mps" or "cpu" means nothing on a GPU worker, so
it is "auto") and `allow_download` (a fresh worker fetches a model named in the request, with
its checksum checked, instead of failing for lack of the user's cache). A model the user gave
as a file travels with the job (`input/model/`) and the local request points at its copy.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path, PureWindowsPath
from typing import Any

from vsr_desktop.core.errors import CancelledError, InputError, JobError, VsrError
from vsr_desktop.core.media.probe import MediaInfo, media_info_from_json, media_info_to_json
from vsr_desktop.core.models.loading import is_model_file_reference, model_file_set
from vsr_desktop.core.plan import Plan
from vsr_desktop.core.upscaler import FrameUpscaler
from vsr_desktop.worker import stages
from vsr_desktop.worker.request import (
    UpscaleRequest,
    build_engine,
    request_from_dict,
    request_to_dict,
    user_model_files,
)
from vsr_desktop.worker.s3_transfer import (
    JOB_FILE,
    MEDIA_FILE,
    PLAN_FILE,
    JobLocation,
    S3Job,
    chunk_name,
    model_name,
    output_name,
    progress_name,
    source_name,
)

JOB_URI_ENV = "VSR_JOB_URI"
S3_PROGRESS_INTERVAL_SECONDS = 2.0
"""Running progress goes to S3 at most this often (state changes at once): cheap PUTs."""
_SPLIT_HINT = "run `vsr worker split` for this job first"


def resolve_job_uri(explicit: str | None) -> str:
    """`--job-uri`, else $VSR_JOB_URI (what the Batch job definition sets)."""
    uri = explicit or os.environ.get(JOB_URI_ENV, "")
    if not uri:
        raise InputError("no job given",
                         "pass --workdir DIR (shared folder) or --job-uri s3://BUCKET/jobs/ID "
                         f"(or set {JOB_URI_ENV})")
    return uri


def stage_job_inputs(request: UpscaleRequest, location: JobLocation,
                     client: Any | None = None) -> S3Job:
    """What the app uploads before it starts an execution: the source (and the user's own
    model file, if the job names one), then job.json.

    job.json goes last, so a job whose description exists has its whole input in place.
    The AWS backend calls this; the tests use it to stage jobs exactly as the app will.
    """
    source = request.source.expanduser()
    if not source.is_file():
        raise InputError(f"{source} does not exist", "check the source path")
    job = S3Job(location, client)
    job.upload(source, source_name(source.suffix))
    for path in user_model_files(request.model):
        job.upload(path, model_name(path.name))
    job.put_json(JOB_FILE, request_to_dict(request))
    return job


class S3Progress:
    """One stage's progress object in S3, in the same fields as a work folder's progress file.

    A progress upload that fails only prints a warning: the chunk or output objects are the
    truth, progress is what the app shows meanwhile.
    """

    def __init__(self, job: S3Job, stage: str, frames_total: int) -> None:
        self.job = job
        self.name = progress_name(stage)
        self.last: dict[str, Any] = stages.progress_record("running", 0, frames_total)
        self._last_put = 0.0

    def mirror(self, record: dict[str, Any], force: bool) -> None:
        """The stages' progress hook: forced records (state changes) always, others throttled."""
        self.last = record
        now = time.monotonic()
        if force or now - self._last_put >= S3_PROGRESS_INTERVAL_SECONDS:
            self._last_put = now
            self._put(record)

    def report(self, state: str, message: str = "", frames_done: int | None = None,
               frames_total: int | None = None) -> None:
        """Write a state change now, keeping the frame counts unless given."""
        done = int(self.last["frames_done"]) if frames_done is None else frames_done
        total = int(self.last["frames_total"]) if frames_total is None else frames_total
        self.mirror(stages.progress_record(state, done, total, message=message), force=True)

    @contextlib.contextmanager
    def reporting(self) -> Iterator[None]:
        """Record how the block ended when it failed: cancelled or failed, with the reason."""
        try:
            yield
        except CancelledError:
            self.report("cancelled", "stopped before the end; run again to redo it")
            raise
        except VsrError as exc:
            self.report("failed", exc.user_message())
            raise
        except Exception as exc:
            self.report("failed", f"{type(exc).__name__}: {exc}")
            raise

    def _put(self, record: dict[str, Any]) -> None:
        try:
            self.job.put_json(self.name, record)
        except JobError as exc:
            print(f"vsr: warning: progress not saved: {exc.user_message()}", file=sys.stderr)


def _load_request(job: S3Job) -> UpscaleRequest:
    return request_from_dict(job.get_json(JOB_FILE, "check the job URI; the app writes "
                                                    "job.json when it submits the job"))


def _load_planned(job: S3Job) -> tuple[UpscaleRequest, MediaInfo, Plan]:
    """The request and what split made (plan.json, written last, says split finished)."""
    request = _load_request(job)
    plan = Plan.from_json(job.get_text(PLAN_FILE, _SPLIT_HINT))
    media = media_info_from_json(job.get_text(MEDIA_FILE, _SPLIT_HINT))
    return request, media, plan


def _user_file(path: Path) -> PureWindowsPath:
    """A path from the user's machine (job.json): Windows or POSIX, either separator works."""
    return PureWindowsPath(str(path))


def _source_name(request: UpscaleRequest) -> str:
    return source_name(_user_file(request.source).suffix)


def _output_file_name(request: UpscaleRequest) -> str:
    return _user_file(request.output).name


def _chunk_suffix(request: UpscaleRequest) -> str:
    return _user_file(request.output).suffix


def _uploaded_model_names(request: UpscaleRequest) -> list[str]:
    """The model files the app uploaded with the job: [] when it names a registry model."""
    if not is_model_file_reference(request.model):
        return []
    return [path.name for path in model_file_set(_user_file(Path(request.model)))]


def _local_request(request: UpscaleRequest, root: Path) -> UpscaleRequest:
    """The request with this machine's paths (see the module docstring for what else)."""
    (root / "output").mkdir(parents=True, exist_ok=True)
    local = replace(request, source=root / _source_name(request),
                    output=root / "output" / _output_file_name(request), device="auto",
                    allow_download=True)
    uploaded = _uploaded_model_names(request)
    if uploaded:  # the user's own model: where _fetch_model puts it
        local = replace(local, model=str(root / "model" / uploaded[0]))
    return local


def _fetch_source(job: S3Job, request: UpscaleRequest, local: UpscaleRequest,
                  cancel: threading.Event | None) -> None:
    job.download(_source_name(request), local.source, cancel,
                 "the app uploads the source when it submits the job; submit it again")


def _fetch_model(job: S3Job, request: UpscaleRequest, local: UpscaleRequest,
                 cancel: threading.Event | None) -> None:
    """Download the user's own model file(s) next to where the local request looks."""
    folder = Path(local.model).parent
    for name in _uploaded_model_names(request):
        job.download(model_name(name), folder / name, cancel,
                     "the app uploads a model file given by path when it submits the job; "
                     "submit it again")


def _local_folder(job: S3Job, request: UpscaleRequest, media: MediaInfo, plan: Plan,
                  root: Path, cancel: threading.Event | None,
                  with_model: bool = False) -> stages.WorkFolder:
    """A work folder as `vsr worker plan` would have left it, with the source downloaded
    (and, for stages that run the network, a model file the user gave by path)."""
    local = _local_request(request, root)
    _fetch_source(job, request, local, cancel)
    if with_model:
        _fetch_model(job, request, local, cancel)
    folder = stages.WorkFolder(root)
    stages.write_json_atomic(folder.job_file, request_to_dict(local))
    folder.media_file.write_text(media_info_to_json(replace(media, path=local.source)))
    folder.plan_file.write_text(plan.to_json())
    return folder


def _work_dir() -> tempfile.TemporaryDirectory[str]:
    """Scratch space for one stage (under $TMPDIR); removed when the stage ends, however."""
    return tempfile.TemporaryDirectory(prefix="vsr-job-")


def _check(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise CancelledError("cancelled")


def split_from_s3(job_uri: str, cancel: threading.Event | None = None) -> Plan:
    """Probe the uploaded source, cut the plan, and upload media.json and plan.json."""
    job = S3Job(JobLocation.parse(job_uri))
    request = _load_request(job)
    progress = S3Progress(job, "split", 0)
    with _work_dir() as tmp, progress.reporting():
        progress.report("running", "downloading the source")
        local = _local_request(request, Path(tmp))
        _fetch_source(job, request, local, cancel)
        _fetch_model(job, request, local, cancel)  # checked here: a missing one fails early
        plan = stages.plan_stage(local, Path(tmp) / "work")
        _check(cancel)
        folder = stages.WorkFolder(Path(tmp) / "work")
        media = json.loads(folder.media_file.read_text())
        media["path"] = job.location.url_of(_source_name(request))
        job.put_text(MEDIA_FILE, json.dumps(media))
        job.put_text(PLAN_FILE, plan.to_json())
    progress.report("done", f"{len(plan.chunks)} chunk(s)", frames_done=plan.frame_count,
                    frames_total=plan.frame_count)
    return plan


def upscale_from_s3(
    job_uri: str,
    index: int,
    *,
    cancel: threading.Event | None = None,
    engine_factory: Callable[[UpscaleRequest], FrameUpscaler] = build_engine,
) -> bool:
    """Upscale chunk `index` and upload it; False when S3 already holds it (nothing downloaded)."""
    job = S3Job(JobLocation.parse(job_uri))
    request, media, plan = _load_planned(job)
    if not 0 <= index < len(plan.chunks):
        raise JobError(f"chunk {index} does not exist; the plan has {len(plan.chunks)}",
                       f"use an index from 0 to {len(plan.chunks) - 1}")
    chunk = plan.chunks[index]
    key = chunk_name(index, _chunk_suffix(request))
    progress = S3Progress(job, f"chunk_{index:05d}", chunk.frame_count)
    if job.frames_of(key) == chunk.frame_count:
        progress.report("done", "already done", frames_done=chunk.frame_count)
        return False

    def publish(path: Path) -> None:
        _check(cancel)
        job.upload(path, key, metadata={"frames": str(chunk.frame_count)})

    with _work_dir() as tmp, progress.reporting():
        progress.report("running", "downloading the source")
        folder = _local_folder(job, request, media, plan, Path(tmp), cancel, with_model=True)
        stages.upscale_stage(folder.root, index, cancel=cancel, engine_factory=engine_factory,
                             on_progress=progress.mirror, publish=publish)
    return True


def missing_chunks(job: S3Job, plan: Plan, suffix: str) -> list[int]:
    """Chunks with no finished object (absent, or `frames` metadata not the plan's count)."""
    return [c.index for c in plan.chunks
            if job.frames_of(chunk_name(c.index, suffix)) != c.frame_count]


def merge_from_s3(job_uri: str, cancel: threading.Event | None = None) -> list[str]:
    """Join every chunk object with the source's audio and upload output/<name>."""
    job = S3Job(JobLocation.parse(job_uri))
    request, media, plan = _load_planned(job)
    suffix = _chunk_suffix(request)
    progress = S3Progress(job, "merge", plan.frame_count)
    with _work_dir() as tmp, progress.reporting():
        missing = missing_chunks(job, plan, suffix)
        if missing:
            shown = ", ".join(map(str, missing[:20])) + (" …" if len(missing) > 20 else "")
            raise JobError(f"{len(missing)} of {len(plan.chunks)} chunk(s) are not in "
                           f"{job.location.url_of('chunks/')}: {shown}",
                           "run `vsr worker upscale --chunk N` for them, then merge again")
        progress.report("running", f"downloading {len(plan.chunks)} chunk(s) and the source")
        folder = _local_folder(job, request, media, plan, Path(tmp), cancel)
        for chunk in plan.chunks:
            job.download(chunk_name(chunk.index, suffix),
                         folder.chunk_file(chunk.index, suffix), cancel)

        def publish(path: Path) -> None:
            _check(cancel)
            job.upload(path, output_name(_output_file_name(request)))

        return stages.merge_stage(folder.root, on_progress=progress.mirror, publish=publish,
                                  cancel=cancel)
