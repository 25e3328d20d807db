"""Which way fp32 frames run on a CPU: oneDNN on all cores, or Winograd one frame per core.

The engine does the pixels (pre-processing, the network, post-processing); this module only
chooses and schedules. It sets up the Winograd copy of the network when it may pay, decides per
frame size from a timed trial on real frames (:class:`WinogradTrial`, cached), checks that
several frames at once fit in memory, and runs frames through the chosen path, in groups or as
a stream that keeps every core busy. Kept apart from :class:`~vsr_desktop.core.engine.Engine`
so the engine reads as the per-batch work alone.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Protocol, TypeVar

import numpy as np
import torch
from torch import nn

from vsr_desktop.core.cancel import check_cancel
from vsr_desktop.core.cpu_convolution import (
    FRAMES_PER_CORE,
    WINOGRAD_MEMORY_SHARE,
    WinogradTrial,
    frame_worker_pool,
    nnpack_ready,
    run_frames_in_parallel,
    winograd_copy,
    winograd_frame_bytes_per_pixel,
)
from vsr_desktop.core.device import cpu_cache_key
from vsr_desktop.core.errors import EngineError
from vsr_desktop.core.system_memory import available_memory_bytes
from vsr_desktop.core.upscaler import FrameUpscaler, upscale_in_groups

log = logging.getLogger(__name__)

CPU_CONVOLUTIONS = ("auto", "onednn", "winograd")
T = TypeVar("T")


def parse_cpu_convolution(requested: str) -> str:
    """``auto``, ``onednn`` or ``winograd`` from a user's spelling; anything else is an error."""
    key = requested.strip().lower()
    if key not in CPU_CONVOLUTIONS:
        raise EngineError(f"Unknown CPU convolution {requested!r}", "Use auto, onednn or winograd.")
    return key


def precision_for(precision: str, cpu_convolution: str, device: torch.device) -> str:
    """The precision to ask :func:`~vsr_desktop.core.device.choose_dtype` for.

    Winograd runs in fp32 only, so asking for it on the CPU settles an ``auto`` precision as
    fp32: where the probe would pick bf16 (AMX, AVX512-BF16) the engine must not then refuse
    the user's explicit choice. An explicit bf16 with Winograd still fails, clearly.
    """
    if device.type == "cpu" and cpu_convolution == "winograd" and _is_auto(precision):
        return "fp32"
    return precision


def _is_auto(precision: str) -> bool:
    return precision.strip().lower() == "auto"


class EngineSteps(FrameUpscaler, Protocol):
    """The engine's own steps, which the strategy schedules.

    Passed to each call rather than kept, so the strategy holds no reference back to its
    engine: dropping an engine frees both networks at once, with no cycle for the garbage
    collector (the GUI runs it on its own thread only) to find later.
    """

    def _upscale_batches(
        self, frames: np.ndarray, result: np.ndarray, cancel: threading.Event | None
    ) -> None: ...

    def _upscale_batch(
        self,
        src: np.ndarray,
        dst: np.ndarray,
        cancel: threading.Event | None,
        module: nn.Module | None = None,
    ) -> None: ...

    def _check_frames(self, frames: np.ndarray) -> np.ndarray: ...


class CpuConvolutionStrategy:
    """Runs fp32 CPU frames as Winograd one per core where a trial shows it beats oneDNN.

    Exists only for an fp32 engine on a CPU with a working NNPACK and a network with 3×3
    convolutions (see :meth:`create`); elsewhere the engine runs its general path alone.
    """

    def __init__(self, winograd: nn.Module, trial: WinogradTrial, model_scale: int) -> None:
        #: The network with its 3×3 convolutions made Winograd (fp32, NCHW, single-threaded).
        self.winograd = winograd
        self.trial = trial
        self.model_scale = model_scale
        #: Frames upscaled at once (one per core) on the Winograd path.
        self.frame_workers = max(1, torch.get_num_threads())
        #: Whether frames of a size fit in memory several at once: read once per size, so
        #: groups after the first neither re-read the system's figures nor switch paths.
        self._fits_by_size: dict[tuple[int, int], bool] = {}
        self._frame_bytes_per_pixel: float | None = None  # traced on first need

    @classmethod
    def create(
        cls,
        requested: str,
        module: nn.Module,
        dtype: torch.dtype,
        device: torch.device,
        model_scale: int,
        cache_path: Path | None,
    ) -> CpuConvolutionStrategy | None:
        """The strategy for an engine, or None where oneDNN is its only path.

        Raises :class:`EngineError` where Winograd was asked for and cannot run, so a user
        who forced it never gets the slower path without knowing.
        """
        key = parse_cpu_convolution(requested)
        if key == "onednn" or device.type != "cpu":
            return None
        if dtype != torch.float32:
            if key == "winograd":
                raise EngineError(
                    "Winograd convolutions run in fp32 only",
                    "Use --precision fp32 with --cpu-conv winograd, or --cpu-conv auto.",
                )
            return None
        if not nnpack_ready():
            if key == "winograd":
                raise EngineError(
                    "This PyTorch build has no working NNPACK (Winograd convolutions)",
                    "Use --cpu-conv auto or onednn.",
                )
            return None
        winograd, replaced = winograd_copy(module)
        if not replaced:
            return None
        return cls(winograd, WinogradTrial(key, cpu_cache_key(module), cache_path), model_scale)

    @property
    def frames_per_call(self) -> int:
        """Frames per :meth:`upscale` call for full speed: a few per core, so a call's wait
        for its slowest frame leaves the other cores little idle time."""
        return self.frame_workers * FRAMES_PER_CORE

    def describe(self) -> str:
        """The engine's ``describe()`` suffix, e.g. ``, Winograd, 2 frame(s) at once``."""
        if self.trial.forced:
            return f", Winograd, {self.frame_workers} frame(s) at once"
        return f", Winograd ({self.frame_workers} frames at once) where faster than oneDNN"

    def decision(self, size: tuple[int, int]) -> bool | None:
        """Whether full groups of (height, width) frames run as Winograd; None: not timed yet.

        False, untried, under ``auto`` when that many frames at once would not fit in the
        memory available now.
        """
        if self.trial.forced is None and not self._fits_in_memory(size):
            return False
        return self.trial.decision(size)

    @property
    def winograd_bytes_per_pixel(self) -> float:
        """Estimated peak memory of one frame in flight on the Winograd path, per input
        pixel, for this network (traced once on a small input)."""
        if self._frame_bytes_per_pixel is None:
            self._frame_bytes_per_pixel = winograd_frame_bytes_per_pixel(
                self.winograd, self.model_scale
            )
        return self._frame_bytes_per_pixel

    def _fits_in_memory(self, size: tuple[int, int]) -> bool:
        known = self._fits_by_size.get(size)
        if known is not None:
            return known
        need = self.frame_workers * size[0] * size[1] * self.winograd_bytes_per_pixel
        available = available_memory_bytes()
        fits = available is None or need <= available * WINOGRAD_MEMORY_SHARE
        if not fits:
            assert available is not None
            log.warning(
                "%dx%d frames: oneDNN, one frame at a time (%d frames at once would need "
                "about %.1f GB; %.1f GB is available)",
                size[1],
                size[0],
                self.frame_workers,
                need / 1e9,
                available / 1e9,
            )
        self._fits_by_size[size] = fits
        return fits

    def upscale(
        self,
        engine: EngineSteps,
        frames: np.ndarray,
        result: np.ndarray,
        cancel: threading.Event | None,
    ) -> None:
        """Upscale checked ``frames`` into ``result`` the way their size runs best.

        A size not decided yet is decided first, by :meth:`_trial_group` on the first
        frames (one per core); the rest then run the chosen way.
        """
        n, size = len(frames), (frames.shape[1], frames.shape[2])
        group = self.frame_workers
        if n == 1 and group > 1:  # a preview region: oneDNN on all cores, the lower latency
            engine._upscale_batches(frames, result, cancel)
            return
        decided = self.decision(size)
        if decided is None and n >= group:
            self._trial_group(engine, frames[:group], result[:group], cancel)
            decided = self.trial.decision(size)
            frames, result, n = frames[group:], result[group:], n - group
            if n == 0:
                return
        # A single frame goes to oneDNN on all cores: the lower latency.
        self._upscale_with(engine, bool(decided) and (n > 1 or group == 1), frames, result, cancel)

    def _upscale_with(
        self,
        engine: EngineSteps,
        winograd: bool,
        frames: np.ndarray,
        result: np.ndarray,
        cancel: threading.Event | None,
    ) -> None:
        if winograd:
            self._upscale_frame_parallel(engine, frames, result, cancel)
        else:
            engine._upscale_batches(frames, result, cancel)

    def _trial_group(
        self,
        engine: EngineSteps,
        frames: np.ndarray,
        result: np.ndarray,
        cancel: threading.Event | None,
    ) -> None:
        """Time one group with oneDNN and Winograd alternately until the trial decides.

        Every run is on the same frames and only the winner's output is kept, so a video's
        pixels never depend on where a trial happened to fall (a resumed job stays
        bit-identical to an uninterrupted one).
        """
        size = (frames.shape[1], frames.shape[2])
        outputs: dict[str, np.ndarray] = {}
        while (decided := self.trial.decision(size)) is None:
            method = self.trial.next_method(size)
            out = outputs.setdefault(method, np.empty_like(result))
            start = time.perf_counter()
            self._upscale_with(engine, method == "winograd", frames, out, cancel)
            self.trial.record(size, method, (time.perf_counter() - start) / len(frames))
        log.info(
            "%dx%d frames: %s",
            size[1],
            size[0],
            "Winograd, one frame per core" if decided else "oneDNN, all cores",
        )
        winner = "winograd" if decided else "onednn"
        if winner in outputs:
            np.copyto(result, outputs[winner])
        else:  # decided elsewhere meanwhile (another engine on this CPU)
            self._upscale_with(engine, decided, frames, result, cancel)

    def _upscale_frame_parallel(
        self,
        engine: EngineSteps,
        frames: np.ndarray,
        result: np.ndarray,
        cancel: threading.Event | None,
    ) -> None:
        """One frame per worker thread, each through the single-threaded Winograd network."""
        module = self.winograd

        def one(index: int) -> None:
            check_cancel(cancel)
            engine._upscale_batch(
                frames[index : index + 1], result[index : index + 1], cancel, module
            )

        run_frames_in_parallel(len(frames), self.frame_workers, one)

    def stream(
        self,
        engine: EngineSteps,
        items: Iterable[T],
        rgb: Callable[[T], np.ndarray],
        cancel: threading.Event | None,
    ) -> Iterator[tuple[T, np.ndarray]]:
        """The engine's ``upscale_stream``: trial groups first, then the chosen path.

        Where frames run as Winograd each core takes the next frame as soon as it is free
        (at most two frames per core in flight), so no core waits at a group boundary.
        """
        iterator = iter(items)
        if self.frame_workers == 1:
            yield from upscale_in_groups(engine, iterator, rgb, self.frames_per_call, cancel)
            return
        group = self.frame_workers
        while True:
            head = list(itertools.islice(iterator, group))
            if not head:
                return
            height, width = rgb(head[0]).shape[:2]
            decided = self.decision((height, width))
            if decided is not None:
                rest = itertools.chain(head, iterator)
                if decided:
                    yield from self._stream_frame_parallel(engine, rest, rgb, cancel)
                else:
                    yield from upscale_in_groups(engine, rest, rgb, self.frames_per_call, cancel)
                return
            yield from upscale_in_groups(engine, head, rgb, group, cancel)  # a trial group

    def _stream_frame_parallel(
        self,
        engine: EngineSteps,
        items: Iterator[T],
        rgb: Callable[[T], np.ndarray],
        cancel: threading.Event | None,
    ) -> Iterator[tuple[T, np.ndarray]]:
        workers = self.frame_workers
        window: deque[tuple[T, Future[np.ndarray]]] = deque()
        pool = frame_worker_pool(workers)
        try:
            for item in items:
                check_cancel(cancel)
                frame = engine._check_frames(rgb(item)[None])
                window.append((item, pool.submit(self._winograd_frame, engine, frame, cancel)))
                if len(window) >= 2 * workers:
                    first, future = window.popleft()
                    yield first, future.result()
            while window:
                first, future = window.popleft()
                yield first, future.result()
        finally:
            # Also on an error or an early close: drop what has not started, wait for the
            # rest, so no worker writes after the caller has moved on.
            pool.shutdown(wait=True, cancel_futures=True)

    def _winograd_frame(
        self, engine: EngineSteps, frame: np.ndarray, cancel: threading.Event | None
    ) -> np.ndarray:
        """One (1, H, W, 3) frame through the Winograd network, in the calling thread."""
        check_cancel(cancel)
        out_w, out_h = engine.output_size(frame.shape[2], frame.shape[1])
        result = np.empty((1, out_h, out_w, 3), dtype=frame.dtype)
        with torch.inference_mode():
            engine._upscale_batch(frame, result, cancel, self.winograd)
        return result[0]
