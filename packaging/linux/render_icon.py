"""Render the app icon (the SVG beside this file) to a PNG of one size: `render_icon.py SIZE OUT`.

Why a script: the .deb wants PNGs of several sizes for desktops that ignore SVG icons, and
they should all come from the one SVG rather than be committed and drift.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pyinstaller"))
from bundle_support import render_icon_png


def main(argv: list[str]) -> int:
    size, out = int(argv[0]), Path(argv[1])
    render_icon_png(out, size)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
