"""One runner per job: an OS lock on a file in the job's work folder.

The operating system drops the lock when the process dies (kill -9 included), so "is it
running?" is answered by trying the lock, not by trusting a pid that may have been reused.
flock (Linux, macOS) and msvcrt.locking (Windows) both lock per open file, so a second
runner in the same process is refused too.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from types import TracebackType

from vsr_desktop.core.errors import JobError
from vsr_desktop.core.private_files import make_private_dir

LOCK_NAME = "runner.lock"


def _try_lock(fd: int) -> bool:
    if sys.platform == "win32":
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


class JobLock:
    """Held while a process runs a job; `acquire` refuses a second runner with its pid."""

    def __init__(self, work_dir: Path, job_id: str = "") -> None:
        self.path = Path(work_dir) / LOCK_NAME
        self.job_id = job_id
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> JobLock:
        make_private_dir(self.path.parent)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        if not _try_lock(fd):
            os.close(fd)
            pid = _read_pid(self.path)
            where = f"in process {pid}" if pid else "in another process"
            raise JobError(
                f"job {self.job_id or self.path.parent.name} is already running {where}",
                "wait for it to finish, or cancel it first",
            )
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # closing drops the lock on every platform

    def __enter__(self) -> JobLock:
        return self.acquire()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def runner_pid(work_dir: Path) -> int | None:
    """The pid of the live process running the job in `work_dir`, or None if none runs.

    Probes by taking the lock for an instant: a lock nobody holds means nobody runs it."""
    path = Path(work_dir) / LOCK_NAME
    if not path.exists():
        return None
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return None
    try:
        if _try_lock(fd):
            return None
        return _read_pid(path) or -1
    finally:
        os.close(fd)
