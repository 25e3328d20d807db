"""The architecture's import rules, enforced: core is Qt-free and boto3-free, light to import."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import vsr_desktop

PACKAGE = Path(vsr_desktop.__file__).parent
FORBIDDEN_IN_CORE = ("PySide6", "PyQt5", "PyQt6", "boto3", "botocore")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def _top_level_imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_core_and_worker_never_name_qt_or_boto3() -> None:
    """The worker's one S3 edge (s3_transfer) may use boto3, lazily: Slurm never needs it."""
    for folder in ("core", "worker"):
        for path in (PACKAGE / folder).rglob("*.py"):
            names = _imports(path)
            if path.name == "s3_transfer.py":
                names = _top_level_imports(path) | {
                    n for n in names if n.split(".")[0] not in ("boto3", "botocore")
                }
            bad = {n for n in names if n.split(".")[0] in FORBIDDEN_IN_CORE}
            assert not bad, f"{path} imports {bad}"


def test_only_gui_imports_qt() -> None:
    for path in PACKAGE.rglob("*.py"):
        if "gui" in path.relative_to(PACKAGE).parts:
            continue
        qt = {n for n in _imports(path) if n.split(".")[0] in ("PySide6", "PyQt5", "PyQt6")}
        assert not qt, f"{path} imports {qt}"


def test_core_never_imports_upper_layers() -> None:
    for path in (PACKAGE / "core").rglob("*.py"):
        upper = {
            n
            for n in _imports(path)
            if n.startswith(
                ("vsr_desktop.gui", "vsr_desktop.backends", "vsr_desktop.worker", "vsr_desktop.cli")
            )
        }
        assert not upper, f"{path} imports {upper}"


def test_core_imports_with_qt_and_boto3_absent_and_without_torch() -> None:
    """Block the forbidden packages outright; the light modules must not even pull torch."""
    code = (
        "import sys\n"
        f"for name in {FORBIDDEN_IN_CORE!r}: sys.modules[name] = None\n"
        "import vsr_desktop.core.jobs, vsr_desktop.core.plan, vsr_desktop.core.media\n"
        "import vsr_desktop.core.models.registry, vsr_desktop.core.errors\n"
        "import vsr_desktop.core.engine, vsr_desktop.core.models, vsr_desktop.backends.local\n"
        "import vsr_desktop.cli\n"
        "assert 'torch' in sys.modules  # engine needs it; checked below without it\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    light = (
        "import sys\n"
        "import vsr_desktop.core.jobs, vsr_desktop.core.plan, vsr_desktop.core.media\n"
        "import vsr_desktop.core.models.registry, vsr_desktop.cli\n"
        "heavy = [m for m in ('torch', 'spandrel', 'av') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", light], check=True)
