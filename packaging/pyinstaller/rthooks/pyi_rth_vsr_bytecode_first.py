"""Runtime hook: load a module's ``.pyc`` before the ``.py`` beside it.

Why: both executables share one set of loose ``.pyc`` files in ``_internal/`` instead of each
embedding its own archive (packaging/pyinstaller/bundle_support.py: ``shared_bytecode``).
torch also needs its ``.py`` sources there (``inspect.getsource`` at import time). Python's
file finder prefers a ``.py`` over a ``.pyc`` in the same folder and would recompile torch
on every start (its ``__pycache__`` cannot be written under /opt or Program Files), so this
hook, run before any other, puts the bytecode loader first. That loader also hands out the
``.py`` beside the ``.pyc`` as the module's source, for ``inspect`` and tracebacks.
"""

import importlib.machinery as _machinery
import importlib.util as _util
import os
import sys


class BytecodeFirstLoader(_machinery.SourcelessFileLoader):
    """Runs the ``.pyc``; its source, when asked for, is the ``.py`` beside it (if any).

    ``__file__`` names the ``.py``, as for modules in PyInstaller's archive and in any normal
    install: PyInstaller's ``inspect.getsourcefile`` returns a bundle path unchanged, so a
    ``.pyc`` there would be read as source (torch's ``inspect.getsource(module)`` failed so).
    """

    def exec_module(self, module):
        module.__file__ = os.path.splitext(self.path)[0] + ".py"
        super().exec_module(module)

    def get_source(self, fullname):
        source = os.path.splitext(self.get_filename(fullname))[0] + ".py"
        try:
            with open(source, "rb") as handle:
                return _util.decode_source(handle.read())
        except OSError:
            return None


def _bytecode_first() -> None:
    loaders = [
        (_machinery.ExtensionFileLoader, _machinery.EXTENSION_SUFFIXES),
        (BytecodeFirstLoader, _machinery.BYTECODE_SUFFIXES),
        (_machinery.SourceFileLoader, _machinery.SOURCE_SUFFIXES),
    ]
    for index, hook in enumerate(sys.path_hooks):
        if getattr(hook, "__name__", "") == "path_hook_for_FileFinder":
            sys.path_hooks[index] = _machinery.FileFinder.path_hook(*loaders)
            break
    # Finders made before this hook (and their fallbacks) would keep the old order.
    sys.path_importer_cache.clear()


_bytecode_first()
del _bytecode_first
