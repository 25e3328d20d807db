"""Output geometry: the frame size, pixel aspect and placement an editor asked for.

The model upscales by its own scale; this module says what happens next. With no target
the model's frame is kept (rounded to even sizes). ``--height H`` keeps the display aspect;
``--size WxH`` puts the picture in a box: ``fit`` (largest size inside it), ``pad`` (black
bars to exactly WxH) or ``crop`` (fill WxH, centre kept). Anamorphic sources keep their
pixel aspect (SAR) unless ``square_pixels`` resamples them to square pixels (SAR 1:1).

All sizes are in the output's stored pixels; the maths is pure (``plan_geometry``), and
:meth:`OutputGeometry.apply` does the one Lanczos resample (libswscale through PyAV, which
measured faster than Pillow on 1080p→4K frames: 181 ms vs 225 ms, and it takes 16-bit RGB).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from vsr_desktop.core.errors import InputError

FIT_MODES = ("fit", "pad", "crop")
#: Largest side a target may have (8K UHD is 7680; H.265 levels stop at 8192, AV1 at 16384).
MAX_SIDE = 16384
_SIZE = re.compile(r"^\s*(\d+)\s*[xX×:]\s*(\d+)\s*$")


@dataclass(frozen=True)
class OutputGeometry:
    """Where the model's frame goes: resampled to `scaled`, placed at `offset` on `canvas`.

    A positive offset pads (black bars), a negative one crops; `sar` is the pixel aspect to
    write (None: square pixels).
    """

    model_size: tuple[int, int]
    scaled: tuple[int, int]
    canvas: tuple[int, int]
    offset: tuple[int, int] = (0, 0)
    sar: Fraction | None = None

    @property
    def resamples(self) -> bool:
        return self.scaled != self.model_size

    def apply(self, rgb: np.ndarray) -> np.ndarray:
        """The frame as it is encoded: resampled (Lanczos), then padded or cropped."""
        if rgb.shape[1::-1] != self.model_size:
            return rgb  # not what the engine announced: the encoder refuses it, by name
        if self.resamples:
            rgb = resample(rgb, *self.scaled)
        return place(rgb, self.canvas, self.offset)


def parse_size(text: str) -> tuple[int, int]:
    """`--size 3840x2160` → (3840, 2160); InputError naming the form otherwise."""
    match = _SIZE.match(text)
    if match is None:
        raise InputError(f"size {text!r} is not WIDTHxHEIGHT", "write it like 1920x1080")
    return int(match.group(1)), int(match.group(2))


def check_target(
    width: int | None, height: int | None, fit: str, *, even: bool, min_size: tuple[int, int]
) -> None:
    """Refuse a target the encoder cannot take, before any work."""
    if fit not in FIT_MODES:
        raise InputError(f"unknown fit mode {fit!r}", f"use one of {', '.join(FIT_MODES)}")
    if width is not None and height is None:
        raise InputError("a target width was given without a height", "use --size WxH")
    for name, value in (("width", width), ("height", height)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 2 <= value <= MAX_SIDE:
            raise InputError(f"target {name} {value} is out of range", f"use 2 to {MAX_SIDE}")
        if even and value % 2:
            raise InputError(
                f"target {name} {value} is odd; this codec stores colour per 2x2 pixels",
                f"use {value - 1} or {value + 1}",
            )
    if width is not None and height is not None:
        min_w, min_h = min_size
        if width < min_w or height < min_h:
            raise InputError(
                f"target size {width}x{height} is below this codec's smallest {min_w}x{min_h}",
                "choose a larger size, or another codec",
            )


def plan_geometry(
    source_size: tuple[int, int],
    source_sar: Fraction | None,
    model_size: tuple[int, int],
    *,
    width: int | None = None,
    height: int | None = None,
    fit: str = "fit",
    square_pixels: bool = False,
    even: bool = True,
) -> OutputGeometry:
    """The output geometry for a source, the model's output size and the user's target.

    The display aspect is kept (to a pixel of rounding, which the written SAR absorbs when
    pixels are not square); pad and crop keep the picture's aspect, not the frame's.
    """
    src_w, src_h = source_size
    sar = source_sar if source_sar is not None and source_sar > 0 and source_sar != 1 else None
    square = square_pixels or sar is None
    display = Fraction(src_w, src_h) * (sar or 1)
    # The picture's aspect in output pixels: the display aspect for square pixels, the
    # stored aspect when the source's pixel shape is kept.
    aspect = display if square else Fraction(src_w, src_h)
    mh = model_size[1]
    if height is None:
        scaled = (_size(mh * display), mh) if square_pixels and sar is not None else model_size
        canvas = (_even(scaled[0], even, up=False), _even(scaled[1], even, up=False))
        return OutputGeometry(
            model_size, scaled, canvas, (0, 0), _sar(sar, square, source_size, canvas)
        )
    if width is None:
        picture = (_even(height * aspect, even), height)
        return OutputGeometry(
            model_size, picture, picture, (0, 0), _sar(sar, square, source_size, picture)
        )
    box = Fraction(width, height)
    if fit == "crop":
        picture = (
            (width, max(height, _even(width / aspect, even)))
            if box >= aspect
            else (max(width, _even(height * aspect, even)), height)
        )
    else:
        picture = (
            (min(width, _even(height * aspect, even)), height)
            if box >= aspect
            else (width, min(height, _even(width / aspect, even)))
        )
    if fit == "fit":
        return OutputGeometry(
            model_size, picture, picture, (0, 0), _sar(sar, square, source_size, picture)
        )
    offset = (
        _even((width - picture[0]) / 2, even, up=False),
        _even((height - picture[1]) / 2, even, up=False),
    )
    if fit == "crop":  # negative: the picture starts left of / above the frame
        offset = (
            -_even((picture[0] - width) / 2, even, up=False),
            -_even((picture[1] - height) / 2, even, up=False),
        )
    return OutputGeometry(model_size, picture, (width, height), offset, None if square else sar)


def output_sar(
    source_size: tuple[int, int],
    source_sar: Fraction | None,
    canvas: tuple[int, int],
    *,
    width: int | None = None,
    height: int | None = None,
    fit: str = "fit",
    square_pixels: bool = False,
) -> Fraction | None:
    """The SAR the merge writes for a frame of `canvas` size (the same as plan_geometry's,
    from the chunk's size alone: the merge has no model)."""
    sar = source_sar if source_sar is not None and source_sar > 0 and source_sar != 1 else None
    if square_pixels or sar is None:
        return None
    if width is not None and height is not None and fit in ("pad", "crop"):
        return sar
    return _sar(sar, False, source_size, canvas)


def _sar(
    sar: Fraction | None, square: bool, source: tuple[int, int], output: tuple[int, int]
) -> Fraction | None:
    from vsr_desktop.core.media.encode import output_sample_aspect_ratio

    return None if square else output_sample_aspect_ratio(sar, source, output)


def _size(value: Fraction | float) -> int:
    return max(1, round(value))


def _even(value: Fraction | float, even: bool, *, up: bool | None = None) -> int:
    """Nearest (or the lower, with up=False) whole size, even when 4:2:x chroma needs it."""
    step = 2 if even else 1
    if up is False:
        return step * math.floor(value / step)
    return max(step, step * round(value / step))


def resample(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """Lanczos resample of an RGB(A) frame, 8 or 16 bits, through libswscale."""
    import av

    channels, deep = rgb.shape[2], rgb.dtype == np.uint16
    formats = {3: ("rgb24", "rgb48le"), 4: ("rgba", "rgba64le")}
    fmt = formats[channels][1 if deep else 0]
    frame: Any = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format=fmt)
    out = frame.reformat(width=width, height=height, interpolation="LANCZOS")
    result: np.ndarray = out.to_ndarray()
    return result


def place(rgb: np.ndarray, canvas: tuple[int, int], offset: tuple[int, int]) -> np.ndarray:
    """Put the picture on a black canvas at `offset` (negative: cropped off that side)."""
    cw, ch = canvas
    ox, oy = offset
    h, w = rgb.shape[:2]
    if (ox, oy) == (0, 0) and w >= cw and h >= ch:
        return rgb[:ch, :cw]
    if ox <= 0 and oy <= 0 and w + ox >= cw and h + oy >= ch:
        return rgb[-oy : -oy + ch, -ox : -ox + cw]
    out = np.zeros((ch, cw, rgb.shape[2]), dtype=rgb.dtype)
    sx, sy, dx, dy = max(0, -ox), max(0, -oy), max(0, ox), max(0, oy)
    cols, rows = min(w - sx, cw - dx), min(h - sy, ch - dy)
    if cols > 0 and rows > 0:
        out[dy : dy + rows, dx : dx + cols] = rgb[sy : sy + rows, sx : sx + cols]
    return out


def geometry_for(video: Any, model_size: tuple[int, int], settings: Any) -> OutputGeometry:
    """The geometry of a job's output: `video` a probe's VideoInfo, `settings` its
    EncodeSettings (image files need no even sizes; every video codec here does)."""
    image = bool(settings.profile().image_sequence)
    return plan_geometry(
        (video.width, video.height),
        video.sample_aspect_ratio,
        model_size,
        width=settings.width,
        height=settings.height,
        fit=settings.fit,
        square_pixels=settings.square_pixels,
        even=not image,
    )
