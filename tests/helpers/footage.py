"""What the footage tests share: files made by another tool (Debian's ffmpeg), read back with
ffprobe or PyAV as a player would, and the real local job that upscales them.

One copy, so a fix to how a test measures (a flash, a beep, a shown frame) reaches every test.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from vsr_desktop.backends.local import LocalBackend
from vsr_desktop.core.job_spec import EngineSettings, JobSpec
from vsr_desktop.core.jobs import JobRecord, JobState, JobStore
from vsr_desktop.core.media import EncodeSettings

FFMPEG = shutil.which("ffmpeg")
FFPROBE = shutil.which("ffprobe")
needs_ffmpeg = pytest.mark.skipif(
    FFMPEG is None or FFPROBE is None,
    reason="Debian's ffmpeg/ffprobe CLI is not installed (apt-get install ffmpeg)",
)
AAC_FRAME = 1024 / 48000  # seconds: how closely two AAC streams can agree
FLASH_LEVEL = 200  # mean brightness of the white "flash" picture the sources carry


def ffmpeg(*args: object) -> None:
    """Make a file with Debian's ffmpeg (quiet; raises with its stderr on failure)."""
    cmd = [FFMPEG or "ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *map(str, args)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)


def ffprobe(path: Path, *, count_frames: bool = False) -> dict[str, Any]:
    """Streams, chapters and format as ffprobe reads them (never our own reader)."""
    cmd = [FFPROBE or "ffprobe", "-v", "error", "-show_streams", "-show_chapters"]
    cmd += ["-count_frames"] if count_frames else []
    cmd += ["-show_format", "-of", "json", str(path)]
    result = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=60)
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def streams(data: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    """The ffprobe streams of one kind ("video", "audio", "subtitle", …)."""
    return [s for s in data["streams"] if s.get("codec_type") == kind]


def vsr(*args: object) -> subprocess.CompletedProcess[str]:
    """The real command line, in a process of its own."""
    return subprocess.run(
        [sys.executable, "-m", "vsr_desktop.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def local_upscale(
    source: Path,
    output: Path,
    tmp_path: Path,
    *,
    codec: str = "h264",
    chunk_seconds: float = 0.4,
    spec: dict[str, Any] | None = None,
    **encode: Any,
) -> JobRecord:
    """The real local pipeline (a real model at x2, fp32) in several chunks; it must finish."""
    fast = {"preset": "ultrafast"} if codec in ("h264", "h265") else {}
    backend = LocalBackend(JobStore(tmp_path / "jobs.sqlite3"), work_root=tmp_path / "work")
    job = backend.submit(
        JobSpec(
            source=source,
            output=output,
            engine=EngineSettings(outscale=2, precision="fp32"),
            encode=EncodeSettings(codec=codec, **{**fast, **encode}),
            chunk_seconds=chunk_seconds,
            **(spec or {}),
        )
    )
    assert job.state is JobState.COMPLETED, job.message
    return job


def seconds(frame: av.VideoFrame | av.AudioFrame) -> float:
    """A decoded frame's presentation time (every frame the tests read has one)."""
    assert frame.pts is not None and frame.time_base is not None, frame
    return float(frame.pts * frame.time_base)


def shown_frames(path: Path) -> list[tuple[float, float]]:
    """(time, mean brightness) of every picture a player shows (it skips what it cannot
    decode)."""
    shown = []
    with av.open(str(path)) as container:
        for packet in container.demux(video=0):
            try:
                frames = packet.decode()
            except av.InvalidDataError:
                continue
            shown += [(seconds(f), float(f.to_ndarray(format="gray").mean())) for f in frames]
    return shown


def flash_time(path: Path) -> float:
    """When the white picture is shown."""
    return next(t for t, level in shown_frames(path) if level > FLASH_LEVEL)


def beep_time(path: Path) -> float:
    """When the decoded sound first gets loud (per sample, from each frame's timestamp)."""
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            samples = frame.to_ndarray()
            planar = frame.format.is_planar
            mono = samples[0] if planar else samples.reshape(frame.samples, -1)[:, 0]
            loud = np.flatnonzero(np.abs(mono) > 0.3)
            if loud.size:
                return seconds(frame) + loud[0] / frame.sample_rate
    raise AssertionError(f"{path.name}: no beep")
