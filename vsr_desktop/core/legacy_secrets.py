"""Move `--ssh-env` values that older versions wrote to disk into the OS keychain, once.

Before issue 16, `vsr slurm submit --ssh-env NAME=VALUE` kept VALUE (a Slurm JWT, say) in
`jobs.sqlite3`: in the job's spec target (`"env": {NAME: VALUE}`) and in its settings
(`settings["slurm"]["env"]`). Today the store keeps names only and values live in the keychain
(backends/slurm_remote.py, service ``vsr-desktop-slurm``, one item per cluster and name).
Opening the store or the settings file moves any value found to that item, writes the
names back in its place, and logs one line naming the variables (never the values). Where
no keychain is available the value is dropped all the same: later commands then read it
from their environment, as they do for a value that was never given.

Here in core (the store and the settings are core) with the keychain naming copied from
slurm_remote; tests/unit/test_secret_migration.py checks the two agree.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)

SLURM_KEYRING_SERVICE = "vsr-desktop-slurm"
LOCAL_PLACE = "local"
_DONE_KEY = "ssh_env_values_moved"
#: Settings keys a setting file could hold `--ssh-env` values under (none is written today).
SETTINGS_KEYS = ("slurm_env", "slurm_ssh_env", "ssh_env")


def place_of(ssh: Any) -> str:
    """The keychain's name for a cluster: SshLogin.place for a stored login dict."""
    if isinstance(ssh, Mapping) and ssh.get("host"):
        return f"ssh://{ssh['host']}:{ssh.get('port') or 22}"
    if isinstance(ssh, str) and ssh.strip():
        return f"ssh://{ssh.strip()}:22"
    return LOCAL_PLACE


def _values(stored: Any) -> dict[str, str]:
    """NAME → VALUE from a dict or a list of "NAME=VALUE" words; names alone carry none."""
    if isinstance(stored, Mapping):
        return {str(k): str(v) for k, v in stored.items() if isinstance(v, str) and v}
    if isinstance(stored, list):
        pairs = (str(w).partition("=") for w in stored)
        return {name: value for name, sep, value in pairs if sep and value}
    return {}


def _names(stored: Any) -> list[str]:
    if isinstance(stored, Mapping):
        return sorted(str(k) for k in stored)
    if isinstance(stored, list):
        return sorted({str(w).partition("=")[0] for w in stored})
    return []


def to_keychain(place: str, values: Mapping[str, str]) -> list[str]:
    """Store each value under (service, "PLACE NAME"); the names that could not be kept."""
    try:
        import keyring
    except ImportError:
        return list(values)
    lost = []
    for name, value in values.items():
        try:
            keyring.set_password(SLURM_KEYRING_SERVICE, f"{place} {name}", value)
        except Exception as exc:  # no backend, locked, refused: the value is dropped anyway
            log.debug("keychain refused %s: %s", name, type(exc).__name__)
            lost.append(name)
    return lost


def _move(container: dict[str, Any], key: str, place: str, moved: list[str]) -> bool:
    """Replace container[key]'s values with its names; True when something was moved."""
    values = _values(container.get(key))
    if not values and not isinstance(container.get(key), Mapping):
        return False
    lost = to_keychain(place, values)
    if lost:
        log.warning(
            "no OS keychain for %s of %s: the stored value is removed; later commands read "
            "it from their environment",
            ", ".join(lost),
            place,
        )
    container[key] = _names(container.get(key))
    moved.extend(values)
    return True


def migrate_store(db: sqlite3.Connection) -> int:
    """Move every stored `--ssh-env` value of the jobs table to the keychain, once per store.

    Returns how many values moved (0 when done before). The caller VACUUMs after a move,
    so the old values do not linger in free pages of the file.
    """
    if db.execute("SELECT value FROM meta WHERE key = ?", (_DONE_KEY,)).fetchone():
        return 0
    db.execute("PRAGMA secure_delete = ON")  # freed pages are zeroed, not left readable
    moved: list[str] = []
    jobs = 0
    for job_id, settings_text, spec_text in db.execute(
        "SELECT id, settings, spec FROM jobs"
    ).fetchall():
        changed = {}
        spec = _json(spec_text)
        target = spec.get("target") if spec else None
        if isinstance(target, dict) and _move(target, "env", place_of(target.get("ssh")), moved):
            changed["spec"] = json.dumps(spec)
        settings = _json(settings_text)
        slurm = settings.get("slurm") if settings else None
        if isinstance(slurm, dict) and _move(slurm, "env", place_of(slurm.get("ssh")), moved):
            changed["settings"] = json.dumps(settings)
        if changed:
            jobs += 1
            sets = ", ".join(f"{column} = ?" for column in changed)
            db.execute(f"UPDATE jobs SET {sets} WHERE id = ?", (*changed.values(), job_id))
    db.execute("INSERT OR REPLACE INTO meta VALUES (?, '1')", (_DONE_KEY,))
    if moved:
        log.warning(
            "moved %d --ssh-env value(s) (%s) of %d job(s) from the job store to the OS keychain",
            len(moved),
            ", ".join(sorted(set(moved))),
            jobs,
        )
    return len(moved)


def migrate_settings(values: dict[str, Any]) -> int:
    """Move `--ssh-env` values out of a settings dict (in place); how many moved."""
    moved: list[str] = []
    place = place_of(values.get("slurm_ssh_host"))
    for key in SETTINGS_KEYS:
        if key in values:
            _move(values, key, place, moved)
            del values[key]  # no setting of that name exists any more
    if moved:
        log.warning(
            "moved %d --ssh-env value(s) (%s) from the settings file to the OS keychain",
            len(moved),
            ", ".join(sorted(set(moved))),
        )
    return len(moved)


def _json(text: Any) -> dict[str, Any] | None:
    try:
        data = json.loads(text) if text else None
    except (TypeError, ValueError):
        return None
    return data if isinstance(data, dict) else None
