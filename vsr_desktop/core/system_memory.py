"""How much memory the machine can give us now, without a dependency such as psutil.

Why: running several CPU frames at once multiplies the working set (see
``cpu_convolution.WINOGRAD_BYTES_PER_PIXEL``); on a laptop a large frame size could push the
machine into swap or the OOM killer, so the engine asks before it does.
"""

from __future__ import annotations

import ctypes
import os
import sys


def available_memory_bytes() -> int | None:
    """Memory available to a new allocation (Linux MemAvailable, Windows ullAvailPhys,
    else free physical pages); None where it cannot be read."""
    try:
        if sys.platform.startswith("linux"):
            return _linux_available()
        if sys.platform == "win32":
            return _windows_available()
        return _posix_free_pages()
    except (OSError, ValueError, AttributeError):
        return None


def _linux_available() -> int | None:
    with open("/proc/meminfo", encoding="ascii") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return _posix_free_pages()


def _posix_free_pages() -> int | None:
    page = os.sysconf("SC_PAGE_SIZE")
    names = os.sysconf_names
    if "SC_AVPHYS_PAGES" in names:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * page
    if "SC_PHYS_PAGES" in names:  # macOS: no "available" figure; assume half is usable
        return int(os.sysconf("SC_PHYS_PAGES")) * page // 2
    return None


class _MemoryStatusEx(ctypes.Structure):
    _fields_ = [
        ("dwLength", ctypes.c_ulong),
        ("dwMemoryLoad", ctypes.c_ulong),
        ("ullTotalPhys", ctypes.c_ulonglong),
        ("ullAvailPhys", ctypes.c_ulonglong),
        ("ullTotalPageFile", ctypes.c_ulonglong),
        ("ullAvailPageFile", ctypes.c_ulonglong),
        ("ullTotalVirtual", ctypes.c_ulonglong),
        ("ullAvailVirtual", ctypes.c_ulonglong),
        ("ullAvailExtendedVirtual", ctypes.c_ulonglong),
    ]


def _windows_available() -> int | None:
    status = _MemoryStatusEx()
    status.dwLength = ctypes.sizeof(_MemoryStatusEx)
    windll = getattr(ctypes, "windll", None)
    if windll is None or not windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status)):
        return None
    return int(status.ullAvailPhys)
