"""What one upscale job is: the user's request, its validation, and its engine.

Shared by every backend and by the worker stages a remote job runs, so a chunk upscaled on
Slurm or AWS uses exactly the settings the local run would.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vsr_desktop.core.errors import InputError, JobError, ModelError
from vsr_desktop.core.jobs import JobRecord
from vsr_desktop.core.media.encode import EncodeSettings, check_codec_fits_container, container_for
from vsr_desktop.core.media.probe import MediaInfo, probe
from vsr_desktop.core.plan import DEFAULT_CHUNK_SECONDS
from vsr_desktop.core.upscaler import FrameUpscaler

DEFAULT_MODEL = "realesr-animevideov3"


@dataclass(frozen=True)
class UpscaleRequest:
    """Everything the user chose for one upscale job."""

    source: Path
    output: Path
    model: str = DEFAULT_MODEL
    outscale: float | None = None
    denoise_strength: float | None = None
    encode: EncodeSettings = field(default_factory=EncodeSettings)
    device: str = "auto"
    precision: str = "auto"
    #: CPU convolutions: auto (timed trial), onednn, or winograd (one frame per core, fp32).
    cpu_convolution: str = "auto"
    tile: int = 0
    batch_size: int = 1
    chunk_seconds: float = DEFAULT_CHUNK_SECONDS
    overwrite: bool = False
    allow_download: bool = False

    def identity(self) -> dict[str, Any]:
        """What makes two runs produce the same file (so one may resume the other)."""
        return {
            "model": self.model,
            "outscale": self.outscale,
            "denoise_strength": self.denoise_strength,
            "encode": asdict(self.encode),
            "chunk_seconds": self.chunk_seconds,
        }


def request_from_job(job: JobRecord) -> UpscaleRequest:
    """Rebuild the request of a stored job (resume/retry from the CLI or the jobs panel)."""
    s = job.settings
    try:
        return UpscaleRequest(
            source=Path(job.source), output=Path(job.output), model=s["model"],
            outscale=s["outscale"], denoise_strength=s["denoise_strength"],
            encode=EncodeSettings(**s["encode"]), chunk_seconds=s["chunk_seconds"],
        )
    except (KeyError, TypeError) as exc:
        raise JobError(f"job {job.id} has unreadable settings ({exc})",
                       "start it again from the source file") from exc


def validate_request(request: UpscaleRequest) -> MediaInfo:
    """Check everything that can be checked before any work; never touch the user's files."""
    source, output = request.source.expanduser(), request.output.expanduser()
    info = probe(source)
    container = container_for(output)
    check_codec_fits_container(request.encode.codec, container)
    request.encode.profile()
    if output.exists() and source.exists() and os.path.samefile(source, output):
        raise InputError("the output is the input file", "choose another output name")
    if output.resolve() == source.resolve():
        raise InputError("the output is the input file", "choose another output name")
    folder = output.parent if str(output.parent) else Path(".")
    if not folder.is_dir():
        raise InputError(f"the output folder {folder} does not exist", "create it or pick another")
    if not _can_write_in(folder):
        raise InputError(f"the output folder {folder} is not writable", "pick another folder")
    if output.exists() and not request.overwrite:
        raise InputError(f"{output} already exists", "pass --overwrite or choose another name")
    check_model_reference(request.model)
    if request.outscale is not None and not 0.25 <= request.outscale <= 8:
        raise InputError(f"scale {request.outscale} is out of range", "use a scale from 1 to 8")
    return info


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
            raise ModelError(f"the ncnn model {path.name} has no {companion.name} beside it",
                             "keep the .param and .bin files of a model in one folder")
    return files


def _can_write_in(folder: Path) -> bool:
    """Try it: os.access says yes to root even on read-only mounts."""
    import tempfile

    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".vsr-write-check-"):
            return True
    except OSError:
        return False


def build_engine(request: UpscaleRequest) -> FrameUpscaler:
    """Load the model and build the inference engine (imports torch only now)."""
    from vsr_desktop.core.engine import Engine
    from vsr_desktop.core.models import resolve_model

    loaded = resolve_model(
        request.model, denoise_strength=request.denoise_strength,
        allow_download=request.allow_download,
    )
    return Engine(
        loaded.module, loaded.scale, device=request.device, precision=request.precision,
        cpu_convolution=request.cpu_convolution,
        tile=request.tile, batch_size=request.batch_size,
        outscale=request.outscale if request.outscale is not None else loaded.output_scale,
    )


def request_to_dict(request: UpscaleRequest) -> dict[str, Any]:
    """JSON-ready form, for job files that remote workers read."""
    data = asdict(request)
    data["source"], data["output"] = str(request.source), str(request.output)
    return data


def request_from_dict(data: dict[str, Any]) -> UpscaleRequest:
    try:
        values = dict(data)
        values["source"], values["output"] = Path(values["source"]), Path(values["output"])
        values["encode"] = EncodeSettings(**values["encode"])
        return UpscaleRequest(**values)
    except (KeyError, TypeError) as exc:
        raise JobError(f"the job description is unreadable ({exc})",
                       "submit the job again") from exc
