"""The GPU streaming pipeline inside a real job, on the CPU with its streams off (what runs
on CUDA minus the streams): the decoder hands YUV planes over, the engine converts them,
and the output has every frame, in order, close to the ordinary CPU path's; a cancel in the
middle leaves nothing behind."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from tests.conftest import ClipFactory
from vsr_desktop.backends.local import LocalBackend, Progress
from vsr_desktop.core.engine import Engine
from vsr_desktop.core.errors import CancelledError
from vsr_desktop.core.job_spec import EngineSettings, JobSpec
from vsr_desktop.core.jobs import JobState, JobStore
from vsr_desktop.core.media import EncodeSettings, probe
from vsr_desktop.worker.job_setup import build_engine

FAST = EncodeSettings(preset="ultrafast", crf=12)
SETTINGS = EngineSettings(precision="fp32", cpu_convolution="onednn")


class _Recording:
    """The real engine, with the frames it was handed recorded (planes or RGB)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.had_planes: list[bool] = []

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        return self.engine.output_size(width, height)

    def upscale(self, frames: np.ndarray, cancel: threading.Event | None = None) -> np.ndarray:
        return self.engine.upscale(frames, cancel)

    def upscale_stream(
        self, items: Iterable[Any], rgb: Callable[[Any], np.ndarray], cancel: Any = None
    ) -> Iterator[tuple[Any, np.ndarray]]:
        def seen() -> Iterator[Any]:
            for item in items:
                self.had_planes.append(getattr(item, "yuv", None) is not None)
                yield item

        return self.engine.upscale_stream(seen(), rgb, cancel)


def _job(tmp_path: Path, source: Path, name: str, pipeline: bool, **kw: Any) -> tuple[Any, ...]:
    engine = build_engine(SETTINGS)
    assert isinstance(engine, Engine)
    engine.use_stream_pipeline = pipeline
    recording = _Recording(engine)
    backend = LocalBackend(
        JobStore(tmp_path / f"{name}.sqlite3"),
        work_root=tmp_path / f"work-{name}",
        engine_factory=lambda _request: recording,
    )
    request = JobSpec(source=source, output=tmp_path / f"{name}.mp4", encode=FAST)
    try:
        return backend.submit(request, **kw), request, recording
    finally:
        engine.use_stream_pipeline = False  # withdraws the planes request for this process


def _frames(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def test_a_job_through_the_stream_pipeline_matches_the_cpu_path(
    clip_factory: ClipFactory, tmp_path: Path
) -> None:
    source = clip_factory(frames=13, gop=13, width=64, height=48)
    job, request, recording = _job(tmp_path, source, "stream", True)
    plain, plain_request, plain_recording = _job(tmp_path, source, "plain", False)
    assert job.state is JobState.COMPLETED and plain.state is JobState.COMPLETED
    assert recording.had_planes == [True] * 13  # converted on the engine's device
    assert plain_recording.had_planes == [False] * 13  # RGB from swscale, as always
    out, ref = probe(request.output).video, probe(plain_request.output).video
    assert out.frame_pts == ref.frame_pts and (out.width, out.height) == (256, 192)
    diff = np.abs(_frames(request.output).astype(int) - _frames(plain_request.output))
    # swscale's YUV→RGB and ours differ by a level here and there (tests/unit/
    # test_colour_convert.py); the network and two x264 encodes spread that a little.
    assert diff.mean() < 3.0 and np.median(diff) <= 2


def test_cancel_in_the_middle_of_the_stream_pipeline_leaves_nothing(
    clip_factory: ClipFactory, tmp_path: Path
) -> None:
    source = clip_factory(frames=24, gop=24, width=64, height=48)
    cancel = threading.Event()

    def progress(event: Progress) -> None:
        if event.frames_done >= 5:
            cancel.set()

    with pytest.raises(CancelledError):
        _job(tmp_path, source, "cancelled", True, progress=progress, cancel=cancel)
    assert not (tmp_path / "cancelled.mp4").exists()
    assert not list(tmp_path.glob("*.partial*"))
