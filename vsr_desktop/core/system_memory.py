"""How much memory the machine can give us now, without a dependency such as psutil.

Why: running several CPU frames at once multiplies the working set (see
``cpu_convolution.winograd_frame_bytes_per_pixel``); on a laptop a large frame size could push the
machine into swap or the OOM killer, so the engine asks before it does.
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path


def available_memory_bytes() -> int | None:
    """Memory available to a new allocation (Linux MemAvailable, capped by this process's
    memory cgroup as under Slurm, Docker or Batch; Windows ullAvailPhys; else free physical
    pages); None where it cannot be read."""
    try:
        if sys.platform.startswith("linux"):
            machine = _linux_available()
            limited = cgroup_available_bytes()
            if limited is not None and (machine is None or limited < machine):
                return limited
            return machine
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


def cgroup_available_bytes(
    proc_cgroup: Path = Path("/proc/self/cgroup"), root: Path = Path("/sys/fs/cgroup")
) -> int | None:
    """What this process's memory cgroup still allows (limit − usage + reclaimable page
    cache), cgroup v2 or v1; None without a limit or where it cannot be read.

    Why: a Slurm task or a container sees the whole machine in /proc/meminfo, but is killed
    at its own limit.
    """
    try:
        lines = proc_cgroup.read_text(encoding="ascii").splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        relative = path.lstrip("/")
        if controllers == "":  # v2: one unified hierarchy
            folder = root / relative
            files = ("memory.max", "memory.current", "inactive_file")
        elif "memory" in controllers.split(","):  # v1: the memory controller's hierarchy
            folder = root / "memory" / relative
            files = ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")
        else:
            continue
        available = _cgroup_folder_available(folder, *files)
        if available is not None:
            return available
    return None


def _cgroup_folder_available(
    folder: Path, limit_file: str, usage_file: str, inactive_key: str
) -> int | None:
    try:
        limit_text = (folder / limit_file).read_text(encoding="ascii").strip()
        usage = int((folder / usage_file).read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None
    if limit_text == "max" or not limit_text.isdigit() or int(limit_text) >= 1 << 60:
        return None  # no limit (v1 writes a number near 2**63)
    inactive = 0
    try:
        for line in (folder / "memory.stat").read_text(encoding="ascii").splitlines():
            key, _, value = line.partition(" ")
            if key == inactive_key:
                inactive = int(value)
    except (OSError, ValueError):
        pass
    return max(0, int(limit_text) - usage + inactive)


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
