"""Stream frames through an engine on a GPU with copies and compute overlapped.

Why (issue 20, item 3): one synchronous call per batch leaves the GPU idle while the host
converts, uploads, downloads and hands frames over. Here each batch goes:

    host: pack uint8 frames (RGB, or the decoder's YUV 4:2:0 planes: half the bytes) into a
          page-locked buffer
    copy-in stream:  host → device, non-blocking                     ─ event "uploaded"
    compute stream:  wait "uploaded"; YUV→RGB, network, resize, quantise to uint8 on the
                     device                                          ─ event "computed"
    copy-out stream: wait "computed"; device → page-locked host, non-blocking ─ "downloaded"

and the host submits batch n+1 before it waits for batch n's download, so batch n+1's upload
and batch n−1's download run while batch n computes (two batches in flight). Tensors used on
a stream other than the one that allocated them are marked with ``record_stream``, so the
caching allocators never reuse a buffer a copy still reads. The non-finite check of fp16
output stays on the device until the batch's download is waited for anyway: no extra sync.

On the CPU (and with ``VSR_GPU_STREAMS=0``) the same code runs with streams off: every stage
runs in order on the host, so the ordering, batching and cancel logic is tested without a
GPU. Frames come out in input order, each once.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import numpy as np
import torch

from vsr_desktop.core import gpu_batching, gpu_checks, memory_guard
from vsr_desktop.core.cancel import check_cancel
from vsr_desktop.core.colour_convert import YuvPlanes, packed_size, packed_to_rgb
from vsr_desktop.core.errors import EngineError

if TYPE_CHECKING:
    from vsr_desktop.core.engine import Engine

T = TypeVar("T")
#: Environment switch: ``0`` runs the pipeline on one stream (for measuring the overlap).
STREAMS_ENV = "VSR_GPU_STREAMS"
#: Environment switch: ``0`` keeps the plain batched path on a GPU too.
PIPELINE_ENV = "VSR_GPU_PIPELINE"
#: Batches in flight: one computing, the next uploading, the last downloading.
IN_FLIGHT = 2
_END = object()


def pipeline_enabled(device: torch.device) -> bool:
    """The streaming pipeline is for CUDA; elsewhere the engine's own paths are faster."""
    return device.type == "cuda" and os.environ.get(PIPELINE_ENV, "1") != "0"


def streams_enabled(device: torch.device) -> bool:
    return device.type == "cuda" and os.environ.get(STREAMS_ENV, "1") != "0"


@dataclass
class _Batch(Generic[T]):
    items: list[T]
    key: tuple[Any, ...]
    host: torch.Tensor  # packed uint8 frames, page-locked on CUDA
    x: torch.Tensor | None = None  # the device input, kept for an fp32 rerun
    out: torch.Tensor | None = None  # uint8 (N, H', W', 3) on the host
    finite: torch.Tensor | None = None  # device bool: the network's output had no NaN/inf
    downloaded: Any = None  # torch.cuda.Event, None without streams


class _Streams:
    """The three CUDA streams, or stand-ins that run everything in order."""

    def __init__(self, device: torch.device, enabled: bool) -> None:
        self.enabled = enabled
        if enabled:
            self.copy_in: Any = torch.cuda.Stream(device)
            self.compute: Any = torch.cuda.Stream(device)
            self.copy_out: Any = torch.cuda.Stream(device)

    def on(self, name: str) -> contextlib.AbstractContextManager[Any]:
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.cuda.stream(getattr(self, name))

    def handoff(self, tensor: torch.Tensor, source: str, target: str) -> None:
        """Make ``target`` wait for ``source``'s work so far, and keep ``tensor`` (made on
        ``source``) from being reused until ``target`` is done with it."""
        if not self.enabled:
            return
        event = torch.cuda.Event()
        event.record(getattr(self, source))
        getattr(self, target).wait_event(event)
        tensor.record_stream(getattr(self, target))

    def mark(self, name: str) -> Any:
        if not self.enabled:
            return None
        event = torch.cuda.Event()
        event.record(getattr(self, name))
        return event

    def synchronize(self) -> None:
        if self.enabled:
            for stream in (self.copy_in, self.compute, self.copy_out):
                stream.synchronize()


class StreamPipeline:
    """Upscale a stream of frames with ``engine``, batches overlapped (see the module doc).

    ``batch_size`` 0 chooses it from the free device memory (core.gpu_batching) on CUDA, 1
    elsewhere. Frames are uint8 RGB arrays or :class:`YuvPlanes`; anything else (uint16)
    goes through ``engine.upscale`` after the batches before it are out, in order.
    """

    def __init__(self, engine: Engine, *, batch_size: int = 0, streams: bool | None = None) -> None:
        self.engine = engine
        self.device = engine.device
        self.pin = self.device.type == "cuda"
        self._requested_batch = batch_size
        self._batch_for: dict[tuple[Any, ...], int] = {}
        use_streams = streams_enabled(self.device) if streams is None else streams
        if use_streams and self.device.type != "cuda":
            raise EngineError("CUDA streams need a CUDA device")
        self.streams = _Streams(self.device, use_streams)
        #: Batches submitted so far and their sizes (for tests and the benchmark).
        self.batch_sizes: list[int] = []

    # ------------------------------------------------------------------ the loop

    def run(
        self,
        items: Iterable[T],
        source: Callable[[T], np.ndarray | YuvPlanes],
        cancel: threading.Event | None = None,
    ) -> Iterator[tuple[T, np.ndarray]]:
        """Yield ``(item, upscaled uint8 frame)`` in input order."""
        pending: deque[_Batch[T]] = deque()
        try:
            for items_, frames, key in self._batches(items, source, cancel):
                check_cancel(cancel)
                if key[0] == "other":  # not for this pipeline: in order, after the rest
                    while pending:
                        yield from self._finish(pending.popleft(), cancel)
                    out = self.engine.upscale(np.stack(frames), cancel)  # type: ignore[arg-type]
                    yield from zip(items_, out, strict=True)
                    continue
                pending.append(self._submit(items_, frames, key, cancel))
                while len(pending) >= IN_FLIGHT:
                    yield from self._finish(pending.popleft(), cancel)
            while pending:
                yield from self._finish(pending.popleft(), cancel)
        finally:  # a cancel or an error: let the copies in flight land before buffers go
            self.streams.synchronize()

    def _batches(
        self,
        items: Iterable[T],
        source: Callable[[T], np.ndarray | YuvPlanes],
        cancel: threading.Event | None,
    ) -> Iterator[tuple[list[T], list[Any], tuple[Any, ...]]]:
        """Consecutive frames of one kind and size, up to that size's batch."""
        group: list[T] = []
        frames: list[Any] = []
        key: tuple[Any, ...] | None = None
        iterator = iter(items)
        while True:
            check_cancel(cancel)  # before reading on: a cancel stops the decoder's frames too
            item = next(iterator, _END)
            if item is _END:
                break
            frame = source(item)  # type: ignore[arg-type]
            frame_key = _key_of(frame)
            if group and frame_key != key:
                assert key is not None
                yield group, frames, key
                group, frames = [], []
            key = frame_key
            group.append(item)  # type: ignore[arg-type]
            frames.append(frame)
            if len(group) >= self._batch_size(key):
                yield group, frames, key
                group, frames = [], []
        if group:
            assert key is not None
            yield group, frames, key

    def _batch_size(self, key: tuple[Any, ...] | None) -> int:
        if key is None or key[0] == "other":
            return max(1, self.engine.batch_size)
        if key not in self._batch_for:
            self._batch_for[key] = self._choose_batch(key)
        return self._batch_for[key]

    def _choose_batch(self, key: tuple[Any, ...]) -> int:
        height, width = key[1], key[2]
        # The engine's own checks first: host memory, and a tile where a frame cannot fit.
        self.engine._fit_memory(np.broadcast_to(np.zeros((), np.uint8), (1, height, width, 3)))
        if self._requested_batch > 0:
            return self._requested_batch
        free = gpu_checks.free_device_bytes(self.device)
        if free is None or self.engine.tile:
            return max(1, self.engine.batch_size)
        arch = type(self.engine.module).__name__
        cost = gpu_batching.BatchCost(
            width=width,
            height=height,
            model_scale=self.engine.model_scale,
            outscale=self.engine.outscale,
            network_bytes_per_pixel=memory_guard.network_bytes_per_pixel(arch, "fp32"),
            dtype_bytes=self.engine.dtype.itemsize,
            in_flight=IN_FLIGHT,
        )
        return max(1, gpu_batching.batch_for_free_memory(cost, free))

    # ------------------------------------------------------------------ stages

    @torch.inference_mode()
    def _submit(
        self,
        items: list[T],
        frames: list[Any],
        key: tuple[Any, ...],
        cancel: threading.Event | None,
    ) -> _Batch[T]:
        self.batch_sizes.append(len(items))
        host = self._pack(frames, key)
        batch = _Batch(items=items, key=key, host=host)
        with self.streams.on("copy_in"):
            raw = host.to(self.device, non_blocking=True) if self.pin else host
        self.streams.handoff(raw, "copy_in", "compute")
        with self.streams.on("compute"):
            batch.x = self._to_float(raw, key)
            del raw
            out = self._compute(batch, cancel)
        self.streams.handoff(out, "compute", "copy_out")
        with self.streams.on("copy_out"):
            batch.out = self._download(out)
            batch.downloaded = self.streams.mark("copy_out")
        return batch

    @torch.inference_mode()
    def _finish(self, batch: _Batch[T], cancel: threading.Event | None) -> Iterator[tuple[T, Any]]:
        if batch.downloaded is not None:
            batch.downloaded.synchronize()
        elif self.device.type == "cuda":
            torch.cuda.current_stream(self.device).synchronize()
        if batch.finite is not None and not bool(batch.finite):
            assert batch.x is not None
            with self.streams.on("compute"):  # rerun in fp32, this once synchronously
                y = self.engine._infer_fp32(batch.x, cancel)
                out = self._download(self._quantise(y, batch.key))
            self.streams.synchronize()
            batch.out = out
        assert batch.out is not None
        frames = batch.out.numpy()
        batch.x = batch.out = None
        yield from zip(batch.items, frames, strict=True)

    def _pack(self, frames: list[Any], key: tuple[Any, ...]) -> torch.Tensor:
        """The frames in one (page-locked) uint8 buffer: one host copy each, no more."""
        kind, height, width = key[0], key[1], key[2]
        if kind == "yuv":
            host = torch.empty(
                (len(frames), packed_size(height, width)), dtype=torch.uint8, pin_memory=self.pin
            )
            array = host.numpy()
            for row, planes in zip(array, frames, strict=True):
                planes.write_into(row)
            return host
        if not self.pin:  # nothing to stage on the CPU: the frames are read where they are
            stacked = frames[0][None] if len(frames) == 1 else np.stack(frames)
            return torch.from_numpy(np.ascontiguousarray(stacked))
        host = torch.empty((len(frames), height, width, 3), dtype=torch.uint8, pin_memory=True)
        np.stack(frames, out=host.numpy())
        return host

    def _to_float(self, raw: torch.Tensor, key: tuple[Any, ...]) -> torch.Tensor:
        """uint8 → the network's input (N, 3, H, W) in [0, 1], channels_last."""
        dtype = self.engine._input_dtype()
        if key[0] == "yuv":
            _, height, width, layout, matrix, full = key
            return packed_to_rgb(raw, height, width, layout, matrix, full, dtype)
        x = raw.permute(0, 3, 1, 2).to(dtype, memory_format=torch.channels_last)
        return x.div_(255.0)

    def _compute(self, batch: _Batch[T], cancel: threading.Event | None) -> torch.Tensor:
        """Network, non-finite flag, resize and quantisation, on the current stream. A batch
        that does not fit runs in halves (and later batches are smaller)."""
        assert batch.x is not None
        x, n = batch.x, batch.x.shape[0]
        parts: list[torch.Tensor] = []
        flags: list[torch.Tensor] = []
        start, size = 0, n
        while start < n:
            check_cancel(cancel)
            chunk = x[start : start + size]
            try:
                y = self.engine._infer(chunk, cancel)
            except self.engine.BatchTooLarge:
                size = max(1, size // 2)
                self._batch_for[batch.key] = size
                continue
            if self.engine._check_finite:
                flags.append(torch.isfinite(y).all())
            parts.append(self._quantise(y, batch.key))
            del y
            start += chunk.shape[0]
        if flags:
            batch.finite = torch.stack(flags).all()
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def _quantise(self, y: torch.Tensor, key: tuple[Any, ...]) -> torch.Tensor:
        out_w, out_h = self.engine.output_size(key[2], key[1])
        y = self.engine._resize(y, out_h, out_w)
        y = y.clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8)
        return y.permute(0, 2, 3, 1).contiguous()  # NHWC, what encoders take

    def _download(self, out: torch.Tensor) -> torch.Tensor:
        if not self.pin:
            return out
        host = torch.empty(out.shape, dtype=torch.uint8, pin_memory=True)
        host.copy_(out, non_blocking=True)
        return host


def _key_of(frame: np.ndarray | YuvPlanes) -> tuple[Any, ...]:
    """What frames must share to go in one batch; ``other``: not for this pipeline."""
    if isinstance(frame, YuvPlanes):
        return ("yuv", *frame.key[1:3], frame.layout, frame.matrix, frame.full_range)
    if (
        isinstance(frame, np.ndarray)
        and frame.dtype == np.uint8
        and frame.ndim == 3
        and frame.shape[2] == 3
        and min(frame.shape) > 0
    ):
        return ("rgb", frame.shape[0], frame.shape[1])
    shape = getattr(frame, "shape", ())
    return ("other", *shape, str(getattr(frame, "dtype", "")))
