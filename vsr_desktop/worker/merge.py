"""Final stage of every job: join the chunks and the source's audio into the user's file.

The merged file is written under a temporary name beside the output and renamed only when
complete, so a crash, a cancel or a full disk never leaves a truncated file under the final name.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path

from vsr_desktop.core.media.encode import container_for
from vsr_desktop.core.media.mux import ChunkFile, merge_chunks
from vsr_desktop.core.media.probe import MediaInfo
from vsr_desktop.core.plan import Plan
from vsr_desktop.worker.upscale_chunk import partial_path


def merge_job(
    source: MediaInfo,
    plan: Plan,
    chunk_paths: Sequence[Path],
    output: Path,
    cancel: threading.Event | None = None,
) -> list[str]:
    """Merge chunk files (in plan order) into `output`; returns warnings for the user.

    A set ``cancel`` stops it (CancelledError) with nothing left under either name."""
    if len(chunk_paths) != len(plan.chunks):
        raise ValueError("one chunk file per planned chunk is required")
    files = [
        ChunkFile(path=path, pts_offset=chunk.start_pts, source_time_base=plan.time_base)
        for chunk, path in zip(plan.chunks, chunk_paths, strict=True)
    ]
    tmp = partial_path(output)
    try:
        warnings = merge_chunks(files, source, tmp, container_for(output), cancel)
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)
    return warnings
