"""Where one cloud job's objects live in S3: the only definition of the layout.

The app (backends/aws) writes a job's inputs here and reads its progress and output; the
worker stages (worker/s3_job.py) read and write the rest. Both name every object through
this module, so the two sides cannot drift apart (docs/cloud-contract.md shows the table).
Plain values only: no boto3, no app imports, so the worker image needs nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PureWindowsPath

from vsr_desktop.core.errors import JobError

JOB_URI_HINT = "a job URI looks like s3://BUCKET/jobs/JOB_ID"
#: Every job lives under this prefix; the bucket's lifecycle rule expires it.
JOBS_PREFIX = "jobs/"

# The contract's object names, relative to the job prefix.
SPEC_FILE = "spec.json"
MEDIA_FILE = "media.json"
PLAN_FILE = "plan.json"
#: What split cut (worker/segments.py): the segment format and the side file's streams.
SEGMENTS_FILE = "segments.json"
SEGMENTS_FOLDER = "segments/"
INPUT_FOLDER = "input/"
MODEL_FOLDER = "input/model/"
CHUNKS_FOLDER = "chunks/"
PROGRESS_FOLDER = "progress/"
OUTPUT_FOLDER = "output/"
#: What a restart forgets: everything the worker stages made (the inputs stay).
WORKER_MADE = (
    MEDIA_FILE,
    PLAN_FILE,
    SEGMENTS_FILE,
    SEGMENTS_FOLDER,
    CHUNKS_FOLDER,
    PROGRESS_FOLDER,
    OUTPUT_FOLDER,
)


def user_file_name(path: object) -> PureWindowsPath:
    """A path from the user's machine (in the spec): Windows or POSIX, either separator."""
    return PureWindowsPath(str(path))


def source_name(suffix: str) -> str:
    """`input/source.mp4`: the suffix lower-cased (`.MP4` → `input/source.mp4`)."""
    return f"{INPUT_FOLDER}source{suffix.lower()}"


def model_name(file_name: str) -> str:
    """A model file the app uploaded with the job (the user's own, not a registry name)."""
    return f"{MODEL_FOLDER}{file_name}"


def chunk_name(index: int, suffix: str) -> str:
    """`chunks/chunk_00003.mp4`: suffix = the output's (its container)."""
    return f"{CHUNKS_FOLDER}chunk_{index:05d}{suffix}"


def segment_name(index: int, suffix: str) -> str:
    """`segments/segment_00003.mov`: chunk 3's video packets, cut once by split."""
    return f"{SEGMENTS_FOLDER}segment_{index:05d}{suffix}"


def side_name(suffix: str) -> str:
    """`segments/side.mp4`: the source without its picture, all the merge reads of it."""
    return f"{SEGMENTS_FOLDER}side{suffix}"


def progress_name(stage: str) -> str:
    """`split`, `merge` or `chunk_00003` → `progress/<stage>.json`."""
    return f"{PROGRESS_FOLDER}{stage}.json"


def progress_stage(key: str) -> int | str | None:
    """The inverse of progress_name for a full key: chunk index, `split`/`merge`, or None."""
    name = key.rsplit("/", 1)[-1]
    if not name.endswith(".json"):
        return None
    stem = name[: -len(".json")]
    if stem.startswith("chunk_"):
        digits = stem[len("chunk_") :]
        return int(digits) if digits.isdigit() else None
    return stem or None


def output_name(file_name: str) -> str:
    return f"{OUTPUT_FOLDER}{file_name}"


@dataclass(frozen=True)
class JobLocation:
    """`s3://BUCKET/PREFIX`: the job's prefix, and the contract's key for each object in it."""

    bucket: str
    prefix: str

    @classmethod
    def parse(cls, uri: str) -> JobLocation:
        """Accept `s3://BUCKET/jobs/JOB_ID` (trailing slash or not); else a JobError."""
        text = uri.strip()
        if not text.startswith("s3://"):
            raise JobError(f"{uri!r} is not an S3 URI", JOB_URI_HINT)
        bucket, _, prefix = text[len("s3://") :].partition("/")
        prefix = prefix.strip("/")
        if not bucket or not prefix or "//" in prefix:
            raise JobError(f"{uri!r} names no job folder in a bucket", JOB_URI_HINT)
        return cls(bucket, prefix)

    @classmethod
    def for_job(cls, bucket: str, job_id: str) -> JobLocation:
        """Where the app puts job `job_id` in the stack's bucket."""
        return cls(bucket, f"{JOBS_PREFIX}{job_id}")

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    @property
    def folder(self) -> str:
        """The key prefix with its slash (for listing everything of this job, and no other)."""
        return f"{self.prefix}/"

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}"

    def url_of(self, name: str) -> str:
        return f"s3://{self.bucket}/{self.key(name)}"

    def source_key(self, source: object) -> str:
        """The uploaded source's key, from the user's source path."""
        return self.key(source_name(user_file_name(source).suffix))

    def output_key(self, output: object) -> str:
        """The merged output's key, from the user's output path (its name is kept)."""
        return self.key(output_name(user_file_name(output).name))
