"""Final stage of every job: join the chunks and the source's audio into the user's file.

The merged file is written under a temporary name beside the output and renamed only when
complete, so a crash, a cancel or a full disk never leaves a truncated file under the final name.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path

from vsr_desktop.core.media.encode import EncodeSettings, container_for
from vsr_desktop.core.media.image_sequence import merge_image_sequence
from vsr_desktop.core.media.mux import ChunkFile, merge_chunks
from vsr_desktop.core.media.probe import MediaInfo
from vsr_desktop.core.media.timeline import output_timeline
from vsr_desktop.core.plan import Plan
from vsr_desktop.core.trim import trimmed_source
from vsr_desktop.worker.upscale_chunk import partial_path


def merge_job(
    source: MediaInfo,
    plan: Plan,
    chunk_paths: Sequence[Path],
    output: Path,
    cancel: threading.Event | None = None,
    audio_codec: str = "auto",
    encode: EncodeSettings | None = None,
) -> list[str]:
    """Merge chunk files (in plan order) into `output`; returns warnings for the user.

    `audio_codec` is `--audio-codec` ("auto": copy what the container plays, convert the
    rest, lossless where it can; see core.media.tracks). Conversions come back as notes.
    A set ``cancel`` stops it (CancelledError) with nothing left under either name."""
    if len(chunk_paths) != len(plan.chunks):
        raise ValueError("one chunk file per planned chunk is required")
    container = container_for(output)
    if container == "image2":  # chunk folders of numbered images
        codec = encode.codec if encode is not None else "png"
        return merge_image_sequence(source, chunk_paths, output, codec, cancel)
    # A trimmed plan: the output starts at its first frame, with the rest cut to match.
    source, keep = trimmed_source(source, plan, container)
    # The chunks were written on this timeline (upscale_chunk): source timestamps, or the
    # exact frame grid for a CFR source stored rounded.
    timeline = output_timeline(source.video, container, source.start_seconds)
    files = [
        ChunkFile(
            path=path,
            pts_offset=timeline.to_output(chunk.start_pts),
            source_time_base=timeline.time_base,
        )
        for chunk, path in zip(plan.chunks, chunk_paths, strict=True)
    ]
    tmp = partial_path(output)
    try:
        warnings = merge_chunks(
            files,
            source,
            tmp,
            container,
            cancel,
            audio_codec=audio_codec,
            encode=encode,
            keep=keep,
        )
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)
    return warnings
