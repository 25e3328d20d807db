"""The job spec: one serialisation that carries every field, and the pieces it is made of."""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import typing
from pathlib import Path
from typing import Any

import pytest

from vsr_desktop.core.errors import JobError
from vsr_desktop.core.job_lock import JobLock, runner_pid
from vsr_desktop.core.job_spec import SPEC_VERSION, EngineSettings, JobSpec
from vsr_desktop.core.jobs import JobRecord, JobState, JobStore
from vsr_desktop.core.media.encode import EncodeSettings
from vsr_desktop.core.source_identity import SAMPLE_BYTES, SourceIdentity


def _not_default(kind: Any, name: str, hint: Any) -> Any:
    """A value for field `name` that differs from its default, by the field's type."""
    text = str(hint)
    if "bool" in text:
        return True
    if "float" in text:
        return 0.37
    if "int" in text:
        return 7
    if "dict" in text:
        return {f"{name}_key": "value"}
    return f"{name}-value"


def _filled(kind: Any, overrides: dict[str, Any]) -> Any:
    """An instance of dataclass `kind` with every field set away from its default."""
    hints = typing.get_type_hints(kind)
    values = {}
    for f in dataclasses.fields(kind):
        values[f.name] = overrides.get(f.name, _not_default(kind, f.name, hints[f.name]))
    return kind(**values)


def _walk(value: Any, path: str = "") -> dict[str, Any]:
    """Every leaf field of a (nested) dataclass, by dotted path."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        leaves: dict[str, Any] = {}
        for f in dataclasses.fields(value):
            leaves.update(_walk(getattr(value, f.name), f"{path}{f.name}."))
        return leaves
    return {path.rstrip("."): value}


def test_every_field_survives_the_round_trip(tmp_path: Path) -> None:
    """Walks every field: a field added later that to_dict/from_dict do not carry fails."""
    engine = _filled(EngineSettings, {})
    encode = _filled(EncodeSettings, {"ten_bit": True})
    identity = _filled(SourceIdentity, {})
    spec = _filled(
        JobSpec,
        {
            "source": tmp_path / "in.mov",
            "output": tmp_path / "out.mkv",
            "engine": engine,
            "encode": encode,
            "source_identity": identity,
            "version": SPEC_VERSION,
        },
    )
    leaves = _walk(spec)
    defaults = _walk(JobSpec(source=tmp_path / "in.mov", output=tmp_path / "x.mp4"))
    differing = {k for k in leaves if leaves[k] != defaults.get(k)}
    # Every leaf was set away from its default, so a dropped field shows as a difference.
    assert differing >= set(leaves) - {"source", "version"}

    text = spec.to_json()
    again = JobSpec.from_json(text)
    assert again == spec
    assert _walk(again) == leaves
    assert JobSpec.from_dict(json.loads(text)).to_json() == text


def test_a_spec_from_a_newer_app_or_with_unknown_fields_is_refused(tmp_path: Path) -> None:
    data = JobSpec(source=tmp_path / "a.mp4", output=tmp_path / "b.mp4").to_dict()
    with pytest.raises(JobError, match="this vsr reads up to") as newer:
        JobSpec.from_dict({**data, "version": SPEC_VERSION + 1})
    assert "update vsr_desktop" in newer.value.user_message()
    with pytest.raises(JobError, match="unknown job fields"):
        JobSpec.from_dict({**data, "colour": "blue"})
    with pytest.raises(JobError, match="unknown engine fields"):
        JobSpec.from_dict({**data, "engine": {"modle": "x"}})
    with pytest.raises(JobError, match="not JSON"):
        JobSpec.from_json("{")


def test_the_store_keeps_the_whole_spec(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite3")
    spec = JobSpec(
        source=tmp_path / "a.mp4",
        output=tmp_path / "b.mp4",
        engine=EngineSettings(
            precision="fp32", cpu_convolution="winograd", tile=96, batch_size=3, allow_download=True
        ),
        overwrite=True,
        backend="local",
    )
    store.add(JobRecord(id="j1", name="a", backend="local", source="a", output="b", spec=spec))
    assert store.get("j1").spec == spec
    changed = dataclasses.replace(spec, overwrite=False)
    store.update("j1", spec=changed)
    assert store.get("j1").spec == changed


def test_an_old_database_gains_the_spec_column(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "jobs.sqlite3"
    with sqlite3.connect(path) as db:  # the version 1 table, as an older app left it
        db.execute(
            "CREATE TABLE jobs (id TEXT PRIMARY KEY, name TEXT, backend TEXT, "
            "source TEXT, output TEXT, settings TEXT, state TEXT, phase TEXT, "
            "frames_done INTEGER, frames_total INTEGER, chunks_done INTEGER, "
            "chunks_total INTEGER, fps REAL, eta_seconds REAL, message TEXT, "
            "work_dir TEXT, log_path TEXT, pid INTEGER, cost_usd REAL, "
            "created_at REAL, updated_at REAL)"
        )
        db.execute(
            "INSERT INTO jobs VALUES ('old', 'a', 'local', 'a', 'b', ?, 'failed', '', "
            "0, 0, 0, 0, 0, NULL, '', '', '', NULL, NULL, 0, 0)",
            (
                json.dumps(
                    {
                        "model": "m",
                        "outscale": 2,
                        "denoise_strength": None,
                        "encode": {"codec": "h264"},
                        "chunk_seconds": 5,
                    }
                ),
            ),
        )
    store = JobStore(path)
    job = store.get("old")
    assert job.spec is None and job.state is JobState.FAILED
    from vsr_desktop.worker.job_setup import spec_of

    legacy = spec_of(job)
    assert (legacy.engine.model, legacy.engine.outscale, legacy.chunk_seconds) == ("m", 2, 5)


def test_source_identity_sees_a_changed_middle_size_or_mtime(tmp_path: Path) -> None:
    path = tmp_path / "src.bin"
    path.write_bytes(os.urandom(3 * SAMPLE_BYTES))
    identity = SourceIdentity.of(path)
    assert identity.differences(path) == []
    stat = path.stat()
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF  # the last MiB is hashed
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert identity.differences(path) == ["content differs"]
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    assert identity.differences(path) == ["modified since"]
    assert identity.differences(path, check_mtime=False) == []
    path.write_bytes(bytes(data) + b"x")
    assert "size" in identity.differences(path)[0]
    path.unlink()
    assert identity.differences(path) == ["it no longer exists"]


def test_one_runner_per_job_folder(tmp_path: Path) -> None:
    with JobLock(tmp_path, "j1"):
        assert runner_pid(tmp_path) == os.getpid()
        with pytest.raises(JobError, match=f"already running in process {os.getpid()}"):
            JobLock(tmp_path, "j1").acquire()
        # Another thread of this process is a second runner too (flock is per open file).
        errors: list[BaseException] = []

        def second() -> None:
            try:
                JobLock(tmp_path, "j1").acquire()
            except JobError as exc:
                errors.append(exc)

        thread = threading.Thread(target=second)
        thread.start()
        thread.join()
        assert len(errors) == 1
    assert runner_pid(tmp_path) is None
    with JobLock(tmp_path, "j1"):  # free again once released
        pass


def test_a_dead_runners_job_reads_interrupted_on_get(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite3")
    work = tmp_path / "work"
    store.add(
        JobRecord(
            id="j",
            name="a",
            backend="local",
            source="a",
            output="b",
            state=JobState.RUNNING,
            work_dir=str(work),
            pid=os.getpid(),
        )
    )
    with JobLock(work, "j"):
        assert store.get("j").state is JobState.RUNNING  # held: alive, whatever the pid
    assert store.get("j").state is JobState.INTERRUPTED  # no holder: dead, at once


def test_a_job_queued_by_an_app_that_quit_reads_interrupted(tmp_path: Path) -> None:
    import subprocess
    import sys

    store = JobStore(tmp_path / "jobs.sqlite3")
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    store.add(
        JobRecord(
            id="q",
            name="a",
            backend="local",
            source="a",
            output="b",
            state=JobState.QUEUED,
            work_dir=str(tmp_path / "w"),
            pid=int(gone.stdout),
        )
    )
    store.add(
        JobRecord(
            id="mine",
            name="a",
            backend="local",
            source="a",
            output="b",
            state=JobState.QUEUED,
            pid=os.getpid(),
        )
    )
    assert store.get("q").state is JobState.INTERRUPTED
    assert "quit" in store.get("q").message
    assert store.get("mine").state is JobState.QUEUED
