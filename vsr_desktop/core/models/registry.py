"""The Real-ESRGAN model zoo the app can download by name.

Kept free of torch imports: the GUI lists these names at start-up and must open fast.

Checksums. Upstream publishes no digests for its release assets, so each sha256 below was
pinned only after finding the same value, for the same official URL, in several unrelated
public projects that say they measured it from the release file (download scripts, model
manifests and READMEs, several also stating the byte size that matches ``size_bytes``).
For a ``ModelSpec`` built elsewhere with ``sha256=None``, the downloader checks the size and
records the digest of the first good download next to the file (trust on first use).
"""

from __future__ import annotations

from dataclasses import dataclass

from vsr_desktop.core.errors import ModelError

_RELEASES = "https://github.com/xinntao/Real-ESRGAN/releases/download"
_BSD3 = "BSD-3-Clause"


@dataclass(frozen=True)
class ModelSpec:
    """Where one official model file lives and how to recognise it."""

    name: str
    arch: str
    scale: int
    url: str
    filename: str
    size_bytes: int
    sha256: str | None
    description: str
    license: str = _BSD3
    denoise_partner: str | None = None


_SPECS = (
    ModelSpec(
        name="realesr-animevideov3",
        arch="SRVGGNetCompact",
        scale=4,
        url=f"{_RELEASES}/v0.2.5.0/realesr-animevideov3.pth",
        filename="realesr-animevideov3.pth",
        size_bytes=2_504_012,
        sha256="b8a8376811077954d82ca3fcf476f1ac3da3e8a68a4f4d71363008000a18b75d",
        description="Anime video, tiny and fast (16 convs). Bundled: works offline.",
    ),
    ModelSpec(
        name="realesr-general-x4v3",
        arch="SRVGGNetCompact",
        scale=4,
        url=f"{_RELEASES}/v0.2.5.0/realesr-general-x4v3.pth",
        filename="realesr-general-x4v3.pth",
        size_bytes=4_885_111,
        sha256="8dc7edb9ac80ccdc30c3a5dca6616509367f05fbc184ad95b731f05bece96292",
        description="General footage, small and fast (32 convs); supports denoise strength.",
        denoise_partner="realesr-general-wdn-x4v3",
    ),
    ModelSpec(
        name="realesr-general-wdn-x4v3",
        arch="SRVGGNetCompact",
        scale=4,
        url=f"{_RELEASES}/v0.2.5.0/realesr-general-wdn-x4v3.pth",
        filename="realesr-general-wdn-x4v3.pth",
        size_bytes=4_885_111,
        sha256="1641f8c4464b9f097c9fdda5589273713f67cf59f3d909e0bd688f0cee269dca",
        description="Weak-denoise twin of realesr-general-x4v3, blended by denoise strength.",
    ),
    ModelSpec(
        name="RealESRGAN_x4plus",
        arch="RRDBNet",
        scale=4,
        url=f"{_RELEASES}/v0.1.0/RealESRGAN_x4plus.pth",
        filename="RealESRGAN_x4plus.pth",
        size_bytes=67_040_989,
        sha256="4fa0d38905f75ac06eb49a7951b426670021be3018265fd191d2125df9d682f1",
        description="General photos, best quality, very slow (23 RRDB blocks).",
    ),
    ModelSpec(
        name="RealESRGAN_x4plus_anime_6B",
        arch="RRDBNet",
        scale=4,
        url=f"{_RELEASES}/v0.2.2.4/RealESRGAN_x4plus_anime_6B.pth",
        filename="RealESRGAN_x4plus_anime_6B.pth",
        size_bytes=17_938_799,
        sha256="f872d837d3c90ed2e05227bed711af5671a6fd1c9f7d7e91c911a61f155e99da",
        description="Anime images, high quality, slow (6 RRDB blocks).",
    ),
    ModelSpec(
        name="RealESRGAN_x2plus",
        arch="RRDBNet",
        scale=2,
        url=f"{_RELEASES}/v0.2.1/RealESRGAN_x2plus.pth",
        filename="RealESRGAN_x2plus.pth",
        size_bytes=67_061_725,
        sha256="49fafd45f8fd7aa8d31ab2a22d14d91b536c34494a5cfe31eb5d89c2fa266abb",
        description="General photos at x2, very slow (23 RRDB blocks).",
    ),
)

MODEL_REGISTRY: dict[str, ModelSpec] = {spec.name: spec for spec in _SPECS}


def model_names() -> list[str]:
    """Known names in registry order (the GUI lists them in this order)."""
    return list(MODEL_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    """Look a model up by name, telling the user which names exist when it is unknown."""
    spec = MODEL_REGISTRY.get(name)
    if spec is None:
        # Be forgiving about case: users type "realesrgan_x4plus".
        matches = [s for s in _SPECS if s.name.lower() == name.lower()]
        if len(matches) == 1:
            return matches[0]
        raise ModelError(
            f"Unknown model {name!r}",
            "known models: " + ", ".join(MODEL_REGISTRY) + " (or give a model file path)",
        )
    return spec
