"""`--ssh-env` values written to disk by older versions move to the keychain, once.

The store file is written the old way (sqlite3 directly, values in the spec's target and in
settings["slurm"]), then opened by today's JobStore: the values are in the keychain, the
file's bytes (WAL included) hold none of them, the job still names its variables, and
the Slurm backend still rebuilds its target.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path

import pytest

from tests.helpers.memory_keyring import MemoryKeyring
from vsr_desktop.backends import slurm_remote
from vsr_desktop.backends.slurm import target_of
from vsr_desktop.core import jobs as jobs_module
from vsr_desktop.core import legacy_secrets
from vsr_desktop.core.job_spec import JobSpec
from vsr_desktop.core.jobs import JobStore
from vsr_desktop.core.settings import SettingsFile

JWT = "eyJhbGciOiJIUzI1NiJ9.old-slurm-jwt-value.sig"
PASSWORD = "hunter2-but-longer"
LOGIN = {"host": "alice@login.example", "port": 2222, "key": None, "options": []}


def _old_store(path: Path, tmp_path: Path) -> None:
    """A jobs.sqlite3 as the app before issue 16 left it."""
    spec = JobSpec(source=tmp_path / "in.mp4", output=tmp_path / "out.mp4", backend="slurm")
    spec_data = spec.to_dict()
    spec_data["target"] = {
        "workdir_root": "/shared/vsr",
        "partition": "gpu",
        "gpus_per_task": 1,
        "max_parallel": 4,
        "vsr_command": ["vsr"],
        "ssh": LOGIN,
        "env": {"SLURM_JWT": JWT},
    }
    legacy_settings = {"slurm": {"ssh": LOGIN, "env": {"DB_PASSWORD": PASSWORD}}}
    db = sqlite3.connect(path)
    db.executescript(jobs_module._SCHEMA)
    columns = {
        "id": "oldjob000001",
        "name": "in.mp4",
        "backend": "slurm",
        "source": str(spec.source),
        "output": str(spec.output),
        "settings": json.dumps(legacy_settings),
        "state": "interrupted",
        "phase": "",
        "frames_done": 0,
        "frames_total": 10,
        "chunks_done": 0,
        "chunks_total": 1,
        "message": "",
        "work_dir": "/shared/vsr/oldjob000001",
        "log_path": "",
        "created_at": 1.0,
        "updated_at": 1.0,
        "spec": json.dumps(spec_data),
    }
    db.execute(
        f"INSERT INTO jobs ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})",
        list(columns.values()),
    )
    db.commit()
    db.close()


def _file_bytes(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in path.parent.iterdir() if p.name.startswith(path.name))


def test_old_store_values_move_to_the_keychain_once(
    tmp_path: Path, memory_keyring: MemoryKeyring, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "jobs.sqlite3"
    _old_store(path, tmp_path)
    assert JWT.encode() in _file_bytes(path)  # the old way, as found in the wild

    with caplog.at_level(logging.WARNING):
        store = JobStore(path)
    place = "ssh://alice@login.example:2222"
    service = slurm_remote.KEYRING_SERVICE
    assert memory_keyring.items[(service, f"{place} SLURM_JWT")] == JWT
    assert memory_keyring.items[(service, f"{place} DB_PASSWORD")] == PASSWORD
    moved = [r.getMessage() for r in caplog.records if "keychain" in r.getMessage()]
    assert len(moved) == 1 and "SLURM_JWT" in moved[0] and JWT not in moved[0]

    data = _file_bytes(path)
    assert JWT.encode() not in data and PASSWORD.encode() not in data

    job = store.get("oldjob000001")
    assert job.spec is not None and job.spec.target["env"] == ["SLURM_JWT"]
    assert job.settings["slurm"]["env"] == ["DB_PASSWORD"]
    target = target_of(job)
    assert target.env_names == ("SLURM_JWT",) and target.place == place
    # The backend finds the value where it looks for it now.
    assert slurm_remote.from_keychain(place, "SLURM_JWT") == JWT

    # Once: a second open finds nothing to do (and does not log again).
    caplog.clear()
    memory_keyring.items.clear()
    with caplog.at_level(logging.WARNING):
        JobStore(path)
    assert not memory_keyring.items and not caplog.records


def test_without_a_keychain_the_value_is_removed_all_the_same(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import keyring
    from keyring.backends import fail

    before = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        path = tmp_path / "jobs.sqlite3"
        _old_store(path, tmp_path)
        with caplog.at_level(logging.WARNING):
            JobStore(path)
    finally:
        keyring.set_keyring(before)
    assert JWT.encode() not in _file_bytes(path)
    assert any("environment" in r.getMessage() for r in caplog.records)


def test_settings_file_values_move_to_the_keychain(
    tmp_path: Path, memory_keyring: MemoryKeyring
) -> None:
    path = tmp_path / "settings.json"
    path.write_text(
        json.dumps(
            {
                "version": 1,
                "settings": {
                    "slurm_ssh_host": "bob@hpc",
                    "slurm_workdir": "/shared/vsr",
                    "slurm_ssh_env": ["SLURM_JWT=" + JWT, "PLAIN_NAME"],
                },
            }
        )
    )
    settings = SettingsFile(path).load()
    assert settings.slurm_ssh_host == "bob@hpc"
    service = slurm_remote.KEYRING_SERVICE
    assert memory_keyring.items == {(service, "ssh://bob@hpc:22 SLURM_JWT"): JWT}
    assert JWT not in path.read_text()
    assert "slurm_ssh_env" not in path.read_text()
    assert SettingsFile(path).load() == settings  # and nothing moves twice


def test_the_keychain_naming_matches_the_slurm_backend() -> None:
    assert legacy_secrets.SLURM_KEYRING_SERVICE == slurm_remote.KEYRING_SERVICE
    assert legacy_secrets.LOCAL_PLACE == slurm_remote.LOCAL_PLACE
    login = slurm_remote.SshLogin.from_dict(LOGIN)
    assert legacy_secrets.place_of(LOGIN) == login.place
    assert legacy_secrets.place_of(None) == slurm_remote.LOCAL_PLACE
