"""The GPU streaming pipeline's device-agnostic logic, run here on the CPU with streams off:
order, batching, cancel, the deferred non-finite check, OOM halving; and the batch size
chosen from free memory, with given numbers. The CUDA streams themselves need a GPU
(tests/integration/test_gpu_engine.py, run by benchmarks/gpu_check.sh)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.unit.test_engine import compact_x4, engine
from vsr_desktop.core import gpu_batching, gpu_compile
from vsr_desktop.core.errors import CancelledError, EngineError
from vsr_desktop.core.gpu_pipeline import StreamPipeline

# ----------------------------------------------------------------- batch from free memory


def test_frame_bytes_from_given_numbers() -> None:
    cost = gpu_batching.BatchCost(
        width=100, height=50, model_scale=4, outscale=4.0, network_bytes_per_pixel=100.0
    )
    compute, transfer = gpu_batching.frame_bytes(cost)
    pixels, net = 5000, 80000
    assert compute == pixels * 12 + net * 100 * 2 // 4 + net * 12
    assert transfer == pixels * 3 + net * 3
    halved = gpu_batching.BatchCost(100, 50, 4, 2.0, 100.0, dtype_bytes=4)
    compute32, transfer32 = gpu_batching.frame_bytes(halved)
    assert compute32 == pixels * 12 + net * 100 + net * 12 + 20000 * 12  # + the resize
    assert transfer32 == pixels * 3 + 20000 * 3


def test_batch_fits_the_free_memory_and_is_capped() -> None:
    cost = gpu_batching.BatchCost(1920, 1080, 4, 2.0, 110.0)  # compact model, 1080p → 4K
    compute, transfer = gpu_batching.frame_bytes(cost)
    per_frame = compute + 2 * transfer
    share = gpu_batching.BATCH_MEMORY_SHARE
    assert gpu_batching.batch_for_free_memory(cost, int(per_frame / share)) == 1
    assert gpu_batching.batch_for_free_memory(cost, int(3 * per_frame / share) + 1) == 3
    assert gpu_batching.batch_for_free_memory(cost, int(per_frame / share) - 1) == 0
    # An H100's 78 GiB fits ~20 such frames; more than 4 at 4K output does not pay.
    assert gpu_batching.batch_for_free_memory(cost, 78 * 2**30) == 4
    eight_k = gpu_batching.BatchCost(1920, 1080, 4, 4.0, 110.0)
    assert gpu_batching.batch_for_free_memory(eight_k, 78 * 2**30) == 1
    small = gpu_batching.BatchCost(320, 180, 4, 4.0, 110.0)
    assert gpu_batching.batch_for_free_memory(small, 78 * 2**30) == gpu_batching.MAX_BATCH
    assert gpu_batching.batch_for_free_memory(small, 78 * 2**30, limit=3) == 3


# ----------------------------------------------------------------- the pipeline on the CPU


def _frames(n: int, height: int = 24, width: int = 32, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(n)]


def test_frames_come_out_in_order_each_once_and_match_the_engine() -> None:
    eng = engine(compact_x4(), 4)
    frames = _frames(7)
    pipeline = StreamPipeline(eng, batch_size=3)
    out = list(pipeline.run(list(range(7)), lambda i: frames[i]))
    assert [i for i, _ in out] == list(range(7))
    assert pipeline.batch_sizes == [3, 3, 1]
    expected = eng.upscale(np.stack(frames))
    for (i, got), want in zip(out, expected, strict=True):
        assert got.dtype == np.uint8 and got.shape == (96, 128, 3)
        assert np.array_equal(got, want), i


def test_decoded_yuv_planes_batch_like_single_frames(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Real decoded planes, three to a batch, give what they give one at a time."""
    from skimage import data

    from vsr_desktop.core.media.decode import iter_frames
    from vsr_desktop.core.media.probe import probe
    from vsr_desktop.core.media.synth import ClipSpec, make_clip

    spec = ClipSpec(width=48, height=32, frames=5, fps=24, gop=5, crf=18)
    clip = make_clip(tmp_path_factory.mktemp("yuv") / "c.mp4", data.astronaut(), spec)
    video = probe(clip).video
    frames = list(iter_frames(clip, video.index, video.frame_pts, planes=True))
    eng = engine(compact_x4(), 4)
    batched = StreamPipeline(eng, batch_size=3)
    out = list(batched.run(frames, lambda f: f.yuv))
    single = list(StreamPipeline(eng, batch_size=1).run(frames, lambda f: f.yuv))
    assert batched.batch_sizes == [3, 2]
    assert [f.pts for f, _ in out] == list(video.frame_pts)
    for (_, a), (_, b) in zip(out, single, strict=True):
        assert a.shape == (128, 192, 3) and np.array_equal(a, b)
    assert all(f._rgb is None for f in frames)  # no RGB was made on the host


def test_a_size_change_or_a_16_bit_frame_ends_a_batch_and_keeps_the_order() -> None:
    eng = engine(compact_x4(), 4)
    small, large = _frames(3, 16, 16), _frames(2, 24, 32, seed=1)
    deep = np.random.default_rng(2).integers(0, 65536, (16, 16, 3), dtype=np.uint16)
    stream: list[np.ndarray] = [small[0], small[1], large[0], deep, large[1], small[2]]
    pipeline = StreamPipeline(eng, batch_size=4)
    out = list(pipeline.run(range(len(stream)), lambda i: stream[i]))
    assert [i for i, _ in out] == list(range(6))
    assert pipeline.batch_sizes == [2, 1, 1, 1]  # the 16-bit frame went through upscale()
    assert out[3][1].dtype == np.uint16 and out[3][1].shape == (64, 64, 3)
    assert np.array_equal(out[3][1], eng.upscale_image(deep))
    assert np.array_equal(out[5][1], eng.upscale_image(small[2]))


def test_cancel_mid_stream_stops_reading_frames() -> None:
    eng = engine(compact_x4(), 4)
    frames = _frames(20, 16, 16)
    cancel = threading.Event()
    read: list[int] = []

    def source() -> Iterator[int]:
        for i in range(20):
            read.append(i)
            yield i

    got = []
    with pytest.raises(CancelledError):
        for i, _ in StreamPipeline(eng, batch_size=2).run(source(), lambda i: frames[i], cancel):
            got.append(i)
            if i == 3:
                cancel.set()
    assert got == [0, 1, 2, 3]
    assert len(read) <= 6  # the two batches in flight at most


def test_streams_need_cuda() -> None:
    with pytest.raises(EngineError, match="CUDA"):
        StreamPipeline(engine(compact_x4(), 4), streams=True)


class _PoisonedOnce(torch.nn.Module):
    """A ×1 network whose reduced-precision copy overflows: NaN until converted by float()
    (which the engine's fp32 rerun does) — the boundary we cannot reach here is fp16 on a GPU."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(()))
        self.poison = True
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return x * float("nan") if self.poison else x * self.weight

    def float(self) -> _PoisonedOnce:  # type: ignore[override]
        self.poison = False
        return self


def test_a_non_finite_batch_is_rerun_in_fp32_after_its_download(
    caplog: pytest.LogCaptureFixture,
) -> None:
    eng = engine(_PoisonedOnce(), 1)
    eng._check_finite = True  # as in fp16 on a GPU
    frames = _frames(4, 8, 8)
    out = list(StreamPipeline(eng, batch_size=2).run(range(4), lambda i: frames[i]))
    assert [i for i, _ in out] == [0, 1, 2, 3]
    for i, got in out:
        assert np.array_equal(got, frames[i])  # not black: the fp32 rerun's output
    assert eng._nonfinite_batches == 2
    assert "rerun in fp32" in caplog.text


class _OutOfMemoryAboveOne(torch.nn.Module):
    """×1 network that 'runs out of memory' on batches of more than one frame."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(x.shape[0])
        if x.shape[0] > 1:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return x.clone()


def test_a_batch_that_does_not_fit_runs_in_halves_and_later_ones_are_smaller() -> None:
    net = _OutOfMemoryAboveOne()
    eng = engine(net, 1)
    frames = _frames(6, 8, 8)
    pipeline = StreamPipeline(eng, batch_size=4)
    out = list(pipeline.run(range(6), lambda i: frames[i]))
    assert [i for i, _ in out] == list(range(6))
    assert all(np.array_equal(got, frames[i]) for i, got in out)
    assert pipeline.batch_sizes == [4, 1, 1]  # the first halved inside, then batches of 1
    assert max(net.sizes[-2:]) == 1


def test_the_engine_streams_through_the_pipeline_when_switched_on() -> None:
    eng = engine(compact_x4(), 4)
    frames = _frames(3, 16, 16)
    eng.use_stream_pipeline = True
    try:
        out = list(eng.upscale_stream(range(3), lambda i: frames[i]))
    finally:
        eng.use_stream_pipeline = False
    assert [i for i, _ in out] == [0, 1, 2]
    assert np.array_equal(np.stack([o for _, o in out]), eng.upscale(np.stack(frames)))


# ----------------------------------------------------------------- torch.compile switch


def test_compile_modes_parse_and_default_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(gpu_compile.COMPILE_ENV, raising=False)
    assert gpu_compile.compile_mode() == "off"
    monkeypatch.setenv(gpu_compile.COMPILE_ENV, "graphs")
    assert gpu_compile.compile_mode() == "reduce-overhead"
    assert gpu_compile.compile_mode("1") == "default"
    with pytest.raises(EngineError, match="unknown compile mode"):
        gpu_compile.compile_mode("fastest")
    with pytest.raises(EngineError, match="CUDA graphs"):
        engine(compact_x4(), 4, compile="reduce-overhead")


def test_a_compiled_network_gives_the_same_frames() -> None:
    """TorchDynamo capture of the real architecture (``eager``: no C++ compiler needed)."""
    frames = np.stack(_frames(2, 16, 16))
    plain = engine(compact_x4(), 4).upscale(frames)
    compiled = engine(compact_x4(), 4, compile="eager")
    assert compiled._network is not compiled.module
    assert np.array_equal(compiled.upscale(frames), plain)


def test_the_compile_option_travels_in_the_job_spec_to_the_engine(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """--compile is an engine setting of the spec (it reaches Slurm and AWS workers too)."""
    from vsr_desktop.cli import _engine_settings_from_args, build_parser
    from vsr_desktop.core.job_spec import JobSpec
    from vsr_desktop.worker.job_setup import build_engine

    monkeypatch.setenv(gpu_compile.COMPILE_ENV, "")
    parser = build_parser()
    plain = _engine_settings_from_args(parser.parse_args(["upscale", "in.mp4"]))
    assert plain.compile == "" and gpu_compile.compile_mode(plain.compile or None) == "off"
    args = parser.parse_args(["upscale", "in.mp4", "--compile", "reduce-overhead"])
    settings = _engine_settings_from_args(args)
    spec = JobSpec(source=tmp_path / "in.mp4", output=tmp_path / "out.mp4", engine=settings)
    assert JobSpec.from_json(spec.to_json()).engine.compile == "reduce-overhead"
    with pytest.raises(EngineError, match="CUDA graphs"):  # reached the engine: no GPU here
        build_engine(replace(settings, device="cpu", precision="fp32"))
    eager = build_engine(replace(settings, compile="eager", device="cpu", precision="fp32"))
    assert eager._network is not eager.module  # type: ignore[attr-defined]
    with pytest.raises(SystemExit):
        parser.parse_args(["upscale", "in.mp4", "--compile", "fastest"])


def test_cpu_engines_keep_their_own_path_and_rgb_decoding() -> None:
    from vsr_desktop.core.colour_convert import planes_wanted

    eng = engine(compact_x4(), 4)
    assert not eng.use_stream_pipeline and not planes_wanted()
    eng.use_stream_pipeline = True
    assert planes_wanted()
    eng.use_stream_pipeline = False
    assert not planes_wanted()
