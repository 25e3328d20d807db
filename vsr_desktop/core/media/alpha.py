"""Alpha (transparency) through the pipeline: found by the probe, decoded beside the
picture, resized to the upscaled size, encoded into outputs that carry it.

The model sees RGB only; the alpha plane travels next to it (``DecodedFrame.alpha``) and
is merged back just before encoding. An output that cannot carry alpha is refused before
any work unless the user asked to drop it (``--drop-alpha``): alpha is never lost silently.

Sources: QuickTime Animation (argb), PNG in MOV (rgba), ProRes 4444 (yuva444p1xle), FFV1
(yuva*/gbrap*), VP8/VP9 in WebM/MKV. VP9 alpha is a second stream in each Matroska block
(``alpha_mode=1``): FFmpeg's native vp9 decoder ignores it, so those are decoded with the
``libvpx-vp9`` decoder the PyAV 18.1 wheel ships, which gives yuva420p.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from vsr_desktop.core.errors import InputError

if TYPE_CHECKING:
    from vsr_desktop.core.media.encode import EncodeSettings

#: Containers that lose an encoder's alpha: VP9 alpha is a Matroska BlockAdditional.
_ALPHA_LOST_IN: dict[str, set[str]] = {"libvpx-vp9": {"mp4", "mov"}}
#: What to ask for: codec names in the order the refusal offers them.
ALPHA_CHOICES = "--codec prores4444 (.mov), vp9 (.webm) or ffv1 (.mkv)"
#: Real-ESRGAN's script picks bicubic/linear or the model for alpha; see resize_alpha.
ALPHA_RESAMPLER = "LANCZOS"


def stream_has_alpha(pix_fmt: str, codec: str, metadata: Mapping[str, str]) -> bool:
    """True when the decoded pixel format has an alpha component, or for VP8/VP9 whose
    alpha travels beside the picture (Matroska tag ``alpha_mode=1``)."""
    import av

    if codec in ("vp8", "vp9", "libvpx", "libvpx-vp9"):
        tag = next((v for k, v in metadata.items() if k.lower() == "alpha_mode"), None)
        if tag == "1":
            return True
    try:
        return any(c.is_alpha for c in av.VideoFormat(pix_fmt).components)
    except (ValueError, av.FFmpegError):
        return False


def output_carries_alpha(settings: EncodeSettings, container: str) -> bool:
    """True when the chosen codec (``CodecProfile.pix_fmt_alpha``) in `container` keeps
    an alpha plane: ProRes 4444, VP9 in WebM/MKV, FFV1, QuickTime Animation, PNG/TIFF."""
    profile = settings.profile()
    if profile.pix_fmt_alpha is None:
        return False
    return container not in _ALPHA_LOST_IN.get(profile.encoder, set())


def keeps_alpha(has_alpha: bool, settings: EncodeSettings, container: str) -> bool:
    """Whether this job decodes, upscales and writes the source's alpha."""
    return has_alpha and not settings.drop_alpha and output_carries_alpha(settings, container)


def check_alpha_output(has_alpha: bool, settings: EncodeSettings, container: str) -> str | None:
    """Refuse an output that would lose the source's alpha; the note when it is dropped.

    Raises InputError naming alpha-capable choices unless the user passed --drop-alpha;
    returns the note to show then (None when the source has no alpha or it is kept).
    """
    if not has_alpha or (not settings.drop_alpha and output_carries_alpha(settings, container)):
        return None
    if settings.drop_alpha:
        return "the source's alpha (transparency) was dropped, as asked (--drop-alpha)"
    profile = settings.profile()
    raise InputError(
        f"the source has an alpha channel (transparency) and {profile.label or settings.codec} "
        f"in {container} cannot carry it",
        f"choose {ALPHA_CHOICES}, or pass --drop-alpha to drop it",
    )


def rgba_format_for(bit_depth: int) -> str:
    """Decode with alpha: rgba for 8-bit sources, rgba64 for deeper ones."""
    return "rgba64le" if bit_depth > 8 else "rgba"


def decode_frames(container: Any, stream: Any, alpha: bool) -> Iterator[Any]:
    """`container.decode(stream)`, except VP8/VP9 alpha, which only libvpx decodes."""
    import av

    name = stream.codec_context.name
    decoder = {"vp9": "libvpx-vp9", "vp8": "libvpx"}.get(name) if alpha else None
    if decoder is None or decoder not in av.codecs_available:
        # Packet by packet: one the decoder rejects (damaged data) is skipped, its frame
        # then missing, which decode.iter_frames counts, instead of ending the range.
        for packet in container.demux(stream):
            try:
                yield from packet.decode()
            except av.InvalidDataError:
                continue
        return
    context: Any = av.CodecContext.create(decoder, "r")
    if stream.codec_context.extradata:
        context.extradata = stream.codec_context.extradata
    for packet in container.demux(stream):
        if not packet.size:
            continue  # the demuxer's end marker: flushed once below
        for frame in context.decode(packet):
            frame.time_base = stream.time_base
            yield frame
    yield from context.decode(None)


def split_rgba(rgba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A decoded RGBA array as contiguous (RGB, alpha) for the model and the encoder."""
    return np.ascontiguousarray(rgba[..., :3]), np.ascontiguousarray(rgba[..., 3])


def resize_alpha(alpha: np.ndarray, width: int, height: int) -> np.ndarray:
    """The alpha plane at the upscaled size, by swscale's Lanczos.

    Real-ESRGAN's own script offers a plain resize or running the model on the alpha
    (as grey RGB). Measured on mattes downscaled x2 then upscaled x2 back (8-bit, mean abs
    error / worst pixel / time at 384x256): anti-aliased hard shapes Lanczos 2.03 / 120 /
    2 ms, bicubic 2.06 / 124, model (realesr-animevideov3) 0.79 / 95 / 280 ms; a soft
    radial matte Lanczos 0.15 / 2, model 1.25 / 6; a blurred photo matte Lanczos 4.57 /
    91, bicubic 4.92 / 94, model 4.14 / 165. The model sharpens hard edges but invents
    opacity (a worst pixel off by 165 of 255: holes) on soft mattes and doubles the job's
    model time; Lanczos is best or near it on every kind, never invents structure, and
    costs milliseconds. Values stay in range (swscale clips the ringing).
    """
    import av

    if alpha.shape == (height, width):
        return alpha
    fmt = "gray16le" if alpha.dtype == np.uint16 else "gray"
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(alpha), format=fmt)
    resized = frame.reformat(width=width, height=height, interpolation=ALPHA_RESAMPLER)
    out: np.ndarray = resized.to_ndarray()
    return out


def merge_alpha(rgb: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    """The upscaled RGB with its alpha (resized to it) as a 4th channel; RGB when None."""
    if alpha is None:
        return rgb
    height, width = rgb.shape[:2]
    plane = resize_alpha(alpha, width, height)
    if plane.dtype != rgb.dtype:  # 8-bit alpha with 16-bit RGB, or the other way round
        plane = (
            plane.astype(np.uint16) * 257
            if rgb.dtype == np.uint16
            else (plane >> 8).astype(np.uint8)
        )
    return np.concatenate([rgb, plane[..., None]], axis=2)
