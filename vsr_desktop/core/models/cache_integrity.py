"""A cached model is used only once its sha256 is right, hashed once per change of the file.

Why: the cache used to be checked by size only, so a file of the official size with other
contents (tampered, or damaged on disk) was loaded, even in preference to the bundled model.
Hashing a 67 MB file before every job would cost a second each time, so the verified
(size, mtime_ns, sha256) of each file is remembered in ``verified.json`` beside the cache,
owner-only, with its ctime and inode (which a writer cannot set back as ``touch -d`` sets an
mtime back): the file is hashed again only when one of them changes. The record is a cache
of a check, never a source of trust: its digest must still equal the pinned (or first-use) one.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from vsr_desktop.core.errors import ModelError
from vsr_desktop.core.private_files import make_private_dir, make_private_file

RECORD_NAME = "verified.json"


def _record_path(directory: Path) -> Path:
    return directory / RECORD_NAME


def _read_records(directory: Path) -> dict[str, Any]:
    try:
        data = json.loads(_record_path(directory).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_record(directory: Path, filename: str, entry: dict[str, Any] | None) -> None:
    """Set (or drop) one file's entry; atomic, owner-only. A lost race only means a re-hash."""
    records = _read_records(directory)
    if entry is None:
        records.pop(filename, None)
    else:
        records[filename] = entry
    with contextlib.suppress(OSError):
        make_private_dir(directory)
        fd, tmp = tempfile.mkstemp(prefix=f".{RECORD_NAME}.", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(records, handle, indent=1, sort_keys=True)
            os.replace(tmp, _record_path(directory))
        finally:
            Path(tmp).unlink(missing_ok=True)
        make_private_file(_record_path(directory))


def remember_verified(path: Path, sha256: str) -> None:
    """Record that ``path`` as it is now (size, mtime) has this digest."""
    _write_record(path.parent, path.name, {**_identity(path.stat()), "sha256": sha256.lower()})


def _identity(stat: os.stat_result) -> dict[str, int]:
    """What changes whenever the file's contents may have: its size and mtime, and also its
    ctime and inode, which a writer cannot set back (``touch -d`` restores an mtime only)."""
    return {
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "ctime_ns": stat.st_ctime_ns,
        "inode": stat.st_ino,
    }


def check_cached_file(path: Path, expected: str | None, sha256_of: Any, name: str) -> Path:
    """``path`` when its sha256 equals ``expected`` (any digest when None: nothing to check
    against yet), hashing only when its size or mtime changed since the last good check.

    Raises ModelError naming the way to download it again when the digest differs; the
    record is dropped so that a later check hashes again.
    """
    identity = _identity(path.stat())
    known = _read_records(path.parent).get(path.name)
    if (
        isinstance(known, dict)
        and all(known.get(key) == value for key, value in identity.items())
        and isinstance(known.get("sha256"), str)
        and (expected is None or known["sha256"] == expected.lower())
    ):
        return path
    actual = sha256_of(path)
    if expected is not None and actual != expected.lower():
        _write_record(path.parent, path.name, None)
        raise ModelError(
            f"The cached {name} ({path}) failed its sha256 check: got {actual}, "
            f"expected {expected.lower()}; it was changed or damaged on disk",
            f"run `vsr models download {name}` to download it again",
        )
    _write_record(path.parent, path.name, {**identity, "sha256": actual})
    return path
