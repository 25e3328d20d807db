"""Collect the licence text of everything the installer bundle carries, at build time.

Why at build time, from the build environment: a hand-kept list of "the packages we bundle"
goes stale with every dependency bump (it missed spandrel's MIT text and ~20 others). What
the bundle carries is known exactly only when PyInstaller has analysed it, so the spec hands
us its module and binary lists and we ask **pip-licenses** (a maintained tool reading each
distribution's metadata) for the licence of every distribution behind them. A distribution
without a licence text stops the build (`MissingLicence`): shipping it would break its
licence, and a human has to decide what to do.

Three sources, written under one folder of the bundle:

- ``python/<Name>-<version>/`` the licence (and NOTICE) text of each bundled distribution;
- ``Python-<version>-LICENSE.txt`` the interpreter's own licence (the bundle carries libpython);
- ``system/<package>.copyright`` the Debian copyright file of each system library PyInstaller
  copied from the build host (``dpkg -S`` names its package), e.g. GPL-3 readline.

``index.json`` lists them all; ``debian_copyright()`` turns it into the .deb's
machine-readable copyright file. Run as a script: ``python packaging/licences.py
debian-copyright INDEX.json`` prints that file (packaging/linux/build_installer.sh).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

UNKNOWN = "UNKNOWN"  # what pip-licenses writes where it found nothing
#: Where the bundle's licence folder is, relative to the bundle's _internal folder.
BUNDLE_LICENSES = "vsr_desktop/resources/licenses"
#: Texts we supply for distributions whose wheels ship none (checked by hand, with the source
#: named in each file): normalised distribution name → files in packaging/pyinstaller/licenses.
LICENSE_DIR = Path(__file__).resolve().parent / "pyinstaller" / "licenses"
SUPPLIED = {
    "spandrel": ("supplied/spandrel-MIT.txt",),
    "pyside6-essentials": ("Qt-LGPL-NOTICE.txt", "LGPL-3.0.txt", "GPL-3.0.txt"),
    "pyside6": ("Qt-LGPL-NOTICE.txt", "LGPL-3.0.txt", "GPL-3.0.txt"),
    "shiboken6": ("Qt-LGPL-NOTICE.txt", "LGPL-3.0.txt", "GPL-3.0.txt"),
}
#: This project: its licence is ours (vsr_desktop-MIT.txt), not a third party's.
OWN_DISTRIBUTIONS = frozenset({"vsr-desktop"})
_EXTENSION_SUFFIX = re.compile(r"(\.cpython-[^.]*|\.abi3|\.cp\d+-[^.]*)?\.(so|pyd|dylib)(\.\d+)*$")
#: pip-licenses' free-text licences → SPDX identifiers for the Debian copyright file.
_SPDX = {
    "mit": "Expat",
    "mit license": "Expat",
    "bsd license": "BSD-3-Clause",
    "bsd-3-clause": "BSD-3-Clause",
    "bsd 3-clause": "BSD-3-Clause",
    "bsd-2-clause": "BSD-2-Clause",
    "apache software license": "Apache-2.0",
    "apache-2.0": "Apache-2.0",
    "apache 2.0": "Apache-2.0",
    "apache license 2.0": "Apache-2.0",
    "python software foundation license": "PSF-2.0",
    "psf-2.0": "PSF-2.0",
    "mozilla public license 2.0 (mpl 2.0)": "MPL-2.0",
    "mpl-2.0": "MPL-2.0",
    "isc license (iscl)": "ISC",
    "isc": "ISC",
    "lgpl-3.0-only": "LGPL-3.0-only",
    "gnu lesser general public license v3 (lgplv3)": "LGPL-3.0-only",
    "historical permission notice and disclaimer (hpnd)": "HPND",
    "mit-cmu": "MIT-CMU",
    "unlicense": "Unlicense",
    "the unlicense (unlicense)": "Unlicense",
}


class MissingLicence(RuntimeError):
    """A bundled component has no licence text: the build must stop."""


@dataclass(frozen=True)
class DistributionLicence:
    """One bundled Python distribution and where its texts were written."""

    name: str
    version: str
    licence: str
    files: tuple[str, ...]  # relative to the licence folder
    top_levels: tuple[str, ...]  # its import names found in the bundle


@dataclass(frozen=True)
class SystemLibrary:
    """A shared library copied from the build host and the Debian package that owns it."""

    library: str  # its name in the bundle
    source: str  # where PyInstaller found it
    package: str
    copyright_file: str  # relative to the licence folder


@dataclass
class LicenceIndex:
    """Everything written, for the Debian copyright file and the docs."""

    distributions: list[DistributionLicence] = field(default_factory=list)
    python: str = ""  # relative path of the interpreter's licence
    python_version: str = ""
    system_libraries: list[SystemLibrary] = field(default_factory=list)

    def to_json(self) -> str:
        """The index as JSON (written next to the texts as index.json)."""
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> LicenceIndex:
        """Read index.json back (the .deb build runs after PyInstaller)."""
        raw = json.loads(text)
        return cls(
            distributions=[
                DistributionLicence(
                    **{**d, "files": tuple(d["files"]), "top_levels": tuple(d["top_levels"])}
                )
                for d in raw["distributions"]
            ],
            python=raw["python"],
            python_version=raw["python_version"],
            system_libraries=[SystemLibrary(**s) for s in raw["system_libraries"]],
        )


# -- which distributions are in the bundle ----------------------------------------------------


def top_level_name(name: str) -> str:
    """The import name a bundle entry belongs to: 'torch.nn' or 'torch/lib/x.so' → 'torch'."""
    first = re.split(r"[/\\]", name, maxsplit=1)[0]
    first = _EXTENSION_SUFFIX.sub("", first)
    first = re.sub(r"\.pyc?$", "", first)
    return first.split(".", 1)[0]


def bundled_distributions(
    names: Iterable[str], mapping: Mapping[str, list[str]] | None = None
) -> dict[str, set[str]]:
    """Distribution name → the import names of it that the bundle carries.

    ``names`` are PyInstaller's module names and the bundle paths of binaries and data files;
    ``mapping`` is ``importlib.metadata.packages_distributions()`` of the build environment.
    """
    known = metadata.packages_distributions() if mapping is None else mapping
    found: dict[str, set[str]] = {}
    for name in names:
        top = top_level_name(name)
        for dist in known.get(top, ()):
            if _normalise(dist) not in OWN_DISTRIBUTIONS:
                found.setdefault(dist, set()).add(top)
    return found


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# -- pip-licenses -----------------------------------------------------------------------------


def pip_licenses_rows(python: str = sys.executable) -> list[dict[str, str]]:
    """Every distribution of ``python``'s environment, as pip-licenses reports it (JSON)."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "piplicenses",
            f"--python={python}",
            "--format=json",
            "--from=mixed",
            "--with-license-file",
            "--no-license-path",
            "--with-notice-file",
            "--with-system",  # setuptools (pkg_resources) is bundled too
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"pip-licenses failed (pip install pip-licenses): {result.stderr}")
    rows: list[dict[str, str]] = json.loads(result.stdout)
    return rows


def _fallback_texts(name: str) -> list[tuple[str, str]]:
    """Licence-like files pip-licenses does not look for, then the texts we supply."""
    supplied = [
        (Path(rel).name, (LICENSE_DIR / rel).read_text(encoding="utf-8"))
        for rel in SUPPLIED.get(_normalise(name), ())
    ]
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return supplied
    texts = []
    for file in dist.files or ():
        if not re.match(r"(?i)(licen[cs]e|copying|notice)", file.name) or file.suffix == ".py":
            continue
        if not any(part.endswith(".dist-info") for part in file.parts):
            continue
        path = Path(str(dist.locate_file(file)))
        if path.is_file():
            texts.append((file.name, path.read_text(encoding="utf-8", errors="replace")))
    return texts or supplied


def _metadata_row(name: str) -> dict[str, str] | None:
    """A pip-licenses-like row from this process's metadata, for distributions pip-licenses
    cannot see from outside (setuptools' vendored jaraco.* are on sys.path only here)."""
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return None
    meta = dist.metadata
    licence = meta["License-Expression"] or meta["License"] or UNKNOWN
    return {"Name": dist.metadata["Name"], "Version": dist.version, "License": licence,
            "LicenseText": UNKNOWN, "NoticeText": UNKNOWN}  # fmt: skip


def write_distribution_licences(
    wanted: dict[str, set[str]],
    rows: Sequence[dict[str, str]],
    out: Path,
    fallback: Callable[[str], list[tuple[str, str]]] = _fallback_texts,
) -> list[DistributionLicence]:
    """Write each wanted distribution's texts under ``out/python``; raise if one has none."""
    by_name = {_normalise(row["Name"]): row for row in rows}
    written: list[DistributionLicence] = []
    missing: list[str] = []
    for dist in sorted(wanted, key=_normalise):
        row = by_name.get(_normalise(dist)) or _metadata_row(dist)
        if row is None:
            missing.append(f"{dist} (not in the build environment's metadata)")
            continue
        texts = [
            (kind, row.get(key, UNKNOWN))
            for kind, key in (("LICENSE", "LicenseText"), ("NOTICE", "NoticeText"))
        ]
        texts = [(kind, text) for kind, text in texts if text and text != UNKNOWN]
        if not any(kind == "LICENSE" for kind, _ in texts):
            texts += fallback(row["Name"])
        if not any(kind != "NOTICE" for kind, _ in texts):
            texts = []  # a NOTICE alone is not the licence
        if not texts:
            missing.append(f"{row['Name']} {row['Version']} ({row.get('License', UNKNOWN)})")
            continue
        folder = Path("python") / f"{row['Name']}-{row['Version']}"
        (out / folder).mkdir(parents=True, exist_ok=True)
        files = []
        for n, (kind, text) in enumerate(texts):
            # Vendored packages bring several files called LICENSE: keep them all.
            target = folder / (kind if kind not in {k for k, _ in texts[:n]} else f"{kind}.{n}")
            (out / target).write_text(text, encoding="utf-8")
            files.append(target.as_posix())
        written.append(
            DistributionLicence(
                name=row["Name"],
                version=row["Version"],
                licence=row.get("License", UNKNOWN),
                files=tuple(files),
                top_levels=tuple(sorted(wanted[dist])),
            )
        )
    if missing:
        raise MissingLicence(
            "no licence text for bundled distribution(s): "
            + "; ".join(missing)
            + ". Add the text to packaging/pyinstaller/licenses/ or leave the package out."
        )
    return written


# -- the interpreter and the system libraries -------------------------------------------------


def python_licence_file() -> Path:
    """The CPython licence of the interpreter being bundled (raises if none is found)."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    base = Path(sys.base_prefix)
    for candidate in (
        base / "lib" / f"python{version}" / "LICENSE.txt",  # python.org, pyenv, setup-python
        base / "LICENSE.txt",  # Windows
        base / "Lib" / "LICENSE.txt",
        Path(f"/usr/lib/python{version}/LICENSE.txt"),
        Path(f"/usr/share/doc/python{version}/copyright"),  # Debian's python3.X
    ):
        if candidate.is_file():
            return candidate
    raise MissingLicence(f"no licence text for Python {version} under {base}")


def _dpkg_owner(path: Path) -> str | None:
    """The Debian package that installed ``path`` (merged /usr: try both spellings)."""
    if shutil.which("dpkg") is None:
        return None
    candidates = {str(path), str(path.resolve())}
    for p in list(candidates):
        if p.startswith("/usr/"):
            candidates.add(p[4:])
        else:
            candidates.add("/usr" + p)
    for candidate in sorted(candidates):
        result = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True)
        if result.returncode == 0 and ":" in result.stdout:
            return result.stdout.split(":", 1)[0].split(",")[0].strip()
    return None


def system_libraries(binaries: Iterable[tuple[str, str]]) -> list[tuple[str, Path]]:
    """(bundle name, host path) of the binaries that come from the OS, not from Python.

    Libraries from site-packages are covered by their distribution's licence, libpython by
    Python's; what is left was copied from /lib or /usr/lib of the build host.
    """
    own = [Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()]
    found = []
    for dest, src in binaries:
        path = Path(src).resolve()
        if any(path.is_relative_to(prefix) for prefix in own):
            continue
        found.append((dest, Path(src)))
    return found


def write_system_copyrights(
    binaries: Iterable[tuple[str, str]],
    out: Path,
    owner: Callable[[Path], str | None] = _dpkg_owner,
) -> list[SystemLibrary]:
    """Copy /usr/share/doc/<package>/copyright of each system library's package."""
    libraries = []
    missing = []
    for dest, src in system_libraries(binaries):
        package = owner(src)
        if package is None:
            if shutil.which("dpkg") is None:
                continue  # not a Debian host (macOS, Windows): nothing to look up
            missing.append(f"{dest} ({src}: no package owns it)")
            continue
        copyright_src = Path("/usr/share/doc") / package / "copyright"
        if not copyright_src.is_file():
            missing.append(f"{dest} ({package}: no {copyright_src})")
            continue
        target = Path("system") / f"{package}.copyright"
        (out / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(copyright_src, out / target)
        libraries.append(SystemLibrary(dest, str(src), package, target.as_posix()))
    if missing:
        raise MissingLicence("no copyright for system librar(ies): " + "; ".join(missing))
    return libraries


def collect(
    names: Iterable[str],
    binaries: Iterable[tuple[str, str]],
    out: Path,
    rows: Sequence[dict[str, str]] | None = None,
) -> LicenceIndex:
    """Write every licence the bundle needs under ``out`` and return the index (also written).

    ``names``: module names and bundle paths (to find the distributions); ``binaries``:
    (bundle path, source path) of every shared library. Raises MissingLicence.
    """
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    wanted = bundled_distributions(names)
    index = LicenceIndex()
    index.distributions = write_distribution_licences(
        wanted, pip_licenses_rows() if rows is None else rows, out
    )
    python = python_licence_file()
    index.python_version = sys.version.split()[0]
    index.python = f"Python-{index.python_version}-LICENSE.txt"
    shutil.copyfile(python, out / index.python)
    index.system_libraries = write_system_copyrights(binaries, out)
    (out / "index.json").write_text(index.to_json(), encoding="utf-8")
    return index


# -- the Debian copyright file ----------------------------------------------------------------


def spdx(licence: str) -> str:
    """A DEP-5 short name for pip-licenses' licence string (LicenseRef-… when unknown)."""
    text = licence.strip()
    key = text.lower()
    if key in _SPDX:
        return _SPDX[key]
    parts = [p.strip() for p in re.split(r";|\s+OR\s+|\s+or\s+", text) if p.strip()]
    if len(parts) > 1 and all(p.lower() in _SPDX for p in parts):
        return " or ".join(dict.fromkeys(_SPDX[p.lower()] for p in parts))
    if (
        re.fullmatch(r"[A-Za-z0-9.+-]+( (AND|OR|and|or) [A-Za-z0-9.+-]+)*", text)
        and text != UNKNOWN
    ):
        return text.replace(" AND ", " and ").replace(" OR ", " or ").replace("MIT", "Expat")
    return "LicenseRef-" + re.sub(r"[^A-Za-z0-9]+", "-", text)[:40].strip("-") or "unknown"


def debian_copyright(index: LicenceIndex, prefix: str, bundle: Path | None = None) -> str:
    """The .deb's /usr/share/doc/vsr-desktop/copyright (DEP-5) for ``index``.

    ``prefix``: the installed bundle, e.g. ``opt/vsr-desktop``. Distributions with files in
    ``bundle`` get their own stanza; the others exist only inside the executables' Python
    archive and are listed in the ``Files: *`` stanza's comment (with their licences).
    """
    licences = f"/{prefix}/_internal/{BUNDLE_LICENSES}"
    internal = f"{prefix}/_internal"
    stanzas: list[list[str]] = []
    archive_only: list[str] = []
    used = {"Expat", "BSD-3-Clause", "PSF-2.0"}
    for dist in index.distributions:
        short = "BSD-3-Clause and GPL-3.0-or-later" if dist.name == "av" else spdx(dist.licence)
        texts = ", ".join(f"{licences}/{f}" for f in dist.files)
        patterns = _bundle_patterns(dist, internal, bundle)
        if not patterns:
            archive_only.append(f"  {dist.name} {dist.version} ({short}): {texts}")
            continue
        used.update(re.split(r" and | or ", short))
        stanzas.append([
            f"Files: {' '.join(patterns)}",
            f"Copyright: the {dist.name} authors (see the licence text)",
            f"License: {short}",
            f"Comment: {dist.name} {dist.version}; full text {texts}",
        ])  # fmt: skip
    for lib in index.system_libraries:
        name = f"LicenseRef-Debian-{lib.package}"
        used.add(name)
        stanzas.append([
            f"Files: {internal}/{lib.library}",
            f"Copyright: see the Debian copyright file of {lib.package}",
            f"License: {name}",
            f"Comment: copied from {lib.source} (Debian package {lib.package});",
            f" its copyright file is {licences}/{lib.copyright_file}",
        ])  # fmt: skip
    out = [
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/",
        "Upstream-Name: vsr-desktop",
        "Comment: a frozen Python application with the third-party components below. Their",
        f" full licence texts are in {licences}/ (python/ for each Python",
        " distribution, system/ for libraries copied from Debian, the Python licence, and",
        " the Qt, FFmpeg and Real-ESRGAN notices).",
        "",
        "Files: *",
        "Copyright: 2026 the vsr_desktop contributors",
        "License: Expat",
        "Comment: the vsr_desktop program and its resources. The executables vsr and",
        " vsr-desktop also embed the Python modules of distributions under their own",
        " licences; those with no files of their own elsewhere are:",
        *(archive_only or ["  none"]),
        "",
        f"Files: {internal}/vsr_desktop/resources/models/*",
        "Copyright: 2021 Xintao Wang (Real-ESRGAN)",
        "License: BSD-3-Clause",
        "Comment: realesr-animevideov3 weights; see RealESRGAN-BSD-3-Clause.txt.",
        "",
        f"Files: {internal}/libpython*",
        "Copyright: 2001-2026 Python Software Foundation",
        "License: PSF-2.0",
        f"Comment: Python {index.python_version}; full text {licences}/{index.python}",
        "",
    ]
    for stanza in stanzas:
        out += [*stanza, ""]
    for name in sorted(used):
        where = "vsr_desktop-MIT.txt" if name == "Expat" else "the files named above"
        out += [f"License: {name}", f" See {licences}/ ({where}).", ""]
    return "\n".join(out).rstrip() + "\n"


def _bundle_patterns(dist: DistributionLicence, internal: str, bundle: Path | None) -> list[str]:
    """DEP-5 'Files:' patterns for a distribution's files in the bundle (none: archive only)."""
    patterns: list[str] = []
    for top in dist.top_levels:
        if bundle is None:
            patterns.append(f"{internal}/{top}/*")
            continue
        root = bundle / "_internal"
        if (root / top).is_dir():
            patterns.append(f"{internal}/{top}/*")
        if (root / f"{top}.libs").is_dir():
            patterns.append(f"{internal}/{top}.libs/*")
        patterns += sorted(f"{internal}/{p.name}" for p in root.glob(f"{top}.*") if p.is_file())
    return list(dict.fromkeys(patterns))


def main(argv: Sequence[str] | None = None) -> int:
    """``debian-copyright INDEX.json [BUNDLE]``: print the .deb's copyright file."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2 or args[0] != "debian-copyright":
        print(main.__doc__, file=sys.stderr)
        return 2
    index = LicenceIndex.from_json(Path(args[1]).read_text(encoding="utf-8"))
    bundle = Path(args[2]) if len(args) > 2 else None
    sys.stdout.write(
        debian_copyright(index, os.environ.get("VSR_PREFIX", "opt/vsr-desktop"), bundle)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
