"""Run a super-resolution network over video frames, fast and without running out of memory.

The engine takes a plain ``torch.nn.Module`` and its scale, so it works with whatever the model
loader produced. It follows Real-ESRGAN's ``RealESRGANer`` in what it computes (same pre-pad,
mod-pad, tile grid and rounding, so fp32 output matches it within 1/255) but not in how:

* The whole batch stays on the device: uint8/uint16 → float, NHWC → NCHW, padding, clamping,
  rounding and any resize happen in torch; only the final integer frame comes back to NumPy,
  written straight into the result array.
* channels_last end to end. A NumPy (N, H, W, 3) frame *is* a channels_last NCHW tensor, so no
  layout copy is needed, and oneDNN/cuDNN convolutions run ~1.8× faster in it on CPU.
* fp16 on GPUs, and bf16 autocast on CPUs where a probe shows it pays (see ``device.py``).
* fp32 on CPUs: several frames at once, one per core, through NNPACK's Winograd
  convolutions, where timing the first frames of a size shows it beats oneDNN on all cores
  (``cpu_strategy.py`` chooses and schedules, ``cpu_convolution.py`` computes). Single
  frames (previews) keep oneDNN's multi-threaded path, which has the lower latency.
* Tiles only when asked, or after an out-of-memory error: then the batch is halved, then the
  frame is split in tiles whose size halves on each further OOM. Tiles carry ``tile_pad`` pixels
  of context, so seams vanish once that covers the network's receptive field.
* ``outscale`` different from the model scale resizes the network output on the device with
  antialiased bicubic (``torch.nn.functional.interpolate``). RealESRGANer resizes the 8-bit
  result with OpenCV's Lanczos-4 instead, so those outputs differ slightly (not a bug).

An Engine is not thread-safe: use one per worker thread.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from vsr_desktop.core import colour_convert, gpu_checks, gpu_compile, memory_guard
from vsr_desktop.core.cancel import check_cancel
from vsr_desktop.core.cpu_strategy import (
    CpuConvolutionStrategy,
    parse_cpu_convolution,
    precision_for,
)
from vsr_desktop.core.device import choose_dtype, describe_device, select_device
from vsr_desktop.core.errors import EngineError
from vsr_desktop.core.gpu_pipeline import StreamPipeline, pipeline_enabled
from vsr_desktop.core.malloc_tuning import tune_malloc
from vsr_desktop.core.tiling import (
    MIN_TILE,
    mod_scale_for,
    pad_bottom_right,
    round_up,
    tiled_forward,
)
from vsr_desktop.core.upscaler import upscale_in_groups

log = logging.getLogger(__name__)

_MAX_VALUE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}
_TORCH_INT = {np.dtype(np.uint8): torch.uint8, np.dtype(np.uint16): torch.uint16}
T = TypeVar("T")


def is_out_of_memory(exc: BaseException) -> bool:
    """True for CUDA/cuDNN/cuBLAS/MPS/CPU allocation failures (each says it its own way)."""
    return gpu_checks.is_allocation_failure(exc)


class _BatchTooLarge(Exception):
    """Internal: the batch did not fit, retry with fewer frames before tiling."""


class Engine:
    """Upscale batches of RGB frames with one network on one device.

    Args:
        module: the network, NCHW float in [0, 1] → NCHW ×``scale``. The engine takes it over:
            it is moved to the device, switched to eval, channels_last and maybe fp16.
        scale: the network's upscaling factor.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps`` or a ``torch.device``.
        precision: ``auto``, ``fp32``, ``fp16`` or ``bf16``.
        tile: tile size in input pixels; 0 runs whole frames and tiles only after an OOM.
        tile_pad: context pixels around each tile (Real-ESRGAN's default 10).
        pre_pad: reflect-pad the right/bottom edges by this much before inference and crop
            afterwards, like RealESRGANer's ``pre_pad`` (reduces edge artefacts).
        outscale: final scale; None = the model's. Other values resize on the device.
        batch_size: frames per forward pass. 1 is best on CPU (batch 4 measured no faster);
            a GPU may gain from more on small frames.
        cache_dir: where the CPU probes cache their decisions (default: user cache).
        cpu_convolution: ``auto``, ``onednn`` or ``winograd`` (fp32 on CPU only): how CPU
            convolutions run; ``auto`` times both on the first frames of each size (cached).
            ``winograd`` settles an ``auto`` precision as fp32 (bf16 with it is an error).
        compile: ``torch.compile`` mode for the network (core.gpu_compile); None: the
            VSR_COMPILE environment variable, ``off`` when unset (never measured faster).
    """

    #: Raised inside the engine when a batch does not fit (StreamPipeline halves it).
    BatchTooLarge = _BatchTooLarge

    def __init__(
        self,
        module: torch.nn.Module,
        scale: int,
        *,
        device: str | torch.device = "auto",
        precision: str = "auto",
        tile: int = 0,
        tile_pad: int = 10,
        pre_pad: int = 0,
        outscale: float | None = None,
        batch_size: int = 1,
        cache_dir: str | Path | None = None,
        cpu_convolution: str = "auto",
        supports_half: bool = True,
        supports_bfloat16: bool = True,
        compile: str | None = None,
    ) -> None:
        if int(scale) != scale or scale < 1:
            raise EngineError(f"Invalid model scale {scale!r}", "The scale must be 1, 2, 3 or 4.")
        if tile < 0 or tile_pad < 0 or pre_pad < 0:
            raise EngineError("tile, tile_pad and pre_pad must not be negative")
        if batch_size < 1:
            raise EngineError(f"Invalid batch size {batch_size}", "Use a batch size of 1 or more.")
        if outscale is not None and not outscale > 0:
            raise EngineError(f"Invalid output scale {outscale!r}", "Use a positive number.")
        convolution = parse_cpu_convolution(cpu_convolution)
        self.compile_mode = gpu_compile.compile_mode(compile)
        self.device = select_device(device)
        self.model_scale = int(scale)
        self.outscale = float(outscale) if outscale is not None else float(scale)
        self.mod_scale = mod_scale_for(self.model_scale)
        # Tile edges must fall on multiples of mod_scale or the pixel-unshuffle breaks.
        self.tile = round_up(tile, self.mod_scale) if tile else 0
        self.tile_pad = round_up(tile_pad, self.mod_scale)
        self.pre_pad = pre_pad
        self.batch_size = batch_size
        tune_malloc()
        cache_path = Path(cache_dir) / "precision.json" if cache_dir is not None else None
        precision = precision_for(precision, convolution, self.device)
        self.dtype = choose_dtype(
            self.device,
            precision,
            module,
            cache_path=cache_path,
            supports_half=supports_half,
            supports_bfloat16=supports_bfloat16,
        )
        # bf16 on CPU runs as autocast over fp32 weights: as fast as a bf16 model there, and
        # the network's residual additions stay in fp32.
        self._autocast = self.device.type == "cpu" and self.dtype == torch.bfloat16
        self._weights_dtype = torch.float32 if self._autocast else self.dtype
        module = module.eval().to(device=self.device, dtype=self._weights_dtype)
        self.module = module.to(memory_format=torch.channels_last)
        #: What runs the network: the module, or its compiled form (--compile).
        self._network = gpu_compile.compile_network(self.module, self.device, self.compile_mode)
        # cuDNN autotunes only once a frame size repeats (video), not per preview region.
        self._tuning = gpu_checks.ShapeTuning()
        # fp16/bf16 on a GPU may overflow: each batch is checked and rerun in fp32 if so.
        self._check_finite = self.device.type != "cpu" and self.dtype != torch.float32
        self._fp32_module: torch.nn.Module | None = None
        self._nonfinite_batches = 0
        #: How CPU frames run where Winograd may pay (fp32, NNPACK); None: the general path only.
        self.cpu_strategy = CpuConvolutionStrategy.create(
            convolution, self.module, self.dtype, self.device, self.model_scale, cache_path
        )
        self.use_stream_pipeline = pipeline_enabled(self.device)

    @property
    def use_stream_pipeline(self) -> bool:
        """Whether :meth:`upscale_stream` runs the overlapped StreamPipeline (CUDA unless
        VSR_GPU_PIPELINE=0; tests switch it on for the CPU). While on, decoders in this
        process hand over YUV planes, converted on the device (core.colour_convert)."""
        return self._stream_pipeline

    @use_stream_pipeline.setter
    def use_stream_pipeline(self, value: bool) -> None:
        self._stream_pipeline = bool(value)
        colour_convert.want_planes(self, self._stream_pipeline)

    @property
    def frame_workers(self) -> int:
        """Frames upscaled at once on the CPU (one per core) when Winograd is on, else 1."""
        return self.cpu_strategy.frame_workers if self.cpu_strategy is not None else 1

    @property
    def frames_per_call(self) -> int:
        """How many frames a caller should pass to :meth:`upscale` at once for full speed."""
        if self.cpu_strategy is None:
            return self.batch_size
        return self.cpu_strategy.frames_per_call

    def describe(self) -> str:
        """One line for logs and the UI, e.g. ``CPU: AMD EPYC (2 threads, AVX2), fp32``."""
        name = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}
        text = f"{describe_device(self.device)}, {name.get(self.dtype, str(self.dtype))}"
        if self.cpu_strategy is not None:
            text += self.cpu_strategy.describe()
        return text

    def uses_winograd(self, width: int, height: int) -> bool | None:
        """Whether full groups of frames of this size run as Winograd (None: not timed yet)."""
        if self.cpu_strategy is None:
            return False
        return self.cpu_strategy.decision((height, width))

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) of the output for an input frame, truncated like RealESRGANer."""
        return max(1, int(width * self.outscale)), max(1, int(height * self.outscale))

    def upscale_image(self, image: np.ndarray, cancel: threading.Event | None = None) -> np.ndarray:
        """Upscale one (H, W, 3) RGB uint8/uint16 image."""
        if not isinstance(image, np.ndarray) or image.ndim != 3:
            raise EngineError(
                "upscale_image expects one (height, width, 3) RGB array",
                "Use upscale() for a batch of frames.",
            )
        return self.upscale(image[None], cancel)[0]

    @torch.inference_mode()
    def upscale(self, frames: np.ndarray, cancel: threading.Event | None = None) -> np.ndarray:
        """Upscale (N, H, W, 3) RGB frames, uint8 or uint16 (full 0..65535 range).

        Returns (N, H', W', 3) of the input dtype. ``cancel`` is checked between batches and
        tiles; when set, :class:`CancelledError` is raised.
        """
        frames = self._check_frames(frames)
        n, height, width, _ = frames.shape
        out_w, out_h = self.output_size(width, height)
        result = np.empty((n, out_h, out_w, 3), dtype=frames.dtype)
        if self.cpu_strategy is not None:
            self.cpu_strategy.upscale(self, frames, result, cancel)
        else:
            self._upscale_batches(frames, result, cancel)
        return result

    def _upscale_batches(
        self, frames: np.ndarray, result: np.ndarray, cancel: threading.Event | None
    ) -> None:
        """The general path: ``batch_size`` frames per forward pass, fewer after an OOM."""
        n = len(frames)
        start = 0
        while start < n:
            check_cancel(cancel)
            count = min(self.batch_size, n - start)
            try:
                self._upscale_batch(
                    frames[start : start + count], result[start : start + count], cancel
                )
            except _BatchTooLarge:
                self.batch_size = max(1, count // 2)
                log.warning("Out of memory: batch size lowered to %d", self.batch_size)
                continue
            start += count

    def upscale_stream(
        self,
        items: Iterable[T],
        rgb: Callable[[T], np.ndarray],
        cancel: threading.Event | None = None,
    ) -> Iterator[tuple[T, np.ndarray]]:
        """Upscale a stream of frames as they come; yields ``(item, upscaled)`` in order.

        ``rgb(item)`` gives the (H, W, 3) frame of an item. Where frames run as Winograd, one
        per core, each core takes the next frame as soon as it is free (at most two frames
        per core in flight): no core waits for another's frame, as it would in groups. Until
        a frame size is decided (see :class:`~vsr_desktop.core.cpu_strategy.CpuConvolutionStrategy`)
        and elsewhere, it goes in groups
        of :attr:`frames_per_call` through :meth:`upscale`.
        """
        if self.use_stream_pipeline:
            pipeline = StreamPipeline(
                self, batch_size=self.batch_size if self.batch_size > 1 else 0
            )

            def source(item: T) -> np.ndarray | colour_convert.YuvPlanes:
                planes = getattr(item, "yuv", None)  # a decoder's planes, before any RGB
                return planes if planes is not None else rgb(item)

            yield from pipeline.run(items, source, cancel)
        elif self.cpu_strategy is None:
            yield from upscale_in_groups(self, items, rgb, self.frames_per_call, cancel)
        else:
            yield from self.cpu_strategy.stream(self, items, rgb, cancel)

    @torch.inference_mode()
    def upscale_tensor(
        self, images: torch.Tensor, cancel: threading.Event | None = None
    ) -> torch.Tensor:
        """Upscale a float (N, 3, H, W) tensor in [0, 1]; returns float32 in [0, 1] on the device.

        For callers that keep frames on the GPU: no quantisation, no host copy. The whole
        tensor is one batch; after an out-of-memory error its frames run one at a time.
        """
        if images.ndim != 4 or images.shape[1] != 3:
            raise EngineError("upscale_tensor expects an (N, 3, H, W) tensor")
        x = images.to(self.device, dtype=self._input_dtype(), memory_format=torch.channels_last)
        out_w, out_h = self.output_size(images.shape[3], images.shape[2])
        try:
            y = self._infer_finite(x, cancel)
        except _BatchTooLarge:
            y = torch.cat([self._infer_finite(frame[None], cancel) for frame in x])
        return self._resize(y, out_h, out_w).clamp_(0.0, 1.0)

    # ----------------------------------------------------------------- internals

    def _check_frames(self, frames: np.ndarray) -> np.ndarray:
        if not isinstance(frames, np.ndarray):
            raise EngineError(f"Expected a NumPy array of frames, got {type(frames).__name__}")
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise EngineError(
                f"Expected frames shaped (N, H, W, 3), got {frames.shape}",
                "Convert the frames to packed RGB (rgb24 or rgb48) first.",
            )
        if frames.dtype not in _MAX_VALUE:
            raise EngineError(
                f"Unsupported frame dtype {frames.dtype}", "Frames must be uint8 or uint16 RGB."
            )
        if frames.shape[1] == 0 or frames.shape[2] == 0:
            raise EngineError(f"Empty frames {frames.shape}")
        self._fit_memory(frames)
        # torch.from_numpy rejects negative strides (e.g. a [..., ::-1] BGR→RGB view).
        return frames if frames.flags.c_contiguous else np.ascontiguousarray(frames)

    def frame_work(self, width: int, height: int, bit_depth: int) -> memory_guard.FrameWork:
        """What this engine does to frames of a size, for the memory guard's estimates."""
        precision = "bf16" if self.dtype == torch.bfloat16 else "fp32"
        return memory_guard.FrameWork(
            width=width,
            height=height,
            bit_depth=bit_depth,
            model_scale=self.model_scale,
            outscale=self.outscale,
            tile=self.tile,
            batch=self.batch_size,
            network_bytes_per_pixel=memory_guard.network_bytes_per_pixel(
                type(self.module).__name__, precision
            ),
            network_on_host=self.device.type == "cpu",
        )

    def _fit_memory(self, frames: np.ndarray) -> None:
        """Before each call: refuse frames that cannot fit in memory (EngineError naming the
        numbers), and with an automatic tile pick the largest that fits (core.memory_guard)
        rather than meet the OOM killer, which on a CPU comes before any out-of-memory error."""
        n, height, width, _ = frames.shape
        work = self.frame_work(width, height, 16 if frames.dtype == np.uint16 else 8)
        tile = memory_guard.choose_engine_tile(work, n)
        if tile != self.tile:
            self.tile = round_up(tile, self.mod_scale)
            log.warning("%dx%d frames: %d-pixel tiles, to fit in memory", width, height, tile)
        if self.device.type == "cuda" and self.tile == 0:  # GPU memory: from what is free now
            free = gpu_checks.free_device_bytes(self.device)
            fitted = gpu_checks.tile_from_free_memory(work, min(n, self.batch_size), free)
            if fitted:
                self.tile = round_up(fitted, self.mod_scale)
                log.warning("%dx%d frames: %d-pixel tiles (GPU memory)", width, height, fitted)

    def _input_dtype(self) -> torch.dtype:
        return torch.float32 if self._autocast else self._weights_dtype

    def _upscale_batch(
        self,
        src: np.ndarray,
        dst: np.ndarray,
        cancel: threading.Event | None,
        module: torch.nn.Module | None = None,
    ) -> None:
        """One batch: host → device, network, post-processing, device → ``dst``."""
        max_value = _MAX_VALUE[src.dtype]
        try:
            host = torch.from_numpy(src)
            if self.device.type == "cuda":
                host = host.pin_memory()  # lets the copy overlap; the pinned pool is reused
            raw = host.to(self.device, non_blocking=True).permute(0, 3, 1, 2)
            # (N, H, W, 3) memory viewed as NCHW already has channels_last strides: no copy.
            if raw.dtype == torch.uint8 and self._input_dtype() != torch.bfloat16:
                x = raw.to(self._input_dtype(), memory_format=torch.channels_last)
                x.div_(max_value)
            else:  # 65535 overflows fp16; bf16 would round before dividing
                x = raw.to(torch.float32, memory_format=torch.channels_last).div_(max_value)
                x = x.to(self._input_dtype())
            del raw
            y = self._resize(self._infer_finite(x, cancel, module), dst.shape[1], dst.shape[2])
            del x
            y.clamp_(0.0, 1.0).mul_(max_value).round_()
            target = torch.from_numpy(dst)
            if self.device.type == "cpu":
                # float → int conversion straight into the result array (values are integral).
                target.copy_(y.permute(0, 2, 3, 1))
            else:
                target.copy_(y.to(_TORCH_INT[src.dtype]).permute(0, 2, 3, 1))
        except RuntimeError as exc:
            if not is_out_of_memory(exc):
                raise
            raise EngineError(
                f"Out of memory on {describe_device(self.device)} outside the network",
                "The frames are too large for this device; lower the output scale or use the CPU.",
            ) from exc

    def _resize(self, y: torch.Tensor, out_h: int, out_w: int) -> torch.Tensor:
        """float32 output at the requested size (antialiased bicubic when shrinking)."""
        y = y.float()
        if tuple(y.shape[-2:]) != (out_h, out_w):
            shrink = out_h < y.shape[-2] or out_w < y.shape[-1]
            y = F.interpolate(
                y, size=(out_h, out_w), mode="bicubic", align_corners=False, antialias=shrink
            )
        return y

    def _infer(
        self,
        x: torch.Tensor,
        cancel: threading.Event | None,
        module: torch.nn.Module | None = None,
    ) -> torch.Tensor:
        """Pad, run the network (tiling after OOM), crop: (B,3,H,W) → (B,3,H·s,W·s)."""
        height, width = x.shape[-2:]
        if self.pre_pad:
            x = pad_bottom_right(x, self.pre_pad, self.pre_pad)
        if self.mod_scale > 1:
            mod = self.mod_scale
            x = pad_bottom_right(x, (-x.shape[-2]) % mod, (-x.shape[-1]) % mod)
        s = self.model_scale
        return self._run_network(x, cancel, module)[:, :, : height * s, : width * s]

    def _infer_finite(
        self,
        x: torch.Tensor,
        cancel: threading.Event | None,
        module: torch.nn.Module | None = None,
    ) -> torch.Tensor:
        """:meth:`_infer`, and in fp16/bf16 on a GPU a batch with NaN/inf in its output (an
        overflow: black pixels once clamped) run again in fp32, said once per engine."""
        y = self._infer(x, cancel, module)
        if not self._check_finite or gpu_checks.all_finite(y):
            return y
        del y
        return self._infer_fp32(x, cancel)

    def _infer_fp32(self, x: torch.Tensor, cancel: threading.Event | None) -> torch.Tensor:
        """:meth:`_infer` with an fp32 copy of the network, for a batch whose fp16/bf16
        output held NaN/inf; said once per engine."""
        self._nonfinite_batches += 1
        if self._nonfinite_batches == 1:
            log.warning(
                "%s gave NaN/inf on %s: such batches are rerun in fp32 (slower); "
                "--precision fp32 avoids the double work",
                {torch.float16: "fp16", torch.bfloat16: "bf16"}.get(self.dtype, "the precision"),
                describe_device(self.device),
            )
        if self._fp32_module is None:
            self._fp32_module = copy.deepcopy(self.module).float()
        return self._infer(x.float(), cancel, self._fp32_module)

    def _run_network(
        self, x: torch.Tensor, cancel: threading.Event | None, module: torch.nn.Module | None
    ) -> torch.Tensor:
        while True:
            try:
                if self.tile and self.tile < max(x.shape[-2:]):
                    return tiled_forward(
                        lambda part: self._forward(part, module),
                        x,
                        self.tile,
                        self.tile_pad,
                        self.model_scale,
                        cancel,
                    )
                return self._forward(x, module)
            except RuntimeError as exc:
                if not is_out_of_memory(exc):
                    raise
            # Out of memory. Outside the except block, so the failed attempt's tensors (held
            # by the traceback) are already freed when the cache is released.
            self._release_cached_memory()
            if x.shape[0] > 1:
                raise _BatchTooLarge
            self.tile = self._smaller_tile(x)
            fitted = self._tile_for_free_memory(x)
            if fitted is not None and 0 < fitted < self.tile:
                self.tile = fitted
            log.warning("Out of memory: retrying with %d-pixel tiles", self.tile)

    def _smaller_tile(self, x: torch.Tensor) -> int:
        current = min(self.tile or max(x.shape[-2:]), max(x.shape[-2:]))
        tile = round_up(math.ceil(current / 2), self.mod_scale)
        if tile < MIN_TILE or tile >= current:
            raise EngineError(
                f"Out of memory on {describe_device(self.device)} even with {current}-pixel tiles",
                "Close other programs using the GPU, pick a lighter model, or use the CPU.",
            )
        return tile

    def _tile_for_free_memory(self, x: torch.Tensor) -> int | None:
        """After an OOM on a GPU: the largest tile that fits the memory free now."""
        free = gpu_checks.free_device_bytes(self.device)
        height, width = x.shape[-2:]
        work = self.frame_work(int(width), int(height), 8)
        fitted = gpu_checks.tile_from_free_memory(work, 1, free)
        return round_up(fitted, self.mod_scale) if fitted else None

    def _release_cached_memory(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        elif self.device.type == "mps":
            with contextlib.suppress(AttributeError, RuntimeError):
                torch.mps.empty_cache()

    def _forward(self, x: torch.Tensor, module: torch.nn.Module | None = None) -> torch.Tensor:
        ctx = (
            torch.autocast("cpu", dtype=torch.bfloat16)
            if self._autocast
            else contextlib.nullcontext()
        )
        gpu_checks.apply_cudnn_tuning(self.device, self._tuning, tuple(x.shape))
        if module is None:
            gpu_compile.mark_step(self.compile_mode)
        with ctx:
            y = (module if module is not None else self._network)(x)
        s = self.model_scale
        if tuple(y.shape[-2:]) != (x.shape[-2] * s, x.shape[-1] * s):
            raise EngineError(
                f"The network turned {tuple(x.shape[-2:])} into {tuple(y.shape[-2:])}, not ×{s}",
                "The model's scale does not match the scale it was registered with.",
            )
        return y
