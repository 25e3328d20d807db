"""Downloading a finished job's result: one file, or an image sequence (numbered PNG/TIFF
frames plus audio WAVs).

The cloud merge uploads such an output as one object per file under `output/<name>/` and
then the empty marker `output/<name>` (worker/s3_transfer.py upload_folder): the marker's
`files` metadata says how many files make the whole. The files come down into a hidden
folder beside the output (each through its own `.partial` file, so a paused download keeps
the finished ones), and only when every file is there do they move under the user's names:
a folder output is swapped in whole, frames named by a pattern move into their folder. As
for local jobs (core/media/image_sequence.py), nothing partial ever carries the final name.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from vsr_desktop.backends.aws.errors import CloudError, result_read_error
from vsr_desktop.backends.aws.transfer import BytesProgress, download_file
from vsr_desktop.core.errors import InputError
from vsr_desktop.core.job_spec import JobSpec
from vsr_desktop.core.media.encode import container_for
from vsr_desktop.core.media.image_sequence import check_image_output, image_target, swap_folder


def check_output_free(output: Path, spec: JobSpec, job_id: str) -> None:
    """Refuse to replace what is there (a file, a non-empty folder, frames of the same
    names) unless the job allows overwriting."""
    if container_for(output) == "image2":
        check_image_output(output, spec.encode, spec.overwrite)
    elif output.exists() and not spec.overwrite:
        raise InputError(
            f"{output} already exists",
            f"move it away, or download to another file (`vsr jobs resume {job_id} "
            "--overwrite` allows replacing it)",
        )


def download_result(
    s3: Any,
    bucket: str,
    key: str,
    output: Path,
    codec: str,
    *,
    on_progress: BytesProgress | None = None,
    cancel: threading.Event | None = None,
) -> None:
    """The result under `key` to `output`: one resumable file, or (an output naming a folder
    or numbered frames) the sequence's files (download_image_sequence)."""
    if container_for(output) == "image2":
        download_image_sequence(
            s3, bucket, key, output, codec, on_progress=on_progress, cancel=cancel
        )
    else:
        download_file(s3, bucket, key, output, on_progress=on_progress, cancel=cancel)


def staging_folder(output: Path, codec: str) -> Path:
    """Where the files gather before they take their names (hidden, beside the output)."""
    target = image_target(output, codec)
    if target.owns_folder:
        return target.folder.parent / f".{target.folder.name}.download"
    return target.folder / f".{target.stem}vsr.download"


def download_image_sequence(
    s3: Any,
    bucket: str,
    key: str,
    output: Path,
    codec: str,
    *,
    on_progress: BytesProgress | None = None,
    cancel: threading.Event | None = None,
) -> int:
    """Download the sequence stored under `key/` to `output` (a folder, or a pattern such as
    out_%06d.png in its folder); returns the number of files."""
    objects = _listing(s3, bucket, key)
    target = image_target(output, codec)
    staging = staging_folder(output, codec)
    staging.mkdir(parents=True, exist_ok=True)
    total = sum(size for _, size in objects)
    done = 0
    for object_key, size in objects:
        path = staging / object_key[len(key) + 1 :]
        if not (path.is_file() and path.stat().st_size == size):  # kept from a paused try

            def each(part: int, _total: int, before: int = done) -> None:
                if on_progress is not None:
                    on_progress(before + part, total)

            download_file(s3, bucket, object_key, path, on_progress=each, cancel=cancel)
        done += size
        if on_progress is not None:
            on_progress(done, total)
    try:
        if target.owns_folder:
            swap_folder(staging, target.folder)
        else:
            for path in sorted(staging.iterdir()):
                os.replace(path, target.folder / path.name)
            staging.rmdir()
    except OSError as exc:
        raise CloudError(
            f"cannot put the frames in place at {output}: {exc.strerror}",
            "check the output folder, then download again (finished files are kept)",
        ) from exc
    return len(objects)


def _listing(s3: Any, bucket: str, key: str) -> list[tuple[str, int]]:
    """Every file of the sequence, after checking the marker says they are all there."""
    try:
        marker = s3.head_object(Bucket=bucket, Key=key)
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key + "/")
        objects = [(o["Key"], int(o["Size"])) for page in pages for o in page.get("Contents", [])]
    except (ClientError, BotoCoreError) as exc:
        raise result_read_error("listing the result's frames", exc, bucket, key) from exc
    expected = str(marker.get("Metadata", {}).get("files", ""))
    if not expected.isdigit() or int(expected) != len(objects):
        raise CloudError(
            f"s3://{bucket}/{key}/ holds {len(objects)} file(s), not the {expected or '?'} "
            "the merge wrote",
            "retry the job (its merge runs again), then download",
        )
    return objects
