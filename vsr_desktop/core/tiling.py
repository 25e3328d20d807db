"""Tiles and padding on Real-ESRGAN's grid, so the engine's output matches RealESRGANer's.

Kept apart from the engine, which decides *when* to tile (on request or after an out-of-memory
error); this module only knows *how*: the same tile grid, context and padding as upstream.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import torch
import torch.nn.functional as F

from vsr_desktop.core.cancel import check_cancel

#: Smallest tile the OOM fallback tries before giving up.
MIN_TILE = 32


def mod_scale_for(scale: int) -> int:
    """Input multiple a Real-ESRGAN network needs.

    RRDBNet x2/x1 models start with a pixel-unshuffle by 2/4, so their input height and width
    must be divisible by that (RealESRGANer's ``mod_scale``); ×3/×4 networks take any size.
    """
    return {2: 2, 1: 4}.get(scale, 1)


def round_up(value: int, multiple: int) -> int:
    """``value`` rounded up to a multiple of ``multiple`` (tile edges stay on the grid)."""
    return -(-value // multiple) * multiple


def pad_bottom_right(x: torch.Tensor, bottom: int, right: int) -> torch.Tensor:
    """Reflect-pad the bottom/right edges (replicate when the frame is too small to reflect)."""
    if not bottom and not right:
        return x
    mode = "reflect" if bottom < x.shape[-2] and right < x.shape[-1] else "replicate"
    return F.pad(x, (0, right, 0, bottom), mode=mode)


def tiled_forward(
    forward: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    tile: int,
    tile_pad: int,
    scale: int,
    cancel: threading.Event | None,
) -> torch.Tensor:
    """Run ``forward`` tile by tile on the same grid as RealESRGANer.tile_process.

    Each tile is enlarged by ``tile_pad`` context pixels (clipped at the frame edge); only
    its centre is kept, so pixels near a tile border still see their neighbours.
    """
    batch, _, height, width = x.shape
    s, pad = scale, tile_pad
    out: torch.Tensor | None = None
    for y0 in range(0, height, tile):
        for x0 in range(0, width, tile):
            check_cancel(cancel)
            y1, x1 = min(y0 + tile, height), min(x0 + tile, width)
            ya, xa = max(y0 - pad, 0), max(x0 - pad, 0)
            yb, xb = min(y1 + pad, height), min(x1 + pad, width)
            part = x[:, :, ya:yb, xa:xb].contiguous(memory_format=torch.channels_last)
            res = forward(part)
            if out is None:
                out = torch.empty(
                    (batch, res.shape[1], height * s, width * s),
                    dtype=res.dtype,
                    device=res.device,
                    memory_format=torch.channels_last,
                )
            out[:, :, y0 * s : y1 * s, x0 * s : x1 * s] = res[
                :, :, (y0 - ya) * s : (y1 - ya) * s, (x0 - xa) * s : (x1 - xa) * s
            ]
            del res, part
    assert out is not None
    return out
