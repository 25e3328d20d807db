"""YUV 4:2:0 → RGB in torch, so a GPU pipeline converts decoded frames on the device.

Why: at 1080p → 4K a GPU upscales faster than the CPU's cores convert YUV to RGB and copy
three bytes a pixel up the bus; the decoder's own planes are half that size (1.5 bytes a
pixel) and the conversion is a few elementwise kernels on the device. The CPU path keeps
FFmpeg's swscale (SIMD, measured faster than this module on the CPU: docs/benchmarks.md).

The arithmetic follows swscale's unscaled converter, which the CPU path uses, so both
devices give the same picture: the source's matrix (BT.601, BT.709, BT.2020 non-constant),
its range (limited 16–235/240 or full 0–255), and chroma taken from the 2×2 block a pixel
lies in (no interpolation). Tested against PyAV's ``reformat`` on real decoded frames.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # torch only where a conversion runs: the decoder imports this module
    import torch

#: Kr, Kb of the matrices handled here, by FFmpeg's AVColorSpace number.
_MATRICES: dict[int, tuple[float, float]] = {
    1: (0.2126, 0.0722),  # BT.709
    5: (0.299, 0.114),  # BT.470BG (= BT.601 625)
    6: (0.299, 0.114),  # SMPTE 170M (= BT.601 525)
    9: (0.2627, 0.0593),  # BT.2020 non-constant luminance
}
#: Pixel formats whose planes this module takes: three planes, or luma + interleaved chroma.
LAYOUTS = {"yuv420p": "i420", "yuvj420p": "i420", "nv12": "nv12"}
_RANGE_PC = 2
_wanted: weakref.WeakSet[Any] = weakref.WeakSet()
_wanted_lock = threading.Lock()


def want_planes(owner: object, wanted: bool = True) -> None:
    """Ask decoders in this process to hand over YUV planes while ``owner`` (an engine that
    converts on its device) is alive; ``wanted=False`` withdraws the request."""
    with _wanted_lock:
        if wanted:
            _wanted.add(owner)
        else:
            _wanted.discard(owner)


def planes_wanted() -> bool:
    """Whether a live engine converts YUV itself (core.media.decode's default)."""
    with _wanted_lock:
        return len(_wanted) > 0


@dataclass(frozen=True)
class YuvPlanes:
    """One 8-bit 4:2:0 picture as the decoder gave it (views of its buffers, no copy).

    ``planes``: Y (H, W), then U and V (each (⌈H/2⌉, ⌈W/2⌉)) for ``i420``, or UV interleaved
    (⌈H/2⌉, ⌈W/2⌉, 2) for ``nv12``. ``matrix`` is an AVColorSpace number (already resolved
    for untagged sources), ``full_range`` the source's range.
    """

    layout: str
    planes: tuple[np.ndarray, ...]
    matrix: int
    full_range: bool

    @property
    def height(self) -> int:
        return int(self.planes[0].shape[0])

    @property
    def width(self) -> int:
        return int(self.planes[0].shape[1])

    @property
    def key(self) -> tuple[str, int, int, int, bool]:
        """Frames with equal keys go through one conversion in a batch."""
        return (self.layout, self.height, self.width, self.matrix, self.full_range)

    def write_into(self, out: np.ndarray) -> None:
        """Pack the planes into a flat uint8 buffer of :func:`packed_size` bytes: Y then the
        chroma, rows without padding (what :func:`packed_to_rgb` reads)."""
        pos = 0
        for plane in self.planes:
            size = plane.size
            out[pos : pos + size].reshape(plane.shape)[...] = plane
            pos += size


def packed_size(height: int, width: int) -> int:
    """Bytes of one packed 4:2:0 picture: a luma plane and two quarter-size chroma planes."""
    ch, cw = -(-height // 2), -(-width // 2)
    return height * width + 2 * ch * cw


def matrix_supported(matrix: int) -> bool:
    return matrix in _MATRICES


def planes_of(frame: Any, matrix: int) -> YuvPlanes | None:
    """The planes of a decoded PyAV frame, or None where this module cannot convert it
    (other formats, other matrices: those keep the CPU's swscale path)."""
    layout = LAYOUTS.get(frame.format.name)
    if layout is None or not matrix_supported(matrix):
        return None
    height, width = int(frame.height), int(frame.width)
    ch, cw = -(-height // 2), -(-width // 2)
    shapes = [(height, width)] + ([(ch, cw), (ch, cw)] if layout == "i420" else [(ch, cw * 2)])
    planes = []
    for plane, (rows, cols) in zip(frame.planes, shapes, strict=True):
        data = np.frombuffer(plane, np.uint8)  # keeps the frame's buffer alive
        if data.size < rows * plane.line_size:
            return None
        planes.append(data[: rows * plane.line_size].reshape(rows, plane.line_size)[:, :cols])
    if layout == "nv12":
        planes[1] = planes[1].reshape(ch, cw, 2)
    full = frame.format.name == "yuvj420p" or int(frame.color_range) == _RANGE_PC
    return YuvPlanes(layout, tuple(planes), matrix, full)


def packed_to_rgb(
    packed: torch.Tensor,
    height: int,
    width: int,
    layout: str,
    matrix: int,
    full_range: bool,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """(B, packed_size) uint8 → (B, 3, H, W) RGB in [0, 1] of ``dtype``, channels_last.

    Computed in fp32 and truncated to the 8-bit grid as swscale's tables do (rounding instead
    measured a bias of +1 level against it), so the network sees what the CPU path gives it.
    """
    import torch

    batch = packed.shape[0]
    ch, cw = -(-height // 2), -(-width // 2)
    luma = packed[:, : height * width].view(batch, height, width).float()
    chroma = packed[:, height * width :]
    if layout == "i420":
        u = chroma[:, : ch * cw].view(batch, ch, cw)
        v = chroma[:, ch * cw :].view(batch, ch, cw)
    else:
        uv = chroma.view(batch, ch, cw, 2)
        u, v = uv[..., 0], uv[..., 1]
    kr, kb = _MATRICES[matrix]
    kg = 1.0 - kr - kb
    if full_range:
        y_off, y_scale, c_scale = 0.0, 1.0, 1.0
    else:
        y_off, y_scale, c_scale = 16.0, 255.0 / 219.0, 255.0 / 224.0

    def up(c: torch.Tensor) -> torch.Tensor:  # chroma of the 2×2 block, as swscale takes it
        c = (c.float() - 128.0) * c_scale
        return c.repeat_interleave(2, dim=1).repeat_interleave(2, dim=2)[:, :height, :width]

    cb, cr = up(u), up(v)
    y = (luma - y_off) * y_scale
    r = y + (2.0 * (1.0 - kr)) * cr
    b = y + (2.0 * (1.0 - kb)) * cb
    g = y - (2.0 * kr * (1.0 - kr) / kg) * cr - (2.0 * kb * (1.0 - kb) / kg) * cb
    rgb = torch.stack((r, g, b), dim=-1).clamp_(0.0, 255.0).floor_()  # (B, H, W, 3)
    # NHWC memory viewed as NCHW is channels_last already.
    return rgb.div_(255.0).to(dtype or torch.float32).permute(0, 3, 1, 2)
