"""The Windows CUDA add-on: what it is, where it lives, whether it is installed, start-up use.

Why: a CUDA torch is ~2.5 GB, past NSIS's 2 GB installer limit and GitHub's 2 GiB asset
limit, so the Windows installer carries the CPU torch and the app fetches PyTorch's CUDA
wheels on request (``gpu_addon_install``) into the user's data folder. On the next start,
:func:`activate` puts the add-on's folder ahead of the bundled torch on ``sys.path``.

The wheels are pinned by a manifest shipped inside the app (URL, size, sha256 per file),
generated at release time by ``packaging/windows/gpu_addon_manifest.py`` from the PyTorch
index. Layout under the data folder (``gpu-addon/``)::

    downloads/NAME.whl.part     a download in progress (resumed with HTTP Range)
    downloads/NAME.whl          a verified wheel, deleted once installed
    ID/site/…                   the extracted wheels (ID = the manifest's id)
    ID/addon.json               written last inside the staging folder
    .staging-ID-…/              extraction in progress; renamed to ID in one step

An add-on is used only when its ID equals the running app's manifest ID, so an app update
that pins another torch never loads a stale add-on (status says "reinstall").
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from vsr_desktop.core.errors import VsrError

#: Environment overrides: the manifest file, the data folder, and "0" to skip the add-on at
#: start-up (a way out if an add-on ever keeps the app from starting).
MANIFEST_ENV = "VSR_GPU_ADDON_MANIFEST"
DIR_ENV = "VSR_GPU_ADDON_DIR"
ENABLE_ENV = "VSR_GPU_ADDON"
MARKER = "addon.json"
_HEX = set("0123456789abcdef")


class GpuAddonError(VsrError):
    """The add-on could not be found, downloaded, verified, installed or removed."""

    exit_code = 10


@dataclass(frozen=True)
class AddonFile:
    """One pinned wheel: where to get it and what it must be."""

    name: str
    url: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """The add-on this build of the app can use."""

    id: str
    platform: str
    description: str
    files: tuple[AddonFile, ...]

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def fits_this_machine(self) -> bool:
        """True when the wheels are for this OS/architecture (``sysconfig.get_platform``)."""
        return self.platform == sysconfig.get_platform()


def parse_manifest(data: object, source: str = "manifest") -> Manifest:
    """Check and convert a manifest's JSON; a bad one is a GpuAddonError naming the field."""
    bad = f"The GPU add-on {source} is invalid"
    if not isinstance(data, dict):
        raise GpuAddonError(bad, "it must be a JSON object")
    try:
        files = tuple(
            AddonFile(str(f["name"]), str(f["url"]), int(f["size"]), str(f["sha256"]).lower())
            for f in data["files"]
        )
        manifest = Manifest(
            str(data["id"]), str(data["platform"]), str(data.get("description", "")), files
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise GpuAddonError(bad, f"missing or wrong field: {exc}") from None
    safe = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._+-")
    for entry in (manifest.id, *(f.name for f in files)):
        if not entry or set(entry) - safe or entry.startswith("."):
            raise GpuAddonError(bad, f"{entry!r} is not a plain file name")
    for f in files:
        if len(f.sha256) != 64 or set(f.sha256) - _HEX or f.size <= 0:
            raise GpuAddonError(bad, f"{f.name}: a size and a sha256 are required")
        if not f.name.endswith(".whl"):
            raise GpuAddonError(bad, f"{f.name}: only wheels can be installed")
    return manifest


def default_manifest_path() -> Path:
    """Where the app's own manifest sits (generated into Windows builds at release time)."""
    if env := os.environ.get(MANIFEST_ENV):
        return Path(env)
    from vsr_desktop.resources import RESOURCES

    return RESOURCES / "gpu_addon" / "manifest.json"


def load_manifest(path: Path | None = None) -> Manifest | None:
    """The manifest at ``path`` (default: the app's); None when this build carries none."""
    path = path or default_manifest_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise GpuAddonError(f"Cannot read the GPU add-on manifest {path}: {exc}") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise GpuAddonError(f"The GPU add-on manifest {path} is not JSON", str(exc)) from None
    return parse_manifest(data, str(path))


def addon_root(root: Path | None = None) -> Path:
    """The add-on's folder in the user's data folder (``DIR_ENV`` overrides)."""
    if root is not None:
        return Path(root)
    if env := os.environ.get(DIR_ENV):
        return Path(env)
    from platformdirs import user_data_dir

    return Path(user_data_dir("vsr_desktop", appauthor=False)) / "gpu-addon"


def site_dir(manifest: Manifest, root: Path | None = None) -> Path:
    """Where the installed wheels' files are (what goes on ``sys.path``)."""
    return addon_root(root) / manifest.id / "site"


@dataclass(frozen=True)
class AddonStatus:
    """What the CLI and the dialog show."""

    available: bool  # this build has a manifest for this machine
    installed: bool  # the add-on for this build is installed
    stale: tuple[str, ...]  # add-ons for other builds, taking space
    partial_bytes: int  # bytes of unfinished downloads (resumed by the next install)
    message: str


def installed_ids(root: Path | None = None) -> list[str]:
    """Every complete add-on under the root (its marker exists), any build's."""
    base = addon_root(root)
    if not base.is_dir():
        return []
    return sorted(
        p.name for p in base.iterdir() if not p.name.startswith(".") and (p / MARKER).is_file()
    )


def status(manifest: Manifest | None, root: Path | None = None) -> AddonStatus:
    """Installed or not, for this build; what else lies in the add-on folder."""
    ids = installed_ids(root)
    downloads = addon_root(root) / "downloads"
    partial = sum(p.stat().st_size for p in downloads.glob("*")) if downloads.is_dir() else 0
    if manifest is None or not manifest.fits_this_machine():
        where = "this build" if manifest is None else f"{manifest.platform} only"
        return AddonStatus(False, False, tuple(ids), partial, f"No GPU add-on for {where}")
    installed = manifest.id in ids
    stale = tuple(i for i in ids if i != manifest.id)
    if installed:
        message = f"Installed: {manifest.description or manifest.id} (used from the next start)"
    elif stale:
        message = f"Not installed for this version (found {', '.join(stale)}): install again"
    else:
        size = manifest.total_bytes / 1e9
        message = f"Not installed: {manifest.description or manifest.id}, {size:.1f} GB download"
    return AddonStatus(True, installed, stale, partial, message)


def remove(root: Path | None = None) -> list[str]:
    """Delete every add-on, staging folder and download; returns what was removed.

    Takes effect at the next start (a running app keeps the torch it imported).
    """
    base = addon_root(root)
    if not base.is_dir():
        return []
    removed = []
    for entry in sorted(base.iterdir()):
        try:
            if entry.is_dir() and not entry.is_symlink():
                # The marker goes first: a removal cut short never leaves a "complete" add-on.
                (entry / MARKER).unlink(missing_ok=True)
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except OSError as exc:
            raise GpuAddonError(
                f"Cannot remove {entry}: {exc}",
                "close every running vsr-desktop and vsr, then try again",
            ) from exc
        removed.append(entry.name)
    return removed


def activate(manifest: Manifest | None = None, root: Path | None = None) -> Path | None:
    """At start-up, before torch is imported: put the installed add-on ahead of the bundled
    torch. Returns the folder used, or None (no add-on, another build's, disabled, too late).

    Never raises: a broken add-on must not stop the app from starting on the CPU.
    """
    if os.environ.get(ENABLE_ENV) == "0" or "torch" in sys.modules:
        return None
    try:
        manifest = manifest or load_manifest()
    except GpuAddonError:
        return None
    if manifest is None or not manifest.fits_this_machine():
        return None
    site = site_dir(manifest, root)
    if not (site.parent / MARKER).is_file():
        return None
    sys.path.insert(0, str(site))
    add_dll_directory = getattr(os, "add_dll_directory", None)  # Windows only
    torch_lib = site / "torch" / "lib"
    if add_dll_directory is not None and torch_lib.is_dir():
        add_dll_directory(str(torch_lib))
    return site
