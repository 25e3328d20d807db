"""Faster fp32 convolutions on CPUs without bf16 hardware: Winograd, one frame per core.

Why: on an AVX2 CPU the compact Real-ESRGAN network spends 93 % of a frame in oneDNN's direct
3×3 convolutions, already close to the CPU's FMA limit, so the only way to go faster in fp32 is
to do fewer multiplications. NNPACK (built into PyTorch's x86 and ARM wheels) computes 3×3
convolutions with Winograd F(6×6, 3×3), about a fifth of the multiplications, with errors
around 1e-5 (far below one 8-bit level). Its batch-1 path does not scale across threads, so
instead of splitting one frame over the cores we run one frame per core, each single-threaded:
measured 1.5-1.7× the throughput of oneDNN using both cores on the same frames.

NNPACK's thread pool is created once, on its first call, with the intra-op thread count of that
moment. :func:`nnpack_ready` makes that first call with one thread, so every later call runs
inline in the calling thread and several threads can run frames at once; the process's thread
count is restored right after. Whether the whole scheme pays on this CPU is decided by
:class:`WinogradTrial`: timed on the first frames of each size, remembered on disk.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from vsr_desktop.core.device import (
    default_cache_path,
    read_probe_cache,
    write_probe_cache_entry,
)
from vsr_desktop.core.openmp_threads import run_torch_inline_in_this_thread

#: Frame-parallel Winograd is chosen when it is faster; both are within 1/255 of the reference.
WINOGRAD_MIN_SPEEDUP = 1.0
#: Timed groups per method in a trial (they alternate: oneDNN, Winograd, oneDNN, ...).
TRIAL_ROUNDS = 2
#: Frames per core in one call: a call waits for its slowest frame, so more per call means
#: less idle time at that barrier (at the cost of a little memory).
FRAMES_PER_CORE = 2
#: Measured peak of one Winograd frame in flight over :func:`winograd_frame_bytes_per_pixel`'s
#: estimate (allocator slack, the network's other tensors): compact model 3.8–4.5 KB measured
#: vs 2.0 KB estimated per input pixel; for RRDB x4plus the same factor over-estimates
#: (53 KB vs 33 KB measured). oneDNN, one frame at a time, needs 1.2–1.7 KB and 12–13 KB.
WINOGRAD_ESTIMATE_FACTOR = 2.25
#: Used when a network cannot be traced on a small input (the compact model's figure).
WINOGRAD_BYTES_PER_PIXEL = 4608
#: Frames run in parallel only while their estimate stays within this share of the memory
#: available: the rest is for the decoder, the encoder, the app and everything else.
WINOGRAD_MEMORY_SHARE = 0.5

_ready_lock = threading.Lock()
_ready: bool | None = None


def nnpack_ready() -> bool:
    """True when NNPACK runs here, with its pool set up to run inline in each calling thread.

    Safe to call from any thread, any number of times; only the first call does the work.
    """
    global _ready
    with _ready_lock:
        if _ready is None:
            _ready = _initialise_inline_pool()
        return _ready


def _initialise_inline_pool() -> bool:
    try:
        if not torch.backends.nnpack.is_available():
            return False
    except (AttributeError, RuntimeError):
        return False
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        with torch.inference_mode():
            x = torch.ones(1, 1, 8, 8)
            w = torch.ones(1, 1, 3, 3)
            y = torch._nnpack_spatial_convolution(x, w, torch.zeros(1), [1, 1], [1, 1])
        # A wrong answer would mean a broken NNPACK build: never use it then.
        return bool(torch.allclose(y[0, 0, 1:-1, 1:-1], torch.full((6, 6), 9.0), atol=1e-3))
    except RuntimeError:
        return False
    finally:
        torch.set_num_threads(threads)


class WinogradConv2d(nn.Module):
    """A 3×3, stride-1 fp32 convolution computed by NNPACK's Winograd kernels (NCHW)."""

    weight: torch.Tensor
    bias: torch.Tensor

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        if not is_winograd_eligible(conv):
            raise ValueError(f"not a plain 3×3 stride-1 convolution: {conv}")
        weight = conv.weight.detach().float().contiguous()
        bias = conv.bias.detach().float() if conv.bias is not None else None
        self.register_buffer("weight", weight)
        self.register_buffer("bias", bias if bias is not None else torch.zeros(weight.shape[0]))
        padding = conv.padding
        assert isinstance(padding, tuple)  # is_winograd_eligible rejected "same"/"valid"
        self.padding = [int(padding[0]), int(padding[1])]
        self.padding_mode = conv.padding_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padding = self.padding
        if self.padding_mode != "zeros":
            # reflect/replicate/circular: pad explicitly, then convolve without padding.
            py, px = padding
            x = F.pad(x, (px, px, py, py), mode=self.padding_mode)
            padding = [0, 0]
        return torch._nnpack_spatial_convolution(
            x.contiguous(), self.weight, self.bias, padding, [1, 1]
        )


def is_winograd_eligible(conv: nn.Module) -> bool:
    """Winograd F(6×6, 3×3) covers 3×3 kernels, stride 1, no dilation, no groups."""
    return (
        isinstance(conv, nn.Conv2d)
        and not isinstance(conv, nn.LazyConv2d)
        and conv.kernel_size == (3, 3)
        and conv.stride == (1, 1)
        and conv.dilation == (1, 1)
        and conv.groups == 1
        and isinstance(conv.padding, tuple)
    )


def winograd_copy(module: nn.Module) -> tuple[nn.Module, int]:
    """A deep copy of ``module`` (fp32, NCHW) with every eligible Conv2d made Winograd.

    Returns the copy and how many convolutions were replaced; the original is untouched.
    """
    clone = copy.deepcopy(module).float().eval().to(memory_format=torch.contiguous_format)
    replaced = 0

    def swap(parent: nn.Module) -> None:
        nonlocal replaced
        for name, child in parent.named_children():
            if is_winograd_eligible(child):
                assert isinstance(child, nn.Conv2d)
                setattr(parent, name, WinogradConv2d(child))
                replaced += 1
            else:
                swap(child)

    swap(clone)
    return clone, replaced


def winograd_frame_bytes_per_pixel(module: nn.Module, scale: int, probe: int = 32) -> float:
    """Peak memory of one frame through ``module`` (a :func:`winograd_copy`), per input pixel.

    Traced on a ``probe``×``probe`` input: the convolution whose transform workspace (input
    and output tiles, 64 values per 6×6 tile and channel) plus input and output activations
    is largest sets the peak, plus the float and integer output; scaled by the measured
    :data:`WINOGRAD_ESTIMATE_FACTOR`. A deep ×4 network that convolves at the output
    resolution (RRDB) needs about seven times what the compact one does.
    """
    shapes: list[tuple[torch.Size, torch.Size]] = []

    def record(_module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        shapes.append((inputs[0].shape, output.shape))

    hooks = [
        m.register_forward_hook(record) for m in module.modules() if isinstance(m, WinogradConv2d)
    ]
    try:
        with torch.inference_mode():
            module(torch.zeros(1, 3, probe, probe))
    except RuntimeError:
        return float(WINOGRAD_BYTES_PER_PIXEL)
    finally:
        for hook in hooks:
            hook.remove()
    if not shapes:
        return float(WINOGRAD_BYTES_PER_PIXEL)
    worst = max(_convolution_bytes(inp, out) for inp, out in shapes)
    output = scale * scale * 3 * (4 + 4 + 2)  # float result, its clamped copy, the frame
    return WINOGRAD_ESTIMATE_FACTOR * (worst / (probe * probe) + output)


def _convolution_bytes(input_shape: torch.Size, output_shape: torch.Size) -> float:
    _, c_in, height, width = input_shape
    c_out, out_h, out_w = output_shape[1], output_shape[2], output_shape[3]
    tiles = out_h * out_w / 36  # F(6×6, 3×3): one 8×8 tile per 6×6 outputs
    workspace = tiles * 64 * (c_in + c_out) * 4
    activations = (c_in * height * width + c_out * out_h * out_w) * 4
    return workspace + activations


def frame_worker_pool(workers: int) -> ThreadPoolExecutor:
    """Threads that each run whole frames, with torch's parallel loops inline in each."""
    return ThreadPoolExecutor(
        max_workers=workers,
        thread_name_prefix="vsr-frame",
        initializer=run_torch_inline_in_this_thread,
    )


def run_frames_in_parallel(count: int, workers: int, run_one: Callable[[int], None]) -> None:
    """Call ``run_one(i)`` for i in range(count), ``workers`` at a time, in inference mode.

    The first error is raised once every started frame has finished, so no worker is still
    writing into the caller's arrays when the caller sees it.
    """

    def task(index: int) -> None:
        with torch.inference_mode():  # thread-local: each worker needs its own
            run_one(index)

    if count == 1 or workers == 1:
        for index in range(count):
            task(index)
        return
    pool_size = min(workers, count)
    with frame_worker_pool(pool_size) as pool:
        futures = [pool.submit(task, index) for index in range(count)]
        errors = [f.exception() for f in futures]
    for error in errors:
        if error is not None:
            raise error


class WinogradTrial:
    """Decides, per frame size, whether frames run as Winograd one per core, from real work.

    A synthetic probe on a small sample misjudged this (its per-call overheads are not those
    of a video frame). Instead the first group of frames of a new size (one frame per core)
    runs alternately with oneDNN and with Winograd, ``TRIAL_ROUNDS`` times each, timed; the
    engine keeps only the winner's output, so pixels never depend on where a trial fell.
    Alternating spreads a shared machine's slow moments over both. The answer is kept in
    this process and in the probe cache on disk (per CPU, thread count, torch, architecture
    and frame size), so a machine pays the trial (three extra runs of one group) once per
    frame size.
    """

    def __init__(self, requested: str, cache_key: str, cache_path: Path | None) -> None:
        self.forced: bool | None = {"winograd": True, "onednn": False}.get(requested)
        self._cache_key = cache_key
        self._cache_path = cache_path if cache_path is not None else default_cache_path()
        self._times: dict[tuple[int, int], dict[str, list[float]]] = {}
        #: Keys already looked up on disk and not found: the file is read once per size.
        self._not_on_disk: set[str] = set()

    def _key(self, size: tuple[int, int]) -> str:
        return f"{self._cache_key}|winograd-frames|{size[1]}x{size[0]}"

    def decision(self, size: tuple[int, int]) -> bool | None:
        """True/False once known for (height, width); None while the trial is still running."""
        if self.forced is not None:
            return self.forced
        key = self._key(size)
        if key not in _decisions:
            if key in self._not_on_disk:
                return None
            cached = read_probe_cache(self._cache_path).get(key)
            if not (isinstance(cached, dict) and isinstance(cached.get("winograd"), bool)):
                self._not_on_disk.add(key)
                return None
            _decisions[key] = cached["winograd"]
        return _decisions[key]

    def next_method(self, size: tuple[int, int]) -> str:
        """``onednn`` or ``winograd``: which one the next trial group runs."""
        times = self._times.setdefault(size, {"onednn": [], "winograd": []})
        return "onednn" if len(times["onednn"]) <= len(times["winograd"]) else "winograd"

    def record(self, size: tuple[int, int], method: str, seconds_per_frame: float) -> bool | None:
        """Add one timed group; returns the decision once both have run ``TRIAL_ROUNDS`` times."""
        times = self._times.setdefault(size, {"onednn": [], "winograd": []})
        times[method].append(seconds_per_frame)
        if min(len(times["onednn"]), len(times["winograd"])) < TRIAL_ROUNDS:
            return None
        onednn, winograd = sum(times["onednn"]), sum(times["winograd"])
        speedup = onednn / winograd if winograd > 0 else 0.0
        chosen = speedup >= WINOGRAD_MIN_SPEEDUP
        key = self._key(size)
        _decisions[key] = chosen
        write_probe_cache_entry(
            self._cache_path,
            key,
            {
                "winograd": chosen,
                "speedup": round(speedup, 3),
                "why": f"trial on real frames: Winograd one per core {speedup:.2f}x oneDNN",
            },
        )
        return chosen


#: Decisions already made in this process, by cache key (the disk cache may be read-only).
_decisions: dict[str, bool] = {}
