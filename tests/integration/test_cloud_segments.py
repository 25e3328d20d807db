"""The cloud data path: split cuts the source once; each chunk task reads only its segment,
the merge only the chunks and the side file (worker/segments.py, worker/s3_job.py).

Real clips, real PyAV remuxes and a real moto S3 server over HTTP; the bytes a chunk task
reads are counted on the worker's own boto3 client (its GetObject responses).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import av
import boto3
import numpy as np
import pytest

from tests.conftest import ClipFactory
from tests.helpers.aws_fixture import REGION, MotoServer
from vsr_desktop.core.job_spec import EngineSettings, JobSpec
from vsr_desktop.core.media import EncodeSettings, probe
from vsr_desktop.core.media.mux import ChunkFile, merge_chunks
from vsr_desktop.core.plan import plan_chunks
from vsr_desktop.worker import s3_job, s3_transfer, segments
from vsr_desktop.worker.s3_job import (
    merge_from_s3,
    split_from_s3,
    stage_job_inputs,
    upscale_from_s3,
)
from vsr_desktop.worker.s3_layout import JobLocation
from vsr_desktop.worker.upscale_chunk import upscale_chunk

BUCKET = "vsr-test-segments"


class Nearest2x:
    """A deterministic ×2 engine (pixel repeat): the same frames in give the same chunk out."""

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        return width * 2, height * 2

    def upscale(self, frames: np.ndarray, cancel: threading.Event | None = None) -> np.ndarray:
        return np.repeat(np.repeat(frames, 2, axis=-3), 2, axis=-2)


def _cut(clip: Path, tmp: Path, chunk_seconds: float = 0.5) -> tuple[Any, Any, dict[int, Path]]:
    media = probe(clip)
    plan = plan_chunks(media.video, chunk_seconds)
    made: dict[int, Path] = {}
    segments.cut_segments(media, plan, tmp / "segments", made.__setitem__)
    return media, plan, made


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".mov", ".ts"])
def test_each_segment_holds_exactly_its_chunks_frames(
    clip_factory: ClipFactory, tmp_path: Path, suffix: str
) -> None:
    clip = clip_factory(suffix, frames=48, gop=12, width=64, height=48)
    media, plan, made = _cut(clip, tmp_path)
    assert len(plan.chunks) == 4 and sorted(made) == [0, 1, 2, 3]
    for chunk in plan.chunks:
        seg = probe(made[chunk.index])
        assert seg.video.frame_pts == media.video.frame_pts[chunk.start_frame : chunk.end_frame]
        assert seg.video.time_base == media.video.time_base
    assert sum(p.stat().st_size for p in made.values()) < clip.stat().st_size


def _frames(path: Path) -> list[tuple[int | None, bytes]]:
    with av.open(str(path)) as container:
        return [
            (f.pts, f.to_ndarray(format="rgb24").tobytes())
            for f in container.decode(container.streams.video[0])
        ]


@pytest.mark.parametrize("suffix", [".mp4", ".ts"])
def test_a_chunk_from_its_segment_is_the_chunk_from_the_source(
    clip_factory: ClipFactory, tmp_path: Path, suffix: str
) -> None:
    """The segment's MediaInfo is the source's with its path: the decoder seeks to the
    chunk's keyframe inside it and gives the same frames, so the same chunk comes out."""
    clip = clip_factory(suffix, frames=48, gop=12, width=64, height=48)
    media, plan, made = _cut(clip, tmp_path)
    for chunk in plan.chunks[1:3]:
        outputs = []
        for name, info in (
            ("from_source", media),
            ("from_segment", segments.segment_media(media, made[chunk.index])),
        ):
            out = tmp_path / f"{name}_{chunk.index}.mkv"
            result = upscale_chunk(
                info, chunk, Nearest2x(), EncodeSettings(preset="ultrafast"), out,
                container_format="matroska",
            )  # fmt: skip
            assert result.frames == chunk.frame_count and result.damaged == 0
            outputs.append(_frames(out))
        assert outputs[0] == outputs[1] and len(outputs[0]) == chunk.frame_count


def _streams(path: Path) -> list[object]:
    """Every non-video packet (stream, pts, bytes), the tags, chapters and stream tags."""
    with av.open(str(path)) as c:
        others = [s for s in c.streams if s.type != "video"]
        packets = [(p.stream.index, p.pts, bytes(p)) for p in c.demux(others) if p.size]
        codec = [getattr(s.codec_context, "name", None) for s in c.streams]
        tags = [
            (s.type, n, dict(s.metadata), s.disposition)
            for s, n in zip(c.streams, codec, strict=True)
        ]
        return [tuple(packets), tuple(map(str, tags)), str(c.chapters()), str(dict(c.metadata))]


@pytest.mark.parametrize(
    ("suffix", "changes", "out_format", "out_suffix"),
    [
        (".mkv", {"subtitles": True, "chapters": 3, "title": "Holiday"}, "matroska", ".mkv"),
        (".mov", {"timecode": "01:00:00:00", "chapters": 2}, "mov", ".mov"),
        (".mp4", {"audio_tracks": (("eng", "Main"), ("fra", "Commentaire"))}, "mp4", ".mp4"),
        (".ts", {}, "matroska", ".mkv"),
    ],
)
def test_merging_from_the_side_file_gives_what_merging_from_the_source_gives(
    clip_factory: ClipFactory,
    tmp_path: Path,
    suffix: str,
    changes: dict[str, Any],
    out_format: str,
    out_suffix: str,
) -> None:
    clip = clip_factory(suffix, frames=24, gop=12, width=64, height=48, **changes)
    media = probe(clip)
    plan = plan_chunks(media.video, 60.0)
    chunk_file = tmp_path / f"chunk{out_suffix}"
    upscale_chunk(
        media, plan.chunks[0], Nearest2x(), EncodeSettings(preset="ultrafast"), chunk_file,
        container_format=out_format,
    )  # fmt: skip
    side = segments.write_side_file(media, tmp_path / "side", suffix)
    assert side.path.stat().st_size < clip.stat().st_size
    from vsr_desktop.core.media.timeline import output_timeline

    timeline = output_timeline(media.video, out_format, media.start_seconds)
    chunk = ChunkFile(chunk_file, timeline.to_output(plan.chunks[0].start_pts), timeline.time_base)
    results = []
    for name, info in (("source", media), ("side", segments.side_media(media, side))):
        out = tmp_path / f"from_{name}{out_suffix}"
        notes = merge_chunks([chunk], info, out, out_format)
        results.append((notes, _streams(out), probe(out).timecode))
    assert results[0] == results[1]


# --- through S3 --------------------------------------------------------------------------


@pytest.fixture()
def s3(aws: MotoServer) -> Any:
    client: Any = boto3.client("s3")
    client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    return client


class _ReadCounter:
    """Bytes of every GetObject response on the worker's clients (its downloads)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.bytes = 0
        self.keys: list[str] = []
        real = s3_transfer.make_client

        def counting_client() -> Any:
            client = real()
            client.meta.events.register("before-parameter-build.s3.GetObject", self._key)
            client.meta.events.register("after-call.s3.GetObject", self._count)
            return client

        monkeypatch.setattr(s3_transfer, "make_client", counting_client)

    def _key(self, params: Any, **_: Any) -> None:
        self.keys.append(str(params.get("Key", "")))

    def _count(self, http_response: Any, **_: Any) -> None:
        self.bytes += int(http_response.headers.get("Content-Length", 0))

    def reset(self) -> None:
        self.bytes, self.keys = 0, []


def test_a_chunk_task_reads_its_share_and_the_merge_never_the_source(
    s3: Any, clip_factory: ClipFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = clip_factory(frames=120, gop=12, width=160, height=96)
    spec = JobSpec(
        source=source,
        output=Path(r"C:\Users\me\Videos\holiday_x2.mkv"),
        engine=EngineSettings(outscale=2),
        encode=EncodeSettings(preset="ultrafast"),
        chunk_seconds=0.5,
    )
    location = JobLocation.for_job(BUCKET, "job-seg")
    stage_job_inputs(spec, location, client=s3)
    reads = _ReadCounter(monkeypatch)
    plan = split_from_s3(location.uri)
    assert len(plan.chunks) == 10
    listed = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert {location.key(f"segments/segment_{i:05d}.mov") for i in range(10)} <= listed
    assert location.key("segments/side.mp4") in listed

    share = source.stat().st_size / len(plan.chunks)
    sizes = {}
    for index in range(len(plan.chunks)):
        reads.reset()
        assert upscale_from_s3(location.uri, index, engine_factory=lambda _: Nearest2x())
        sizes[index] = reads.bytes
        assert location.key("input/source.mp4") not in reads.keys
        assert reads.bytes <= 1.2 * share, (index, reads.bytes, share)

    reads.reset()
    merge_from_s3(location.uri)
    assert location.key("input/source.mp4") not in reads.keys
    merge_progress = s3.get_object(Bucket=BUCKET, Key=location.key("progress/merge.json"))
    assert b'"done"' in merge_progress["Body"].read()
    output = tmp_path / "out.mkv"
    s3.download_file(BUCKET, location.key("output/holiday_x2.mkv"), str(output))
    info = probe(output)
    assert info.video.frame_count == 120 and (info.video.width, info.video.height) == (320, 192)

    # A job split before segments existed (no segments.json) still runs, from the source.
    s3.delete_object(Bucket=BUCKET, Key=location.key("segments.json"))
    s3.delete_object(Bucket=BUCKET, Key=location.key("chunks/chunk_00003.mkv"))
    reads.reset()
    assert upscale_from_s3(location.uri, 3, engine_factory=lambda _: Nearest2x())
    assert reads.bytes >= source.stat().st_size
    print(f"one chunk of 10 read {max(sizes.values()) / share:.2f}× its share (was "
          f"{reads.bytes / share:.2f}× its share from the whole source)")  # fmt: skip


def test_scratch_is_the_instance_store_when_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(s3_job.SCRATCH_ENV, str(tmp_path / "nvme"))
    with s3_job._work_dir() as work:
        assert Path(work).parent == tmp_path / "nvme"
    monkeypatch.delenv(s3_job.SCRATCH_ENV)
    monkeypatch.setattr(s3_job, "INSTANCE_STORE_MOUNT", tmp_path / "not-mounted")
    assert s3_job.scratch_root() is None
