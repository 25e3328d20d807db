"""The upstream Real-ESRGAN implementation, made importable, as the yardstick for our engine.

``realesrgan`` 0.3.0 and ``basicsr`` 1.4.2 are unmaintained. With current torchvision their only
break is ``basicsr.data.degradations`` importing ``torchvision.transforms.functional_tensor``,
a module torchvision removed (its functions live on in ``torchvision.transforms.functional``).
We alias the old name before the import instead of patching or vendoring either package, so
what we measure against is exactly the published code. This is the only module of the project
that imports them; they are a benchmark/test-only dependency (installed ``--no-deps``).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import sys
import tempfile
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

ARCHS = ("compact", "rrdb")
_STALE_MODULE = "torchvision.transforms.functional_tensor"


def apply_torchvision_compat() -> None:
    """Make ``import torchvision.transforms.functional_tensor`` work again (idempotent)."""
    if _STALE_MODULE in sys.modules:
        return
    try:
        importlib.import_module(_STALE_MODULE)
    except ImportError:
        import torchvision.transforms.functional as functional

        sys.modules[_STALE_MODULE] = functional


def import_realesrgan() -> Any:
    """Import and return the ``realesrgan`` package (ImportError when not installed)."""
    apply_torchvision_compat()
    with warnings.catch_warnings():
        # basicsr imports scipy.ndimage.filters, deprecated long after basicsr stopped changing.
        warnings.simplefilter("ignore", DeprecationWarning)
        return importlib.import_module("realesrgan")


def build_reference_module(arch: str, scale: int, **arch_kwargs: Any) -> torch.nn.Module:
    """The upstream network class for ``arch`` with official defaults, overridable.

    ``compact``: SRVGGNetCompact as in realesr-animevideov3 (64 features, 16 convs, PReLU).
    ``rrdb``: RRDBNet as in RealESRGAN_x4plus / x2plus (64 features, 23 blocks, growth 32);
    at scale 2 or 1 it pixel-unshuffles its input, like x2plus. Random weights unless loaded.
    """
    import_realesrgan()
    if arch == "compact":
        from realesrgan.archs.srvgg_arch import SRVGGNetCompact

        compact_opts: dict[str, Any] = {
            "num_in_ch": 3,
            "num_out_ch": 3,
            "num_feat": 64,
            "num_conv": 16,
            "act_type": "prelu",
        }
        compact_opts.update(arch_kwargs)
        return SRVGGNetCompact(upscale=scale, **compact_opts)
    if arch == "rrdb":
        from basicsr.archs.rrdbnet_arch import RRDBNet

        rrdb_opts: dict[str, Any] = {
            "num_in_ch": 3,
            "num_out_ch": 3,
            "num_feat": 64,
            "num_block": 23,
            "num_grow_ch": 32,
        }
        rrdb_opts.update(arch_kwargs)
        return RRDBNet(scale=scale, **rrdb_opts)
    raise ValueError(f"unknown arch {arch!r}; expected one of {ARCHS}")


def make_reference_upsampler(
    model_path_or_state_dict: str | os.PathLike[str] | Mapping[str, torch.Tensor],
    arch: str,
    scale: int,
    half: bool = False,
    tile: int = 0,
    tile_pad: int = 10,
    pre_pad: int = 0,
    device: str | torch.device = "cpu",
    **arch_kwargs: Any,
) -> Any:
    """A ``RealESRGANer`` for a weights file (official ``.pth``) or an in-memory state dict.

    RealESRGANer only loads from a path, so a state dict goes through a temporary file saved
    in the official layout (``{"params": state_dict}``).
    """
    import_realesrgan()
    from realesrgan import RealESRGANer

    network = build_reference_module(arch, scale, **arch_kwargs)
    options: dict[str, Any] = {
        "scale": scale,
        "model": network,
        "tile": tile,
        "tile_pad": tile_pad,
        "pre_pad": pre_pad,
        "half": half,
        "device": torch.device(device),
    }
    if isinstance(model_path_or_state_dict, Mapping):
        fd, tmp = tempfile.mkstemp(suffix=".pth", prefix="vsr-reference-")
        os.close(fd)
        try:
            torch.save({"params": dict(model_path_or_state_dict)}, tmp)
            return RealESRGANer(model_path=tmp, **options)
        finally:
            os.unlink(tmp)
    return RealESRGANer(model_path=os.fspath(model_path_or_state_dict), **options)


def reference_enhance_rgb(
    upsampler: Any, rgb: np.ndarray, outscale: float | None = None
) -> np.ndarray:
    """Run ``RealESRGANer.enhance`` the way its CLI does (BGR in, as ``cv2.imread`` gives it),
    converting from and back to RGB; its per-tile progress prints are swallowed."""
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    with contextlib.redirect_stdout(io.StringIO()):
        out_bgr, _mode = upsampler.enhance(bgr, outscale=outscale)
    return np.ascontiguousarray(out_bgr[..., ::-1])
