"""Download, verify and install the CUDA add-on's wheels (see core/gpu_addon.py).

Why this shape: ~2.5 GB over a home connection will be interrupted, so each wheel downloads
to ``NAME.part`` and continues with an HTTP Range request (a server that ignores Range makes
it start that file again, cleanly); each finished file must have the manifest's size and
sha256 or it is deleted; the wheels are extracted into a staging folder that is renamed to
its final name in one step, with its marker written last, so a crash or a Cancel never
leaves something that :func:`vsr_desktop.core.gpu_addon.activate` would load.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import os
import shutil
import threading
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from vsr_desktop.core.errors import CancelledError
from vsr_desktop.core.gpu_addon import (
    MARKER,
    AddonFile,
    GpuAddonError,
    Manifest,
    addon_root,
)

#: progress(done_bytes, total_bytes, what): over all files; "what" names the step.
ProgressFn = Callable[[int, int, str], None]
_CHUNK = 1 << 20
_TIMEOUT_S = 30.0
_USER_AGENT = "vsr-desktop-gpu-addon"


def _check_cancel(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise CancelledError(
            "The GPU add-on download was cancelled", "install again to resume where it stopped"
        )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _open(url: str, start: int) -> http.client.HTTPResponse:
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    if start:
        request.add_header("Range", f"bytes={start}-")
    response: http.client.HTTPResponse = urllib.request.urlopen(request, timeout=_TIMEOUT_S)
    return response


def _range_start(value: str | None) -> int | None:
    """Start offset of a ``Content-Range: bytes START-END/TOTAL`` header."""
    try:
        return int((value or "").removeprefix("bytes ").split("-", 1)[0])
    except ValueError:
        return None


def _fetch(
    item: AddonFile,
    part: Path,
    report: Callable[[int], None],
    cancel: threading.Event | None,
) -> None:
    """Bring ``part`` to ``item.size`` bytes, resuming what is there; raises OSError/HTTP."""
    have = part.stat().st_size if part.exists() else 0
    if have > item.size:  # not this file (a changed manifest): start again
        part.unlink()
        have = 0
    if have == item.size:
        return
    with _open(item.url, have) as response:
        if have and response.status != 206:  # the server ignored Range: start this file again
            have = 0
        elif have and _range_start(response.headers.get("Content-Range")) != have:
            part.unlink()
            raise GpuAddonError(
                f"The server sent the wrong part of {item.name}", "install again to restart it"
            )
        mode = "ab" if have else "wb"
        with part.open(mode) as out:
            report(have)
            while have < item.size:
                _check_cancel(cancel)
                block = response.read(min(_CHUNK, item.size - have))
                if not block:
                    break
                out.write(block)
                have += len(block)
                report(have)
    if have != item.size:
        raise GpuAddonError(
            f"The download of {item.name} stopped at {have} of {item.size} bytes",
            "install again: it resumes where it stopped",
        )


def download(
    manifest: Manifest,
    root: Path | None = None,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
) -> list[Path]:
    """Download and verify every wheel into ``downloads/``; returns their paths."""
    folder = addon_root(root) / "downloads"
    _make_dirs(folder)
    total = manifest.total_bytes
    done_before = 0
    paths = []
    for item in manifest.files:
        final = folder / item.name
        part = folder / f"{item.name}.part"

        def report(have: int, base: int = done_before, name: str = item.name) -> None:
            if progress is not None:
                progress(base + have, total, f"downloading {name}")

        if not (final.is_file() and final.stat().st_size == item.size):
            _check_cancel(cancel)
            try:
                _fetch(item, part, report, cancel)
            except urllib.error.HTTPError as exc:
                raise GpuAddonError(
                    f"Downloading {item.name} failed: HTTP {exc.code} from {item.url}",
                    "the file may have moved; update the app, or try again later",
                ) from None
            except (OSError, http.client.HTTPException) as exc:
                if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
                    raise GpuAddonError(
                        f"The disk is full while downloading {item.name}",
                        f"free {manifest.total_bytes * 2 / 1e9:.1f} GB in {folder}, then resume",
                    ) from None
                raise GpuAddonError(
                    f"Downloading {item.name} failed: {exc}",
                    "check the internet connection and install again; it resumes",
                ) from None
            got = _sha256(part)
            if got != item.sha256:
                part.unlink(missing_ok=True)
                raise GpuAddonError(
                    f"{item.name} does not match its checksum (sha256 {got[:16]}…, "
                    f"expected {item.sha256[:16]}…)",
                    "the file was deleted; install again, and report it if it happens again",
                )
            os.replace(part, final)
        elif _sha256(final) != item.sha256:
            final.unlink()
            raise GpuAddonError(
                f"The downloaded {item.name} was changed on disk",
                "it was deleted; install again",
            )
        report(item.size)
        done_before += item.size
        paths.append(final)
    return paths


def _wheel_target(member: str) -> str | None:
    """Where a wheel member goes inside site/ (None: not installed, e.g. scripts, headers).

    Refuses absolute paths and ``..`` (a crafted wheel must not write outside the folder).
    """
    path = PurePosixPath(member)
    if path.is_absolute() or ".." in path.parts or ":" in member or "\\" in member:
        raise GpuAddonError(f"The wheel member {member!r} points outside its folder")
    parts = path.parts
    if len(parts) >= 3 and parts[0].endswith(".data"):
        return "/".join(parts[2:]) if parts[1] in ("purelib", "platlib") else None
    return member


def _extract(wheel: Path, site: Path, cancel: threading.Event | None) -> None:
    try:
        with zipfile.ZipFile(wheel) as archive:
            for info in archive.infolist():
                _check_cancel(cancel)
                target = _wheel_target(info.filename)
                if target is None or info.is_dir():
                    continue
                out = site / target
                out.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as src, out.open("wb") as dst:
                    shutil.copyfileobj(src, dst, _CHUNK)
    except zipfile.BadZipFile as exc:
        wheel.unlink(missing_ok=True)
        raise GpuAddonError(f"{wheel.name} is not a valid wheel: {exc}", "install again") from None


def _make_dirs(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GpuAddonError(
            f"Cannot create {path}: {exc}", "check that your user data folder is writable"
        ) from exc


def install(
    manifest: Manifest,
    root: Path | None = None,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
) -> Path:
    """Download (resuming), verify and install the add-on; returns its folder.

    Raises GpuAddonError (network, checksum, disk) and CancelledError (downloads are kept
    for a resume; the staging folder is deleted). Used from the next start of the app.
    """
    if not manifest.fits_this_machine():
        raise GpuAddonError(
            f"The GPU add-on {manifest.id} is for {manifest.platform}",
            "it cannot be used on this machine",
        )
    base = addon_root(root)
    final = base / manifest.id
    if (final / MARKER).is_file():  # already installed: nothing to download again
        return final
    wheels = download(manifest, base, progress, cancel)
    staging = base / f".staging-{manifest.id}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        _make_dirs(staging / "site")
        for index, wheel in enumerate(wheels, start=1):
            if progress is not None:
                total = manifest.total_bytes
                progress(total, total, f"installing {wheel.name} ({index}/{len(wheels)})")
            _extract(wheel, staging / "site", cancel)
        _check_cancel(cancel)
        record = {"id": manifest.id, "files": [f.name for f in manifest.files]}
        (staging / MARKER).write_text(_json(record), encoding="utf-8")
        if final.exists():  # a reinstall: the old one goes first, marker before the rest
            _remove_old(final)
        os.replace(staging, final)
    except OSError as exc:
        raise GpuAddonError(
            f"Installing the GPU add-on into {base} failed: {exc}",
            f"free {manifest.total_bytes * 2 / 1e9:.1f} GB there and install again",
        ) from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for wheel in wheels:  # installed: the wheels would only take space
        wheel.unlink(missing_ok=True)
    return final


def _remove_old(final: Path) -> None:
    try:
        (final / MARKER).unlink(missing_ok=True)
        shutil.rmtree(final)
    except OSError as exc:
        raise GpuAddonError(
            f"Cannot replace the installed add-on in {final}: {exc}",
            "close every running vsr-desktop and vsr, then install again",
        ) from exc


def _json(data: object) -> str:
    import json

    return json.dumps(data, indent=2) + "\n"
