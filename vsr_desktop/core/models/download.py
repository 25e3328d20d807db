"""Resumable, verified download of official model files into the user cache.

Why this shape: release files are tens of MB on flaky connections, so a partial download is
kept as ``NAME.part`` and continued with an HTTP Range request; nothing ever appears under the
final name unless its size and sha256 are right, and it appears atomically (``os.replace``).
Two processes (say the app and a `vsr` run) asking for the same model take turns on a lock
file, so they never append to one ``.part`` at once; the second finds the first's file.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import http.client
import os
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from vsr_desktop.core.errors import CancelledError, DiskFullError, ModelError
from vsr_desktop.core.models.cache_integrity import check_cached_file, remember_verified
from vsr_desktop.core.models.registry import ModelSpec

ProgressFn = Callable[[int, int], None]

_CHUNK = 1 << 16
_TIMEOUT_S = 30.0
_USER_AGENT = "vsr-desktop-model-downloader"
_TOFU_SUFFIX = ".sha256"
_LOCK_SUFFIX = ".lock"
#: How often a download waiting for another one's lock looks at its cancel flag.
_LOCK_POLL_S = 0.2


def default_cache_dir() -> Path:
    """The per-user model cache: platformdirs user_cache_dir("vsr_desktop")/models."""
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("vsr_desktop")) / "models"


def _cache_dir(cache_dir: Path | None) -> Path:
    return Path(cache_dir) if cache_dir is not None else default_cache_dir()


def cached_model_path(spec: ModelSpec, cache_dir: Path | None = None) -> Path | None:
    """The cached file if present with the expected size, else None (cheap: no hashing).

    For listing what is downloaded; before *using* a file, :func:`verified_cached_path`.
    """
    path = _cache_dir(cache_dir) / spec.filename
    try:
        size = path.stat().st_size
    except OSError:
        return None
    if spec.size_bytes and size != spec.size_bytes:
        return None
    return path


def verified_cached_path(spec: ModelSpec, cache_dir: Path | None = None) -> Path | None:
    """The cached file, once its sha256 is the pinned (or first-use) one; None when it is not
    downloaded. Hashed again only when its size or mtime changed since the last good check
    (``cache_integrity``). Raises ModelError, naming how to download it again, on a mismatch.
    """
    path = cached_model_path(spec, cache_dir)
    if path is None:
        return None
    return check_cached_file(path, _expected_sha256(spec, path), _sha256_of, spec.name)


class _LocalIOError(Exception):
    """A local file error, kept apart from network errors (both are OSError)."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


@contextlib.contextmanager
def _local_io() -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise _LocalIOError(exc) from exc


def _tofu_path(final: Path) -> Path:
    return final.with_name(final.name + _TOFU_SUFFIX)


def _expected_sha256(spec: ModelSpec, final: Path) -> str | None:
    """The pinned digest, else the one recorded by an earlier good download (TOFU)."""
    if spec.sha256:
        return spec.sha256.lower()
    try:
        recorded = _tofu_path(final).read_text(encoding="ascii").split()[0].lower()
    except (OSError, IndexError, UnicodeDecodeError):
        return None
    return recorded if len(recorded) == 64 else None


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _content_range_start(value: str | None) -> int | None:
    """Start offset of a ``Content-Range: bytes START-END/TOTAL`` header."""
    if not value or not value.startswith("bytes "):
        return None
    try:
        return int(value[6:].split("-", 1)[0])
    except ValueError:
        return None


def _open(url: str, start: int) -> http.client.HTTPResponse:
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    if start > 0:
        # urllib keeps this header across GitHub's redirect to its CDN.
        request.add_header("Range", f"bytes={start}-")
    response: http.client.HTTPResponse = urllib.request.urlopen(request, timeout=_TIMEOUT_S)
    return response


def _mismatch(part: Path, message: str) -> ModelError:
    """Delete the bad partial file and describe the problem."""
    part.unlink(missing_ok=True)
    return ModelError(
        message, "the file was deleted; try again later, and report it if it happens again"
    )


def _disk_error(spec: ModelSpec, directory: Path, exc: OSError) -> Exception:
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return DiskFullError(
            f"The disk is full while downloading {spec.name}",
            f"free {spec.size_bytes / 1e6:.0f} MB in {directory} and try again",
        )
    return ModelError(
        f"Cannot write {spec.name} into {directory}: {exc}",
        "check that the model cache directory is writable",
    )


def download_model(
    spec: ModelSpec,
    cache_dir: Path | None = None,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
    url: str | None = None,
) -> Path:
    """Download ``spec`` into the cache (resuming a ``.part``) and return the verified file.

    Raises ModelError (network failure, wrong size, wrong sha256), CancelledError when
    ``cancel`` is set (the ``.part`` is kept for a later resume) and DiskFullError.
    ``url`` overrides ``spec.url`` (mirrors, tests).
    """
    directory = _cache_dir(cache_dir)
    final = directory / spec.filename
    part = final.with_name(final.name + ".part")
    verified = _verified_cached(spec, directory)
    if verified is not None:
        return verified
    try:
        with _local_io():
            directory.mkdir(parents=True, exist_ok=True)
        with _download_lock(final, cancel):
            # Another process may have installed it while this one waited for the lock.
            verified = _verified_cached(spec, directory)
            if verified is not None:
                return verified
            expected_sha = _expected_sha256(spec, final)
            _fetch(spec, url or spec.url, part, progress, cancel)
            with _local_io():
                _verify_and_install(spec, part, final, expected_sha)
    except _LocalIOError as exc:
        raise _disk_error(spec, directory, exc.error) from exc.error
    except (OSError, http.client.HTTPException) as exc:
        raise ModelError(
            f"Downloading {spec.name} failed: {exc}",
            "check the internet connection and run the download again; it resumes where it stopped",
        ) from exc
    return final


def _verified_cached(spec: ModelSpec, directory: Path) -> Path | None:
    """The cached file when its size and (pinned or first-use) sha256 are right; None when
    absent or wrong, so that the download replaces it."""
    try:
        return verified_cached_path(spec, directory)
    except ModelError:
        return None


@contextlib.contextmanager
def _download_lock(final: Path, cancel: threading.Event | None) -> Iterator[None]:
    """Hold ``final``'s lock file for the download; waiting for it honours ``cancel``."""
    lock = FileLock(str(final) + _LOCK_SUFFIX)
    while True:
        if cancel is not None and cancel.is_set():
            raise CancelledError("model download cancelled")
        try:
            lock.acquire(timeout=_LOCK_POLL_S)
            break
        except Timeout:  # an OSError too: caught first, it only means "still busy"
            continue
        except OSError as exc:
            raise _LocalIOError(exc) from exc
    try:
        yield
    finally:
        lock.release()


def _verify_and_install(spec: ModelSpec, part: Path, final: Path, expected_sha: str | None) -> None:
    size = part.stat().st_size
    if spec.size_bytes and size != spec.size_bytes:
        raise _mismatch(
            part, f"Downloaded {spec.name} has {size} bytes, expected {spec.size_bytes}"
        )
    actual = _sha256_of(part)
    if expected_sha is not None and actual != expected_sha:
        raise _mismatch(
            part,
            f"Downloaded {spec.name} failed its sha256 check: got {actual}, "
            f"expected {expected_sha}",
        )
    os.replace(part, final)
    remember_verified(final, actual)
    if expected_sha is None:
        # Trust on first use: later downloads of this spec must match this digest.
        _tofu_path(final).write_text(f"{actual}  {final.name}\n", encoding="ascii")


def _fetch(
    spec: ModelSpec,
    url: str,
    part: Path,
    progress: ProgressFn | None,
    cancel: threading.Event | None,
) -> None:
    """Bring ``part`` to the full file, continuing from its current size when possible."""
    with _local_io():
        start = part.stat().st_size if part.exists() else 0
        if spec.size_bytes and start > spec.size_bytes:
            part.unlink()
            start = 0
    if spec.size_bytes and start == spec.size_bytes:
        return  # complete already; the caller verifies it
    try:
        response = _open(url, start)
    except urllib.error.HTTPError as exc:
        if exc.code != 416 or start == 0:
            raise ModelError(
                f"Downloading {spec.name} failed: HTTP {exc.code} {exc.reason}",
                f"check that {url} is reachable; try again later",
            ) from exc
        # Our partial file does not fit the server's file: start over.
        with _local_io():
            part.unlink(missing_ok=True)
        start = 0
        response = _open(url, 0)
    with response:
        if start > 0 and (
            response.status != 206
            or _content_range_start(response.headers.get("Content-Range")) != start
        ):
            start = 0  # the server ignored Range and sends the whole file
        length = response.headers.get("Content-Length")
        remaining = int(length) if length and length.isdigit() else None
        total = spec.size_bytes or (start + remaining if remaining is not None else 0)
        _stream(spec, response, part, start, total, remaining, progress, cancel)


def _stream(
    spec: ModelSpec,
    response: http.client.HTTPResponse,
    part: Path,
    start: int,
    total: int,
    remaining: int | None,
    progress: ProgressFn | None,
    cancel: threading.Event | None,
) -> None:
    """Append the response body to ``part`` from ``start``, reporting progress."""
    done, received = start, 0
    with _local_io():
        out = part.open("r+b" if start > 0 else "wb")
    with out:
        with _local_io():
            out.seek(start)
            out.truncate()
        if progress is not None:
            progress(done, total)
        while True:
            if cancel is not None and cancel.is_set():
                raise CancelledError(
                    f"Download of {spec.name} cancelled",
                    "run it again to resume from where it stopped",
                )
            try:
                chunk = response.read(_CHUNK)
            except http.client.IncompleteRead as exc:
                with _local_io():
                    out.write(exc.partial)
                raise
            if not chunk:
                break
            with _local_io():
                out.write(chunk)
            done += len(chunk)
            received += len(chunk)
            if spec.size_bytes and done > spec.size_bytes:
                out.close()
                raise _mismatch(
                    part,
                    f"Download of {spec.name} is larger than the expected {spec.size_bytes} bytes",
                )
            if progress is not None:
                progress(done, total)
        with _local_io():
            out.flush()
            os.fsync(out.fileno())
    if remaining is not None and received < remaining:
        raise ModelError(
            f"Download of {spec.name} was interrupted at {done} of {total} bytes",
            "run the download again; it resumes where it stopped",
        )
