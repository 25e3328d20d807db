"""Build-time helpers for the PyInstaller spec: licences, FFmpeg's build line, the icon.

Kept out of the spec so that the spec stays a readable list of what goes into the bundle,
and so that tests can check these pieces without running PyInstaller.
"""

from __future__ import annotations

import importlib.util
import marshal
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from types import CodeType

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
ICON_SVG = REPO / "packaging" / "linux" / "icons" / "vsr-desktop.svg"
#: Our own and the hand-written notices (Qt LGPL, FFmpeg/x264/x265 GPL, GPL/LGPL texts).
LICENSE_DIR = HERE / "licenses"
#: Where in the bundle the licences go: beside the ones the package already ships.
BUNDLE_LICENSES = "vsr_desktop/resources/licenses"
#: Distributions whose own licence files ship inside the bundle.
THIRD_PARTY = (
    "torch",
    "torchvision",
    "av",
    "numpy",
    "pillow",
    "spandrel",
    "safetensors",
    "platformdirs",
    "filelock",
    "tqdm",
    "keyring",
    "PySide6_Essentials",
    "shiboken6",
    "boto3",
    "botocore",
    "SecretStorage",
    "jeepney",
)
_LICENSE_WORDS = ("LICENSE", "LICENCE", "COPYING", "NOTICE", "AUTHORS")


def notice_files() -> list[tuple[str, str]]:
    """(source, bundle folder) pairs for the licence texts we wrote or copied."""
    return [(str(path), BUNDLE_LICENSES) for path in sorted(LICENSE_DIR.glob("*.txt"))]


def third_party_license_files() -> list[tuple[str, str]]:
    """Licence files from the installed distributions' metadata, one folder per project."""
    found: list[tuple[str, str]] = []
    for name in THIRD_PARTY:
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        for file in dist.files or ():
            base = file.name.upper()
            top, *inner = file.parent.parts or ("",)
            if (
                not top.endswith(".dist-info")
                or base.endswith((".PY", ".PYC"))
                or not any(word in base for word in _LICENSE_WORDS)
            ):
                continue
            path = Path(str(dist.locate_file(file)))
            if path.is_file():  # the folders keep torch's many third_party/*/LICENSE apart
                found.append((str(path), "/".join([BUNDLE_LICENSES, "third_party", name, *inner])))
    return found


#: Bundle paths never used at run time (torch's C++ tests, tools, headers, static libraries).
#: torch/bin/torch_shm_manager stays: `import torch` looks for it (torch._C._initExtension).
_UNUSED = re.compile(
    r"^torch/(test|include|share/cmake)/|^torch/bin/(?!torch_shm_manager$)|\.a$|(^|/)__pycache__/"
    r"|^torchgen/packaged/"
)


def unused_at_run_time(bundle_path: str) -> bool:
    """True for files the frozen app never loads: left out of the bundle (issue 18: 175 MB)."""
    return bool(_UNUSED.search(bundle_path.replace("\\", "/")))


#: PEP 552 flags: hash-based .pyc whose source is never checked (there is none to check for
#: most modules; torch's sources sit beside its .pyc only for ``inspect.getsource``).
_PYC_UNCHECKED_HASH = 0b01
_KEEP_IN_PYZ_PREFIXES = ("_pyi", "pyimod", "pyi_")

TocEntry = tuple[str, str | None, str]


def stays_in_pyz(module: str) -> bool:
    """The standard library and PyInstaller's own modules stay in each executable's archive.

    They are small (~3 MB) and some are needed before the path finders are set up.
    """
    top = module.split(".")[0]
    return top in sys.stdlib_module_names or top.startswith(_KEEP_IN_PYZ_PREFIXES)


def _with_filename(code: CodeType, co_filename: str) -> CodeType:
    """``code`` and every code object nested in it, renamed to ``co_filename``."""
    consts = tuple(
        _with_filename(c, co_filename) if isinstance(c, CodeType) else c for c in code.co_consts
    )
    return code.replace(co_consts=consts, co_filename=co_filename)


def _code_of(source: Path) -> CodeType:
    if source.suffix.lower() == ".pyc":  # a module shipped as bytecode only
        code: CodeType = marshal.loads(source.read_bytes()[16:])
        return code
    return compile(source.read_bytes(), str(source), "exec", dont_inherit=True, optimize=0)


def shared_bytecode(
    pure: Sequence[TocEntry], workdir: Path, code_cache: dict[str, CodeType] | None = None
) -> tuple[list[TocEntry], list[tuple[str, str, str]]]:
    """Split the analysis' Python modules into (kept in the PYZ, loose .pyc data files).

    Why: each executable embeds its own copy of the PYZ archive, so everything in it is
    carried twice (~42 MB each). Loose ``.pyc`` files in ``_internal/`` are read by both
    executables. The paths inside the code objects are relative (``torch/nn/module.py``) as
    PyInstaller makes them, so tracebacks and ``inspect.getsource`` (torch needs it; its hook
    collects the ``.py`` files too) resolve against the bundle. The runtime hook
    ``pyi_rth_vsr_bytecode_first`` makes Python load such a ``.pyc`` before the ``.py``
    beside it (else it would recompile torch's sources on every start). ``code_cache`` is
    the analysis' own code objects (PyInstaller's ``CONF["code_cache"]``): the bundle then
    holds exactly what was analysed, even if a source changed since.
    """
    keep: list[TocEntry] = []
    loose: list[tuple[str, str, str]] = []
    header = importlib.util.MAGIC_NUMBER + _PYC_UNCHECKED_HASH.to_bytes(4, "little") + bytes(8)
    for name, src, typecode in pure:
        if stays_in_pyz(name):
            keep.append((name, src, typecode))
            continue
        if src in (None, "-"):  # a namespace package: its folder appears with its modules
            continue
        source = Path(str(src))
        parts = name.split(".")
        if source.stem == "__init__":
            parts.append("__init__")
        code = (code_cache or {}).get(name) or _code_of(source)
        data = header + marshal.dumps(_with_filename(code, os.path.join(*parts) + ".py"))
        dest = "/".join(parts) + ".pyc"
        out = workdir / dest
        if not out.is_file() or out.read_bytes() != data:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(data)
        loose.append((dest, str(out), "DATA"))
    return keep, loose


def write_ffmpeg_configuration(build_dir: Path) -> Path:
    """Record the shipped FFmpeg's version, licence and configure line (GPL transparency)."""
    import av
    import av._core as core

    lines = [f"PyAV {av.__version__}, FFmpeg {av.ffmpeg_version_info}", ""]
    for library, meta in sorted(core.library_meta.items()):
        lines.append(f"{library} {'.'.join(map(str, meta['version']))}: {meta['license']}")
    any_meta = next(iter(core.library_meta.values()))
    lines += ["", "configure:", str(any_meta["configuration"]), ""]
    build_dir.mkdir(parents=True, exist_ok=True)
    out = build_dir / "FFmpeg-build-configuration.txt"
    out.write_text("\n".join(lines), encoding="utf-8")
    return out


_RENDER = """
import sys
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QImage, QPainter
from PySide6.QtSvg import QSvgRenderer
app = QGuiApplication(sys.argv[:1])
svg, out, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
image = QImage(size, size, QImage.Format.Format_ARGB32)
image.fill(Qt.GlobalColor.transparent)
painter = QPainter(image)
QSvgRenderer(svg).render(painter)
painter.end()
sys.exit(0 if image.save(out) else 1)
"""


def render_icon_png(out: Path, size: int = 512, svg: Path = ICON_SVG) -> Path:
    """Render the one icon source (SVG) to PNG with Qt; PyInstaller turns it into .ico/.icns.

    A subprocess, offscreen: a QGuiApplication inside the PyInstaller process could clash with
    the analysis' own imports of PySide6.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    subprocess.run(
        [sys.executable, "-c", _RENDER, str(svg), str(out), str(size)], check=True, env=env
    )
    return out
