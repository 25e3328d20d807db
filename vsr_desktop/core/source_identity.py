"""Which file a job was made from: size, mtime and a hash of its first and last MiB.

Finished chunks belong to one source; a file replaced at the same path between a kill and a
resume must be refused, never spliced into the old chunks. Hashing only the ends keeps the
check instant on a feature-length master while catching a re-encode or a different take.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from vsr_desktop.core.errors import InputError

SAMPLE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class SourceIdentity:
    size: int
    mtime_ns: int
    head_tail_sha256: str

    @classmethod
    def of(cls, path: Path) -> SourceIdentity:
        try:
            stat = path.stat()
            digest = hashlib.sha256()
            with open(path, "rb") as handle:
                digest.update(handle.read(SAMPLE_BYTES))
                if stat.st_size > SAMPLE_BYTES:
                    handle.seek(max(SAMPLE_BYTES, stat.st_size - SAMPLE_BYTES))
                    digest.update(handle.read(SAMPLE_BYTES))
        except OSError as exc:
            raise InputError(
                f"cannot read {path} ({exc.strerror or exc})",
                "check the file exists and is readable",
            ) from exc
        return cls(
            size=stat.st_size, mtime_ns=stat.st_mtime_ns, head_tail_sha256=digest.hexdigest()
        )

    def differences(self, path: Path, *, check_mtime: bool = True) -> list[str]:
        """What differs between this identity and the file at `path` now ([] = same file).

        A changed mtime alone counts: the middle of the file is not hashed, and a splice of
        two sources is worse than starting over. A copy made for a remote worker (an upload)
        has a new mtime: there, `check_mtime=False` lets size and hash decide."""
        if not os.path.exists(path):
            return ["it no longer exists"]
        now = SourceIdentity.of(path)
        changed = []
        if now.size != self.size:
            changed.append(f"size {self.size:,} → {now.size:,} bytes")
        if now.head_tail_sha256 != self.head_tail_sha256:
            changed.append("content differs")
        if check_mtime and now.mtime_ns != self.mtime_ns:
            changed.append("modified since")
        return changed
