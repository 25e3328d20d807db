"""The whole local pipeline on real clips with the real bundled Real-ESRGAN model.

Each invariant from the design is checked on real encoded files: frame count, timestamps
(variable frame rate included), audio packets bit-exact, 10-bit, subtitles, cancel, resume.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from tests.conftest import ClipFactory
from vsr_desktop.backends.local import LocalBackend, Progress
from vsr_desktop.core.errors import CancelledError, DiskFullError, InputError
from vsr_desktop.core.job_spec import EngineSettings, JobSpec
from vsr_desktop.core.jobs import JobRecord, JobState, JobStore
from vsr_desktop.core.media import EncodeSettings, probe

FAST = EncodeSettings(preset="ultrafast")


def _backend(tmp_path: Path) -> LocalBackend:
    return LocalBackend(JobStore(tmp_path / "jobs.sqlite3"), work_root=tmp_path / "work")


def _packets(path: Path, kind: str) -> list[bytes]:
    with av.open(str(path)) as container:
        streams = [s for s in container.streams if s.type == kind]
        return [bytes(p) for p in container.demux(streams[0]) if p.size]


def _assert_same_timeline(source: Path, output: Path, scale: int) -> None:
    src, out = probe(source), probe(output)
    assert out.video.frame_count == src.video.frame_count
    assert (out.video.width, out.video.height) == (
        src.video.width * scale,
        src.video.height * scale,
    )
    ratio = out.video.time_base / src.video.time_base
    assert [Fraction(p) * ratio for p in out.video.frame_pts] == list(src.video.frame_pts)
    frame = src.video.frame_duration_seconds
    assert abs(out.video.duration_seconds - src.video.duration_seconds) <= frame


def test_h264_bframes_with_audio_end_to_end(clip_factory: ClipFactory, tmp_path: Path) -> None:
    source = clip_factory(frames=24, gop=8, width=64, height=48)
    output = tmp_path / "out.mp4"
    events: list[Progress] = []
    job = _backend(tmp_path).submit(
        JobSpec(source=source, output=output, encode=FAST, chunk_seconds=0.3),
        progress=events.append,
    )
    assert job.state is JobState.COMPLETED and job.chunks_total == 3
    _assert_same_timeline(source, output, 4)
    assert _packets(output, "audio") == _packets(source, "audio")
    assert events and events[-1].phase == "merging"
    assert max(e.frames_done for e in events) == 24
    assert all(e.frames_done <= e.frames_total for e in events)
    assert not list(Path(job.work_dir).glob("chunk_*"))


def test_vfr_ten_bit_and_subtitles_keep_their_shape(
    clip_factory: ClipFactory, tmp_path: Path
) -> None:
    source = clip_factory(
        ".mkv",
        frames=16,
        gop=8,
        width=48,
        height=32,
        ten_bit=True,
        variable_frame_rate=True,
        subtitles=True,
    )
    output = tmp_path / "out.mkv"
    _backend(tmp_path).submit(
        JobSpec(
            source=source,
            output=output,
            encode=FAST,
            engine=EngineSettings(outscale=2),
            chunk_seconds=0.2,
        )
    )
    _assert_same_timeline(source, output, 2)
    info = probe(output)
    assert info.video.bit_depth == 10
    assert [s.codec for s in info.audio] == ["aac"] and len(info.subtitles) == 1
    assert _packets(output, "subtitle") == _packets(source, "subtitle")


def test_upscaled_frames_are_sharper_than_bicubic(
    clip_factory: ClipFactory, tmp_path: Path
) -> None:
    """The real model adds edge detail over plain bicubic (not just a resize)."""
    source = clip_factory(frames=8, gop=8, width=64, height=48)
    output = tmp_path / "sharp.mp4"
    _backend(tmp_path).submit(JobSpec(source=source, output=output, encode=FAST))
    from PIL import Image

    with av.open(str(source)) as c:
        src = next(c.decode(video=0)).to_ndarray(format="rgb24")
    with av.open(str(output)) as c:
        up = next(c.decode(video=0)).to_ndarray(format="rgb24").astype(np.float32)
    bicubic = np.asarray(Image.fromarray(src).resize((256, 192), Image.Resampling.BICUBIC))

    def gradient_energy(img: np.ndarray) -> float:
        return float(np.abs(np.diff(img.astype(np.float32), axis=1)).mean())

    assert gradient_energy(up) > 1.1 * gradient_energy(bicubic)
    assert np.abs(up - bicubic).mean() < 20  # same picture, not noise


def _run_cancelled_when(
    clip_factory: ClipFactory, tmp_path: Path, stop: Callable[[Progress], bool]
) -> tuple[LocalBackend, JobSpec, JobRecord]:
    """Run a 3-chunk job that cancels at the first progress event ``stop`` picks; check that
    nothing is left under the output's names and the job reads cancelled."""
    source = clip_factory(frames=24, gop=8, width=64, height=48)
    output = tmp_path / "out.mp4"
    backend = _backend(tmp_path)
    cancel = threading.Event()
    request = JobSpec(source=source, output=output, encode=FAST, chunk_seconds=0.3)

    def cancel_when(event: Progress) -> None:
        if stop(event):
            cancel.set()

    with pytest.raises(CancelledError):
        backend.submit(request, progress=cancel_when, cancel=cancel)
    assert not output.exists()
    assert not list(tmp_path.glob("*.partial*"))
    job = backend.store.all_jobs()[0]
    assert job.state is JobState.CANCELLED
    return backend, request, job


def test_cancel_leaves_nothing_and_resume_finishes(
    clip_factory: ClipFactory, tmp_path: Path
) -> None:
    backend, request, job = _run_cancelled_when(  # in the second chunk
        clip_factory, tmp_path, lambda event: event.frames_done >= 10
    )
    # Progress events are throttled: under load the cancel may land in chunk 1 or 2.
    finished = set(backend.store.finished_chunks(job.id))
    assert {0} <= finished < {0, 1, 2}
    resumed = backend.submit(request)
    assert resumed.id == job.id and resumed.state is JobState.COMPLETED
    _assert_same_timeline(request.source, request.output, 4)


def test_cancel_while_merging_keeps_every_chunk_and_resume_only_merges(
    clip_factory: ClipFactory, tmp_path: Path
) -> None:
    backend, request, job = _run_cancelled_when(
        clip_factory, tmp_path, lambda event: event.phase == "merging"
    )
    assert set(backend.store.finished_chunks(job.id)) == {0, 1, 2}  # nothing to redo
    phases: list[str] = []
    resumed = backend.submit(request, progress=lambda event: phases.append(event.phase))
    assert resumed.state is JobState.COMPLETED
    assert "upscaling" not in phases and "merging" in phases
    _assert_same_timeline(request.source, request.output, 4)


def test_bad_requests_touch_nothing(clip_factory: ClipFactory, tmp_path: Path) -> None:
    source = clip_factory(frames=8, gop=8, width=48, height=32)
    backend = _backend(tmp_path)
    existing = tmp_path / "keep.mp4"
    existing.write_bytes(b"user data")
    with pytest.raises(InputError, match="already exists"):
        backend.prepare(JobSpec(source=source, output=existing))
    assert existing.read_bytes() == b"user data"
    with pytest.raises(InputError, match="is the input"):
        backend.prepare(JobSpec(source=source, output=source, overwrite=True))
    with pytest.raises(InputError, match="does not exist"):
        backend.prepare(JobSpec(source=source, output=tmp_path / "no" / "x.mp4"))
    with pytest.raises(InputError, match="cannot be stored"):
        backend.prepare(
            JobSpec(
                source=source, output=tmp_path / "x.webm", encode=EncodeSettings(codec="prores")
            )
        )
    assert backend.store.all_jobs() == []


@pytest.mark.skipif("sys.platform != 'linux'", reason="mounts a tiny tmpfs (Linux, root)")
def test_disk_full_during_merge_leaves_no_partial_output(
    clip_factory: ClipFactory, tmp_path: Path
) -> None:
    import subprocess

    tiny = tmp_path / "tiny"
    tiny.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(tiny)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip("needs root to mount a tiny tmpfs (a real full disk)")
    try:
        source = clip_factory(frames=24, gop=8, width=64, height=48)
        backend = _backend(tmp_path)
        with pytest.raises(DiskFullError, match="full"):
            backend.submit(
                JobSpec(
                    source=source,
                    output=tiny / "out.mp4",
                    encode=EncodeSettings(crf=0, preset="ultrafast"),
                )
            )
        assert list(tiny.iterdir()) == []
        assert backend.store.all_jobs()[0].state is JobState.FAILED
    finally:
        subprocess.run(["umount", str(tiny)], check=False)


def test_rotation_and_colour_tags_survive(clip_factory: ClipFactory, tmp_path: Path) -> None:
    source = clip_factory(frames=8, gop=8, width=48, height=32, rotation=90, bt709=True)
    src = probe(source).video
    assert src.rotation == 90 and (src.color.primaries, src.color.trc, src.color.space) == (1,) * 3
    output = tmp_path / "out.mp4"
    _backend(tmp_path).submit(
        JobSpec(source=source, output=output, encode=FAST, engine=EngineSettings(outscale=2))
    )
    out = probe(output).video
    assert out.rotation == 90
    assert (out.color.primaries, out.color.trc, out.color.space) == (1, 1, 1)


def test_an_engine_running_frames_per_core_gets_that_many_per_call(
    clip_factory: ClipFactory, tmp_path: Path
) -> None:
    """The chunk loop feeds the engine ``frames_per_call`` frames at once (Winograd on CPU)."""
    from vsr_desktop.core.cpu_convolution import nnpack_ready
    from vsr_desktop.worker.job_setup import build_engine

    if not nnpack_ready():
        # Linux x86 wheels (CI) have NNPACK; some macOS/Windows builds the installer workflow
        # tests on do not, and there the engine keeps oneDNN (covered by the other tests).
        pytest.skip("this PyTorch build has no NNPACK")
    source = clip_factory(frames=13, gop=13, width=64, height=48)
    request = JobSpec(
        source=source,
        output=tmp_path / "out.mp4",
        encode=FAST,
        engine=EngineSettings(cpu_convolution="winograd", precision="fp32"),
    )
    engine = build_engine(request.engine)
    per_call = engine.frames_per_call
    sizes: list[int] = []

    class Recording:
        frames_per_call = per_call

        def output_size(self, width: int, height: int) -> tuple[int, int]:
            return engine.output_size(width, height)

        def upscale(self, frames: np.ndarray, cancel: threading.Event | None = None) -> np.ndarray:
            sizes.append(len(frames))
            return engine.upscale(frames, cancel)

    backend = LocalBackend(
        JobStore(tmp_path / "jobs.sqlite3"),
        work_root=tmp_path / "work",
        engine_factory=lambda _request: Recording(),
    )
    job = backend.submit(request)
    assert job.state is JobState.COMPLETED
    _assert_same_timeline(source, request.output, 4)
    assert sum(sizes) == 13 and max(sizes) <= per_call
    if per_call > 1:  # the decoder keeps ahead, so nearly every call is a full group
        assert sizes.count(per_call) >= len(sizes) - 2


def test_the_engine_streams_frames_one_per_core(clip_factory: ClipFactory, tmp_path: Path) -> None:
    """The real engine with Winograd: frames stream through the cores, order and count kept."""
    from vsr_desktop.core.cpu_convolution import nnpack_ready

    if not nnpack_ready():
        # Linux x86 wheels (CI) have NNPACK; some macOS/Windows builds the installer workflow
        # tests on do not, and there the engine keeps oneDNN (covered by the other tests).
        pytest.skip("this PyTorch build has no NNPACK")
    source = clip_factory(frames=17, gop=17, width=64, height=48)
    request = JobSpec(
        source=source,
        output=tmp_path / "out.mp4",
        encode=FAST,
        engine=EngineSettings(cpu_convolution="winograd", precision="fp32"),
    )
    job = _backend(tmp_path).submit(request)
    assert job.state is JobState.COMPLETED
    _assert_same_timeline(source, request.output, 4)
    assert _packets(request.output, "audio") == _packets(source, "audio")
