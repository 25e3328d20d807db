"""Colour tags of the output: the right YUV matrix for RGB sources, HDR10 data carried.

Two things the encoder must be told and cannot guess:

- **RGB sources** (PNG, QuickTime Animation, RGB FFV1, gbrp) carry the RGB "matrix"
  (AVCOL_SPC_RGB = 0). Written into a YUV codec that tag is a lie: players would show the
  Y, U and V planes as G, B and R. The pixels are converted with a real YUV matrix and
  tagged with it: **BT.709 when the output is HD** (width ≥ 1280 or height ≥ 720, which
  an upscale usually is), **BT.601 (SMPTE 170M) below that** — the matrix players assume
  for untagged pictures of each size, so a player that ignores the tag shows the same
  thing. The range is **limited (tv)**: full-range YUV is honoured by few players and
  broadcast chains, while limited is the default everywhere. A gbrp-family output (4:4:4
  RGB, e.g. FFV1 gbrp, PNG, QuickTime Animation) keeps the RGB matrix and full range.
- **HDR10**: a 10-bit PQ (SMPTE 2084) or HLG (ARIB STD-B67) source's mastering-display
  colour volume and content light level (first frame's side data) are handed to the
  encoders that write them into the bitstream: x265 (``master-display``/``max-cll``) and
  SVT-AV1 (``mastering-display``/``content-light``). PyAV 18.1 can set neither frame nor
  stream side data, so other encoders cannot carry them: `vsr verify` says so. An 8-bit
  output of a PQ/HLG source is refused (see :func:`check_hdr_output`): 256 code values
  spread over 0–10 000 nits band visibly, and HDR10 is defined as 10-bit.
"""

from __future__ import annotations

import struct
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from vsr_desktop.core.errors import InputError

if TYPE_CHECKING:
    from vsr_desktop.core.media.probe import ColorInfo

#: FFmpeg enum values (libavutil/pixfmt.h).
SPC_RGB, SPC_BT709, SPC_UNSPECIFIED, SPC_SMPTE170M = 0, 1, 2, 6
RANGE_UNSPECIFIED, RANGE_TV, RANGE_PC = 0, 1, 2
TRC_SMPTE2084, TRC_ARIB_STD_B67 = 16, 18
#: Transfers whose pictures are HDR (PQ and HLG).
HDR_TRANSFERS = {TRC_SMPTE2084: "PQ (SMPTE 2084)", TRC_ARIB_STD_B67: "HLG (ARIB STD-B67)"}
#: Encoders that write mastering display / content light level from options.
HDR_ENCODERS = ("libx265", "libsvtav1")

# AVMasteringDisplayMetadata: 3x2 primaries (r, g, b), white point, min and max luminance
# (AVRational each), has_primaries, has_luminance. AVContentLightMetadata: MaxCLL, MaxFALL.
_MDCV = struct.Struct("<22i")
_CLL = struct.Struct("<2I")


def is_rgb_pix_fmt(pix_fmt: str) -> bool:
    """True for packed or planar RGB formats (rgb24, argb, gbrp10le, rgba64be …)."""
    import av

    try:
        return bool(av.VideoFormat(pix_fmt).is_rgb)
    except (ValueError, av.FFmpegError):
        return False


def yuv_matrix_for(width: int, height: int) -> int:
    """BT.709 for HD pictures, BT.601 (SMPTE 170M) for SD: what players assume untagged."""
    return SPC_BT709 if width >= 1280 or height >= 720 else SPC_SMPTE170M


def explicit_matrix(color: ColorInfo, pix_fmt: str, width: int, height: int) -> ColorInfo:
    """An untagged YUV source's matrix made explicit: the one players assume for its size
    (decode.frame_to_rgb converts with it too). Left untagged, an SD source upscaled to HD
    would be shown with BT.709 instead of the BT.601 it was shown with."""
    if color.space != SPC_UNSPECIFIED or is_rgb_pix_fmt(pix_fmt):
        return color
    return replace(color, space=yuv_matrix_for(width, height))


def output_color(
    color: ColorInfo,
    source_pix_fmt: str,
    out_pix_fmt: str,
    width: int,
    height: int,
    encoder: str = "",
) -> ColorInfo:
    """The tags (and conversion) for an output of `out_pix_fmt` at `width`x`height`.

    A YUV output of an RGB source gets a YUV matrix and limited range (module docstring;
    BT.709 for DNxHR, whose frame header says BT.709 whatever it is told); an RGB output
    gets the RGB matrix and full range; YUV to YUV keeps the source's tags. Primaries and
    transfer are always the source's.
    """
    source_rgb = color.space == SPC_RGB or is_rgb_pix_fmt(source_pix_fmt)
    if is_rgb_pix_fmt(out_pix_fmt):
        return replace(color, space=SPC_RGB, range=RANGE_PC)
    if source_rgb:
        matrix = SPC_BT709 if encoder == "dnxhd" else yuv_matrix_for(width, height)
        return replace(color, space=matrix, range=RANGE_TV)
    return color


def hdr_fields(frame: Any) -> dict[str, str | None]:
    """Mastering display and content light level of a decoded frame, in x265's syntax.

    ``master_display``: ``G(x,y)B(x,y)R(x,y)WP(x,y)L(max,min)`` with chromaticities in
    units of 0.00002 and luminance in 0.0001 cd/m²; ``max_cll``: ``MaxCLL,MaxFALL``.
    """
    found: dict[str, str | None] = {"master_display": None, "max_cll": None}
    for side in frame.side_data.values():  # PyAV 18.1.1 iterates keys, 18.1.0 values
        name = getattr(side.type, "name", "")
        data = bytes(side)
        if name == "MASTERING_DISPLAY_METADATA" and len(data) >= _MDCV.size:
            found["master_display"] = _x265_master_display(_MDCV.unpack_from(data))
        elif name == "CONTENT_LIGHT_LEVEL" and len(data) >= _CLL.size:
            cll, fall = _CLL.unpack_from(data)
            found["max_cll"] = f"{cll},{fall}"
    return found


def _x265_master_display(v: tuple[int, ...]) -> str | None:
    """AVMasteringDisplayMetadata's 22 ints → x265's ``G(x,y)B(x,y)R(x,y)WP(x,y)L(max,min)``."""
    if not (v[20] and v[21]):  # has_primaries, has_luminance
        return None

    def q(i: int, scale: int) -> int:
        return round(v[i] * scale / v[i + 1]) if v[i + 1] else 0

    r, g, b = (f"({q(i, 50000)},{q(i + 2, 50000)})" for i in (0, 4, 8))
    wp = f"({q(12, 50000)},{q(14, 50000)})"
    return f"G{g}B{b}R{r}WP{wp}L({q(18, 10000)},{q(16, 10000)})"


def _svt_master_display(x265: str) -> str:
    """x265's integer syntax → SVT-AV1's decimal one (same order and meaning)."""
    import re

    numbers = [int(n) for n in re.findall(r"\d+", x265)]
    if len(numbers) != 10:
        return ""
    xy = [f"{n / 50000:.5f}" for n in numbers[:8]]
    return (
        f"G({xy[0]},{xy[1]})B({xy[2]},{xy[3]})R({xy[4]},{xy[5]})WP({xy[6]},{xy[7]})"
        f"L({numbers[8] / 10000:.4f},{numbers[9] / 10000:.4f})"
    )


def with_hdr_options(options: dict[str, str], encoder: str, color: ColorInfo) -> dict[str, str]:
    """`options` plus what makes `encoder` write the source's HDR10 side data."""
    master, cll = color.master_display, color.max_cll
    if not (master or cll) or color.trc not in HDR_TRANSFERS:
        return options
    options = dict(options)
    if encoder == "libx265":
        params = [p for p in options.get("x265-params", "").split(":") if p]
        params.append("hdr10=1")
        params += [f"master-display={master}"] if master else []
        params += [f"max-cll={cll}"] if cll else []
        options["x265-params"] = ":".join(params)
    elif encoder == "libsvtav1":
        params = [p for p in options.get("svtav1-params", "").split(":") if p]
        svt = _svt_master_display(master) if master else ""
        params += [f"mastering-display={svt}"] if svt else []
        params += [f"content-light={cll}"] if cll else []
        options["svtav1-params"] = ":".join(params)
    return options


def check_hdr_output(color: ColorInfo, bit_depth: int, out_pix_fmt: str, codec: str) -> None:
    """Refuse an 8-bit output of an HDR (PQ/HLG) source, before any work.

    Refused rather than warned: 8-bit PQ bands visibly and is not HDR10, and the fix (a
    10-bit output) is one option away.
    """
    from vsr_desktop.core.media.probe import bit_depth_of

    kind = HDR_TRANSFERS.get(color.trc)
    if kind is None:
        return
    if bit_depth_of(out_pix_fmt) < 10:
        raise InputError(
            f"the source is {bit_depth}-bit HDR ({kind}) but {codec} would write "
            f"8-bit {out_pix_fmt}, which bands and is not HDR10",
            "choose a 10-bit output: --codec h265 (or av1, prores) and leave --ten-bit on",
        )


def hdr_note(color: ColorInfo, encoder: str, codec: str) -> str | None:
    """The note when the source's HDR10 side data cannot reach this encoder's output."""
    if color.trc not in HDR_TRANSFERS or not (color.master_display or color.max_cll):
        return None
    if encoder in HDR_ENCODERS:
        return None
    return (
        f"the HDR10 mastering-display/content-light data cannot be written by {codec}: "
        "choose --codec h265 or av1 to keep it"
    )
