"""Refuse a frame size the machine cannot hold before decoding it, and before each engine call.

Why: a 1.5 MB file can hold a 16000×16000 frame. Decoded it is 768 MB of RGB; upscaled ×4 it
is 12 GB of output and, on the CPU, tens of GB of network activations. Without a guard the
decoder fills the memory, then torch tries an allocation the size of the machine and the job
dies in the OOM killer or in a raw allocator error. Here the job is estimated from what is
known before any work (the frame size from the container header, the scale, the tile, the
batch, the network's measured working set) and compared with what the machine can give now
(``system_memory.available_memory_bytes``: MemAvailable, capped by a Slurm/container cgroup).

The network's working set is measured, not derived: peak RSS growth of one forward pass per
*output* pixel, with torch on a 2-core AMD EPYC (AVX2), the network in channels_last as the
engine runs it (``NETWORK_BYTES_PER_OUTPUT_PIXEL``; ``benchmarks/network_memory.py`` measures).

Everything else is counted from the pipeline's own buffers (worker/upscale_chunk.py and
core/engine.py): the decoder's YUV picture and the decoded-frame queue, the float input the
engine makes of a whole frame, the full-size float network output a tiled run assembles, the
resized float output, and the integer output frames of one engine call plus the encoder's.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from vsr_desktop.core.errors import EngineError, InputError, VsrError
from vsr_desktop.core.system_memory import available_memory_bytes

#: Peak RSS growth of one forward pass per output pixel, measured with torch 2.14 on CPU
#: (input 128² and 256², ×4, 2 threads; the larger input gave the lower figure, the smaller
#: one's fixed overhead is included by rounding up). bf16 is autocast over fp32 weights.
NETWORK_BYTES_PER_OUTPUT_PIXEL: dict[tuple[str, str], float] = {
    # realesr-animevideov3 (16 convs): fp32 70–88, bf16 96–227 (the 128² run includes fixed
    # cost). realesr-general-x4v3 (32 convs): fp32 70–84, bf16 96 — activations are freed as
    # the network goes, so depth hardly matters. cpu_convolution.py's oneDNN note: 75–106.
    ("SRVGGNetCompact", "fp32"): 110.0,
    ("SRVGGNetCompact", "bf16"): 128.0,
    # RealESRGAN_x4plus (23 RRDB blocks, random weights of the real shapes; input 48² and
    # 96²): fp32 578–600 (cpu_convolution.py's note: 750–810), bf16 autocast 1511–1568 (fp32
    # and bf16 copies of each block's dense concatenations).
    ("RRDBNet", "fp32"): 800.0,
    ("RRDBNet", "bf16"): 1600.0,
}
#: Networks not measured (other spandrel architectures): the heaviest figure we know.
UNKNOWN_NETWORK_BYTES_PER_OUTPUT_PIXEL = 1600.0
#: torch, the model and the app itself, when torch is not imported yet (measured ~720 MB RSS
#: after loading the bundled model).
RUNTIME_BYTES = 750_000_000
#: Decoded frames the pipeline holds besides its queue: the decoder's picture (counted as
#: 4:4:4, the worst case) and the RGB frame being converted from it.
DECODER_FRAMES = 2
#: worker/upscale_chunk.py: ``depth = max(QUEUE_DEPTH, 2 * batch_size)`` decoded frames.
QUEUE_DEPTH = 4
#: Output frames besides one engine call's result array: the encoder's frame and its YUV copy.
ENCODER_FRAMES = 2
#: The engine's context around a tile (Engine ``tile_pad``).
TILE_PAD = 10
#: Smallest tile worth suggesting (core/tiling.MIN_TILE).
MIN_TILE = 32
#: Share of the available memory a job may plan to use: the rest is for everything else.
MEMORY_SHARE = 0.9
#: Output scales tried, largest first, when the asked one cannot fit in any tile.
_SCALES = (8.0, 6.0, 4.0, 3.0, 2.0, 1.5, 1.0, 0.5, 0.25)


@dataclass(frozen=True)
class FrameWork:
    """What one job (or one engine call) does to frames of one size."""

    width: int
    height: int
    bit_depth: int
    model_scale: int
    outscale: float
    tile: int = 0
    batch: int = 1
    network_bytes_per_pixel: float = UNKNOWN_NETWORK_BYTES_PER_OUTPUT_PIXEL
    #: False on a GPU: the network's working set is then in device memory, where the engine
    #: tiles after an out-of-memory error; only the host's buffers are counted.
    network_on_host: bool = True

    @property
    def sample_bytes(self) -> int:
        return 2 if self.bit_depth > 8 else 1

    @property
    def output_size(self) -> tuple[int, int]:
        """As Engine.output_size: truncated, at least 1."""
        return max(1, int(self.width * self.outscale)), max(1, int(self.height * self.outscale))

    def tiled(self) -> bool:
        return 0 < self.tile < max(self.width, self.height)


def network_bytes_per_pixel(arch: str | None, precision: str) -> float:
    """The measured figure for an architecture (either precision when ``auto``)."""
    if arch is None:
        return UNKNOWN_NETWORK_BYTES_PER_OUTPUT_PIXEL
    kinds = ("fp32", "bf16") if precision not in ("fp32", "bf16") else (precision,)
    figures = [NETWORK_BYTES_PER_OUTPUT_PIXEL.get((arch, kind)) for kind in kinds]
    known = [f for f in figures if f is not None]
    return max(known) if known else UNKNOWN_NETWORK_BYTES_PER_OUTPUT_PIXEL


def decoded_frame_bytes(width: int, height: int, bit_depth: int) -> int:
    """One decoded frame: the decoder's YUV picture (4:4:4 at worst) and its RGB copy."""
    sample = 2 if bit_depth > 8 else 1
    return DECODER_FRAMES * width * height * 3 * sample


def engine_call_bytes(work: FrameWork, frames: int) -> int:
    """What one engine call on ``frames`` frames allocates: the result array, and for each
    frame of a forward batch the float input, the network's working set (whole frame, or one
    padded tile plus the full-size float output the tiles are assembled into) and the
    resized float output."""
    out_w, out_h = work.output_size
    s = work.model_scale
    result = frames * out_w * out_h * 3 * work.sample_bytes
    per_frame = work.width * work.height * 3 * 4  # float input of the whole frame
    if work.network_on_host:
        if work.tiled():
            side = work.tile + 2 * TILE_PAD
            pixels = min(side * side, work.width * work.height) * s * s
            per_frame += int(pixels * work.network_bytes_per_pixel)
            per_frame += work.width * work.height * s * s * 3 * 4  # assembled float output
        else:
            per_frame += int(work.width * work.height * s * s * work.network_bytes_per_pixel)
    if (out_w, out_h) != (work.width * s, work.height * s):
        per_frame += out_w * out_h * 3 * 4  # resized float output
    return result + min(frames, work.batch) * per_frame


def job_bytes(work: FrameWork) -> int:
    """The whole pipeline on frames of this size (worker/upscale_chunk.py): decoder, the
    decoded-frame queue, one engine call of ``batch`` frames, the encoder's frames."""
    in_frame = work.width * work.height * 3 * work.sample_bytes
    out_w, out_h = work.output_size
    queue = (max(QUEUE_DEPTH, 2 * work.batch) + 1) * in_frame
    encoder = ENCODER_FRAMES * out_w * out_h * 3 * work.sample_bytes
    decoder = decoded_frame_bytes(work.width, work.height, work.bit_depth)
    return decoder + queue + engine_call_bytes(work, work.batch) + encoder


def largest_tile(
    work: FrameWork, budget: float, estimate: Callable[[FrameWork], int] = job_bytes
) -> int | None:
    """The largest tile (a multiple of 16, at least MIN_TILE) whose ``estimate`` fits
    ``budget``; None when even the smallest does not."""
    if estimate(replace(work, tile=MIN_TILE)) > budget:
        return None
    low, high = MIN_TILE // 16, max(work.width, work.height) // 16 + 1
    while low < high:  # the largest multiple of 16 that fits
        middle = (low + high + 1) // 2
        if estimate(replace(work, tile=middle * 16)) <= budget:
            low = middle
        else:
            high = middle - 1
    return low * 16


def _gb(value: float) -> str:
    return f"{value / 1e9:.1f} GB"


def _budget(available: int | None) -> float | None:
    if available is None:
        return None
    runtime = 0 if "torch" in sys.modules else RUNTIME_BYTES
    return max(0.0, available * MEMORY_SHARE - runtime)


def check_job_memory(
    work: FrameWork, available: int | None = None, error: type[VsrError] = InputError
) -> None:
    """Refuse a job whose frames cannot fit here, naming the numbers and what would fit:
    a ``--tile`` (the largest that fits) or a smaller ``--scale``."""
    if available is None:
        available = available_memory_bytes()
    budget = _budget(available)
    if budget is None:
        return  # memory cannot be read here: nothing to compare against
    need = job_bytes(work)
    if need <= budget:
        return
    size = f"{work.width}x{work.height}"
    what = (
        f"upscaling {size} frames ×{work.outscale:g}"
        + (f" in {work.tile}-pixel tiles" if work.tiled() else "")
        + f" needs about {_gb(need)} of memory; {_gb(budget)} is free for it"
    )
    raise error(what, _suggestion(work, budget))


def _suggestion(work: FrameWork, budget: float) -> str:
    tile = largest_tile(work, budget) if work.network_on_host else None
    if tile is not None and (not work.tiled() or tile < work.tile):
        return f"use --tile {tile} (the largest tile that fits), or a smaller --scale"
    for scale in (s for s in _SCALES if s < work.outscale):
        smaller = replace(work, outscale=scale)
        if job_bytes(smaller) <= budget:
            return f"use --scale {scale:g}"
        tile = largest_tile(smaller, budget)
        if tile is not None:
            return f"use --scale {scale:g} --tile {tile}"
    floor = job_bytes(replace(work, outscale=0.25, tile=MIN_TILE, batch=1))
    return (
        f"even ×0.25 in {MIN_TILE}-pixel tiles needs {_gb(floor)}: shrink the video first "
        "or use a machine with more memory"
    )


def check_decode_memory(width: int, height: int, bit_depth: int, frames: int = 1) -> None:
    """Refuse to decode frames that alone cannot fit here (the preview decodes one)."""
    budget = _budget(available_memory_bytes())
    need = frames * decoded_frame_bytes(width, height, bit_depth)
    if budget is not None and need > budget:
        raise InputError(
            f"a {width}x{height} frame needs {_gb(need)} to decode; {_gb(budget)} is free",
            "shrink the video first or use a machine with more memory",
        )


def check_preview_memory(
    width: int, height: int, bit_depth: int, region: FrameWork | None, out_pixels: int
) -> None:
    """Refuse a preview that cannot fit here before its frame is decoded: the decoded frame,
    the engine's call on the region (``region``: None for a remote upscaler) and the three
    8-bit pictures (before, after, both) of ``out_pixels`` each."""
    budget = _budget(available_memory_bytes())
    if budget is None:
        return
    need = decoded_frame_bytes(width, height, bit_depth) + 3 * 3 * out_pixels
    if region is not None:
        whole = engine_call_bytes(region, 1)
        smallest = engine_call_bytes(replace(region, tile=region.tile or MIN_TILE), 1)
        need += min(whole, smallest) if region.tile == 0 else whole
    if need > budget:
        raise InputError(
            f"previewing this {width}x{height} frame needs about {_gb(need)}; "
            f"{_gb(budget)} is free",
            "preview a smaller region, or use a smaller scale",
        )


def choose_engine_tile(work: FrameWork, frames: int) -> int:
    """Before an engine call on ``frames`` frames: the tile to run with. The asked tile when
    the call fits; for an automatic tile (0) that does not fit whole, the largest tile that
    does (what the engine's out-of-memory fallback would reach, without meeting the OOM
    killer first). Raises EngineError, naming the numbers, when the call cannot fit."""
    budget = _budget(available_memory_bytes())
    need = engine_call_bytes(work, frames)
    if budget is None or need <= budget:
        return work.tile
    tile = None
    if work.network_on_host:
        tile = largest_tile(work, budget, lambda w: engine_call_bytes(w, frames))
    if tile is not None and work.tile == 0:
        return tile
    what = (
        f"upscaling {frames} {work.width}x{work.height} frame(s) ×{work.outscale:g}"
        + (f" in {work.tile}-pixel tiles" if work.tiled() else "")
        + f" needs about {_gb(need)}; {_gb(budget)} is free"
    )
    if tile is not None:
        raise EngineError(what, f"use --tile {tile} (the largest tile that fits)")
    raise EngineError(
        what, "use a smaller --scale, shrink the video first, or use a machine with more memory"
    )


# ---------------------------------------------------------------- what the job will run


def model_arch_hint(model: str) -> str | None:
    """The architecture of a model named or given as a file, read cheaply (no torch): the
    registry's entry, a safetensors header's key names, an ncnn graph's layer types."""
    from vsr_desktop.core.models.registry import MODEL_REGISTRY, get_spec

    path = Path(model).expanduser()
    if not path.is_file():
        if model in MODEL_REGISTRY:
            return MODEL_REGISTRY[model].arch
        try:
            return get_spec(model).arch
        except VsrError:
            return None
    try:
        keys = _model_file_keys(path)
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return _arch_from_keys(keys)


def _model_file_keys(path: Path) -> Iterable[str]:
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        import json

        with path.open("rb") as handle:
            length = int.from_bytes(handle.read(8), "little")
            if length > 100_000_000:
                raise ValueError("header too large")
            return list(json.loads(handle.read(length)))
    if suffix == ".param":
        with path.open("r", encoding="utf-8") as handle:
            text = handle.read(16_000_000)
        return ["body.0.weight"] if "PReLU" in text else ["conv_first.weight"]
    return []


def _arch_from_keys(keys: Iterable[str]) -> str | None:
    names = set(keys)
    if any(k.startswith(("conv_first.", "model.0.")) for k in names):
        return "RRDBNet"
    if "body.0.weight" in names and not any("attn" in k for k in names):
        return "SRVGGNetCompact"
    return None


def network_runs_on_host(device: str) -> bool:
    """Whether the network's working set lives in this machine's memory: on the CPU, or on
    ``auto`` without a GPU (looked for cheaply, without importing torch)."""
    key = device.strip().lower()
    if key == "cpu":
        return True
    if key.startswith(("cuda", "mps")):
        return False
    if "torch" in sys.modules:
        import torch

        return not (torch.cuda.is_available() or torch.backends.mps.is_available())
    if sys.platform == "darwin":
        return os.uname().machine != "arm64"  # Apple silicon: MPS
    return not (Path("/proc/driver/nvidia/gpus").is_dir() or Path("/dev/nvidia0").exists())


def frame_size_from_header(path: Path) -> tuple[int, int, int] | None:
    """(width, height, bit depth) of the first video stream, with no decoder allowed to open
    (``codec_whitelist`` empty), so nothing is decoded: the sizes come from the container or
    the codec's parser. The pixel format is known only sometimes; 8 bits is assumed when not
    (the lower bound: the check after the probe has the real depth). None when unknown."""
    import av

    from vsr_desktop.core.media.probe import bit_depth_of

    try:
        with av.open(str(path), container_options={"codec_whitelist": "none"}) as container:
            if not container.streams.video:
                return None
            ctx = container.streams.video[0].codec_context
            if not ctx.width or not ctx.height:
                return None
            depth = bit_depth_of(ctx.format.name) if ctx.format is not None else 8
            return int(ctx.width), int(ctx.height), depth
    except (av.FFmpegError, OSError, ValueError):
        return None  # probe says why, with its own error


def model_scale_hint(model: str) -> int:
    """The network's scale from the registry; 4 for a model file (the largest scale of the
    architectures we know; the engine-call check uses the loaded network's own)."""
    from vsr_desktop.core.models.registry import MODEL_REGISTRY

    spec = MODEL_REGISTRY.get(model)
    return spec.scale if spec is not None else 4


def job_work(
    width: int,
    height: int,
    bit_depth: int,
    *,
    model: str,
    outscale: float | None,
    tile: int,
    batch: int,
    precision: str,
    device: str,
) -> FrameWork:
    """The FrameWork of a job spec's engine settings on frames of this size."""
    scale = model_scale_hint(model)
    return FrameWork(
        width=width,
        height=height,
        bit_depth=bit_depth,
        model_scale=scale,
        outscale=float(outscale) if outscale is not None else float(scale),
        tile=max(0, tile),
        batch=max(1, batch),
        network_bytes_per_pixel=network_bytes_per_pixel(model_arch_hint(model), precision),
        network_on_host=network_runs_on_host(device),
    )
