"""Collect every keyring backend and keyring's entry points.

keyring finds its backends through the ``keyring.backends`` entry points of its package
metadata and imports them by name, so a frozen app sees no keychain at all unless both the
backend modules and the metadata are in the bundle. The OS-specific helpers they import lazily
(SecretStorage/jeepney over D-Bus, pywin32-ctypes) are collected where installed.
"""

from importlib.metadata import PackageNotFoundError

from PyInstaller.utils.hooks import collect_submodules, copy_metadata

hiddenimports = collect_submodules("keyring.backends")
datas = copy_metadata("keyring")
for optional in ("secretstorage", "jeepney", "win32ctypes", "dbus"):
    try:
        hiddenimports += collect_submodules(optional)
    except Exception:  # not installed on this OS: that backend is simply not viable
        pass
for dist in ("jaraco.classes", "jaraco.context", "jaraco.functools"):
    try:
        datas += copy_metadata(dist)
    except PackageNotFoundError:
        pass
