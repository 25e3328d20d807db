"""Job records in SQLite: one store shared by the CLI, the GUI and every backend.

A row says what a job is (source, output, settings), where it runs, and how far it got,
chunk by chunk, so a job killed at any moment can be resumed from its last finished chunk.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from enum import Enum
from pathlib import Path
from typing import Any

from vsr_desktop.core import legacy_secrets
from vsr_desktop.core.errors import DiskFullError, JobError, VsrError
from vsr_desktop.core.job_lock import runner_pid
from vsr_desktop.core.job_spec import JobSpec
from vsr_desktop.core.private_files import make_private_dir, make_private_file

#: JobRecord.settings[VERIFY_REPORT_KEY] = {"ok": bool, "lines": [...]}: the "nothing lost"
#: check run after the merge, on every backend (worker/job_report.py).
VERIFY_REPORT_KEY = "verify"


class JobState(str, Enum):
    """Lifecycle of a job; INTERRUPTED means it was running when its process died."""

    QUEUED = "queued"
    RUNNING = "running"
    INTERRUPTED = "interrupted"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_finished(self) -> bool:
        return self in (JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED)

    @property
    def is_resumable(self) -> bool:
        return self in (JobState.INTERRUPTED, JobState.FAILED, JobState.CANCELLED)


@dataclass
class JobRecord:
    """One job, whatever backend runs it (the jobs panel draws every row the same way)."""

    id: str
    name: str
    backend: str
    source: str
    output: str
    settings: dict[str, Any] = field(default_factory=dict)
    state: JobState = JobState.QUEUED
    phase: str = ""
    frames_done: int = 0
    frames_total: int = 0
    chunks_done: int = 0
    chunks_total: int = 0
    fps: float = 0.0
    eta_seconds: float | None = None
    message: str = ""
    work_dir: str = ""
    log_path: str = ""
    pid: int | None = None
    cost_usd: float | None = None
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    #: What the job is, in full: resume and every backend rebuild the job from this alone.
    spec: JobSpec | None = None

    @property
    def verify_report(self) -> dict[str, Any] | None:
        """The "nothing lost" check stored after the job's merge, if one ran."""
        report = self.settings.get(VERIFY_REPORT_KEY)
        return report if isinstance(report, dict) else None

    @property
    def progress(self) -> float:
        return self.frames_done / self.frames_total if self.frames_total else 0.0


_COLUMNS = [f.name for f in fields(JobRecord)]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, name TEXT, backend TEXT, source TEXT, output TEXT, settings TEXT,
    state TEXT, phase TEXT, frames_done INTEGER, frames_total INTEGER, chunks_done INTEGER,
    chunks_total INTEGER, fps REAL, eta_seconds REAL, message TEXT, work_dir TEXT,
    log_path TEXT, pid INTEGER, cost_usd REAL, created_at REAL, updated_at REAL, spec TEXT
);
CREATE TABLE IF NOT EXISTS chunks (
    job_id TEXT NOT NULL, chunk_index INTEGER NOT NULL, frames INTEGER NOT NULL,
    path TEXT NOT NULL, finished_at REAL NOT NULL,
    PRIMARY KEY (job_id, chunk_index)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""

SCHEMA_VERSION = 2
#: Columns added after version 1, with their SQL type: an older database gains them on open.
_ADDED_COLUMNS = {"spec": "TEXT"}


_log = logging.getLogger(__name__)


def _store_error(exc: sqlite3.Error, path: Path) -> VsrError:
    import shutil

    text = str(exc)
    try:
        nearly_full = shutil.disk_usage(path.parent).free < 1024 * 1024
    except OSError:
        nearly_full = False
    if "disk is full" in text or ("disk I/O error" in text and nearly_full):
        return DiskFullError(
            f"the disk holding the jobs database {path} is full",
            "free some space, then run the command again",
        )
    return JobError(
        f"the jobs database {path} failed ({text})",
        "check the folder is writable, or move the damaged file away",
    )


def default_store_path() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir("vsr_desktop", appauthor=False)) / "jobs.sqlite3"


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class JobStore:
    """Thread-safe access to the jobs database (a connection per operation, WAL mode)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_store_path()
        try:
            make_private_dir(self.path.parent)
            if not self.path.exists():  # created owner-only: job records name the user's files
                os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
            with self._connect() as db:
                db.executescript(_SCHEMA)
                present = {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
                for name, kind in _ADDED_COLUMNS.items():
                    if name not in present:
                        db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {kind}")
                db.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)",
                    (str(SCHEMA_VERSION),),
                )
                moved = legacy_secrets.migrate_store(db)  # older --ssh-env values → keychain
            if moved:  # rewrite the file, so no old page or WAL frame still holds a value
                with self._connect() as db:
                    db.execute("VACUUM")
                    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            for suffix in ("", "-wal", "-shm"):  # tightened if an older app left them 0644
                make_private_file(self.path.with_name(self.path.name + suffix))
        except DiskFullError:
            raise
        except (sqlite3.Error, OSError, JobError) as exc:
            raise JobError(
                f"cannot open the jobs database {self.path} ({exc})",
                "check the folder is writable, or move the damaged file away",
            ) from exc

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """One connection per operation; a full disk is DiskFullError (exit 7), never a raw
        sqlite3 traceback."""
        try:
            db = sqlite3.connect(self.path, timeout=30)
        except sqlite3.Error as exc:
            raise _store_error(exc, self.path) from exc
        try:
            db.execute("PRAGMA journal_mode=WAL")
            with db:
                yield db
        except sqlite3.Error as exc:
            raise _store_error(exc, self.path) from exc
        finally:
            db.close()

    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex[:12]

    def add(self, job: JobRecord) -> JobRecord:
        values = self._to_row(job)
        placeholders = ", ".join("?" for _ in _COLUMNS)
        with self._connect() as db:
            db.execute(f"INSERT INTO jobs ({', '.join(_COLUMNS)}) VALUES ({placeholders})", values)
        return job

    def exists(self, job_id: str) -> bool:
        with self._connect() as db:
            return db.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone() is not None

    def get(self, job_id: str) -> JobRecord:
        """One job, as it is now: a RUNNING row whose runner died reads as INTERRUPTED."""
        self.mark_dead_as_interrupted(job_id)
        with self._connect() as db:
            row = db.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM jobs WHERE id = ?", (job_id,)
            ).fetchone()
        if row is None:
            raise JobError(f"no job with id {job_id}", "list jobs with `vsr jobs list`")
        return self._from_row(row)

    def all_jobs(self) -> list[JobRecord]:
        """All jobs, newest first; rows of dead processes are marked interrupted first, and
        a row that cannot be read is skipped with a warning (one bad row hides no other)."""
        self.mark_dead_as_interrupted()
        with self._connect() as db:
            rows = db.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM jobs ORDER BY created_at DESC"
            ).fetchall()
        jobs = []
        for row in rows:
            try:
                jobs.append(self._from_row(row))
            except JobError as exc:
                _log.warning("%s", exc.user_message())
        return jobs

    def update(self, job_id: str, *, unless_finished: bool = False, **changes: Any) -> bool:
        """Write `changes`; with unless_finished, only while the job is still unfinished (a
        poll that started before a cancel must not bring the job back). True if written."""
        unknown = set(changes) - set(_COLUMNS)
        if unknown:
            raise JobError(f"unknown job fields {sorted(unknown)}")
        changes["updated_at"] = time.time()
        if "state" in changes:
            changes["state"] = JobState(changes["state"]).value
        if "settings" in changes:
            changes["settings"] = json.dumps(changes["settings"], sort_keys=True)
        if "spec" in changes:
            spec = changes["spec"]
            changes["spec"] = spec.to_json() if spec is not None else None
        assignments = ", ".join(f"{k} = ?" for k in changes)
        where, extra = "id = ?", [job_id]
        if unless_finished:
            finished = [s.value for s in JobState if s.is_finished]
            where += f" AND state NOT IN ({', '.join('?' * len(finished))})"
            extra += finished
        with self._connect() as db:
            cursor = db.execute(
                f"UPDATE jobs SET {assignments} WHERE {where}", (*changes.values(), *extra)
            )
            return cursor.rowcount > 0

    def delete(self, job_id: str) -> None:
        with self._connect() as db:
            db.execute("DELETE FROM chunks WHERE job_id = ?", (job_id,))
            db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))

    def record_chunk(self, job_id: str, index: int, frames: int, path: Path) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT OR REPLACE INTO chunks VALUES (?, ?, ?, ?, ?)",
                (job_id, index, frames, str(path), time.time()),
            )

    def finished_chunks(self, job_id: str) -> dict[int, tuple[int, Path]]:
        """Chunk index → (frames, file) for every chunk recorded as complete."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT chunk_index, frames, path FROM chunks WHERE job_id = ?", (job_id,)
            ).fetchall()
        return {int(i): (int(f), Path(p)) for i, f, p in rows}

    def forget_chunks(self, job_id: str) -> None:
        with self._connect() as db:
            db.execute("DELETE FROM chunks WHERE job_id = ?", (job_id,))

    def find_resumable(self, spec: JobSpec) -> JobRecord | None:
        """An unfinished local job for the same source, output and settings, if any."""
        self.mark_dead_as_interrupted()
        source = str(spec.source.expanduser().resolve())
        output = str(spec.output.expanduser().resolve())
        with self._connect() as db:
            rows = db.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM jobs WHERE source = ? AND output = ? "
                "AND backend = 'local' AND state IN (?, ?, ?) ORDER BY created_at DESC",
                (
                    source,
                    output,
                    JobState.INTERRUPTED.value,
                    JobState.FAILED.value,
                    JobState.CANCELLED.value,
                ),
            ).fetchall()
        for row in rows:
            job = self._from_row(row)
            if job.spec is not None and job.spec.identity() == spec.identity():
                return job
        return None

    def mark_dead_as_interrupted(self, job_id: str | None = None) -> None:
        """A RUNNING job whose runner is gone was killed or crashed: resumable at once.

        Local jobs are alive while a process holds the lock in their work folder (the OS
        drops it when the process dies); a local job still QUEUED in an app that quit, and
        remote jobs that this machine still works on (an upload), record the pid; a remote
        job running elsewhere has neither.
        """
        query = (
            "SELECT id, backend, state, pid, work_dir FROM jobs WHERE "
            "(state = ? AND (backend = 'local' OR pid IS NOT NULL)) OR "
            "(state = ? AND backend = 'local' AND pid IS NOT NULL)"
        )
        params: list[Any] = [JobState.RUNNING.value, JobState.QUEUED.value]
        if job_id is not None:
            query = f"SELECT * FROM ({query}) WHERE id = ?"
            params.append(job_id)
        with self._connect() as db:
            rows = db.execute(query, params).fetchall()
            for found_id, backend, state, pid, work_dir in rows:
                if backend == "local" and work_dir and state == JobState.RUNNING.value:
                    alive = runner_pid(Path(work_dir)) is not None
                else:
                    alive = _pid_alive(pid)
                if not alive:
                    db.execute(
                        "UPDATE jobs SET state = ?, message = ?, updated_at = ? "
                        "WHERE id = ? AND state = ?",
                        (
                            JobState.INTERRUPTED.value,
                            "interrupted: the process running it stopped; resume to continue"
                            if state == JobState.RUNNING.value
                            else "interrupted: the app that queued it quit; resume to run it",
                            time.time(),
                            found_id,
                            state,
                        ),
                    )

    @staticmethod
    def _to_row(job: JobRecord) -> list[Any]:
        values: list[Any] = []
        for name in _COLUMNS:
            value = getattr(job, name)
            if name == "settings":
                value = json.dumps(value, sort_keys=True)
            elif name == "spec":
                value = value.to_json() if value is not None else None
            elif name == "state":
                value = JobState(value).value
            values.append(value)
        return values

    @staticmethod
    def _from_row(row: tuple[Any, ...]) -> JobRecord:
        data = dict(zip(_COLUMNS, row, strict=True))
        try:
            settings = json.loads(data["settings"] or "{}")
            data["settings"] = settings if isinstance(settings, dict) else {}
            data["state"] = JobState(data["state"])
            data["spec"] = JobSpec.from_json(data["spec"]) if data["spec"] else None
            return JobRecord(**data)
        except (ValueError, TypeError, JobError) as exc:
            raise JobError(
                f"job {data.get('id')!r} in the jobs database is unreadable ({exc})",
                f"remove it with `vsr jobs remove {data.get('id')}`",
            ) from exc
