"""Winograd convolutions (NNPACK), one frame per core: same pixels, faster, safe to share."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from skimage.data import astronaut
from spandrel.architectures.ESRGAN import ESRGAN
from torch import nn

from tests.unit.test_engine import compact_x4, max_diff, tiny_rrdb_x2
from vsr_desktop.core import cpu_convolution, cpu_strategy
from vsr_desktop.core.cpu_convolution import (
    WinogradConv2d,
    nnpack_ready,
    run_frames_in_parallel,
    winograd_copy,
)
from vsr_desktop.core.engine import Engine
from vsr_desktop.core.errors import CancelledError, EngineError

pytestmark = pytest.mark.skipif(not nnpack_ready(), reason="this PyTorch build has no NNPACK")


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    """Three different 40×56 crops of a real photo (odd count: the last frame runs alone)."""
    photo = astronaut()
    crops = [photo[30:70, 150:206], photo[200:240, 100:156], photo[300:340, 250:306]]
    return np.stack([np.ascontiguousarray(c) for c in crops])


def winograd_engine(module: nn.Module, scale: int, **kwargs) -> Engine:
    return Engine(
        module, scale, device="cpu", precision="fp32", cpu_convolution="winograd", **kwargs
    )


def test_nnpack_setup_leaves_the_thread_count_alone() -> None:
    before = torch.get_num_threads()
    assert nnpack_ready()
    assert nnpack_ready()  # idempotent
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "replicate"])
def test_winograd_conv_matches_torch_conv(padding_mode: str) -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(16, 24, 3, padding=1, padding_mode=padding_mode).eval()
    x = torch.rand(2, 16, 23, 37)
    with torch.inference_mode():
        expected = conv(x)
        got = WinogradConv2d(conv)(x.contiguous(memory_format=torch.channels_last))
    assert got.shape == expected.shape
    assert float((got - expected).abs().max()) < 1e-4


def test_only_plain_3x3_convolutions_are_replaced() -> None:
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),  # replaced
        nn.Conv2d(8, 8, 3, stride=2),  # strided: kept
        nn.Conv2d(8, 8, 1),  # 1×1: kept
        nn.Conv2d(8, 8, 3, padding=2, dilation=2),  # dilated: kept
        nn.Conv2d(8, 8, 3, padding=1, groups=2),  # grouped: kept
        nn.Sequential(nn.Conv2d(8, 4, 3, padding=1)),  # nested: replaced
    )
    clone, replaced = winograd_copy(net)
    assert replaced == 2
    assert isinstance(clone[0], WinogradConv2d) and isinstance(clone[5][0], WinogradConv2d)
    assert all(type(m) is nn.Conv2d for m in net.modules() if isinstance(m, nn.Conv2d))
    x = torch.rand(1, 3, 20, 20)
    with torch.inference_mode():
        assert float((clone(x) - net(x)).abs().max()) < 1e-4
    with pytest.raises(ValueError, match="3×3"):
        WinogradConv2d(nn.Conv2d(3, 3, 5))


@pytest.mark.parametrize("make", [compact_x4, tiny_rrdb_x2], ids=["compact-x4", "rrdb-x2"])
def test_frames_in_parallel_match_onednn(frames: np.ndarray, make) -> None:
    scale = 4 if make is compact_x4 else 2
    ours = winograd_engine(make(), scale)
    assert ours.frame_workers == torch.get_num_threads()
    assert ours.frames_per_call == ours.frame_workers * cpu_convolution.FRAMES_PER_CORE
    assert "Winograd" in ours.describe()
    reference = Engine(make(), scale, device="cpu", precision="fp32", cpu_convolution="onednn")
    assert reference.frames_per_call == 1
    got = ours.upscale(frames)
    expected = reference.upscale(frames)
    assert got.shape == expected.shape == (3, 40 * scale, 56 * scale, 3)
    assert max_diff(got, expected) <= 1
    # The frames really are independent: each equals itself upscaled alone.
    assert max_diff(got[2], ours.upscale(frames[2:3])[0]) <= 1


def test_uint16_and_tiles_in_parallel(frames: np.ndarray) -> None:
    deep = frames.astype(np.uint16) * 257
    whole = Engine(
        compact_x4(), 4, device="cpu", precision="fp32", cpu_convolution="onednn"
    ).upscale(deep)
    tiled = winograd_engine(compact_x4(), 4, tile=24, tile_pad=10).upscale(deep)
    assert tiled.dtype == np.uint16
    assert max_diff(tiled, whole) <= 257


def test_cancel_stops_every_frame(frames: np.ndarray) -> None:
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(CancelledError):
        winograd_engine(compact_x4(), 4).upscale(frames, cancel)


def test_an_error_in_one_frame_reaches_the_caller_after_the_others_finish() -> None:
    finished: list[int] = []

    def run_one(index: int) -> None:
        if index == 1:
            raise RuntimeError("frame 1 broke")
        finished.append(index)

    with pytest.raises(RuntimeError, match="frame 1 broke"):
        run_frames_in_parallel(4, 2, run_one)
    assert sorted(finished) == [0, 2, 3]
    assert not torch.is_inference_mode_enabled()


def test_settings_that_cannot_use_winograd_are_refused() -> None:
    with pytest.raises(EngineError, match="fp32"):
        Engine(compact_x4(), 4, device="cpu", precision="bf16", cpu_convolution="winograd")
    with pytest.raises(EngineError, match="CPU convolution"):
        Engine(compact_x4(), 4, device="cpu", cpu_convolution="fft")


def test_auto_times_real_frames_then_remembers_per_size(
    frames: np.ndarray, tmp_path, monkeypatch
) -> None:
    monkeypatch.setattr(cpu_convolution, "_decisions", {})
    onednn = Engine(compact_x4(), 4, device="cpu", precision="fp32", cpu_convolution="onednn")
    expected = onednn.upscale(frames)
    eng = Engine(compact_x4(), 4, device="cpu", precision="fp32", cache_dir=tmp_path)
    group = eng.frame_workers  # one frame per core: the unit the trial times
    assert eng.uses_winograd(56, 40) is None
    if group > 1:
        eng.upscale(frames[:1])  # a part group is never timed
        assert eng.uses_winograd(56, 40) is None
    # One call runs the trial on its first group (oneDNN, Winograd, oneDNN, Winograd, all
    # timed on the same frames) and keeps only the winner's output.
    got = eng.upscale(frames[:group])
    decided = eng.uses_winograd(56, 40)
    assert isinstance(decided, bool)
    winner = winograd_engine(compact_x4(), 4) if decided else onednn
    assert max_diff(got, winner.upscale(frames[:group])) == 0  # bit-identical: no mixing
    assert max_diff(got, expected[:group]) <= 1
    assert eng.uses_winograd(64, 40) is None  # another size gets its own trial
    cache = (tmp_path / "precision.json").read_text()
    assert "winograd-frames|56x40" in cache and "trial on real frames" in cache
    # A new process (no in-memory decisions) reads the answer from disk: no new trial.
    monkeypatch.setattr(cpu_convolution, "_decisions", {})
    again = Engine(compact_x4(), 4, device="cpu", precision="fp32", cache_dir=tmp_path)
    assert again.uses_winograd(56, 40) is decided


def test_auto_keeps_onednn_when_winograd_is_not_faster(
    frames: np.ndarray, tmp_path, monkeypatch
) -> None:
    monkeypatch.setattr(cpu_convolution, "_decisions", {})
    monkeypatch.setattr(cpu_convolution, "WINOGRAD_MIN_SPEEDUP", 1000.0)
    eng = Engine(compact_x4(), 4, device="cpu", precision="fp32", cache_dir=tmp_path)
    eng.upscale(frames[: eng.frame_workers])
    assert eng.uses_winograd(56, 40) is False

    class Forbidden(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise AssertionError("the Winograd network ran after oneDNN won")

    assert eng.cpu_strategy is not None
    eng.cpu_strategy.winograd = Forbidden()
    assert eng.upscale(frames).shape == (3, 160, 224, 3)


def test_memory_estimate_follows_the_network() -> None:
    """The compact model's estimate sits in its measured range (3.8–4.5 KB per input pixel);
    an RRDB ×4, which convolves 64 channels at the output resolution, needs far more."""
    compact, _ = winograd_copy(compact_x4())
    per_pixel = cpu_convolution.winograd_frame_bytes_per_pixel(compact, 4)
    assert 3500 < per_pixel < 5000
    torch.manual_seed(2)
    rrdb, _ = winograd_copy(ESRGAN(in_nc=3, out_nc=3, num_filters=64, num_blocks=1, scale=4))
    assert cpu_convolution.winograd_frame_bytes_per_pixel(rrdb, 4) > 5 * per_pixel


def test_frames_too_large_for_memory_run_one_at_a_time_untried(
    frames: np.ndarray, tmp_path, monkeypatch, caplog: pytest.LogCaptureFixture
) -> None:
    """With ``auto``, frames whose parallel working set would not fit in half the memory
    available run through oneDNN, with no trial and nothing cached; a forced choice stands."""
    monkeypatch.setattr(cpu_convolution, "_decisions", {})
    eng = Engine(compact_x4(), 4, device="cpu", precision="fp32", cache_dir=tmp_path)
    assert eng.cpu_strategy is not None
    per_frame = 40 * 56 * eng.cpu_strategy.winograd_bytes_per_pixel
    # less than two frames' worth
    monkeypatch.setattr(cpu_strategy, "available_memory_bytes", lambda: per_frame)
    if eng.frame_workers < 2:
        pytest.skip("one core: frames never run in parallel here")

    class Forbidden(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise AssertionError("the Winograd network ran although it does not fit")

    eng.cpu_strategy.winograd = Forbidden()
    with caplog.at_level("WARNING", logger="vsr_desktop.core.cpu_strategy"):
        assert eng.uses_winograd(56, 40) is False
        streamed = [rgb for _, rgb in eng.upscale_stream(list(frames), lambda frame: frame)]
        eng.upscale(frames)
    onednn = Engine(compact_x4(), 4, device="cpu", precision="fp32", cpu_convolution="onednn")
    assert max_diff(np.stack(streamed), onednn.upscale(frames)) == 0
    assert (
        not (tmp_path / "precision.json").exists()
        or "winograd-frames" not in (tmp_path / "precision.json").read_text()
    )
    warnings = [r.getMessage() for r in caplog.records if "would need" in r.getMessage()]
    assert len(warnings) == 1 and "56x40 frames: oneDNN" in warnings[0]  # said once per size
    assert winograd_engine(compact_x4(), 4).uses_winograd(56, 40) is True  # forced: as asked


def test_stream_keeps_order_and_items(frames: np.ndarray) -> None:
    eng = winograd_engine(compact_x4(), 4)
    many = [frames[i % 3] for i in range(7)]
    items = [(f"frame-{i}", frame) for i, frame in enumerate(many)]
    out = list(eng.upscale_stream(items, lambda item: item[1]))
    assert [item[0] for item, _ in out] == [f"frame-{i}" for i in range(7)]
    expected = eng.upscale(np.stack(many))
    for (_, got), want in zip(out, expected, strict=True):
        assert got.shape == (160, 224, 3)
        assert max_diff(got, want) == 0  # same network, same frame: same pixels


def test_stream_runs_the_trial_then_the_winner(frames: np.ndarray, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(cpu_convolution, "_decisions", {})
    eng = Engine(compact_x4(), 4, device="cpu", precision="fp32", cache_dir=tmp_path)
    onednn = Engine(compact_x4(), 4, device="cpu", precision="fp32", cpu_convolution="onednn")
    rounds = 2 * cpu_convolution.TRIAL_ROUNDS
    many = [frames[i % 3] for i in range(rounds * eng.frame_workers + 3)]
    out = [rgb for _, rgb in eng.upscale_stream(many, lambda frame: frame)]
    assert len(out) == len(many)
    assert isinstance(eng.uses_winograd(56, 40), bool)
    for got, frame in zip(out, many, strict=True):
        assert max_diff(got, onednn.upscale_image(frame)) <= 1


def test_stream_cancel_and_early_close_leave_no_worker_running(frames: np.ndarray) -> None:
    eng = winograd_engine(compact_x4(), 4)
    cancel = threading.Event()
    stream = eng.upscale_stream([frames[i % 3] for i in range(12)], lambda f: f, cancel)
    next(stream)
    cancel.set()
    with pytest.raises(CancelledError):
        list(stream)
    stream = eng.upscale_stream([frames[i % 3] for i in range(12)], lambda f: f)
    next(stream)
    stream.close()  # the consumer stops early: workers are joined, nothing left behind
    assert not [t for t in threading.enumerate() if t.name.startswith("vsr-frame")]


def test_frame_workers_run_torch_inline_and_the_caller_keeps_its_threads(
    frames: np.ndarray,
) -> None:
    """Each worker already has a core: an OpenMP team per worker would spin on the others'."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        eng = winograd_engine(compact_x4(), 4)
        assert eng.frame_workers == 2
        seen: dict[str, int] = {}

        def record(_module: nn.Module, _inputs: object) -> None:
            seen[threading.current_thread().name] = torch.get_num_threads()

        assert eng.cpu_strategy is not None
        eng.cpu_strategy.winograd.register_forward_pre_hook(record)
        out = [rgb for _, rgb in eng.upscale_stream([frames[i % 3] for i in range(6)], lambda f: f)]
        assert len(out) == 6
        assert seen and all(name.startswith("vsr-frame") for name in seen)
        assert set(seen.values()) == {1}
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
