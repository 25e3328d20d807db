"""GPU throughput at 1080p → 4K: RealESRGANer vs our engine vs our whole pipeline, and the
encoder ceiling (NVENC where the GPU has it, else x264 on the machine's cores, alone).

1080p → 4K is a 1920×1080 input through a ×4 network, resized to 3840×2160 on the device
(outscale 2), as the issue's goals state it. The streaming pipeline (core/gpu_pipeline.py:
YUV planes uploaded from pinned buffers, converted, upscaled, resized and quantised on the
GPU) is measured with its CUDA streams on and off, and ``--compile MODE`` adds its figures
with ``torch.compile`` (a second run, so a slow compile cannot take the first run's time).

Run by benchmarks/gpu_check.sh on a machine with an NVIDIA GPU (no network needed: the
compact model is bundled; RealESRGAN_x4plus uses the cached official file when there is one,
else random weights of its real shapes — the same work, said in the output). Writes JSON
and the GPU section of docs/benchmarks.md (between its GPU markers).
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.throughput import decode_all, make_bench_clip

MODELS = ("realesr-animevideov3", "RealESRGAN_x4plus")
#: 1920×1080 × 4 → 3840×2160: the network's 7680×4320 output is resized on the device.
OUTSCALE = 2.0
#: Each streaming measurement runs at least this long (the clip again and again).
MIN_SECONDS = 1.5
BEGIN, END = "<!-- gpu-section:begin -->", "<!-- gpu-section:end -->"


def load(model: str) -> tuple[Any, str]:
    """The model, and where its weights came from."""
    from vsr_desktop.core.models import resolve_model

    try:
        return resolve_model(model), "official weights"
    except Exception:  # not cached and no network: the real shapes, random weights
        from spandrel.architectures.ESRGAN import ESRGAN

        from vsr_desktop.core.models.loading import LoadedModel

        module = ESRGAN(in_nc=3, out_nc=3, num_filters=64, num_blocks=23, scale=4).eval()
        return LoadedModel(model, module, 4, "RRDBNet", True, True, None), "random weights"


def engine_fps(loaded: Any, frames: list[np.ndarray], batch: int) -> tuple[float, str]:
    import torch

    from vsr_desktop.core.engine import Engine

    engine = Engine(loaded.module, loaded.scale, device="cuda", batch_size=batch, outscale=OUTSCALE)
    stack = np.stack(frames[: max(batch, 2)])
    engine.upscale(stack[:batch])  # warm-up: cuDNN tuning, allocator
    engine.upscale(stack[:batch])
    torch.cuda.synchronize()
    start = time.perf_counter()
    done = 0
    for i in range(0, len(frames) - batch + 1, batch):
        engine.upscale(np.stack(frames[i : i + batch]))
        done += batch
    torch.cuda.synchronize()
    return done / (time.perf_counter() - start), engine.describe()


def reference_fps(loaded: Any, frames: list[np.ndarray]) -> float | None:
    try:
        from benchmarks.realesrgan_reference import (
            make_reference_upsampler,
            reference_enhance_rgb,
        )
    except Exception:
        return None
    arch = "compact" if loaded.arch == "SRVGGNetCompact" else "rrdb"
    try:
        upsampler = make_reference_upsampler(
            loaded.module.state_dict(), arch, 4, half=True, device="cuda"
        )
    except Exception as exc:
        print(f"reference unavailable: {exc}")
        return None
    reference_enhance_rgb(upsampler, frames[0], OUTSCALE)
    start = time.perf_counter()
    for frame in frames[:8]:
        reference_enhance_rgb(upsampler, frame, OUTSCALE)
    return min(8, len(frames)) / (time.perf_counter() - start)


def encoder_ceiling(frames: int = 60) -> tuple[str, float]:
    """4K encoding alone: NVENC if it opens, else x264 veryfast on every core."""
    from vsr_desktop.core import hardware_codecs as hw
    from vsr_desktop.core.media import EncodeSettings
    from vsr_desktop.core.media.encode import ChunkEncoder
    from vsr_desktop.core.media.probe import ColorInfo

    encoder = "nvenc" if hw.open_problem("h264_nvenc", {}, 3840, 2160, "yuv420p") is None else None
    settings = EncodeSettings(preset="veryfast", encoder=encoder or "software")
    picture = np.random.default_rng(0).integers(0, 256, (2160, 3840, 3), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        writer = ChunkEncoder(
            Path(tmp) / "c.mp4",
            settings,
            container_format="mp4",
            width=3840,
            height=2160,
            time_base=Fraction(1, 25),
            rate=Fraction(25),
            source_bit_depth=8,
            color=ColorInfo(),
        )
        start = time.perf_counter()
        for i in range(frames):
            writer.write(i, picture)
        writer.close()
        return writer._encoder_name, frames / (time.perf_counter() - start)


def pipeline_fps(clip: Path, loaded: Any, work: Path, stream: bool = True) -> float:
    """The whole job (decode ⇢ engine ⇢ encode, merge), through the streaming pipeline or
    the plain batched path (``stream=False``, as before it existed)."""
    from vsr_desktop.backends.local import LocalBackend
    from vsr_desktop.core.engine import Engine
    from vsr_desktop.core.job_spec import EngineSettings, JobSpec
    from vsr_desktop.core.jobs import JobStore
    from vsr_desktop.core.media import EncodeSettings, probe

    engine = Engine(loaded.module, loaded.scale, device="cuda", outscale=OUTSCALE)
    engine.use_stream_pipeline = stream
    request = JobSpec(
        source=clip,
        output=work / f"out-{stream}.mp4",
        engine=EngineSettings(device="cuda", outscale=OUTSCALE),
        encode=EncodeSettings(preset="veryfast", encoder="auto"),
        overwrite=True,
    )
    backend = LocalBackend(
        JobStore(work / f"j-{stream}.sqlite3"), work_root=work, engine_factory=lambda _: engine
    )
    try:
        start = time.perf_counter()
        backend.submit(request)
        return probe(clip).video.frame_count / (time.perf_counter() - start)
    finally:
        engine.use_stream_pipeline = False


def decoded_planes(clip: Path) -> list[Any]:
    """The clip's frames as the decoder hands them to a GPU engine: YUV planes."""
    from vsr_desktop.core.media import probe
    from vsr_desktop.core.media.decode import iter_frames

    video = probe(clip).video
    return list(iter_frames(clip, video.index, video.frame_pts, planes=True))


def stream_fps(
    loaded: Any, frames: list[Any], *, streams: bool, compile_mode: str = "off"
) -> tuple[float, list[int]]:
    """The streaming pipeline alone (no decode, no encode): frames/s and its batch sizes."""
    import torch

    from vsr_desktop.core.engine import Engine
    from vsr_desktop.core.gpu_pipeline import StreamPipeline

    engine = Engine(
        loaded.module, loaded.scale, device="cuda", outscale=OUTSCALE, compile=compile_mode
    )
    pipeline = StreamPipeline(engine, streams=streams)
    warm = frames[:8]
    for _ in pipeline.run(warm, lambda f: f.yuv):  # warm-up: cuDNN tuning, compile, graphs
        pass
    torch.cuda.synchronize()
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < MIN_SECONDS:
        for _ in pipeline.run(frames, lambda f: f.yuv):
            done += 1
    torch.cuda.synchronize()
    return done / (time.perf_counter() - start), pipeline.batch_sizes[-3:]


def _fps(value: float | None) -> str:
    return f"{value:.1f}" if value else "n/a"


def write_section(doc: Path, results: dict[str, Any]) -> None:
    lines = [
        BEGIN,
        f"Measured by `benchmarks/gpu_check.sh` on {results['gpu']} "
        f"({results['torch']}), 1920×1080 → 3840×2160 (×4 network, resized on the GPU), "
        f"{results['frames']} frames; encoder ceiling alone: {results['encoder']} "
        f"{results['encoder_fps']:.1f} fps.",
        "",
        "| model | weights | RealESRGANer | engine batch 1 / 4 | stream pipeline: streams on / "
        "off | compiled (streams on) | whole job: stream / plain |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in results["models"].items():
        compiled = r.get("compiled")
        compiled_text = f"{compiled['fps']:.1f} ({compiled['mode']})" if compiled else "not run"
        lines.append(
            f"| {name} | {r['weights']} | {_fps(r['reference'])} | "
            f"{r['engine_1']:.1f} / {r['engine_4']:.1f} | "
            f"{r['stream_on']:.1f} / {r['stream_off']:.1f} (batch {r['stream_batch']}) | "
            f"{compiled_text} | {r['pipeline']:.1f} / {r['pipeline_plain']:.1f} |"
        )
    lines += ["", "All figures in frames per second, each from this one run.", END]
    text = doc.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    doc.write_text(pattern.sub(lambda _: "\n".join(lines), text), encoding="utf-8")


def measure(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    results: dict[str, Any] = {
        "gpu": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "frames": args.frames,
        "models": {},
    }
    results["encoder"], results["encoder_fps"] = encoder_ceiling()
    print(f"encoder ceiling: {results['encoder']} {results['encoder_fps']:.1f} fps", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        clip = make_bench_clip(Path(tmp), 1920, 1080, args.frames)
        frames = decode_all(clip)
        planes = decoded_planes(clip)
        for name in MODELS:
            loaded, weights = load(name)
            row: dict[str, Any] = {"weights": weights}
            row["engine_1"], row["describe"] = engine_fps(loaded, frames, 1)
            row["engine_4"], _ = engine_fps(loaded, frames, 4)
            row["stream_on"], row["stream_batch"] = stream_fps(loaded, planes, streams=True)
            row["stream_off"], _ = stream_fps(loaded, planes, streams=False)
            row["reference"] = reference_fps(loaded, frames)
            work = Path(tmp) / name
            work.mkdir()
            row["pipeline"] = pipeline_fps(clip, loaded, work, stream=True)
            row["pipeline_plain"] = pipeline_fps(clip, loaded, work, stream=False)
            results["models"][name] = row
            print(name, json.dumps(row), flush=True)
            torch.cuda.empty_cache()
    return results


def measure_compiled(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """Add the streaming pipeline's figure with ``torch.compile`` to an earlier run's."""
    with tempfile.TemporaryDirectory() as tmp:
        clip = make_bench_clip(Path(tmp), 1920, 1080, args.frames)
        planes = decoded_planes(clip)
        for name in args.models:
            loaded, _ = load(name)
            start = time.perf_counter()
            fps, _ = stream_fps(loaded, planes, streams=True, compile_mode=args.compile)
            row = {"mode": args.compile, "fps": fps, "seconds": time.perf_counter() - start}
            results["models"].setdefault(name, {})["compiled"] = row
            print(name, "compiled", json.dumps(row), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--json", type=Path, default=Path("gpu_bench.json"))
    parser.add_argument("--doc", type=Path, default=Path("docs/benchmarks.md"))
    parser.add_argument(
        "--compile",
        default=None,
        help="add the figures with torch.compile in this mode to --json's (run after it)",
    )
    parser.add_argument("--models", nargs="+", default=[MODELS[0]])
    args = parser.parse_args(argv)
    if args.compile is None:
        results = measure(args)
    else:
        results = json.loads(args.json.read_text())
        args.json.write_text(json.dumps(results, indent=1))  # the first run's, if this dies
        measure_compiled(args, results)
    args.json.write_text(json.dumps(results, indent=1))
    write_section(args.doc, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
