"""Resumable upload and download of real videos against the moto S3 server (real HTTP)."""

from __future__ import annotations

import threading
from pathlib import Path

import boto3
import pytest

from tests.helpers.aws_fixture import REGION, MotoServer
from vsr_desktop.backends.aws.errors import CloudError
from vsr_desktop.backends.aws.transfer import download_file, part_size_for, upload_file
from vsr_desktop.core.errors import CancelledError
from vsr_desktop.core.media.probe import probe

PART = 64 * 1024  # the smallest part the test server accepts (see tests/aws_fixture.py)
BUCKET = "vsr-transfer-test"


@pytest.fixture()
def s3(aws: MotoServer) -> object:
    client = boto3.client("s3")
    client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})  # type: ignore[typeddict-item]
    return client


@pytest.fixture()
def video(clip_factory) -> Path:  # type: ignore[no-untyped-def]
    """A real encoded clip big enough for several parts."""
    path = clip_factory(width=320, height=240, frames=48, crf=4)
    assert path.stat().st_size > 4 * PART, path.stat().st_size
    return path


class _PartCounter:
    """Counts UploadPart requests the client really sends (botocore's event hook)."""

    def __init__(self, client: object) -> None:
        self.parts: list[int] = []
        client.meta.events.register(  # type: ignore[attr-defined]
            "before-parameter-build.s3.UploadPart", self._seen
        )

    def _seen(self, params: dict[str, object], **_: object) -> None:
        self.parts.append(int(str(params["PartNumber"])))


def test_interrupted_upload_resumes_without_resending_parts(s3, video: Path) -> None:  # type: ignore[no-untyped-def]
    counter = _PartCounter(s3)
    cancel = threading.Event()
    ids: list[str] = []

    def stop_after_two(done: int, total: int) -> None:
        if done >= 2 * PART:
            cancel.set()

    with pytest.raises(CancelledError):
        upload_file(
            s3,
            video,
            BUCKET,
            "jobs/a/input/source.mp4",
            on_upload_id=ids.append,
            on_progress=stop_after_two,
            cancel=cancel,
            part_size=PART,
        )
    assert counter.parts == [1, 2]
    assert not s3.list_objects_v2(Bucket=BUCKET).get("Contents")  # nothing complete yet

    seen: list[tuple[int, int]] = []
    result = upload_file(
        s3,
        video,
        BUCKET,
        "jobs/a/input/source.mp4",
        upload_id=ids[0],
        on_progress=lambda d, t: seen.append((d, t)),
        part_size=PART,
    )
    total_parts = -(-video.stat().st_size // PART)
    assert result.parts_reused == 2
    assert result.parts_sent == total_parts - 2
    assert counter.parts[2:] == list(range(3, total_parts + 1))  # parts 1-2 not sent again
    assert seen[0] == (2 * PART, video.stat().st_size)
    assert seen[-1] == (video.stat().st_size, video.stat().st_size)
    body = s3.get_object(Bucket=BUCKET, Key="jobs/a/input/source.mp4")["Body"].read()
    assert body == video.read_bytes()


def test_changed_file_restarts_the_upload(s3, video: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Parts whose bytes no longer match the file are not trusted: the upload starts over."""
    copy = tmp_path / "source.mp4"
    copy.write_bytes(video.read_bytes())
    cancel = threading.Event()
    ids: list[str] = []
    with pytest.raises(CancelledError):
        upload_file(
            s3,
            copy,
            BUCKET,
            "k.mp4",
            on_upload_id=ids.append,
            on_progress=lambda d, t: cancel.set() if d >= PART else None,
            cancel=cancel,
            part_size=PART,
        )
    data = bytearray(copy.read_bytes())
    data[10] ^= 0xFF  # the user re-exported the file
    copy.write_bytes(bytes(data))
    result = upload_file(s3, copy, BUCKET, "k.mp4", upload_id=ids[0], part_size=PART)
    assert result.parts_reused == 0
    assert s3.get_object(Bucket=BUCKET, Key="k.mp4")["Body"].read() == bytes(data)


def test_expired_upload_id_starts_afresh(s3, video: Path) -> None:  # type: ignore[no-untyped-def]
    result = upload_file(s3, video, BUCKET, "k2.mp4", upload_id="no-such-upload", part_size=PART)
    assert result.parts_reused == 0
    assert s3.head_object(Bucket=BUCKET, Key="k2.mp4")["ContentLength"] == video.stat().st_size


def test_download_resumes_and_only_renames_when_complete(
    s3,
    video: Path,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    s3.put_object(Bucket=BUCKET, Key="out.mp4", Body=video.read_bytes())
    target = tmp_path / "result.mp4"
    cancel = threading.Event()
    with pytest.raises(CancelledError):
        download_file(
            s3,
            BUCKET,
            "out.mp4",
            target,
            chunk_size=PART,
            cancel=cancel,
            on_progress=lambda d, t: cancel.set(),
        )
    assert not target.exists()  # never half a video under the user's name
    partial = tmp_path / ".result.mp4.partial"
    assert partial.stat().st_size == PART
    ranges: list[str] = []
    s3.meta.events.register(
        "before-call.s3.GetObject", lambda params, **_: ranges.append(params["headers"]["Range"])
    )
    download_file(s3, BUCKET, "out.mp4", target, chunk_size=PART)
    assert ranges[0].startswith(f"bytes={PART}-")  # carried on where it stopped
    assert target.read_bytes() == video.read_bytes()
    assert probe(target).video.frame_count == 48
    assert not partial.exists()


def test_missing_object_is_a_clear_error(s3, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CloudError, match="does not exist"):
        download_file(s3, BUCKET, "nothing.mp4", tmp_path / "x.mp4")
    assert not (tmp_path / "x.mp4").exists()


def test_part_size_keeps_within_ten_thousand_parts() -> None:
    size = 500 * 1024**3  # a 500 GB master file
    part = part_size_for(size)
    assert -(-size // part) <= 10_000
    assert part_size_for(1024) == 16 * 1024 * 1024
