"""Our engine against upstream Real-ESRGAN (``RealESRGANer.enhance``) on identical weights.

The reference gets the network built by its own packages (basicsr/realesrgan classes); our
engine gets the same state dict loaded through spandrel, as the app loads models. In fp32 the
outputs must agree within 1/255 on a real photo, with and without pre-pad and tiling.
"""

from __future__ import annotations

import numpy as np
import pytest
import spandrel
import torch
from skimage.data import astronaut

from vsr_desktop.core.engine import Engine

try:
    from benchmarks.realesrgan_reference import (
        build_reference_module,
        import_realesrgan,
        make_reference_upsampler,
        reference_enhance_rgb,
    )

    import_realesrgan()
except ImportError as exc:  # only the optional "bench" extra provides it
    pytest.skip(
        f"realesrgan is not importable ({exc}); install it with "
        "`pip install --no-deps realesrgan==0.3.0 basicsr==1.4.2` and the bench extra",
        allow_module_level=True,
    )

pytestmark = pytest.mark.reference

#: x2plus-style RRDBNet, shrunk (spandrel only reads the standard growth of 32 channels).
TINY_RRDB = {"num_feat": 16, "num_block": 1, "num_grow_ch": 32}
CASES = {
    # name: (arch, scale, arch kwargs, pre_pad, tile)
    "compact-x4": ("compact", 4, {}, 0, 0),
    "compact-x4-prepad-tiled": ("compact", 4, {}, 10, 64),
    "rrdb-x2": ("rrdb", 2, TINY_RRDB, 0, 0),
    "rrdb-x2-prepad-tiled": ("rrdb", 2, TINY_RRDB, 10, 64),
}


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """123×151 crop of the astronaut photo: odd sizes exercise the x2 model's mod-pad."""
    return np.ascontiguousarray(astronaut()[100:223, 150:301])


def _pair(
    arch: str,
    scale: int,
    arch_kwargs: dict,
    pre_pad: int,
    tile: int,
    seed: int = 0,
    cpu_convolution: str = "onednn",
) -> tuple[object, Engine]:
    torch.manual_seed(seed)
    state = build_reference_module(arch, scale, **arch_kwargs).state_dict()
    reference = make_reference_upsampler(
        state, arch, scale, tile=tile, pre_pad=pre_pad, device="cpu", **arch_kwargs
    )
    ours = spandrel.ModelLoader().load_from_state_dict(state)
    assert ours.scale == scale
    engine = Engine(
        ours.model,
        scale,
        device="cpu",
        precision="fp32",
        tile=tile,
        pre_pad=pre_pad,
        cpu_convolution=cpu_convolution,
    )
    return reference, engine


def _max_diff(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(np.int64) - b.astype(np.int64)).max())


@pytest.mark.parametrize("case", list(CASES))
def test_matches_realesrganer_uint8(photo: np.ndarray, case: str) -> None:
    arch, scale, arch_kwargs, pre_pad, tile = CASES[case]
    reference, engine = _pair(arch, scale, arch_kwargs, pre_pad, tile)
    expected = reference_enhance_rgb(reference, photo)
    got = engine.upscale_image(photo)
    assert got.shape == expected.shape == (123 * scale, 151 * scale, 3)
    assert got.dtype == np.uint8
    assert _max_diff(got, expected) <= 1


def test_matches_realesrganer_uint16(photo: np.ndarray) -> None:
    reference, engine = _pair("rrdb", 2, TINY_RRDB, 0, 0, seed=3)
    photo16 = photo.astype(np.uint16) * 257 + 128  # >255: RealESRGANer's 16-bit path
    expected = reference_enhance_rgb(reference, photo16)
    got = engine.upscale_image(photo16)
    assert got.dtype == expected.dtype == np.uint16
    assert _max_diff(got, expected) <= 257  # 1/255 of the 16-bit range


@pytest.mark.parametrize("case", ["compact-x4", "rrdb-x2-prepad-tiled"])
def test_winograd_frames_in_parallel_match_realesrganer(photo: np.ndarray, case: str) -> None:
    """The fast CPU path (NNPACK Winograd, one frame per core) keeps the 1/255 promise."""
    from vsr_desktop.core.cpu_convolution import nnpack_ready

    if not nnpack_ready():
        # Linux x86 wheels (CI) have NNPACK; some macOS/Windows builds the installer workflow
        # tests on do not, and there the engine keeps oneDNN (covered by the other tests).
        pytest.skip("this PyTorch build has no NNPACK")
    arch, scale, arch_kwargs, pre_pad, tile = CASES[case]
    reference, engine = _pair(arch, scale, arch_kwargs, pre_pad, tile, cpu_convolution="winograd")
    frames = np.stack([photo, np.ascontiguousarray(photo[::-1, ::-1])])
    got = engine.upscale(frames)
    for frame, out in zip(frames, got, strict=True):
        assert _max_diff(out, reference_enhance_rgb(reference, frame)) <= 1
