"""Moving one cloud job's objects in and out of S3 (where each lives: worker/s3_layout.py).

Every boto3/botocore failure becomes a JobError with a hint, so a worker in a container ends
with one clear line in its log instead of a traceback. boto3 is imported only when a client is
made: the Slurm stages never need it.
"""

from __future__ import annotations

import contextlib
import json
import mimetypes
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vsr_desktop.core.errors import CancelledError, JobError
from vsr_desktop.worker.s3_layout import JOB_URI_HINT, JobLocation

_CREDENTIAL_CODES = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
    "ExpiredTokenException",
}
_MISSING_CODES = {"NoSuchKey", "404", "NotFound"}
_DENIED_CODES = {"AccessDenied", "403", "AllAccessDisabled", "Forbidden"}


def make_client() -> Any:
    """An S3 client from the default chain (job role, instance profile, env, profile)."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError as exc:
        raise JobError(
            "boto3 is not installed", "install the aws extra: pip install 'vsr-desktop[aws]'"
        ) from exc
    config = Config(
        retries={"mode": "standard", "max_attempts": 5}, connect_timeout=10, read_timeout=60
    )
    return boto3.client("s3", config=config)


class S3Job:
    """Reads and writes one job's objects; each call raises only JobError (or CancelledError)."""

    def __init__(self, location: JobLocation, client: Any | None = None) -> None:
        self.location = location
        self.client = client if client is not None else make_client()

    def get_json(self, name: str, missing_hint: str = "") -> dict[str, Any]:
        with s3_errors("read", self.location, name, missing_hint):
            body = self.client.get_object(Bucket=self.location.bucket, Key=self.location.key(name))[
                "Body"
            ].read()
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise JobError(
                f"{self.location.url_of(name)} is not JSON ({exc})", "submit the job again"
            ) from exc
        if not isinstance(data, dict):
            raise JobError(
                f"{self.location.url_of(name)} is not a JSON object", "submit the job again"
            )
        return data

    def get_text(self, name: str, missing_hint: str = "") -> str:
        with s3_errors("read", self.location, name, missing_hint):
            body = self.client.get_object(Bucket=self.location.bucket, Key=self.location.key(name))[
                "Body"
            ].read()
        return str(body.decode("utf-8"))

    def put_text(self, name: str, text: str, content_type: str = "application/json") -> None:
        with s3_errors("write", self.location, name):
            self.client.put_object(
                Bucket=self.location.bucket,
                Key=self.location.key(name),
                Body=text.encode("utf-8"),
                ContentType=content_type,
            )

    def put_json(self, name: str, data: dict[str, Any]) -> None:
        self.put_text(name, json.dumps(data))

    def get_json_if_present(self, name: str) -> dict[str, Any] | None:
        """Like get_json, but None when there is no such object."""
        from botocore.exceptions import ClientError

        with s3_errors("check", self.location, name):
            try:
                self.client.head_object(Bucket=self.location.bucket, Key=self.location.key(name))
            except ClientError as exc:
                if _code(exc) in _MISSING_CODES:
                    return None
                raise
        return self.get_json(name)

    def delete(self, name: str) -> None:
        """Remove one object (none there is fine)."""
        with s3_errors("delete", self.location, name):
            self.client.delete_object(Bucket=self.location.bucket, Key=self.location.key(name))

    def frames_of(self, name: str) -> int | None:
        """The `frames` metadata of a finished chunk object; None when there is no such object."""
        from botocore.exceptions import ClientError

        with s3_errors("check", self.location, name):
            try:
                head = self.client.head_object(
                    Bucket=self.location.bucket, Key=self.location.key(name)
                )
            except ClientError as exc:
                if _code(exc) in _MISSING_CODES:
                    return None
                raise
        try:
            return int(head.get("Metadata", {}).get("frames", ""))
        except ValueError:
            return None

    def download(
        self, name: str, path: Path, cancel: threading.Event | None = None, missing_hint: str = ""
    ) -> None:
        """Managed (multipart, parallel) download; a set `cancel` stops it between parts."""
        path.parent.mkdir(parents=True, exist_ok=True)

        def check(_bytes: int) -> None:
            if cancel is not None and cancel.is_set():
                raise CancelledError("cancelled during a download")

        with s3_errors("download", self.location, name, missing_hint):
            self.client.download_file(
                self.location.bucket, self.location.key(name), str(path), Callback=check
            )
        check(0)

    def upload(self, path: Path, name: str, metadata: dict[str, str] | None = None) -> None:
        """Managed upload: the object appears only once complete (S3 PUTs and multipart
        completions are atomic), so readers never see half a chunk or half an output."""
        extra: dict[str, Any] = {"Metadata": metadata or {}}
        content_type = mimetypes.guess_type(path.name)[0]
        if content_type:
            extra["ContentType"] = content_type
        with s3_errors("upload", self.location, name):
            self.client.upload_file(
                str(path), self.location.bucket, self.location.key(name), ExtraArgs=extra
            )

    def upload_folder(self, folder: Path, name: str, metadata: dict[str, str] | None = None) -> int:
        """An image sequence (a folder of frames and side files) as `name/<file>` objects,
        then the object `name` itself, empty, carrying `metadata` and the file count: the
        marker readers check (frames_of), written last so it means "all files are there"."""
        files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
        for path in files:
            self.upload(path, f"{name}/{path.name}")
        with s3_errors("upload", self.location, name):
            self.client.put_object(
                Bucket=self.location.bucket,
                Key=self.location.key(name),
                Body=b"",
                Metadata={**(metadata or {}), "files": str(len(files))},
            )
        return len(files)

    def download_folder(
        self, name: str, folder: Path, cancel: threading.Event | None = None
    ) -> int:
        """The files upload_folder put under `name/`, into `folder`; returns how many."""
        prefix = self.location.key(name) + "/"
        with s3_errors("list", self.location, name):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.location.bucket, Prefix=prefix
            )
            keys = [item["Key"] for page in pages for item in page.get("Contents", [])]
        folder.mkdir(parents=True, exist_ok=True)
        for key in keys:
            self.download(key[len(self.location.key("")) :], folder / key[len(prefix) :], cancel)
        return len(keys)


def _code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


@contextlib.contextmanager
def s3_errors(
    action: str, location: JobLocation, name: str = "", missing_hint: str = ""
) -> Iterator[None]:
    """Turn what boto3 raises into a JobError naming the object and saying what to do."""
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        NoCredentialsError,
        PartialCredentialsError,
    )

    where = location.url_of(name) if name else location.uri
    try:
        yield
    except (NoCredentialsError, PartialCredentialsError) as exc:
        raise JobError(
            "no AWS credentials were found",
            "run with an IAM role (Batch job role, EC2 instance profile) or set "
            "AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
        ) from exc
    except ClientError as exc:
        raise _client_job_error(exc, action, location, where, missing_hint) from exc
    except (BotoCoreError, Boto3Error) as exc:
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, ClientError):
            raise _client_job_error(cause, action, location, where, missing_hint) from exc
        raise JobError(
            f"could not {action} {where}: {exc}",
            "check the network, the AWS region and the endpoint",
        ) from exc


def _client_job_error(
    exc: BaseException, action: str, location: JobLocation, where: str, missing_hint: str
) -> JobError:
    code = _code(exc)
    if code == "NoSuchBucket":
        return JobError(
            f"the bucket {location.bucket} does not exist",
            f"check the job URI and the AWS region; {JOB_URI_HINT}",
        )
    if code in _MISSING_CODES:
        return JobError(
            f"{where} does not exist", missing_hint or f"check the job URI; {JOB_URI_HINT}"
        )
    if code in _DENIED_CODES:
        return JobError(
            f"access to {where} was denied",
            "the role needs s3:GetObject, s3:PutObject and s3:ListBucket on the job's bucket",
        )
    if code in _CREDENTIAL_CODES:
        return JobError(
            f"AWS rejected the credentials ({code})",
            "sign in again or fix the profile / access keys",
        )
    message = str(getattr(exc, "response", {}).get("Error", {}).get("Message", exc))
    return JobError(
        f"S3 refused to {action} {where}: {code} {message}".rstrip(),
        "try again; if it keeps failing, check the bucket's policy",
    )
