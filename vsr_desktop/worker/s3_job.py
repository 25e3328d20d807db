"""The worker stages of an AWS job: `vsr worker split|upscale|merge` reading and writing S3.

Each stage copies what it needs from the job prefix (worker/s3_layout.py) into a local
temporary work folder, runs the very stage the Slurm backend runs (stages.py) on it, and
uploads its results. So a chunk upscaled on Batch is made by the same code as a local one,
and any stage may be run again: upscale skips a chunk already in S3, split and merge redo.

The job spec in spec.json carries the user's local paths; a worker substitutes its own
temporary ones, keeping the output's file name (hence container) and every setting except
`allow_download` (a fresh worker fetches a model named in the spec, with its checksum
checked, instead of failing for lack of the user's cache). The device is the spec's, and
the upscale stage asks for `cuda` on a Batch job given a GPU (stages.worker_engine_settings),
so a container that cannot see its GPU fails at once instead of crawling on its vCPUs. A model
the user gave as a file travels with the job (`input/model/`) and the local spec points at
its copy. The source identity recorded at submit is checked against the downloaded copy
(size and head/tail hash; its mtime is the download's), so a source replaced during an
upload is refused rather than upscaled.

Data path (docs/cloud.md, "Data path"): split is the only stage that downloads the source.
It cuts it once (worker/segments.py) into one segment per chunk and a side file, uploaded
under `segments/` with segments.json saying how; each upscale task downloads only its own
segment, and merge only the chunks and the side file. A job split before segments existed,
or a source no container could cut exactly, has no segments.json: its tasks read the source
as before. Scratch space is on the instance store when the machine has one (scratch_root).

An image-sequence output (numbered PNG/TIFF frames) travels as folders: each chunk's frames
and the merged output's files are objects under `<name>/`, followed by the object `<name>`
as their marker (S3Job.upload_folder), so "is this chunk done?" reads the same for both.
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
from pathlib import Path
from typing import Any

from vsr_desktop.core.atomic_file import write_text_atomic
from vsr_desktop.core.errors import CancelledError, InputError, JobError, MediaError, VsrError
from vsr_desktop.core.job_spec import EngineSettings, JobSpec
from vsr_desktop.core.media.encode import container_for
from vsr_desktop.core.media.image_sequence import image_target
from vsr_desktop.core.media.probe import MediaInfo, media_info_from_json, media_info_to_json
from vsr_desktop.core.models.loading import is_model_file_reference, model_file_set
from vsr_desktop.core.plan import Plan
from vsr_desktop.core.upscaler import FrameUpscaler
from vsr_desktop.worker import segments, stages
from vsr_desktop.worker.job_setup import build_engine, check_source_unchanged, user_model_files
from vsr_desktop.worker.s3_layout import (
    MEDIA_FILE,
    PLAN_FILE,
    SEGMENTS_FILE,
    SPEC_FILE,
    JobLocation,
    chunk_name,
    model_name,
    output_name,
    progress_name,
    segment_name,
    side_name,
    source_name,
    user_file_name,
)
from vsr_desktop.worker.s3_transfer import S3Job

JOB_URI_ENV = "VSR_JOB_URI"
#: Where stages put their scratch files: the job definition sets it to the instance store.
SCRATCH_ENV = "VSR_SCRATCH_DIR"
#: Where the launch template mounts an instance store NVMe volume, when the instance has one.
INSTANCE_STORE_MOUNT = Path("/scratch")
S3_PROGRESS_INTERVAL_SECONDS = 2.0
"""Running progress goes to S3 at most this often (state changes at once): cheap PUTs."""
_SPLIT_HINT = "run `vsr worker split` for this job first"


def resolve_job_uri(explicit: str | None) -> str:
    """`--job-uri`, else $VSR_JOB_URI (what the Batch job definition sets)."""
    uri = explicit or os.environ.get(JOB_URI_ENV, "")
    if not uri:
        raise InputError(
            "no job given",
            "pass --workdir DIR (shared folder) or --job-uri s3://BUCKET/jobs/ID "
            f"(or set {JOB_URI_ENV})",
        )
    return uri


def stage_job_inputs(spec: JobSpec, location: JobLocation, client: Any | None = None) -> S3Job:
    """What the app uploads before it starts an execution: the source (and the user's own
    model file, if the job names one), then spec.json.

    spec.json goes last, so a job whose spec exists has its whole input in place. The tests
    use this to stage jobs as the app does (the app's uploader is resumable, see
    backends/aws/backend.py, but writes the same objects under the same names).
    """
    source = spec.source.expanduser()
    if not source.is_file():
        raise InputError(f"{source} does not exist", "check the source path")
    if spec.source_identity is None:
        spec = spec.with_source_identity()
    job = S3Job(location, client)
    job.upload(source, source_name(source.suffix))
    for path in user_model_files(spec.engine.model):
        job.upload(path, model_name(path.name))
    job.put_text(SPEC_FILE, spec.to_json())
    return job


def load_spec(job: S3Job) -> JobSpec:
    """The job's spec exactly as the app wrote it (the user's paths and settings)."""
    return JobSpec.from_json(
        job.get_text(
            SPEC_FILE, f"check the job URI; the app writes {SPEC_FILE} when it submits the job"
        )
    )


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

    def report(
        self,
        state: str,
        message: str = "",
        frames_done: int | None = None,
        frames_total: int | None = None,
    ) -> None:
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


def _load_planned(job: S3Job) -> tuple[JobSpec, MediaInfo, Plan]:
    """The spec and what split made (plan.json, written last, says split finished)."""
    spec = load_spec(job)
    plan = Plan.from_json(job.get_text(PLAN_FILE, _SPLIT_HINT))
    media = media_info_from_json(job.get_text(MEDIA_FILE, _SPLIT_HINT))
    return spec, media, plan


def _source_name(spec: JobSpec) -> str:
    return source_name(user_file_name(spec.source).suffix)


def _output_file_name(spec: JobSpec) -> str:
    return user_file_name(spec.output).name


def _chunk_suffix(spec: JobSpec) -> str:
    return user_file_name(spec.output).suffix


def _uploaded_model_names(spec: JobSpec) -> list[str]:
    """The model files the app uploaded with the job: [] when it names a registry model."""
    if not is_model_file_reference(spec.engine.model):
        return []
    return [path.name for path in model_file_set(user_file_name(spec.engine.model))]


def local_spec(spec: JobSpec, root: Path) -> JobSpec:
    """The spec with this machine's paths (see the module docstring for what else)."""
    (root / "output").mkdir(parents=True, exist_ok=True)
    engine = replace(spec.engine, allow_download=True)
    uploaded = _uploaded_model_names(spec)
    if uploaded:  # the user's own model: where _fetch_model puts it
        engine = replace(engine, model=str(root / "model" / uploaded[0]))
    return replace(
        spec,
        source=root / _source_name(spec),
        output=root / "output" / _output_file_name(spec),
        engine=engine,
    )


def _fetch_source(
    job: S3Job, spec: JobSpec, local: JobSpec, cancel: threading.Event | None
) -> None:
    job.download(
        _source_name(spec),
        local.source,
        cancel,
        "the app uploads the source when it submits the job; submit it again",
    )


def _check_uploaded_source(job: S3Job, spec: JobSpec, local: JobSpec) -> None:
    """The downloaded copy must be the file the job was made from (never a splice of an
    upload resumed over a replaced file); its mtime is the download's, so size and hash."""
    try:
        check_source_unchanged(local, check_mtime=False)
    except JobError as exc:
        changed = (
            spec.source_identity.differences(local.source, check_mtime=False)
            if spec.source_identity is not None
            else []
        )
        raise JobError(
            f"the uploaded source {job.location.url_of(_source_name(spec))} is "
            f"not the file the job was made from, {spec.source} "
            f"({', '.join(changed)})",
            "resume the job with --restart (it uploads the source again), or submit it again",
        ) from exc


def _fetch_model(job: S3Job, spec: JobSpec, local: JobSpec, cancel: threading.Event | None) -> None:
    """Download the user's own model file(s) next to where the local spec looks."""
    folder = Path(local.engine.model).parent
    for name in _uploaded_model_names(spec):
        job.download(
            model_name(name),
            folder / name,
            cancel,
            "the app uploads a model file given by path when it submits the job; submit it again",
        )


def _local_folder(
    job: S3Job,
    spec: JobSpec,
    media: MediaInfo,
    plan: Plan,
    root: Path,
    cancel: threading.Event | None,
    with_model: bool = False,
    local_media: MediaInfo | None = None,
) -> stages.WorkFolder:
    """A work folder as `vsr worker plan` would have left it, with the source downloaded
    unless `local_media` says which local file stands for it (a segment, the side file);
    for stages that run the network, with a model file the user gave by path."""
    local = local_spec(spec, root)
    if local_media is None:
        _fetch_source(job, spec, local, cancel)
        local_media = replace(media, path=local.source)
    if with_model:
        _fetch_model(job, spec, local, cancel)
    folder = stages.WorkFolder(root)
    write_text_atomic(folder.spec_file, local.to_json())
    folder.media_file.write_text(media_info_to_json(local_media))
    folder.plan_file.write_text(plan.to_json())
    return folder


def scratch_root() -> Path | None:
    """$VSR_SCRATCH_DIR, else /scratch when it is a mount point we may write (the instance
    store NVMe: faster than EBS and not billed per GB), else None ($TMPDIR)."""
    explicit = os.environ.get(SCRATCH_ENV, "").strip()
    if explicit:
        root = Path(explicit)
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise JobError(
                f"the scratch folder {root} cannot be made ({exc.strerror})",
                f"set {SCRATCH_ENV} to a writable folder, or unset it",
            ) from exc
        return root
    mount = INSTANCE_STORE_MOUNT
    if os.path.ismount(mount) and os.access(mount, os.W_OK):
        return mount
    return None


def _work_dir() -> tempfile.TemporaryDirectory[str]:
    """Scratch space for one stage (scratch_root); removed when the stage ends, however."""
    root = scratch_root()
    return tempfile.TemporaryDirectory(prefix="vsr-job-", dir=None if root is None else root)


def _load_segments(job: S3Job) -> dict[str, Any] | None:
    """segments.json, or None for a job whose tasks read the whole source."""
    return job.get_json_if_present(SEGMENTS_FILE)


def _cut_and_upload(
    job: S3Job, spec: JobSpec, folder: stages.WorkFolder, root: Path, cancel: threading.Event | None
) -> dict[str, Any] | None:
    """Cut the local source into segments and the side file and upload them (each segment
    deleted once uploaded); the manifest, or None when no container keeps the timestamps."""
    media = media_info_from_json(folder.media_file.read_text())
    plan = Plan.from_json(folder.plan_file.read_text())

    def upload(index: int, path: Path) -> None:
        _check(cancel)
        job.upload(path, segment_name(index, path.suffix))
        path.unlink()

    try:
        fmt = segments.cut_segments(media, plan, root / "segments", upload, cancel)
    except MediaError as exc:
        print(f"vsr: warning: {exc.user_message()}", file=sys.stderr)
        return None
    manifest: dict[str, Any] = {
        "format": fmt.muxer,
        "suffix": fmt.suffix,
        "chunks": len(plan.chunks),
        "side": None,
    }
    try:
        side = segments.write_side_file(media, root / "side", user_file_name(spec.source).suffix)
    except (MediaError, OSError) as exc:  # the merge then reads the source (and says nothing)
        print(f"vsr: warning: no side file, the merge reads the source: {exc}", file=sys.stderr)
        return manifest
    job.upload(side.path, side_name(side.path.suffix))
    manifest["side"] = {
        "name": side_name(side.path.suffix),
        "indices": {str(k): v for k, v in side.indices.items()},
    }
    side.path.unlink()
    return manifest


def _check(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise CancelledError("cancelled")


def split_from_s3(job_uri: str, cancel: threading.Event | None = None) -> Plan:
    """Probe the uploaded source, cut the plan, and upload media.json and plan.json."""
    job = S3Job(JobLocation.parse(job_uri))
    spec = load_spec(job)
    progress = S3Progress(job, "split", 0)
    with _work_dir() as tmp, progress.reporting():
        progress.report("running", "downloading the source")
        job.delete(SEGMENTS_FILE)  # a split run again says anew whether it cut segments
        local = local_spec(spec, Path(tmp))
        _fetch_source(job, spec, local, cancel)
        _check_uploaded_source(job, spec, local)
        _fetch_model(job, spec, local, cancel)  # checked here: a missing one fails early
        plan = stages.plan_stage(local, Path(tmp) / "work")
        _check(cancel)
        folder = stages.WorkFolder(Path(tmp) / "work")
        progress.report("running", f"cutting {len(plan.chunks)} segment(s)")
        manifest = _cut_and_upload(job, spec, folder, Path(tmp), cancel)
        if manifest is not None:
            job.put_json(SEGMENTS_FILE, manifest)
        media = json.loads(folder.media_file.read_text())
        media["path"] = job.location.url_of(_source_name(spec))
        job.put_text(MEDIA_FILE, json.dumps(media))
        job.put_text(PLAN_FILE, plan.to_json())
    progress.report(
        "done",
        f"{len(plan.chunks)} chunk(s)",
        frames_done=plan.frame_count,
        frames_total=plan.frame_count,
    )
    return plan


def upscale_from_s3(
    job_uri: str,
    index: int,
    *,
    cancel: threading.Event | None = None,
    engine_factory: Callable[[EngineSettings], FrameUpscaler] = build_engine,
) -> bool:
    """Upscale chunk `index` and upload it; False when S3 already holds it (nothing downloaded)."""
    job = S3Job(JobLocation.parse(job_uri))
    spec, media, plan = _load_planned(job)
    if not 0 <= index < len(plan.chunks):
        raise JobError(
            f"chunk {index} does not exist; the plan has {len(plan.chunks)}",
            f"use an index from 0 to {len(plan.chunks) - 1}",
        )
    chunk = plan.chunks[index]
    key = chunk_name(index, _chunk_suffix(spec))
    progress = S3Progress(job, f"chunk_{index:05d}", chunk.frame_count)
    if job.frames_of(key) == chunk.frame_count:
        progress.report("done", "already done", frames_done=chunk.frame_count)
        return False

    def publish(path: Path) -> None:
        _check(cancel)
        frames = {"frames": str(chunk.frame_count)}
        if path.is_dir():  # an image sequence's chunk: a folder of numbered frames
            job.upload_folder(path, key, metadata=frames)
        else:
            job.upload(path, key, metadata=frames)

    manifest = _load_segments(job)
    with _work_dir() as tmp, progress.reporting():
        local_media = None
        if manifest is not None:  # only this chunk's packets (worker/segments.py)
            progress.report("running", "downloading the chunk's segment")
            name = segment_name(index, str(manifest["suffix"]))
            path = Path(tmp) / "segment" / Path(name).name
            job.download(name, path, cancel, "run `vsr worker split` for this job again")
            local_media = segments.segment_media(media, path)
        else:
            progress.report("running", "downloading the source")
        folder = _local_folder(
            job, spec, media, plan, Path(tmp), cancel, with_model=True, local_media=local_media
        )
        stages.upscale_stage(
            folder.root,
            index,
            cancel=cancel,
            engine_factory=engine_factory,
            on_progress=progress.mirror,
            publish=publish,
        )
    return True


def missing_chunks(job: S3Job, plan: Plan, suffix: str) -> list[int]:
    """Chunks with no finished object (absent, or `frames` metadata not the plan's count)."""
    return [
        c.index for c in plan.chunks if job.frames_of(chunk_name(c.index, suffix)) != c.frame_count
    ]


def merge_from_s3(job_uri: str, cancel: threading.Event | None = None) -> list[str]:
    """Join every chunk object with the source's audio and upload output/<name>."""
    job = S3Job(JobLocation.parse(job_uri))
    spec, media, plan = _load_planned(job)
    suffix = _chunk_suffix(spec)
    progress = S3Progress(job, "merge", plan.frame_count)
    with _work_dir() as tmp, progress.reporting():
        missing = missing_chunks(job, plan, suffix)
        if missing:
            shown = ", ".join(map(str, missing[:20])) + (" …" if len(missing) > 20 else "")
            raise JobError(
                f"{len(missing)} of {len(plan.chunks)} chunk(s) are not in "
                f"{job.location.url_of('chunks/')}: {shown}",
                "run `vsr worker upscale --chunk N` for them, then merge again",
            )
        side = _fetch_side(job, media, Path(tmp), cancel)
        what = "the side file" if side is not None else "the source"
        progress.report("running", f"downloading {len(plan.chunks)} chunk(s) and {what}")
        folder = _local_folder(job, spec, media, plan, Path(tmp), cancel, local_media=side)
        images = container_for(Path(_output_file_name(spec))) == "image2"
        for chunk in plan.chunks:
            name, path = chunk_name(chunk.index, suffix), folder.chunk_file(chunk.index, suffix)
            if images:  # a folder of frames per chunk (upscale's upload_folder)
                job.download_folder(name, path, cancel)
            else:
                job.download(name, path, cancel)

        def publish(path: Path) -> None:
            _check(cancel)
            key = output_name(_output_file_name(spec))
            if images:  # the frames and the audio WAVs, each an object under output/<name>/
                target = image_target(path, spec.encode.codec)
                job.upload_folder(target.folder, key, {"frames": str(plan.frame_count)})
            else:
                job.upload(path, key)

        return stages.merge_stage(
            folder.root,
            on_progress=progress.mirror,
            publish=publish,
            cancel=cancel,
            verify_source=side is None,
        )


def _fetch_side(
    job: S3Job, media: MediaInfo, root: Path, cancel: threading.Event | None
) -> MediaInfo | None:
    """The side file downloaded and the MediaInfo the merge reads it with; None when split
    made none (the merge then downloads the source)."""
    manifest = _load_segments(job)
    side = manifest.get("side") if manifest is not None else None
    if not isinstance(side, dict):
        return None
    name = str(side["name"])
    path = root / "side" / Path(name).name
    job.download(name, path, cancel, "run `vsr worker split` for this job again")
    indices = {int(k): int(v) for k, v in dict(side["indices"]).items()}
    return segments.side_media(media, segments.SideFile(path, indices))
