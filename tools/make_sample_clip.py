"""Regenerate the bundled sample clip from scikit-image's astronaut photo (public domain).

A slow pan and zoom across a real photograph, 320×180 at 24 fps for 4 seconds, H.264 with
B-frames and a stereo AAC track: small enough to ship, real enough to judge an upscale on.
"""

from __future__ import annotations

import sys
from pathlib import Path

from skimage import data

from vsr_desktop.core.media.synth import ClipSpec, make_clip
from vsr_desktop.resources import sample_clip_path


def main() -> int:
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else sample_clip_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    spec = ClipSpec(width=320, height=180, frames=96, fps=24, gop=48, crf=18)
    make_clip(target, data.astronaut(), spec)
    print(f"wrote {target} ({target.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
