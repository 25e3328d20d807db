"""Frozen entry point of the windowed app (`vsr-desktop`).

On Linux it first checks the system libraries Qt needs and the bundle does not carry (they
come from the distribution: the .deb's Depends, the tar.gz's README). Without the check a
bare system shows a raw ``ImportError: libGL.so.1`` traceback; with it, one line that says
what to install.
"""

import ctypes
import os
import sys

#: soname → Debian/Ubuntu package (Fedora: mesa-libGL mesa-libEGL fontconfig libxkbcommon).
SYSTEM_LIBRARIES = {
    "libGL.so.1": "libgl1",
    "libEGL.so.1": "libegl1",
    "libfontconfig.so.1": "libfontconfig1",
    "libxkbcommon.so.0": "libxkbcommon0",
}


def missing_system_libraries() -> list[str]:
    """The sonames of SYSTEM_LIBRARIES that neither the bundle nor the system provides."""
    here = getattr(sys, "_MEIPASS", "")
    missing = []
    for soname in SYSTEM_LIBRARIES:
        if here and os.path.exists(os.path.join(here, soname)):
            continue
        try:
            ctypes.CDLL(soname)
        except OSError:
            missing.append(soname)
    return missing


if __name__ == "__main__":
    if sys.platform.startswith("linux") and (missing := missing_system_libraries()):
        packages = " ".join(SYSTEM_LIBRARIES[s] for s in missing)
        sys.stderr.write(
            f"vsr-desktop: missing system libraries {', '.join(missing)}; install them "
            f"(Debian/Ubuntu: sudo apt install {packages}) — see README-linux.txt\n"
        )
        sys.exit(3)

    from vsr_desktop.core.gpu_addon import activate

    activate()  # before torch is imported: an installed CUDA add-on goes ahead of the CPU torch
    from vsr_desktop.gui.app import main

    sys.exit(main())
