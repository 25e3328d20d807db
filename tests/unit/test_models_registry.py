"""The model zoo: names, official URLs, sizes, pinned checksums, cheap import."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys

import pytest

from vsr_desktop.core.errors import ModelError
from vsr_desktop.core.models import MODEL_REGISTRY, ModelSpec, get_spec, model_names

# Sizes measured from the official release files (shared/FACTS.md).
OFFICIAL_SIZES = {
    "realesr-animevideov3": 2_504_012,
    "realesr-general-x4v3": 4_885_111,
    "realesr-general-wdn-x4v3": 4_885_111,
    "RealESRGAN_x4plus": 67_040_989,
    "RealESRGAN_x4plus_anime_6B": 17_938_799,
    "RealESRGAN_x2plus": 67_061_725,
}


def test_registry_has_the_real_esrgan_zoo() -> None:
    assert set(MODEL_REGISTRY) == set(OFFICIAL_SIZES)
    assert model_names()[0] == "realesr-animevideov3"
    for name, size in OFFICIAL_SIZES.items():
        spec = MODEL_REGISTRY[name]
        assert spec.name == name
        assert spec.size_bytes == size
        assert spec.url.startswith("https://github.com/xinntao/Real-ESRGAN/releases/download/v")
        assert spec.url.endswith("/" + spec.filename)
        assert spec.filename == f"{name}.pth"
        assert spec.arch in ("SRVGGNetCompact", "RRDBNet")
        assert spec.license == "BSD-3-Clause"
        assert spec.description


def test_scales_and_architectures() -> None:
    assert MODEL_REGISTRY["RealESRGAN_x2plus"].scale == 2
    assert all(s.scale == 4 for n, s in MODEL_REGISTRY.items() if n != "RealESRGAN_x2plus")
    assert MODEL_REGISTRY["realesr-animevideov3"].arch == "SRVGGNetCompact"
    assert MODEL_REGISTRY["RealESRGAN_x4plus_anime_6B"].arch == "RRDBNet"


def test_sha256_pins_are_well_formed_and_distinct() -> None:
    digests = [spec.sha256 for spec in MODEL_REGISTRY.values()]
    for digest in digests:
        assert digest is not None and re.fullmatch(r"[0-9a-f]{64}", digest)
    assert len(set(digests)) == len(digests)


def test_denoise_partner() -> None:
    general = get_spec("realesr-general-x4v3")
    assert general.denoise_partner == "realesr-general-wdn-x4v3"
    partner = get_spec(general.denoise_partner)
    assert (partner.arch, partner.scale, partner.size_bytes) == (
        general.arch,
        general.scale,
        general.size_bytes,
    )
    assert partner.denoise_partner is None
    others = [s for s in MODEL_REGISTRY.values() if s.name != general.name]
    assert all(s.denoise_partner is None for s in others)


def test_spec_is_frozen() -> None:
    spec = get_spec("RealESRGAN_x4plus")
    assert isinstance(spec, ModelSpec)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.scale = 2  # type: ignore[misc]


def test_get_spec_unknown_lists_known_names() -> None:
    with pytest.raises(ModelError) as info:
        get_spec("RealESRGAN_x8")
    assert "RealESRGAN_x8" in info.value.message
    for name in MODEL_REGISTRY:
        assert name in info.value.hint


def test_get_spec_forgives_case() -> None:
    assert get_spec("realesrgan_x4plus").name == "RealESRGAN_x4plus"


def test_importing_the_package_does_not_import_torch() -> None:
    code = (
        "import sys, vsr_desktop.core.models.registry, vsr_desktop.core.models\n"
        "heavy = [m for m in ('torch', 'spandrel', 'safetensors') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
