"""The one protocol every backend implements, and the progress events it reports.

The jobs panel and `vsr jobs` meet local, Slurm and AWS jobs only through this: they never
ask which backend a job is on. Every call may block (a local run, an upload, an ssh round
trip): the GUI makes them off its thread, the CLI in the foreground.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from vsr_desktop.core.job_spec import JobSpec
from vsr_desktop.core.jobs import JobRecord


@dataclass(frozen=True)
class Progress:
    """A progress event: frames, chunks, speed and time left (bytes in a transfer phase)."""

    job_id: str
    phase: str
    frames_done: int
    frames_total: int
    chunks_done: int
    chunks_total: int
    fps: float
    eta_seconds: float | None


ProgressCallback = Callable[[Progress], None]


@runtime_checkable
class Backend(Protocol):
    """Where a job runs. Implementations: LocalBackend, SlurmBackend, AwsBackend."""

    #: The name stored in JobRecord.backend; the registry maps it back to the backend.
    name: str
    #: True when submit/resume run the whole job in the calling process (one at a time),
    #: False when they hand it over to a queue elsewhere and return.
    runs_in_process: bool

    def submit(
        self,
        spec: JobSpec,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> JobRecord:
        """Record the job and start it (upload, sbatch, or run it here)."""
        ...

    def poll(self, job: JobRecord) -> JobRecord:
        """Refresh the stored record from the facts (queue, progress files, output)."""
        ...

    def cancel(self, job: JobRecord) -> JobRecord:
        """Stop the job wherever it runs; finished chunks stay for a resume."""
        ...

    def resume(
        self,
        job: JobRecord,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
        *,
        restart: bool = False,
        overwrite: bool = False,
    ) -> JobRecord:
        """Continue from the finished chunks (restart: from nothing; overwrite: replace an
        output that appeared meanwhile)."""
        ...

    def fetch_output(
        self,
        job: JobRecord,
        on_bytes: Callable[[int, int], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> Path:
        """Bring the finished output to the job's local output path; returns that path."""
        ...

    def remove(self, job: JobRecord) -> None:
        """Stop nothing, delete the job's work files wherever they are, then its record."""
        ...

    def needs_fetch(self, job: JobRecord) -> bool:
        """Whether the job finished remotely and its output is not here yet."""
        ...

    def work_lost_on_remove(self, job: JobRecord) -> str:
        """What a remove would delete that cannot be recovered ('' when nothing)."""
        ...
