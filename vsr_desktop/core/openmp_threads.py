"""Make torch's parallel loops run inline in one thread, without touching any other thread.

Why: where every core already runs its own frame, each frame worker's elementwise ops (PReLU,
pixel shuffle, the output conversion) would otherwise start an OpenMP team of their own. Its
helper thread spin-waits after every op on a core that another frame needs: on 2 cores that
cost about 5 % of the CPU time per frame (measured: 0.735 vs 0.685 CPU-s per 320×180 frame,
medians of four alternating rounds).

``torch.set_num_threads`` cannot do this: it also changes the count every thread created
later starts with. OpenMP's own ``omp_set_num_threads`` changes the calling thread only, so
it is called on the runtime torch has loaded (found once; where none is found, a no-op).
"""

from __future__ import annotations

import ctypes
import os
import re
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import torch

_OPENMP_LIBRARY = re.compile(r"^(libgomp|libiomp5|libiomp5md|libomp|vcomp\d*)([.-].*)?$")

_lock = threading.Lock()
_setter: Callable[[int], None] | None = None
_looked_up = False


def run_torch_inline_in_this_thread() -> bool:
    """Let torch use one thread for parallel loops started from the calling thread.

    Meant as a worker pool's initializer. True when it took effect (torch then reports one
    thread here); other threads keep their counts either way.
    """
    global _setter, _looked_up
    # torch's per-thread set-up first, or it would undo ours later.
    if torch.get_num_threads() == 1:
        return True  # nothing to do (and nothing to tell the runtimes apart by)
    with _lock:
        if not _looked_up:
            _looked_up = True
            _setter = _find_torch_runtime_setter()
            return _setter is not None
        setter = _setter
    if setter is None:
        return False
    setter(1)
    return torch.get_num_threads() == 1


def _find_torch_runtime_setter() -> Callable[[int], None] | None:
    """The ``omp_set_num_threads`` that torch obeys, tried on the calling thread.

    Other packages bring their own copies (ncnn's wheel has a libgomp of its own, loaded in
    the same process); setting one of those changes nothing for torch, so each candidate is
    tried until torch reports one thread.
    """
    for path in _openmp_library_paths():
        try:
            setter = ctypes.CDLL(path).omp_set_num_threads
        except (OSError, AttributeError):
            continue
        setter.argtypes = [ctypes.c_int]
        setter.restype = None
        before = torch.get_num_threads()
        setter(1)
        if torch.get_num_threads() == 1:
            return setter  # type: ignore[no-any-return]
        setter(before)  # not torch's runtime: leave that one as it was
    return None


def _openmp_library_paths() -> list[str]:
    """OpenMP runtimes this process loaded (Linux: from its memory map; torch's own first),
    else torch's bundled one. Loaded copies only: opening another copy from a new path would
    set a runtime torch does not use.
    """
    torch_dir = Path(torch.__file__).parent
    loaded = sorted(_loaded_openmp_libraries(), key=lambda p: not p.startswith(str(torch_dir)))
    if loaded:
        return loaded
    bundled = sorted(str(p) for p in (torch_dir / "lib").glob("*") if _OPENMP_LIBRARY.match(p.name))
    if sys.platform == "win32":
        bundled += ["libiomp5md.dll", "vcomp140.dll"]  # loaded by name: the same module
    return bundled


def _loaded_openmp_libraries() -> list[str]:
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            fields = [line.split(maxsplit=5) for line in maps]
    except OSError:
        return []
    paths = {f[5].strip() for f in fields if len(f) == 6 and f[5].startswith("/")}
    return sorted(p for p in paths if _OPENMP_LIBRARY.match(os.path.basename(p)))
