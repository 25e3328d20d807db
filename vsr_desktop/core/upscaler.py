"""The one thing the pipeline and the preview need from an engine (local or remote)."""

from __future__ import annotations

import threading
from typing import Protocol

import numpy as np


class FrameUpscaler(Protocol):
    """Upscales batches of RGB frames; the local Engine and a cloud preview both fit."""

    def output_size(self, width: int, height: int) -> tuple[int, int]: ...

    def upscale(
        self, frames: np.ndarray, cancel: threading.Event | None = None
    ) -> np.ndarray: ...
