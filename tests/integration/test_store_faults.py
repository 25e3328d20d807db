"""The job store and work files under faults: owner-only files, a full disk, a bad row,
half-merged outputs of runs that died."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from vsr_desktop.backends.local import LocalBackend
from vsr_desktop.core.errors import DiskFullError
from vsr_desktop.core.job_lock import JobLock
from vsr_desktop.core.jobs import JobRecord, JobState, JobStore, default_store_path

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX permissions and mounts")


def vsr(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vsr_desktop.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@posix_only
def test_store_logs_and_work_folders_are_owner_only(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir(mode=0o755)
    old = folder / "jobs.sqlite3"
    sqlite3.connect(old).close()
    os.chmod(old, 0o644)  # as an older version left it
    store = JobStore(old)
    assert mode(folder) == 0o700 and mode(old) == 0o600
    assert all(mode(p) == 0o600 for p in folder.glob("jobs.sqlite3*"))

    fresh = JobStore(tmp_path / "new" / "jobs.sqlite3")
    assert mode(fresh.path) == 0o600 and mode(fresh.path.parent) == 0o700

    job = store.add(
        JobRecord(
            id="j",
            name="a",
            backend="local",
            source="a",
            output="b",
            work_dir=str(tmp_path / "work" / "j"),
            log_path=str(tmp_path / "work" / "j" / "job.log"),
        )
    )
    backend = LocalBackend(store, work_root=tmp_path / "work")
    backend._log(job, "a line")
    with JobLock(Path(job.work_dir), job.id):
        pass
    assert mode(Path(job.log_path)) == 0o600
    assert mode(Path(job.work_dir)) == 0o700
    assert mode(Path(job.work_dir) / "runner.lock") == 0o600


@posix_only
def test_a_full_disk_under_the_store_is_exit_7_not_a_traceback(tmp_path: Path) -> None:
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    if (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=128k", "tmpfs", str(tiny)], capture_output=True
        ).returncode
        != 0
    ):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        store = JobStore(tiny / "jobs.sqlite3")
        with pytest.raises(DiskFullError) as full:
            for index in range(10_000):
                store.add(
                    JobRecord(
                        id=f"j{index}", name="x" * 4000, backend="local", source="s", output="o"
                    )
                )
        assert full.value.exit_code == 7 and "full" in full.value.user_message()
    finally:
        subprocess.run(["umount", str(tiny)], check=False)


def test_an_unreadable_row_is_skipped_listed_around_and_removable(tmp_path: Path) -> None:
    store = JobStore()
    store.add(
        JobRecord(
            id="good",
            name="fine.mp4",
            backend="local",
            source="s",
            output=str(tmp_path / "fine.mp4"),
        )
    )
    store.add(JobRecord(id="bad", name="bad.mp4", backend="local", source="s", output="o"))
    with sqlite3.connect(default_store_path()) as db:
        db.execute("UPDATE jobs SET state = 'exploded', spec = '{not json' WHERE id = 'bad'")
    assert [j.id for j in store.all_jobs()] == ["good"]

    listing = vsr("jobs", "list")
    assert listing.returncode == 0 and "good" in listing.stdout
    assert "Traceback" not in listing.stderr and "bad" in listing.stderr  # the warning
    shown = vsr("jobs", "show", "bad")
    assert (
        shown.returncode == 6 and "unreadable" in shown.stderr and "Traceback" not in shown.stderr
    )
    removed = vsr("jobs", "remove", "bad")
    assert removed.returncode == 0, removed.stderr
    assert not store.exists("bad") and store.exists("good")


def test_half_merged_outputs_of_dead_runs_are_cleaned_at_start(tmp_path: Path) -> None:
    store = JobStore()
    dead_out, live_out = tmp_path / "dead.mp4", tmp_path / "live.mp4"
    for job_id, output in (("dead", dead_out), ("live", live_out)):
        store.add(
            JobRecord(
                id=job_id,
                name=job_id,
                backend="local",
                source="s",
                output=str(output),
                state=JobState.RUNNING,
                work_dir=str(tmp_path / "work" / job_id),
                log_path=str(tmp_path / "work" / job_id / "job.log"),
            )
        )
    dead_partial, live_partial = tmp_path / "dead.partial.mp4", tmp_path / "live.partial.mp4"
    dead_partial.write_bytes(b"half a merge")
    live_partial.write_bytes(b"a merge in progress")
    user_file = tmp_path / "holiday.partial.mp4"  # no job of ours names it
    user_file.write_bytes(b"the user's")

    with JobLock(tmp_path / "work" / "live", "live"):  # a live runner merging right now
        listing = vsr("jobs", "list")
        assert listing.returncode == 0
        assert not dead_partial.exists()
        assert live_partial.exists() and user_file.exists()
    assert store.get("dead").state is JobState.INTERRUPTED
