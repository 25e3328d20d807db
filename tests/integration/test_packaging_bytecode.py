"""One set of Python modules for both executables: loose .pyc files plus the runtime hook.

The bundle itself takes ~6 min to build (`make installer`; sizes in docs/packaging.md); here
the two pieces are checked on a small package laid out the way the bundle lays out torch:
``.pyc`` files from ``bundle_support.shared_bytecode`` beside the ``.py`` sources that
``inspect.getsource`` needs, loaded by a real interpreter in a subprocess.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PYI = REPO / "packaging" / "pyinstaller"
sys.path.insert(0, str(PYI))
import bundle_support  # noqa: E402

RTHOOK = PYI / "rthooks" / "pyi_rth_vsr_bytecode_first.py"
PACKAGE = {
    # Like torch: reads a function's source while it is imported.
    "fakepkg/__init__.py": (
        "import inspect\n"
        "def outer():\n"
        "    def inner():\n"
        "        return 'from the source tree'\n"
        "    return inner\n"
        "SOURCE = inspect.getsource(outer())\n"
        "import sys\n"
        "MODULE_SOURCE = inspect.getsource(sys.modules[__name__])\n"
    ),
    "fakepkg/sub.py": "VALUE = 7\n",
}


def _bundle(tmp_path: Path, with_sources: bool) -> Path:
    src = tmp_path / "src"
    for name, text in PACKAGE.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_text(text)
    pure = [
        ("fakepkg", str(src / "fakepkg/__init__.py"), "PYMODULE"),
        ("fakepkg.sub", str(src / "fakepkg/sub.py"), "PYMODULE"),
        ("json.decoder", "/stdlib/json/decoder.py", "PYMODULE"),
    ]
    keep, loose = bundle_support.shared_bytecode(pure, tmp_path / "work")
    assert keep == [pure[2]]  # the standard library stays in each executable's PYZ
    assert sorted(dest for dest, _, _ in loose) == ["fakepkg/__init__.pyc", "fakepkg/sub.pyc"]
    bundle = tmp_path / "bundle"
    for dest, built, kind in loose:
        assert kind == "DATA"
        (bundle / dest).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(built, bundle / dest)
    if with_sources:
        shutil.copytree(src / "fakepkg", bundle / "fakepkg", dirs_exist_ok=True)
    return bundle


def _import(bundle: Path, rthook: bool) -> list[str]:
    code = (
        (f"exec(open({str(RTHOOK)!r}).read())\n" if rthook else "")
        # What PyInstaller's pyi_rth_inspect does for a path inside the bundle: no .pyc → .py.
        + "import inspect, sys\n"
        + "inspect.getsourcefile = inspect.getfile\n"
        + f"sys.path.insert(0, {str(bundle)!r})\n"
        + "import fakepkg, fakepkg.sub\n"
        + "print(type(fakepkg.__spec__.loader).__name__)\n"
        + "print(fakepkg.outer().__code__.co_filename, fakepkg.sub.VALUE)\n"
        + "print(fakepkg.SOURCE.splitlines()[0].strip())\n"
        + "print(fakepkg.MODULE_SOURCE.splitlines()[0], fakepkg.__file__.endswith('.py'))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=bundle.parent, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_the_bytecode_is_loaded_before_the_sources_beside_it(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path, with_sources=True)
    lines = _import(bundle, rthook=True)
    assert lines[0] == "BytecodeFirstLoader"
    # Relative names inside every nested code object, as PyInstaller writes them: they
    # resolve against the bundle, so inspect.getsource finds the .py beside the .pyc.
    assert lines[1] == f"{os.path.join('fakepkg', '__init__.py')} 7"
    assert lines[2] == "def inner():"
    assert lines[3] == "import inspect True"  # __file__ names the .py, as in a normal install
    assert not list(bundle.rglob("__pycache__"))  # nothing was compiled at start-up

    # Without the hook Python prefers the .py and recompiles it on every start (its
    # __pycache__ cannot be written under /opt or Program Files).
    assert _import(bundle, rthook=False)[0] == "SourceFileLoader"


def test_modules_without_sources_load_from_bytecode_alone(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path, with_sources=False)
    (bundle / "fakepkg" / "__init__.pyc").unlink()
    shutil.copy(tmp_path / "work" / "fakepkg" / "sub.pyc", bundle / "fakepkg" / "sub.pyc")
    (bundle / "fakepkg" / "__init__.py").write_text("")  # a package without an inspect call
    lines = _import_plain(bundle)
    assert lines == ["BytecodeFirstLoader 7"]


def _import_plain(bundle: Path) -> list[str]:
    code = (
        f"exec(open({str(RTHOOK)!r}).read())\n"
        f"import sys; sys.path.insert(0, {str(bundle)!r})\n"
        "import fakepkg.sub\n"
        "print(type(fakepkg.sub.__spec__.loader).__name__, fakepkg.sub.VALUE)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_the_spec_shares_one_set_of_modules_and_runs_the_hook_first() -> None:
    source = (PYI / "vsr_desktop.spec").read_text()
    tree = ast.parse(source)
    (analysis,) = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "Analysis"
    ]
    hooks = next(kw.value for kw in analysis.keywords if kw.arg == "runtime_hooks")
    names = [ast.literal_eval(call.args[-1]) for call in hooks.elts]  # type: ignore[attr-defined]
    assert names[0] == "pyi_rth_vsr_bytecode_first.py"  # before anything imports a package
    assert source.index("shared_bytecode(") < source.index("pyz = PYZ(a.pure)")
    assert source.index("licences.collect(") < source.index("shared_bytecode(")
