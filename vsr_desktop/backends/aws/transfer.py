"""Moving the user's video to S3 and the result back: resumable, with progress and cancel.

A two-hour source is gigabytes on a home uplink; an interrupted upload must not start over.
The upload is always multipart, and its UploadId is kept by the caller (in the job record):
on resume the parts S3 already holds — same number, same size, same MD5 as the local bytes —
are kept and only the rest are sent. Downloads go to a temporary name and are renamed once
complete, so the user's chosen output never holds half a video.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from vsr_desktop.backends.aws.errors import CloudError, cloud_error, result_read_error
from vsr_desktop.core.errors import CancelledError

DEFAULT_PART_SIZE = 16 * 1024 * 1024  # S3 allows 10,000 parts: 160 GB at this size
MAX_PARTS = 10_000

BytesProgress = Callable[[int, int], None]  # (bytes done, bytes total)


@dataclass(frozen=True)
class UploadResult:
    key: str
    size: int
    parts_sent: int
    parts_reused: int


def part_size_for(size: int, minimum: int = DEFAULT_PART_SIZE) -> int:
    """Big enough that the file fits in S3's 10,000 parts."""
    part = minimum
    while size > part * MAX_PARTS:
        part *= 2
    return part


def upload_file(
    s3: Any,
    path: Path,
    bucket: str,
    key: str,
    *,
    upload_id: str | None = None,
    on_upload_id: Callable[[str], None] | None = None,
    on_progress: BytesProgress | None = None,
    cancel: threading.Event | None = None,
    part_size: int | None = None,
) -> UploadResult:
    """Upload `path` to s3://bucket/key, resuming `upload_id` when S3 still has it.

    `on_upload_id` is told the id as soon as the upload exists, so the caller can store it
    before the first byte goes out; a cancel leaves the upload open for a later resume.
    """
    size = path.stat().st_size
    part = part_size or part_size_for(size)
    count = max(1, -(-size // part))
    reused = _reusable_parts(s3, bucket, key, upload_id, path, part, size) if upload_id else None
    try:
        if reused is None:
            upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
            reused = {}
        assert upload_id is not None
        if on_upload_id is not None:
            on_upload_id(upload_id)
        done_bytes = sum(_part_length(n, part, size) for n in reused)
        if on_progress is not None:
            on_progress(done_bytes, size)
        etags = {n: etag for n, etag in reused.items()}
        sent = 0
        with path.open("rb") as source:
            for number in range(1, count + 1):
                if number in etags:
                    continue
                if cancel is not None and cancel.is_set():
                    raise CancelledError("upload paused", "resume the job to continue it")
                source.seek((number - 1) * part)
                body = source.read(part)
                reply = s3.upload_part(
                    Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body
                )
                etags[number] = reply["ETag"]
                sent += 1
                done_bytes += len(body)
                if on_progress is not None:
                    on_progress(done_bytes, size)
        s3.complete_multipart_upload(
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": n, "ETag": etags[n]} for n in sorted(etags)]},
        )
    except (ClientError, BotoCoreError) as exc:
        raise cloud_error(f"uploading {path.name}", exc) from exc
    return UploadResult(key=key, size=size, parts_sent=sent, parts_reused=len(reused))


def _part_length(number: int, part: int, size: int) -> int:
    return max(0, min(part, size - (number - 1) * part))


def _reusable_parts(
    s3: Any, bucket: str, key: str, upload_id: str, path: Path, part: int, size: int
) -> dict[int, str] | None:
    """Parts of an earlier upload that match the file byte for byte; None to start afresh."""
    found: dict[int, str] = {}
    try:
        for page in s3.get_paginator("list_parts").paginate(
            Bucket=bucket, Key=key, UploadId=upload_id
        ):
            for item in page.get("Parts", []):
                found[int(item["PartNumber"])] = str(item["ETag"])
                if int(item["Size"]) != _part_length(int(item["PartNumber"]), part, size):
                    _abandon(s3, bucket, key, upload_id)
                    return None
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "NoSuchUpload":
            return None  # expired by the lifecycle rule, or completed: start again
        raise cloud_error(f"resuming the upload of {path.name}", exc) from exc
    except BotoCoreError as exc:
        raise cloud_error(f"resuming the upload of {path.name}", exc) from exc
    with path.open("rb") as source:
        for number, etag in found.items():
            source.seek((number - 1) * part)
            if hashlib.md5(source.read(part)).hexdigest() != etag.strip('"'):
                _abandon(s3, bucket, key, upload_id)  # the file changed since
                return None
    return found


def _abandon(s3: Any, bucket: str, key: str, upload_id: str) -> None:
    """Drop an upload whose parts no longer match the file (it was edited, or re-encoded)."""
    with contextlib.suppress(ClientError):
        s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)


def download_file(
    s3: Any,
    bucket: str,
    key: str,
    target: Path,
    *,
    on_progress: BytesProgress | None = None,
    cancel: threading.Event | None = None,
    chunk_size: int = 8 * 1024 * 1024,
) -> int:
    """Download to `target` through a `.partial` file renamed at the end; returns the size."""
    try:
        size = int(s3.head_object(Bucket=bucket, Key=key)["ContentLength"])
    except (ClientError, BotoCoreError) as exc:
        raise result_read_error("starting the download", exc, bucket, key) from exc
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    done = partial.stat().st_size if partial.exists() else 0
    if done > size:
        partial.unlink()
        done = 0
    try:
        with partial.open("ab") as out:
            while done < size:
                if cancel is not None and cancel.is_set():
                    raise CancelledError("download paused", "download again to continue it")
                end = min(size, done + chunk_size) - 1
                body = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={done}-{end}")["Body"]
                data = body.read()
                out.write(data)
                done += len(data)
                if on_progress is not None:
                    on_progress(done, size)
            out.flush()
            os.fsync(out.fileno())
    except (ClientError, BotoCoreError) as exc:
        raise cloud_error("downloading the result", exc) from exc
    except OSError as exc:
        raise CloudError(
            f"cannot write {target}: {exc.strerror}",
            "free some disk space or pick another output folder",
        ) from exc
    os.replace(partial, target)
    return size
