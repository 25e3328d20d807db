"""Files shipped inside the package: the sample clip, the default model, licences."""

from __future__ import annotations

from pathlib import Path

RESOURCES = Path(__file__).resolve().parent
SAMPLE_CLIP_NAME = "astronaut_pan.mp4"


def sample_clip_path() -> Path:
    """The bundled few-second clip the app opens on first run (made from a public-domain photo)."""
    return RESOURCES / "samples" / SAMPLE_CLIP_NAME


def licenses_dir() -> Path:
    return RESOURCES / "licenses"
