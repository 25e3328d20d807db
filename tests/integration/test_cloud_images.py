"""Image-sequence outputs (numbered PNG/TIFF frames) through AWS, end to end on the moto server.

The app submits the job; the worker stages run as real `vsr worker` processes on the same
S3 as Batch's containers would (moto's Batch runs no container: the boundary); each chunk
uploads its frames, merge numbers them all under the user's names with the audio as WAV,
and the download gives the folder (or the frames in theirs) — nothing partial before.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import av
import boto3
import numpy as np
import pytest

from tests.conftest import ClipFactory
from tests.helpers.aws_fixture import MotoServer
from tests.helpers.cloud_infra import BUCKET, create_cloud_stack
from vsr_desktop.backends.aws.backend import AwsBackend
from vsr_desktop.backends.aws.errors import CloudError
from vsr_desktop.backends.aws.image_download import staging_folder
from vsr_desktop.core.errors import CancelledError
from vsr_desktop.core.job_spec import EngineSettings, JobSpec
from vsr_desktop.core.jobs import JobRecord, JobState, JobStore
from vsr_desktop.core.media.encode import EncodeSettings


@pytest.fixture()
def backend(aws: MotoServer, tmp_path: Path) -> AwsBackend:
    return AwsBackend(
        JobStore(tmp_path / "jobs.db"), boto3.session.Session(), stack=create_cloud_stack()
    )


def _workers(stage: str, uri: str, chunks: list[int | None]) -> None:
    """Run a stage as Batch would: one process per chunk, all at once."""
    procs = []
    for chunk in chunks:
        env = {**os.environ, "VSR_JOB_URI": uri}
        if chunk is not None:
            env["VSR_CHUNK_INDEX"] = str(chunk)
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "vsr_desktop.cli", "worker", stage],
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
        )
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err


def _run(backend: AwsBackend, spec: JobSpec) -> JobRecord:
    """Submit, let the execution end, do the containers' work, poll: COMPLETED."""
    job = backend.submit(spec, price_per_gpu_hour=0.36)
    deadline = time.monotonic() + 60
    arn = backend.aws_state(job)["execution_arn"]
    sfn = backend.client("stepfunctions")
    while sfn.describe_execution(executionArn=arn)["status"] == "RUNNING":
        assert time.monotonic() < deadline, "the execution did not end"
        time.sleep(0.2)
    _workers("split", job.work_dir, [None])
    _workers("upscale", job.work_dir, list(range(job.chunks_total)))
    _workers("merge", job.work_dir, [None])
    polled = backend.poll(backend.store.get(job.id))
    assert polled.state is JobState.COMPLETED, polled.message
    return polled


def _spec(source: Path, output: Path, codec: str) -> JobSpec:
    return JobSpec(
        source=source,
        output=output,
        engine=EngineSettings(outscale=2),
        encode=EncodeSettings(codec=codec),
        chunk_seconds=0.5,
    )


def _pixels(path: Path) -> np.ndarray:
    with av.open(str(path)) as image:
        return next(image.decode(video=0)).to_ndarray(format="rgb24")


def test_a_png_folder_output_comes_back_as_the_folder(
    backend: AwsBackend, clip_factory: ClipFactory, tmp_path: Path
) -> None:
    source = clip_factory(frames=24, gop=8, width=48, height=32)
    folder = tmp_path / "frames"
    job = _run(backend, _spec(source, folder, "png"))
    assert job.chunks_total > 1
    s3 = backend.client("s3")
    prefix = f"jobs/{job.id}/"
    # Each chunk is its frames under chunks/chunk_N/ plus the marker merge checks.
    markers = [
        s3.head_object(Bucket=BUCKET, Key=f"{prefix}chunks/chunk_{i:05d}")["Metadata"]
        for i in range(job.chunks_total)
    ]
    assert all(m["frames"] == m["files"] for m in markers)
    assert sum(int(m["files"]) for m in markers) == 24
    assert not folder.exists()  # nothing under the user's name before the download

    path = backend.download(job)
    assert path == folder
    names = sorted(p.name for p in folder.iterdir())
    assert names == [f"frame_{i:06d}.png" for i in range(24)] + ["frame_audio.wav"]
    assert _pixels(folder / "frame_000023.png").shape == (64, 96, 3)  # ×2 of 48×32
    with av.open(str(folder / "frame_audio.wav")) as audio:
        assert sum(f.samples for f in audio.decode(audio=0)) > 0  # the source's sound
    assert not staging_folder(folder, "png").exists()
    done = backend.store.get(job.id)
    assert backend.aws_state(done)["downloaded"] is True
    assert done.verify_report is not None and done.verify_report["ok"], done.verify_report


def test_tiff_frames_named_by_a_pattern_land_in_their_folder(
    backend: AwsBackend, clip_factory: ClipFactory, tmp_path: Path
) -> None:
    source = clip_factory(frames=24, gop=8, width=48, height=32)
    shots = tmp_path / "shots"
    shots.mkdir()
    (shots / "notes.txt").write_text("the user's own file stays")
    job = _run(backend, _spec(source, shots / "shot_%04d.tif", "tiff"))
    backend.download(job)
    names = sorted(p.name for p in shots.iterdir())
    frames = [f"shot_{i:04d}.tif" for i in range(24)]
    assert names == sorted([*frames, "shot_audio.wav", "notes.txt"])
    assert _pixels(shots / "shot_0000.tif").shape == (64, 96, 3)


def test_a_paused_image_download_keeps_what_it_has_and_leaves_no_final_name(
    backend: AwsBackend, clip_factory: ClipFactory, tmp_path: Path
) -> None:
    source = clip_factory(frames=24, gop=8, width=48, height=32)
    folder = tmp_path / "frames"
    job = _run(backend, _spec(source, folder, "png"))
    import threading

    cancel = threading.Event()
    seen: list[int] = []

    def pause_after_some(done: int, total: int) -> None:
        seen.append(done)
        if len(seen) == 5:
            cancel.set()

    with pytest.raises(CancelledError):
        backend.download(job, on_progress=pause_after_some, cancel=cancel)
    assert not folder.exists()
    kept = list(staging_folder(folder, "png").iterdir())
    assert 0 < len(kept) < 25
    # The rest comes on the next try; the frames already here are not fetched again.
    gets: list[str] = []
    backend.client("s3").meta.events.register(
        "before-parameter-build.s3.GetObject", lambda params, **_: gets.append(params["Key"])
    )
    backend.download(backend.store.get(job.id))
    assert len(list(folder.iterdir())) == 25
    assert len(set(gets)) == 25 - len([p for p in kept if not p.name.endswith(".partial")])

    # A sequence whose files are not all in S3 is refused, not half-downloaded.
    s3 = backend.client("s3")
    s3.delete_object(Bucket=BUCKET, Key=f"jobs/{job.id}/output/frames/frame_000003.png")
    other = tmp_path / "copy"
    with pytest.raises(CloudError, match="holds 24 file"):
        backend.download(backend.store.get(job.id), target=other)
    assert not other.exists()
