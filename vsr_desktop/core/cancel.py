"""The one check of a user's Cancel that the engine's loops share (batches, tiles, frames)."""

from __future__ import annotations

import threading

from vsr_desktop.core.errors import CancelledError


def check_cancel(cancel: threading.Event | None) -> None:
    """Raise :class:`CancelledError` once ``cancel`` is set (checked between units of work)."""
    if cancel is not None and cancel.is_set():
        raise CancelledError("Upscaling was cancelled")
