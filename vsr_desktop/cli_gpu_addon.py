"""`vsr gpu-addon status|install|remove`: the Windows CUDA add-on from the command line.

Kept apart from cli.py (which only registers it); the work is in core/gpu_addon*.py.
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path
from typing import Any

from vsr_desktop.core import gpu_addon
from vsr_desktop.core.errors import CancelledError


def add_gpu_addon_parser(sub: Any) -> None:
    """Register `vsr gpu-addon` and its subcommands."""
    parser = sub.add_parser(
        "gpu-addon", help="Windows: download PyTorch's CUDA build for NVIDIA GPUs (~2.5 GB)"
    )
    gsub = parser.add_subparsers(dest="gpu_addon_command", required=True)
    for name, text in (
        ("status", "whether the add-on is installed for this version"),
        ("install", "download (resuming), verify and install; used from the next start"),
        ("remove", "delete the add-on and unfinished downloads (the app uses the CPU again)"),
    ):
        cmd = gsub.add_parser(name, help=text)
        cmd.add_argument(
            "--manifest", type=Path, default=None, help="pinned wheels (default: the app's own)"
        )
        cmd.add_argument(
            "--dir", type=Path, default=None, help="add-on folder (default: user data folder)"
        )


def _manifest(args: argparse.Namespace) -> gpu_addon.Manifest | None:
    if args.manifest is not None and not args.manifest.is_file():
        raise gpu_addon.GpuAddonError(f"No manifest at {args.manifest}")
    return gpu_addon.load_manifest(args.manifest)


def cmd_gpu_addon(args: argparse.Namespace) -> int:
    """Run one `vsr gpu-addon` subcommand; errors are GpuAddonError (exit 10)."""
    if args.gpu_addon_command == "remove":
        removed = gpu_addon.remove(args.dir)
        print(f"removed {', '.join(removed)}" if removed else "nothing to remove")
        return 0
    manifest = _manifest(args)
    state = gpu_addon.status(manifest, args.dir)
    if args.gpu_addon_command == "status":
        print(state.message)
        print(f"folder: {gpu_addon.addon_root(args.dir)}")
        if state.partial_bytes:
            print(f"unfinished downloads: {state.partial_bytes / 1e6:.0f} MB (install resumes)")
        return 0 if state.installed else 1
    if manifest is None or not state.available:
        raise gpu_addon.GpuAddonError(state.message, "the CUDA add-on exists for Windows builds")
    from vsr_desktop.cli_cloud import BytesBar
    from vsr_desktop.core.gpu_addon_install import install

    bar = BytesBar("GPU add-on")
    cancel = threading.Event()
    try:
        folder = install(manifest, args.dir, lambda done, total, _: bar(done, total), cancel)
    except KeyboardInterrupt:
        cancel.set()
        raise CancelledError("Stopped", "run `vsr gpu-addon install` again to resume") from None
    finally:
        bar.close()
    print(f"installed into {folder}; restart vsr-desktop to use the GPU", file=sys.stderr)
    return 0
