"""From the settings column to a JobSpec: engine, encode and where the output goes.

The bundled sample lives inside the installed package (often read-only, always the wrong
place for the user's files), so its output goes to the user's Videos folder instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QStandardPaths

from vsr_desktop.core.job_spec import EngineSettings, JobSpec
from vsr_desktop.core.media.encode import EncodeSettings
from vsr_desktop.core.settings import AppSettings
from vsr_desktop.core.upscaler import FrameUpscaler


def engine_settings_for(settings: AppSettings) -> EngineSettings:
    """How the engine runs under the current settings (jobs and the preview alike)."""
    denoise = settings.denoise_strength if _has_denoise(settings.model) else None
    return EngineSettings(
        model=settings.model,
        outscale=settings.outscale,
        denoise_strength=denoise,
        device=settings.device,
        precision=settings.precision,
        tile=settings.tile,
    )


def encode_settings_for(settings: AppSettings) -> EncodeSettings:
    """The output choices of the settings panel (codec, quality, preset, target size)."""
    from vsr_desktop.core.media.geometry import parse_size

    width, height = parse_size(settings.target_size) if settings.target_size else (None, None)
    return EncodeSettings(
        codec=settings.codec,
        crf=settings.crf,
        preset=settings.preset,
        encoder=settings.encoder,
        width=width,
        height=height,
        fit=settings.fit if width is not None else "fit",
    )


def videos_folder() -> Path:
    """The user's Videos folder (XDG_VIDEOS_DIR, else Qt's MoviesLocation), made if missing."""
    env = os.environ.get("XDG_VIDEOS_DIR", "").strip()
    location = env or QStandardPaths.writableLocation(
        QStandardPaths.StandardLocation.MoviesLocation
    )
    folder = Path(location).expanduser() if location else Path.home() / "Videos"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def is_bundled(source: Path) -> bool:
    """True for a file shipped inside the package (the sample clip)."""
    from vsr_desktop.resources import RESOURCES

    try:
        return source.resolve().is_relative_to(RESOURCES)
    except OSError:
        return False


def output_for(settings: AppSettings, source: Path) -> Path:
    """The settings' output path; a bundled file's goes to Videos unless a folder is set."""
    if not settings.output_folder and is_bundled(source):
        return videos_folder() / settings.output_for(source).name
    return settings.output_for(source)


def spec_for(settings: AppSettings, source: Path, backend: str = "local") -> JobSpec:
    """The job spec for one source under the current settings, for `backend`."""
    return JobSpec(
        source=source,
        output=output_for(settings, source),
        engine=engine_settings_for(settings),
        encode=encode_settings_for(settings),
        chunk_seconds=settings.chunk_seconds,
        deinterlace=settings.deinterlace,
        double_rate=settings.double_rate,
        backend=backend,
    )


def engine_factory_for(settings: AppSettings) -> Callable[[], FrameUpscaler]:
    """Builds the engine later, in the preview's worker thread (torch loads there)."""
    engine = engine_settings_for(settings)

    def build() -> FrameUpscaler:
        from vsr_desktop.worker.job_setup import build_engine

        return build_engine(engine)

    return build


def _has_denoise(model: str) -> bool:
    from vsr_desktop.core.models.registry import MODEL_REGISTRY

    spec = MODEL_REGISTRY.get(model)
    return spec is not None and spec.denoise_partner is not None
