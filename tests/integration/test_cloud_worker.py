"""The AWS worker stages as real `vsr worker` processes against a moto S3 server over HTTP.

Jobs are staged the way the app stages them (stage_job_inputs: the user's clip and spec.json),
then split → upscale each chunk → merge run as separate processes that find the job only
through S3, as Batch containers do. The model is the real bundled one, on tiny clips.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import av
import boto3
import pytest

from tests.conftest import ClipFactory
from tests.helpers.aws_fixture import REGION, MotoServer
from vsr_desktop.core.errors import JobError
from vsr_desktop.core.job_spec import EngineSettings, JobSpec
from vsr_desktop.core.media import EncodeSettings, probe
from vsr_desktop.core.source_identity import SourceIdentity
from vsr_desktop.worker.s3_job import stage_job_inputs
from vsr_desktop.worker.s3_layout import JobLocation

BUCKET = "vsr-test-jobs"
ENTRYPOINT = Path(__file__).parents[2] / "packaging" / "docker" / "entrypoint.sh"


def worker(
    *args: object, env: dict[str, str] | None = None, drop: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in {**os.environ, **(env or {})}.items() if k not in drop}
    return subprocess.run(
        [sys.executable, "-m", "vsr_desktop.cli", "worker", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env=full,
    )


def _audio(path: Path) -> list[bytes]:
    """The audio packets a player plays (an MKV output leaves the MP4's edit-list primer)."""
    with av.open(str(path)) as container:
        return [
            bytes(p)
            for p in container.demux(container.streams.audio[0])
            if p.size and not p.is_discard
        ]


@pytest.fixture()
def s3(aws: MotoServer) -> Any:
    client: Any = boto3.client("s3")
    client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    return client


def _stage(
    s3: Any, source: Path, job_id: str, outscale: float | None = None, chunk_seconds: float = 60.0
) -> str:
    """Upload a job exactly as the app does; the output is a path on the user's (Windows)
    machine, which the worker must not take for a Linux file name."""
    spec = JobSpec(
        source=source,
        output=Path(r"C:\Users\me\Videos\holiday_x2.mkv"),
        engine=EngineSettings(outscale=outscale),
        encode=EncodeSettings(preset="ultrafast"),
        chunk_seconds=chunk_seconds,
    )
    location = JobLocation.for_job(BUCKET, job_id)
    stage_job_inputs(spec, location, client=s3)
    return location.uri


def _json(s3: Any, key: str) -> dict[str, Any]:
    return json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())


def _keys(s3: Any, prefix: str) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])]


def test_split_upscale_merge_through_s3(s3: Any, clip_factory: ClipFactory, tmp_path: Path) -> None:
    source = clip_factory(frames=24, gop=12, width=48, height=32)
    uri = _stage(s3, source, "job-1", outscale=2, chunk_seconds=0.5)
    job = "jobs/job-1/"
    split = worker("split", env={"VSR_JOB_URI": uri})
    assert split.returncode == 0, split.stderr
    assert split.stdout.strip() == "2"
    assert _json(s3, job + "plan.json")["chunks"][1]["frame_count"] == 12
    assert _json(s3, job + "media.json")["path"] == f"s3://{BUCKET}/{job}input/source.mp4"
    assert _json(s3, job + "progress/split.json")["state"] == "done"

    # Chunk 0 as Batch would run it (env), chunk 1 with flags; both at once.
    started = time.monotonic()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "vsr_desktop.cli", "worker", "upscale"],
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "VSR_JOB_URI": uri, "VSR_CHUNK_INDEX": "0"},
        ),
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "vsr_desktop.cli",
                "worker",
                "upscale",
                "--job-uri",
                uri,
                "--chunk",
                "1",
            ],
            stderr=subprocess.PIPE,
            text=True,
        ),
    ]
    for proc in procs:
        assert proc.wait(timeout=300) == 0, proc.stderr.read() if proc.stderr else ""
        if proc.stderr:
            proc.stderr.close()
    first_run = time.monotonic() - started
    for index in (0, 1):
        key = f"{job}chunks/chunk_{index:05d}.mkv"
        assert s3.head_object(Bucket=BUCKET, Key=key)["Metadata"]["frames"] == "12"
        progress = _json(s3, f"{job}progress/chunk_{index:05d}.json")
        assert progress["state"] == "done" and progress["frames_done"] == 12

    merged = worker("merge", "--job-uri", uri)
    assert merged.returncode == 0, merged.stderr
    assert _json(s3, job + "progress/merge.json")["state"] == "done"
    output = tmp_path / "downloaded.mkv"
    s3.download_file(BUCKET, job + "output/holiday_x2.mkv", str(output))
    info = probe(output)
    assert info.video.frame_count == probe(source).video.frame_count == 24
    assert (info.video.width, info.video.height) == (96, 64)
    assert _audio(output) == _audio(source)

    # A finished chunk is skipped without touching the source (gone now) or the model.
    s3.delete_object(Bucket=BUCKET, Key=job + "input/source.mp4")
    started = time.monotonic()
    again = worker("upscale", "--job-uri", uri, "--chunk", "1")
    assert again.returncode == 0 and "already done" in again.stderr, again.stderr
    assert time.monotonic() - started < first_run
    assert _json(s3, job + "progress/chunk_00001.json")["message"] == "already done"

    # Merge names the chunk that is missing.
    s3.delete_object(Bucket=BUCKET, Key=job + "chunks/chunk_00001.mkv")
    broken = worker("merge", "--job-uri", uri)
    assert broken.returncode == 6
    assert f"1 of 2 chunk(s) are not in s3://{BUCKET}/{job}chunks/: 1" in broken.stderr
    assert "Traceback" not in broken.stderr and len(broken.stderr.strip().splitlines()) == 1
    failed = _json(s3, job + "progress/merge.json")
    assert failed["state"] == "failed" and "not in" in failed["message"]


@pytest.mark.skipif("sys.platform == 'win32'", reason="SIGTERM, POSIX sh entrypoint")
def test_sigterm_stops_a_chunk_uploads_nothing_and_a_rerun_redoes_it(
    s3: Any, clip_factory: ClipFactory
) -> None:
    source = clip_factory(frames=32, gop=32, width=160, height=96)
    uri = _stage(s3, source, "job-2")
    assert worker("split", "--job-uri", uri).returncode == 0
    # Started the way Batch starts the container: the image's entrypoint, `vsr worker upscale`.
    env = {
        **os.environ,
        "VSR_JOB_URI": uri,
        "VSR_CHUNK_INDEX": "0",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    proc = subprocess.Popen(
        ["sh", str(ENTRYPOINT), "vsr", "worker", "upscale"],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    key = "jobs/job-2/progress/chunk_00000.json"
    deadline = time.monotonic() + 120
    seen: dict[str, Any] = {}
    while time.monotonic() < deadline and proc.poll() is None:
        if key in _keys(s3, key):
            seen = _json(s3, key)
            if seen["state"] == "running" and seen["frames_done"] > 0:
                break
        time.sleep(0.1)
    assert seen.get("frames_done", 0) > 0, seen
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 143
    assert proc.stderr is not None and "stopped" in proc.stderr.read()
    proc.stderr.close()
    cancelled = _json(s3, key)
    assert cancelled["state"] == "cancelled" and cancelled["frames_done"] < 32
    assert _keys(s3, "jobs/job-2/chunks/") == []
    redo = worker("upscale", "--job-uri", uri, "--chunk", "0")
    assert redo.returncode == 0 and "chunk 0 done" in redo.stderr, redo.stderr
    head = s3.head_object(Bucket=BUCKET, Key="jobs/job-2/chunks/chunk_00000.mkv")
    assert head["Metadata"]["frames"] == "32"


def test_errors_are_one_clear_line(s3: Any, clip_factory: ClipFactory) -> None:
    uri = _stage(s3, clip_factory(frames=8, gop=8, width=48, height=32), "job-3")
    cases = [
        (
            worker("upscale", "--job-uri", "http://example.com/jobs/1", "--chunk", "0"),
            6,
            "is not an S3 URI",
        ),
        (worker("split", "--job-uri", f"s3://{BUCKET}"), 6, "names no job folder"),
        (
            worker("split", "--job-uri", "s3://no-such-bucket/jobs/1"),
            6,
            "the bucket no-such-bucket does not exist",
        ),
        (
            worker("merge", "--job-uri", f"s3://{BUCKET}/jobs/nothing-here"),
            6,
            f"s3://{BUCKET}/jobs/nothing-here/spec.json does not exist",
        ),
        (
            worker("upscale", "--chunk", "0", env={"VSR_JOB_URI": uri}),
            6,
            "plan.json does not exist — run `vsr worker split`",
        ),
        (
            worker("split", "--job-uri", uri, drop=("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")),
            6,
            "no AWS credentials were found",
        ),
        (worker("merge", drop=("VSR_JOB_URI",)), 2, "no job given"),
        (worker("upscale", "--job-uri", uri, env={"VSR_CHUNK_INDEX": "x"}), 2, "not a number"),
    ]
    for result, code, text in cases:
        assert result.returncode == code, result.stderr
        assert text in result.stderr
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert worker("split", "--job-uri", uri).returncode == 0
    beyond = worker("upscale", "--job-uri", uri, "--chunk", "3")
    assert beyond.returncode == 6 and "chunk 3 does not exist" in beyond.stderr


@pytest.mark.skipif("sys.platform == 'win32'", reason="POSIX sh entrypoint")
def test_image_entrypoint_takes_the_command_with_or_without_vsr() -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for args in (["vsr", "worker", "upscale", "--help"], ["worker", "upscale", "--help"]):
        result = subprocess.run(
            ["sh", str(ENTRYPOINT), *args], capture_output=True, text=True, env=env, timeout=60
        )
        assert result.returncode == 0 and "--job-uri" in result.stdout, result.stderr


def test_job_uri_parsing() -> None:
    location = JobLocation.parse("s3://bucket/jobs/abc/")
    assert (location.bucket, location.prefix) == ("bucket", "jobs/abc")
    assert (
        location.url_of("chunks/chunk_00001.mp4") == "s3://bucket/jobs/abc/chunks/chunk_00001.mp4"
    )
    assert JobLocation.for_job("bucket", "abc") == location
    for bad in ("bucket/jobs/abc", "s3://", "s3:///jobs/abc", "s3://bucket/", "s3://b/jobs//x"):
        with pytest.raises(JobError):
            JobLocation.parse(bad)


def test_split_refuses_an_uploaded_source_that_is_not_the_jobs_file(
    s3: Any, clip_factory: ClipFactory
) -> None:
    """The spec records the source's identity at submit; the copy in S3 must match it (size
    and head/tail hash: its mtime is the download's, which the staged jobs above show)."""
    recorded = clip_factory(frames=8, gop=8, width=48, height=32)
    uploaded = clip_factory(frames=12, gop=12, width=48, height=32)
    spec = replace(
        JobSpec(source=uploaded, output=Path("/home/me/out.mp4")),
        source_identity=SourceIdentity.of(recorded),
    )
    location = JobLocation.for_job(BUCKET, "job-4")
    stage_job_inputs(spec, location, client=s3)
    split = worker("split", "--job-uri", location.uri)
    assert split.returncode == 6, split.stderr
    assert (
        f"the uploaded source {location.url_of('input/source.mp4')} is not the file the "
        f"job was made from, {uploaded}"
    ) in split.stderr
    assert "content differs" in split.stderr and "--restart" in split.stderr
    assert _json(s3, "jobs/job-4/progress/split.json")["state"] == "failed"
    assert _keys(s3, "jobs/job-4/plan.json") == []
