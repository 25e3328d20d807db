"""The one thing the pipeline and the preview need from an engine (local or remote)."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol, TypeVar

import numpy as np

from vsr_desktop.core.errors import EngineError


class FrameUpscaler(Protocol):
    """Upscales batches of RGB frames; the local Engine and a cloud preview both fit."""

    def output_size(self, width: int, height: int) -> tuple[int, int]: ...

    def upscale(self, frames: np.ndarray, cancel: threading.Event | None = None) -> np.ndarray: ...


T = TypeVar("T")


def upscale_in_groups(
    upscaler: FrameUpscaler,
    items: Iterable[T],
    rgb: Callable[[T], np.ndarray],
    group: int,
    cancel: threading.Event | None = None,
) -> Iterator[tuple[T, np.ndarray]]:
    """Upscale a stream ``group`` frames per call, yielding ``(item, upscaled)`` in order.

    The way to stream through any :class:`FrameUpscaler`; the local Engine has its own
    ``upscale_stream`` that keeps every core busy without waiting at group boundaries.
    """
    iterator = iter(items)
    while True:
        batch = list(itertools.islice(iterator, max(1, group)))
        if not batch:
            return
        frames = rgb(batch[0])[None] if len(batch) == 1 else np.stack([rgb(i) for i in batch])
        yield from zip(batch, upscaler.upscale(frames, cancel), strict=True)


#: How allocators say they ran out: CPU allocators, CUDA, cuDNN (a failed workspace
#: allocation surfaces as "unable to find an engine"), cuBLAS, Apple MPS.
OOM_PHRASES = (
    "out of memory",
    "can't allocate memory",
    "unable to find an engine",
    "cudnn_status_alloc_failed",
    "cublas_status_alloc_failed",
    "invalid buffer size",
)


def is_out_of_memory(exc: BaseException) -> bool:
    """A failed allocation: Python's MemoryError, torch's OutOfMemoryError (CUDA, MPS) or a
    RuntimeError saying so in any backend's words (:data:`OOM_PHRASES`), told apart without
    importing torch."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(phrase in text for phrase in OOM_PHRASES)


def engine_error(exc: BaseException) -> EngineError:
    """The EngineError to raise ``from exc`` for an unexpected error of an upscaler."""
    if is_out_of_memory(exc):
        return EngineError(
            f"the upscaler ran out of memory ({type(exc).__name__}: {exc or 'no details'})",
            "use --tile 256 or a smaller batch (--batch-size 1), or close other programs",
        )
    return EngineError(
        f"the upscaler failed: {type(exc).__name__}: {exc}",
        "see the job log; --device cpu may get past a GPU driver problem",
    )
