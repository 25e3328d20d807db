"""Setting a job up: check its spec before any work, and build its engine.

Shared by every backend and by the worker stages a remote job runs, so a chunk upscaled on
Slurm or AWS is checked and upscaled exactly as the local run would.
"""

from __future__ import annotations

import os
from pathlib import Path

from vsr_desktop.core.errors import DamagedInputError, InputError, JobError, ModelError
from vsr_desktop.core.job_spec import EngineSettings, JobSpec
from vsr_desktop.core.jobs import JobRecord
from vsr_desktop.core.media.alpha import check_alpha_output
from vsr_desktop.core.media.color_tags import check_hdr_output
from vsr_desktop.core.media.deinterlace import check_mode as check_deinterlace_mode
from vsr_desktop.core.media.encode import (
    EncodeSettings,
    check_codec_fits_container,
    check_output_choices,
    container_for,
)
from vsr_desktop.core.media.probe import MediaInfo, probe
from vsr_desktop.core.media.tracks import check_audio_codec
from vsr_desktop.core.upscaler import FrameUpscaler


def spec_of(job: JobRecord) -> JobSpec:
    """The spec of a stored job (resume/retry); rows written before specs existed keep
    their output-shaping settings in `settings`."""
    if job.spec is not None:
        return job.spec
    s = job.settings
    try:
        return JobSpec(
            source=Path(job.source),
            output=Path(job.output),
            engine=EngineSettings(
                model=s["model"], outscale=s["outscale"], denoise_strength=s["denoise_strength"]
            ),
            encode=EncodeSettings(**s["encode"]),
            chunk_seconds=s["chunk_seconds"],
            backend=job.backend,
        )
    except (KeyError, TypeError) as exc:
        raise JobError(
            f"job {job.id} has unreadable settings ({exc})", "start it again from the source file"
        ) from exc


def validate_spec(spec: JobSpec) -> MediaInfo:
    """Check everything that can be checked before any work; never touch the user's files."""
    source, output = spec.source.expanduser(), spec.output.expanduser()
    if spec.backend == "local":  # elsewhere the frames meet another machine's memory
        check_engine_settings(spec.engine)
        check_job_memory(spec)  # from the container header: before anything is decoded
    info = probe(source)
    if spec.backend == "local":  # again with the real bit depth, still before any work
        check_job_memory(spec, info)
    container = container_for(output)
    check_codec_fits_container(spec.encode.codec, container)
    check_audio_codec(spec.encode.audio_codec, container)
    spec.encode.profile()
    # Size, fit, codec/container, image sequences, MXF limits (core.media.encode).
    check_output_choices(info, spec.encode, output, spec.overwrite)
    check_picture_output(info, spec.encode, container)
    if output.exists() and source.exists() and os.path.samefile(source, output):
        raise InputError("the output is the input file", "choose another output name")
    if output.resolve() == source.resolve():
        raise InputError("the output is the input file", "choose another output name")
    folder = output.parent if str(output.parent) else Path(".")
    if not folder.is_dir():
        raise InputError(f"the output folder {folder} does not exist", "create it or pick another")
    if not _can_write_in(folder):
        raise InputError(f"the output folder {folder} is not writable", "pick another folder")
    if output.exists() and not spec.overwrite and container != "image2":  # images: above
        raise InputError(f"{output} already exists", "pass --overwrite or choose another name")
    check_engine_settings(spec.engine)
    check_deinterlace_mode(spec.deinterlace, spec.double_rate)
    if info.damage is not None and not spec.allow_damaged:
        raise DamagedInputError(
            info.damage,
            "pass --allow-damaged to upscale the frames that can be read, or re-export the file",
        )
    if not spec.chunk_seconds > 0:
        raise InputError(
            f"chunk length {spec.chunk_seconds} s is not positive",
            "use --chunk-seconds 60, or any positive number",
        )
    return info


def check_job_memory(spec: JobSpec, info: MediaInfo | None = None) -> None:
    """Refuse frames this machine cannot decode and upscale with these settings (InputError
    naming the numbers and the largest --tile that fits). Without ``info`` the frame size
    comes from the container header, with no decoder opened, so nothing is decoded first."""
    from vsr_desktop.core import memory_guard

    if info is not None:
        size: tuple[int, int, int] | None = (
            info.video.width,
            info.video.height,
            info.video.bit_depth,
        )
    else:
        size = memory_guard.frame_size_from_header(spec.source.expanduser())
    if size is None:
        return  # probe says what is wrong with the file
    engine = spec.engine
    work = memory_guard.job_work(
        *size,
        model=engine.model,
        outscale=engine.outscale,
        tile=engine.tile,
        batch=engine.batch_size,
        precision=engine.precision,
        device=engine.device,
    )
    memory_guard.check_job_memory(work)


def check_picture_output(info: MediaInfo, encode: EncodeSettings, container: str) -> None:
    """Alpha the output cannot carry (unless --drop-alpha), HDR into 8 bits: refused."""
    video = info.video
    check_alpha_output(video.has_alpha, encode, container)
    out_pix_fmt = encode.pix_fmt(video.bit_depth, video.pix_fmt)
    check_hdr_output(video.color, video.bit_depth, out_pix_fmt, encode.codec)


def source_notes(info: MediaInfo) -> list[str]:
    """What the user should hear about how the source is read (said once per job)."""
    notes = []
    video = info.video
    if video.leading_dropped:
        notes.append(
            f"the video starts mid-GOP: its first {video.leading_dropped} frame(s) have no "
            "reference picture and were left out, as a player leaves them out"
        )
    if info.start_seconds:
        notes.append(
            f"the source starts at {float(info.start_seconds):.3f} s; the output starts at 0 "
            "with every track moved by the same amount"
        )
    if info.damage is not None:
        notes.append(f"{info.damage}; only the readable frames were upscaled")
    return notes


def damaged_note(frames: int) -> str:
    """The note for frames that could not be decoded and were filled (--allow-damaged)."""
    return f"{frames} damaged frame(s) could not be decoded; each repeats a neighbour"


def check_source_unchanged(spec: JobSpec, *, check_mtime: bool = True, job_id: str = "") -> None:
    """Refuse a source replaced since the job was made: finished chunks belong to the old
    file, and a splice of two sources is never what the user wants."""
    if spec.source_identity is None:
        return
    changed = spec.source_identity.differences(spec.source.expanduser(), check_mtime=check_mtime)
    if changed:
        name = f"job {job_id}" if job_id else "the job"
        restart = f"`vsr jobs resume {job_id} --restart`" if job_id else "submitting the job again"
        raise JobError(
            f"the source {spec.source} changed since {name} started "
            f"({', '.join(changed)}); its finished chunks belong to the old file",
            f"put the original back, or start over with {restart}",
        )


def check_engine_settings(engine: EngineSettings) -> None:
    """Everything about the engine that can be refused before a model is loaded."""
    check_model_reference(engine.model)
    if engine.outscale is not None and not 0.25 <= engine.outscale <= 8:
        raise InputError(f"scale {engine.outscale} is out of range", "use a scale from 1 to 8")
    if engine.batch_size < 1:
        raise InputError(f"batch size {engine.batch_size} is below 1", "use --batch-size 1")
    if engine.tile < 0:
        raise InputError(f"tile size {engine.tile} is negative", "use --tile 0 (automatic)")


def check_model_reference(model: str) -> None:
    """Fail before any work when the model is neither a known name nor an existing file."""
    from vsr_desktop.core.models.registry import get_spec

    path = Path(model).expanduser()
    if path.is_file():
        return
    if path.suffix.lower() in {".pth", ".pt", ".ckpt", ".safetensors", ".param"} or "/" in model:
        raise ModelError(f"model file {model} does not exist", "check the path")
    get_spec(model)


def user_model_files(model: str) -> list[Path]:
    """The files of a model given as a file on this machine ([] for a registry name).

    Remote workers cannot read the user's disk, so the cloud backend uploads these with the
    job: the file itself, and for an ncnn ``.param`` the ``.bin`` beside it.
    """
    from vsr_desktop.core.models.loading import is_model_file_reference, model_file_set

    if not is_model_file_reference(model):
        return []
    path = Path(model).expanduser()
    if not path.is_file():
        raise ModelError(f"model file {model} does not exist", "check the path")
    files = model_file_set(path)
    for companion in files[1:]:
        if not companion.is_file():
            raise ModelError(
                f"the ncnn model {path.name} has no {companion.name} beside it",
                "keep the .param and .bin files of a model in one folder",
            )
    return files


def _can_write_in(folder: Path) -> bool:
    """Try it: os.access says yes to root even on read-only mounts."""
    import tempfile

    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".vsr-write-check-"):
            return True
    except OSError:
        return False


def build_engine(settings: EngineSettings) -> FrameUpscaler:
    """Load the model and build the inference engine (imports torch only now)."""
    from vsr_desktop.core.engine import Engine
    from vsr_desktop.core.models import resolve_model

    loaded = resolve_model(
        settings.model,
        denoise_strength=settings.denoise_strength,
        allow_download=settings.allow_download,
    )
    return Engine(
        loaded.module,
        loaded.scale,
        device=settings.device,
        precision=settings.precision,
        cpu_convolution=settings.cpu_convolution,
        tile=settings.tile,
        batch_size=settings.batch_size,
        outscale=settings.outscale if settings.outscale is not None else loaded.output_scale,
        supports_half=loaded.supports_half,  # fp16 overflows in some architectures
        supports_bfloat16=loaded.supports_bfloat16,
        compile=settings.compile or None,
    )
