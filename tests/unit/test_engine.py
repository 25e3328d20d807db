"""The inference engine on the CPU with small random-weight Real-ESRGAN architectures."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.data import astronaut
from spandrel.architectures.Compact import Compact
from spandrel.architectures.ESRGAN import ESRGAN

from tests.unit.test_device import PROBE_OUTCOMES, force_probe
from vsr_desktop.core.engine import MIN_TILE, Engine, is_out_of_memory
from vsr_desktop.core.errors import CancelledError, EngineError


def compact_x4() -> torch.nn.Module:
    """realesr-animevideov3's architecture (64 features, 16 convs, PReLU), seeded weights."""
    torch.manual_seed(0)
    return Compact(num_in_ch=3, num_out_ch=3, num_feat=64, num_conv=16, upscale=4).eval()


def tiny_rrdb_x2() -> torch.nn.Module:
    """x2plus-style RRDBNet (pixel-unshuffle by 2, then ×4), shrunk: RRDB is slow on CPU."""
    torch.manual_seed(1)
    net = ESRGAN(in_nc=12, out_nc=3, num_filters=16, num_blocks=1, scale=4, shuffle_factor=2)
    return net.eval()


def engine(module: torch.nn.Module, scale: int, **kwargs) -> Engine:
    """fp32 with oneDNN: these tests pin one path (test_cpu_convolution covers Winograd)."""
    kwargs.setdefault("precision", "fp32")
    kwargs.setdefault("cpu_convolution", "onednn")
    return Engine(module, scale, device="cpu", **kwargs)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A real photo crop, 72×96, with edges and texture."""
    return np.ascontiguousarray(astronaut()[30:102, 150:246])


def max_diff(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(np.int64) - b.astype(np.int64)).max())


class PixelBudget(torch.nn.Module):
    """Stands in for a GPU with little memory: raises torch.OutOfMemoryError, as CUDA would,
    when one forward pass gets more than ``limit`` pixels (batch × height × width). On a CPU
    a real OOM cannot be provoked safely; this fake sits exactly at the device boundary."""

    def __init__(self, inner: torch.nn.Module, limit: int) -> None:
        super().__init__()
        self.inner = inner
        self.limit = limit
        self.calls: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(tuple(x.shape))
        if x.shape[0] * x.shape[2] * x.shape[3] > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.inner(x)


def test_uint8_shapes_odd_size_and_batches() -> None:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(3, 23, 37, 3), dtype=np.uint8)
    one = engine(compact_x4(), 4)
    out = one.upscale(frames)
    assert out.shape == (3, 92, 148, 3)
    assert out.dtype == np.uint8
    assert one.output_size(37, 23) == (148, 92)
    batched = engine(compact_x4(), 4, batch_size=2).upscale(frames)  # batches of 2 + 1
    assert max_diff(out, batched) <= 1
    assert np.array_equal(engine(compact_x4(), 4).upscale_image(frames[1]), out[1])


def test_uint16_keeps_its_range(photo: np.ndarray) -> None:
    eng = engine(compact_x4(), 4)
    out8 = eng.upscale_image(photo)
    out16 = eng.upscale_image(photo.astype(np.uint16) * 257)  # same picture, 16-bit scale
    assert out16.dtype == np.uint16
    assert out16.shape == out8.shape
    assert out16.max() > 255  # not squashed into 8-bit values
    assert max_diff(np.round(out16 / 257.0), out8) <= 1


def test_x2_pixel_unshuffle_model_odd_size_and_pre_pad() -> None:
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, size=(2, 23, 37, 3), dtype=np.uint8)
    for pre_pad in (0, 10):
        eng = engine(tiny_rrdb_x2(), 2, pre_pad=pre_pad)
        assert eng.mod_scale == 2
        out = eng.upscale(frames)
        assert out.shape == (2, 46, 74, 3)


def test_tiled_matches_untiled(photo: np.ndarray) -> None:
    whole = engine(compact_x4(), 4).upscale_image(photo)
    tiled = engine(compact_x4(), 4, tile=32, tile_pad=10).upscale_image(photo)  # 3×3 tiles
    assert max_diff(whole, tiled) <= 1  # 1/255


def test_tiled_matches_untiled_x2_batch(photo: np.ndarray) -> None:
    frames = np.stack([photo, photo[::-1]])
    whole = engine(tiny_rrdb_x2(), 2).upscale(frames)
    # RRDB sees farther than the compact net: give the tiles more context. tile=33 is
    # rounded up to 34 so tile edges stay on the pixel-unshuffle grid.
    eng = engine(tiny_rrdb_x2(), 2, tile=33, tile_pad=20, batch_size=2)
    assert eng.tile == 34
    tiled = eng.upscale(frames)
    assert max_diff(whole, tiled) <= 1


def test_out_of_memory_falls_back_to_tiles(photo: np.ndarray) -> None:
    expected = engine(compact_x4(), 4).upscale_image(photo)
    fake = PixelBudget(compact_x4(), limit=72 * 96 - 1)  # the whole frame never fits
    eng = engine(fake, 4)
    out = eng.upscale_image(photo)
    assert eng.tile == 48  # one halving of the 96-pixel frame was enough
    assert len(fake.calls) == 1 + 4
    assert max_diff(out, expected) <= 1
    eng.upscale_image(photo)  # the next frame starts tiled: no failed attempt
    assert len(fake.calls) == 1 + 4 + 4


def test_out_of_memory_lowers_the_batch_first(photo: np.ndarray) -> None:
    frames = np.stack([photo] * 4)
    fake = PixelBudget(compact_x4(), limit=72 * 96)  # one frame fits, two don't
    eng = engine(fake, 4, batch_size=4)
    out = eng.upscale(frames)
    assert eng.batch_size == 1
    assert eng.tile == 0
    assert out.shape == (4, 288, 384, 3)
    assert max_diff(out[3], engine(compact_x4(), 4).upscale_image(photo)) <= 1


def test_out_of_memory_gives_up_below_min_tile(photo: np.ndarray) -> None:
    eng = engine(PixelBudget(compact_x4(), limit=10 * 10), 4)
    with pytest.raises(EngineError) as info:
        eng.upscale_image(photo)
    assert "Out of memory" in info.value.message
    assert info.value.hint
    assert eng.tile >= MIN_TILE


def test_other_runtime_errors_are_not_mistaken_for_oom() -> None:
    class Broken(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("Expected all tensors to be on the same device")

    assert not is_out_of_memory(RuntimeError("Expected all tensors to be on the same device"))
    assert is_out_of_memory(RuntimeError("MPS backend out of memory (MPS allocated: 1 GB)"))
    eng = engine(Broken(), 4)
    with pytest.raises(RuntimeError, match="same device"):
        eng.upscale_image(np.zeros((8, 8, 3), np.uint8))
    assert eng.tile == 0


def test_outscale_2_from_x4_model(photo: np.ndarray) -> None:
    eng = engine(compact_x4(), 4, outscale=2)
    assert eng.model_scale == 4 and eng.outscale == 2.0
    out = eng.upscale_image(photo[:23, :37])
    assert out.shape == (46, 74, 3)
    assert eng.output_size(37, 23) == (74, 46)
    # Shrinking the ×4 output to ×2 must still look like the picture: compare to ×2 nearest.
    nearest = np.repeat(np.repeat(photo[:23, :37], 2, axis=0), 2, axis=1)
    assert np.corrcoef(out.ravel(), nearest.ravel())[0, 1] > 0.5
    assert engine(compact_x4(), 4, outscale=1.5).upscale_image(photo[:23, :37]).shape == (
        34,
        55,
        3,
    )


def test_cancel_before_start_and_between_tiles(photo: np.ndarray) -> None:
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(CancelledError):
        engine(compact_x4(), 4).upscale(photo[None], cancel)

    cancel = threading.Event()

    class CancelOnFirstTile(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = compact_x4()
            self.calls = 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            cancel.set()  # the user presses Cancel while the first tile runs
            return self.inner(x)

    module = CancelOnFirstTile()
    with pytest.raises(CancelledError):
        engine(module, 4, tile=32).upscale(photo[None], cancel)
    assert module.calls == 1


def test_bf16_path_is_close_to_fp32(photo: np.ndarray) -> None:
    small = photo[:24, :32]
    fp32 = engine(compact_x4(), 4).upscale_image(small)
    eng = engine(compact_x4(), 4, precision="bf16")
    assert eng.dtype == torch.bfloat16
    bf16 = eng.upscale_image(small)
    diff = np.abs(fp32.astype(int) - bf16.astype(int))
    assert diff.mean() < 2.0
    assert diff.max() <= 16


@pytest.mark.parametrize("outcome", ["bf16", "fp32-emulated"])
def test_auto_precision_uses_the_cache_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, outcome: str
) -> None:
    force_probe(monkeypatch, outcome)  # the same answer on an AMX Xeon and an AVX2 EPYC
    eng = Engine(compact_x4(), 4, device="cpu", cache_dir=tmp_path)
    assert eng.dtype == PROBE_OUTCOMES[outcome][2]
    assert (tmp_path / "precision.json").is_file()
    assert eng.describe().startswith("CPU: ")


def test_upscale_tensor(photo: np.ndarray) -> None:
    eng = engine(compact_x4(), 4)
    x = torch.from_numpy(photo).permute(2, 0, 1)[None].float() / 255
    y = eng.upscale_tensor(x)
    assert y.shape == (1, 3, 288, 384) and y.dtype == torch.float32
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    as_uint8 = (y * 255).round().to(torch.uint8)[0].permute(1, 2, 0).numpy()
    assert max_diff(as_uint8, eng.upscale_image(photo)) <= 1


def test_non_contiguous_input(photo: np.ndarray) -> None:
    eng = engine(compact_x4(), 4)
    bgr_view = photo[..., ::-1]
    assert max_diff(eng.upscale_image(bgr_view), eng.upscale_image(photo[..., ::-1].copy())) == 0


@pytest.mark.parametrize(
    ("frames", "match"),
    [
        (np.zeros((8, 8, 3), np.uint8), "N, H, W, 3"),
        (np.zeros((1, 8, 8, 4), np.uint8), "N, H, W, 3"),
        (np.zeros((1, 8, 8, 3), np.float32), "dtype"),
        (np.zeros((1, 0, 8, 3), np.uint8), "Empty"),
    ],
)
def test_bad_input_is_an_engine_error(frames: np.ndarray, match: str) -> None:
    with pytest.raises(EngineError, match=match):
        engine(compact_x4(), 4).upscale(frames)


def test_wrong_scale_is_reported() -> None:
    with pytest.raises(EngineError, match="not ×2"):
        engine(compact_x4(), 2).upscale_image(np.zeros((8, 8, 3), np.uint8))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_cuda_on_cpu_only_machine() -> None:
    with pytest.raises(EngineError, match="CUDA"):
        Engine(compact_x4(), 4, device="cuda")


@pytest.mark.parametrize(
    "kwargs",
    [{"batch_size": 0}, {"tile": -1}, {"outscale": 0}, {"precision": "fp8"}],
)
def test_bad_settings(kwargs: dict) -> None:
    with pytest.raises(EngineError):
        engine(compact_x4(), 4, **kwargs)


def test_upscale_tensor_splits_the_batch_after_oom(photo: np.ndarray) -> None:
    x = torch.from_numpy(np.stack([photo, photo[::-1]])).permute(0, 3, 1, 2).float() / 255
    expected = engine(compact_x4(), 4).upscale_tensor(x)
    eng = engine(PixelBudget(compact_x4(), limit=72 * 96), 4)  # one frame fits, two don't
    got = eng.upscale_tensor(x)
    assert got.shape == (2, 3, 288, 384)
    assert float((got - expected).abs().max()) < 1e-4
