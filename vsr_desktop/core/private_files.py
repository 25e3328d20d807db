"""Owner-only files and folders: job records, logs and work folders name the user's files.

Created 0700/0600 on POSIX and tightened when an older version left them looser; Windows
folders under the user's profile are private already.
"""

from __future__ import annotations

import os
from pathlib import Path


def make_private_dir(path: Path) -> None:
    """Create `path` (and parents) owner-only, and tighten it if it exists looser."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    make_private_file(path, 0o700)


def make_private_file(path: Path, mode: int = 0o600) -> None:
    """Owner-only permissions on POSIX (no-op elsewhere, or when the file is absent)."""
    if os.name != "posix":
        return
    try:
        if path.stat().st_mode & 0o077:
            os.chmod(path, mode)
    except FileNotFoundError:
        pass


def append_private(path: Path, text: str) -> None:
    """Append to a log created owner-only."""
    make_private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as handle:
        handle.write(text)
    make_private_file(path)
