"""On a real NVIDIA GPU (benchmarks/gpu_check.sh runs these; skipped without CUDA): the engine
matches the CPU, picks a precision the GPU runs, tiles within free memory, and NVENC/NVDEC
open where the GPU has them."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.unit.test_engine import compact_x4
from vsr_desktop.core import hardware_codecs as hw
from vsr_desktop.core.device import select_device
from vsr_desktop.core.engine import Engine
from vsr_desktop.core.media import EncodeSettings
from vsr_desktop.core.media.encode import ChunkEncoder
from vsr_desktop.core.media.probe import ColorInfo

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU with CUDA"),
]


def test_auto_picks_this_gpu_and_fp16_matches_the_cpu() -> None:
    assert select_device("auto").type == "cuda"
    frames = np.random.default_rng(0).integers(0, 256, size=(2, 90, 160, 3), dtype=np.uint8)
    cpu = Engine(compact_x4(), 4, device="cpu", precision="fp32").upscale(frames)
    gpu = Engine(compact_x4(), 4, device="cuda")
    assert gpu.dtype == torch.float16
    out = gpu.upscale(frames)
    assert np.abs(out.astype(int) - cpu.astype(int)).max() <= 3


def test_a_model_without_half_runs_fp32_or_bf16_and_is_finite() -> None:
    engine = Engine(compact_x4(), 4, device="cuda", supports_half=False)
    expected = torch.bfloat16 if torch.cuda.get_device_capability() >= (8, 0) else torch.float32
    assert engine.dtype == expected
    frames = np.full((1, 64, 64, 3), 128, np.uint8)
    assert engine.upscale(frames).std() < 20


def test_huge_frames_tile_from_free_memory() -> None:
    engine = Engine(compact_x4(), 4, device="cuda")
    free, _ = torch.cuda.mem_get_info()
    side = int((free / 400) ** 0.5)  # more than the free memory holds whole
    frames = np.zeros((1, side // 8, side // 8, 3), np.uint8)
    assert engine.upscale(frames).shape[1] == side // 8 * 4


def test_nvenc_opens_where_the_gpu_has_it(tmp_path: Path) -> None:
    if hw.open_problem("h264_nvenc", {}, 1920, 1080, "yuv420p") is not None:
        pytest.skip("this GPU has no NVENC (an H100, an A100)")
    encoder = ChunkEncoder(
        tmp_path / "n.mp4",
        EncodeSettings(encoder="nvenc"),
        container_format="mp4",
        width=1920,
        height=1080,
        time_base=Fraction(1, 25),
        rate=Fraction(25),
        source_bit_depth=8,
        color=ColorInfo(),
    )
    for i in range(5):
        encoder.write(i, np.full((1080, 1920, 3), 30 * i, np.uint8))
    encoder.close()
    assert encoder._encoder_name == "h264_nvenc"


# ----------------------------------------------------------------- the streaming pipeline


def _stream(engine: Engine, frames: list[np.ndarray], **kw: object) -> list[np.ndarray]:
    from vsr_desktop.core.gpu_pipeline import StreamPipeline

    pipeline = StreamPipeline(engine, **kw)  # type: ignore[arg-type]
    out = list(pipeline.run(range(len(frames)), lambda i: frames[i]))
    assert [i for i, _ in out] == list(range(len(frames)))
    return [o for _, o in out]


def test_streams_on_and_off_give_the_frames_of_upscale() -> None:
    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 256, (90, 160, 3), dtype=np.uint8) for _ in range(7)]
    engine = Engine(compact_x4(), 4, device="cuda")
    assert engine.use_stream_pipeline
    expected = engine.upscale(np.stack(frames))
    for streams in (True, False):
        got = np.stack(_stream(engine, frames, batch_size=3, streams=streams))
        assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1, streams


def test_the_batch_comes_from_free_memory_and_buffers_are_pinned() -> None:
    from vsr_desktop.core.gpu_pipeline import StreamPipeline

    engine = Engine(compact_x4(), 4, device="cuda")
    pipeline = StreamPipeline(engine)
    frames = [np.zeros((90, 160, 3), np.uint8)] * 9
    list(pipeline.run(range(9), lambda i: frames[i]))
    assert pipeline.batch_sizes[0] > 1  # a small frame on a GPU: several per batch
    assert pipeline._pack(frames[:2], ("rgb", 90, 160)).is_pinned()


def test_yuv_planes_convert_on_the_gpu_as_on_the_cpu() -> None:
    import av
    import torch as t

    from vsr_desktop.core.colour_convert import packed_size, packed_to_rgb, planes_of

    rgb = np.random.default_rng(4).integers(0, 256, (72, 128, 3), dtype=np.uint8)
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
    planes = planes_of(frame, 1)
    assert planes is not None
    packed = np.empty(packed_size(72, 128), np.uint8)
    planes.write_into(packed)
    args = (72, 128, "i420", 1, False)
    cpu = packed_to_rgb(t.from_numpy(packed)[None], *args)
    gpu = packed_to_rgb(t.from_numpy(packed)[None].cuda(), *args).cpu()
    assert (cpu - gpu).abs().max() <= 1 / 255 + 1e-6
    engine = Engine(compact_x4(), 4, device="cuda")
    a = _stream(engine, [planes] * 3)  # type: ignore[list-item]
    b = _stream(engine, [(cpu[0].permute(1, 2, 0) * 255).round().byte().numpy()] * 3)
    assert np.abs(np.stack(a).astype(int) - np.stack(b).astype(int)).max() <= 2


def test_cuda_graphs_compile_and_give_the_same_frames() -> None:
    frames = [np.random.default_rng(5).integers(0, 256, (64, 64, 3), dtype=np.uint8)] * 4
    plain = _stream(Engine(compact_x4(), 4, device="cuda"), frames, batch_size=2)
    graphs = Engine(compact_x4(), 4, device="cuda", compile="reduce-overhead")
    got = _stream(graphs, frames, batch_size=2)
    assert np.abs(np.stack(got).astype(int) - np.stack(plain).astype(int)).max() <= 2
