"""The job spec: everything one upscale job is, as one versioned, serialisable value.

It is the only thing that travels: into the job store, to `vsr worker` stages, to a Slurm
shared folder (spec.json) and to S3 (spec.json). One serialisation (``to_dict``/``from_dict``)
serves them all, so a setting chosen in the app reaches every backend unchanged.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from vsr_desktop.core.errors import JobError
from vsr_desktop.core.media.encode import EncodeSettings
from vsr_desktop.core.plan import DEFAULT_CHUNK_SECONDS
from vsr_desktop.core.source_identity import SourceIdentity

#: Bump when a field changes meaning or is removed; adding a field with a default does not.
SPEC_VERSION = 1
DEFAULT_MODEL = "realesr-animevideov3"


@dataclass(frozen=True)
class EngineSettings:
    """How frames are upscaled: the model and how the engine runs it."""

    model: str = DEFAULT_MODEL
    outscale: float | None = None
    denoise_strength: float | None = None
    device: str = "auto"
    precision: str = "auto"
    #: CPU convolutions: auto (timed trial), onednn, or winograd (one frame per core, fp32).
    cpu_convolution: str = "auto"
    tile: int = 0
    batch_size: int = 1
    allow_download: bool = False
    #: Local jobs: the devices chunks are spread over, one engine each ("0,1", "all",
    #: "cuda:0,cpu"; core.device.parse_devices); empty: `device` alone.
    devices: str = ""
    #: Decode on the GPU (NVDEC through FFmpeg's *_cuvid decoders), falling back with a note.
    hardware_decode: bool = False
    #: ``torch.compile`` mode for the network (core.gpu_compile; opt-in, unmeasured); empty:
    #: the VSR_COMPILE environment variable where the job runs, else off.
    compile: str = ""


@dataclass(frozen=True)
class JobSpec:
    """One job: source and output, engine and encoder settings, chunking, where it runs.

    ``target`` holds what the backend needs to reach where the job runs (a Slurm login,
    an AWS profile and region): plain JSON values, never secrets.
    """

    source: Path
    output: Path
    engine: EngineSettings = field(default_factory=EngineSettings)
    encode: EncodeSettings = field(default_factory=EncodeSettings)
    chunk_seconds: float = DEFAULT_CHUNK_SECONDS
    overwrite: bool = False
    #: Upscale a source with undecodable frames anyway, each repeating its neighbour.
    allow_damaged: bool = False
    #: Interlaced input: auto (bwdif when the source is interlaced), off, bwdif or yadif.
    deinterlace: str = "auto"
    #: Deinterlace to one frame per field (50i → 50p) instead of one per frame.
    double_rate: bool = False
    #: Upscale only from this in point to this out point (inclusive), as the user gave them:
    #: a frame number, seconds ("12.5s"), 00:00:12.5 or SMPTE; core/trim.py resolves them.
    trim_start: str | None = None
    trim_end: str | None = None
    source_identity: SourceIdentity | None = None
    backend: str = "local"
    target: dict[str, Any] = field(default_factory=dict)
    version: int = SPEC_VERSION

    def identity(self) -> dict[str, Any]:
        """What makes two runs write the same file (so one may continue the other)."""
        engine = asdict(self.engine)
        engine.pop("allow_download")
        for where in ("devices", "hardware_decode"):  # where it runs, not what it writes
            engine.pop(where)
        return {
            "engine": engine,
            "encode": asdict(self.encode),
            "chunk_seconds": self.chunk_seconds,
            "deinterlace": [self.deinterlace, self.double_rate],
            "trim": [self.trim_start, self.trim_end],
        }

    def with_source_identity(self) -> JobSpec:
        """This spec with the source's size, mtime and head/tail hash recorded now."""
        return replace(self, source_identity=SourceIdentity.of(self.source.expanduser()))

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "source": str(self.source),
            "output": str(self.output),
            "engine": asdict(self.engine),
            "encode": asdict(self.encode),
            "chunk_seconds": self.chunk_seconds,
            "overwrite": self.overwrite,
            "allow_damaged": self.allow_damaged,
            "deinterlace": self.deinterlace,
            "double_rate": self.double_rate,
            "trim_start": self.trim_start,
            "trim_end": self.trim_end,
            "source_identity": (
                asdict(self.source_identity) if self.source_identity is not None else None
            ),
            "backend": self.backend,
            "target": dict(self.target),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobSpec:
        """Rebuild a spec; a spec from a newer app or with unknown fields is refused."""
        if not isinstance(data, dict):
            raise JobError("the job description is not a JSON object", "submit the job again")
        version = data.get("version")
        if not isinstance(version, int) or version < 1:
            raise JobError(
                f"the job description has no valid version ({version!r})", "submit the job again"
            )
        if version > SPEC_VERSION:
            raise JobError(
                f"the job description is version {version}; this vsr reads up to {SPEC_VERSION}",
                "update vsr_desktop where this job runs",
            )
        try:
            _check_keys(data, {f.name for f in fields(cls)}, "job")
            values = dict(data)
            values["source"], values["output"] = Path(data["source"]), Path(data["output"])
            values["engine"] = _build(EngineSettings, data.get("engine", {}), "engine")
            values["encode"] = _build(EncodeSettings, data.get("encode", {}), "encode")
            identity = data.get("source_identity")
            values["source_identity"] = (
                _build(SourceIdentity, identity, "source_identity")
                if identity is not None
                else None
            )
            values["target"] = dict(data.get("target") or {})
            return cls(**values)
        except (KeyError, TypeError, ValueError) as exc:
            raise JobError(
                f"the job description is unreadable ({exc})", "submit the job again"
            ) from exc

    @classmethod
    def from_json(cls, text: str) -> JobSpec:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise JobError(
                f"the job description is not JSON ({exc})", "submit the job again"
            ) from exc
        return cls.from_dict(data)


def _check_keys(data: dict[str, Any], known: set[str], what: str) -> None:
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"unknown {what} fields {sorted(unknown)}")


def _build(kind: Any, data: Any, what: str) -> Any:
    if not isinstance(data, dict):
        raise TypeError(f"{what} is not an object")
    _check_keys(data, {f.name for f in fields(kind)}, what)
    return kind(**data)
