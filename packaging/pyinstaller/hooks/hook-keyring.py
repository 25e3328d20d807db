"""Collect every keyring backend and keyring's entry points.

keyring finds its backends through the ``keyring.backends`` entry points of its package
metadata and imports them by name, so a frozen app sees no keychain at all unless both the
backend modules and the metadata are in the bundle. The OS-specific helpers they import lazily
(SecretStorage/jeepney over D-Bus, pywin32-ctypes) are collected where installed; elsewhere that
backend is simply not viable, which is the OS's normal state.
"""

import contextlib
from importlib.metadata import PackageNotFoundError

from PyInstaller.utils.hooks import collect_submodules, copy_metadata

hiddenimports = collect_submodules("keyring.backends")
datas = copy_metadata("keyring")
for optional in ("secretstorage", "jeepney", "win32ctypes"):
    hiddenimports += collect_submodules(optional)  # [] (with a warning) when not installed
for dist in ("jaraco.classes", "jaraco.context", "jaraco.functools"):
    with contextlib.suppress(PackageNotFoundError):
        datas += copy_metadata(dist)
