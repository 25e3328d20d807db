"""Encode upscaled RGB frames into a video-only file, keeping the source's timestamps.

Frames keep their source presentation timestamps (same time base), so variable frame rate
survives and chunk files line up end to end with no offset arithmetic at merge time.
"""

from __future__ import annotations

import contextlib
import errno
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from vsr_desktop.core.errors import DiskFullError, InputError, MediaError
from vsr_desktop.core.hardware_codecs import X264_PRESETS, SessionLease, choose_encoder
from vsr_desktop.core.media.color_tags import output_color, with_hdr_options
from vsr_desktop.core.media.probe import ColorInfo


@dataclass(frozen=True)
class CodecProfile:
    """How one user-facing codec name maps onto an FFmpeg encoder."""

    encoder: str
    pix_fmt_8bit: str
    pix_fmt_10bit: str
    default_crf: int | None
    default_preset: str | None
    default_container: str
    #: The CRF values the encoder honours as given; None: the encoder has no CRF.
    crf_range: tuple[int, int] | None = None
    #: The presets the encoder knows (compared without case); empty: it has none.
    presets: tuple[str, ...] = ()
    #: The name users know the encoder by, for messages.
    label: str = ""
    #: Encoder options that define the codec (a ProRes or DNxHR profile, FFV1's level).
    fixed_options: tuple[tuple[str, str], ...] = ()
    #: The smallest frame the encoder takes (DNxHR: 256x120), or None.
    min_size: tuple[int, int] | None = None
    #: The formats with an alpha plane (8-bit, deep); None: the codec carries no alpha.
    #: The alpha work picks these (see EncodeSettings.pix_fmt).
    pix_fmt_alpha: tuple[str, str] | None = None
    #: FFV1: chroma subsampling follows the source (4:2:0, 4:2:2, 4:4:4) at its bit depth.
    chroma_follows_source: bool = False
    #: Frames are written as numbered image files (PNG, TIFF), not into a container.
    image_sequence: bool = False
    #: Why there is no CRF, for the message refusing one.
    quality_note: str = ""


# Ranges measured with the bundled PyAV 18.1 / FFmpeg 8.1 wheel, opening each encoder on
# 64x48 frames (8-bit and 10-bit) and reading back what it wrote (x264/x265 store their
# settings in the stream):
# - libx264: FFmpeg's crf option takes -1 (unset) .. FLT_MAX; below -1 avcodec_open2 fails
#   (OverflowError), so x264's own 10-bit floor of -12 cannot be reached. 52 and 99 open
#   but x264 silently encodes them as crf=51.0. Usable: 0..51 at either bit depth.
#   Presets: x264 knows ultrafast..placebo (case-insensitive); "bogus" fails at open.
# - libx265 (x265 4.2): below -1 FFmpeg refuses, above 51 x265 refuses ("Valid quality based
#   range: -qpBDOffsetY to 51"), 8-bit and 10-bit alike. Usable: 0..51. Same preset names.
# - libsvtav1 (SVT-AV1 4.1.0): crf option range 0..63, where 0 means "unset" (SVT silently
#   encodes at its default 35). Usable: 1..63. preset option -2..13 (-2 unset, -1 debug);
#   SVT-AV1 4.1 runs 12 and 13 as 11 (it logs "Preset M13 is mapped to M11"): same speed
#   level, no quality change. Usable: 0..13.
# - libvpx-vp9: crf -1 (unset) .. 63; 64 fails at open. Usable: 0..63. It has no "preset"
#   option: one given is ignored without a word (speed is deadline/cpu-used).
# - prores_ks: no crf option and no preset (both ignored without a word); a bit rate on the
#   codec context changed nothing (same bytes): quality comes from its profile.
# - Bit rate: negative fails at open in every encoder; x264 refuses under 1000 b/s
#   ("bitrate not specified": it counts in kbit/s).
_X264_PRESETS = X264_PRESETS
MIN_BITRATE = 1000

CODECS: dict[str, CodecProfile] = {
    "h264": CodecProfile(
        "libx264",
        "yuv420p",
        "yuv420p10le",
        18,
        "medium",
        "mp4",
        crf_range=(0, 51),
        presets=_X264_PRESETS,
        label="H.264 (x264)",
    ),
    "h265": CodecProfile(
        "libx265",
        "yuv420p",
        "yuv420p10le",
        20,
        "medium",
        "mp4",
        crf_range=(0, 51),
        presets=_X264_PRESETS,
        label="H.265 (x265)",
    ),
    "av1": CodecProfile(
        "libsvtav1",
        "yuv420p",
        "yuv420p10le",
        28,
        "8",
        "mp4",
        crf_range=(1, 63),
        presets=tuple(str(i) for i in range(14)),
        label="AV1 (SVT-AV1)",
    ),
    "prores": CodecProfile(
        "prores_ks",
        "yuv422p10le",
        "yuv422p10le",
        None,
        None,
        "mov",
        crf_range=None,
        presets=(),
        label="ProRes",
        quality_note="ProRes quality comes from its profile, not a CRF",
    ),
    "vp9": CodecProfile(
        "libvpx-vp9",
        "yuv420p",
        "yuv420p",
        30,
        None,
        "webm",
        crf_range=(0, 63),
        presets=(),
        label="VP9 (libvpx)",
        pix_fmt_alpha=("yuva420p", "yuva420p"),  # in WebM/MKV only (core.media.alpha)
    ),
    # Measured with the wheel (FFmpeg 8.1): prores_ks profile 4 writes "4444" (ffprobe reads
    # yuv444p12le back); dnxhd refuses DNxHR under 256x120 ("Input dimensions too small")
    # and takes any size above, odd ones included; ffv1 level 3 takes 4:2:0/4:2:2/4:4:4 at
    # 8 and 10 bits, with alpha; the mxf muxer takes DNxHR, with audio only as 48 kHz PCM.
    "prores4444": CodecProfile(
        "prores_ks",
        "yuv444p10le",
        "yuv444p10le",
        None,
        None,
        "mov",
        label="ProRes 4444",
        fixed_options=(("profile", "4"),),
        pix_fmt_alpha=("yuva444p10le", "yuva444p10le"),
        quality_note="ProRes quality comes from its profile, not a CRF",
    ),
    "dnxhr-hq": CodecProfile(
        "dnxhd",
        "yuv422p",
        "yuv422p",
        None,
        None,
        "mov",
        label="DNxHR HQ",
        fixed_options=(("profile", "dnxhr_hq"),),
        min_size=(256, 120),
        quality_note="DNxHR quality comes from its profile (HQ or HQX), not a CRF",
    ),
    "dnxhr-hqx": CodecProfile(
        "dnxhd",
        "yuv422p10le",
        "yuv422p10le",
        None,
        None,
        "mov",
        label="DNxHR HQX",
        fixed_options=(("profile", "dnxhr_hqx"),),
        min_size=(256, 120),
        quality_note="DNxHR quality comes from its profile (HQ or HQX), not a CRF",
    ),
    "ffv1": CodecProfile(
        "ffv1",
        "yuv420p",
        "yuv420p10le",
        None,
        None,
        "mkv",
        label="FFV1 (lossless)",
        fixed_options=(("level", "3"), ("slices", "16"), ("slicecrc", "1"), ("g", "1")),
        pix_fmt_alpha=("yuva444p", "yuva444p10le"),
        chroma_follows_source=True,
        quality_note="FFV1 is lossless: it has no CRF",
    ),
    "png": CodecProfile(
        "png",
        "rgb24",
        "rgb48be",
        None,
        None,
        "png",
        label="PNG images",
        pix_fmt_alpha=("rgba", "rgba64be"),
        image_sequence=True,
        quality_note="PNG is lossless: it has no CRF",
    ),
    "tiff": CodecProfile(
        "tiff",
        "rgb24",
        "rgb48le",
        None,
        None,
        "tiff",
        label="TIFF images",
        pix_fmt_alpha=("rgba", "rgba64le"),
        image_sequence=True,
        quality_note="TIFF is lossless: it has no CRF",
    ),
}

# QuickTime Animation (RLE): lossless 8-bit RGB(A) in MOV, what motion graphics hand over.
CODECS["qtrle"] = CodecProfile(
    "qtrle",
    "rgb24",
    "rgb24",
    None,
    None,
    "mov",
    label="QuickTime Animation",
    pix_fmt_alpha=("argb", "argb"),
    quality_note="QuickTime Animation is lossless: it has no CRF",
)

#: Codecs written as numbered image files (``-o out_%06d.png`` or an output folder).
IMAGE_CODECS: tuple[str, ...] = tuple(name for name, p in CODECS.items() if p.image_sequence)

# Output suffix → FFmpeg muxer name.
CONTAINERS: dict[str, str] = {
    ".mp4": "mp4",
    ".m4v": "mp4",
    ".mov": "mov",
    ".mkv": "matroska",
    ".webm": "webm",
    ".mxf": "mxf",
}

_IMAGE_SUFFIXES = (".png", ".tif", ".tiff")

#: What each muxer holds (and players play there). Image codecs live in no container.
_CONTAINER_CODECS: dict[str, set[str]] = {
    "image2": set(IMAGE_CODECS),
    "mp4": {"h264", "h265", "av1", "vp9"},
    "mov": {"h264", "h265", "prores", "prores4444", "dnxhr-hq", "dnxhr-hqx", "qtrle"},
    "matroska": set(CODECS) - set(IMAGE_CODECS) - {"qtrle", "dnxhr-hq", "dnxhr-hqx"},
    "webm": {"vp9", "av1"},
    "mxf": {"dnxhr-hq", "dnxhr-hqx"},
}


@dataclass(frozen=True)
class EncodeSettings:
    """What the user chose for the output file."""

    codec: str = "h264"
    crf: int | None = None
    bitrate: int | None = None
    preset: str | None = None
    ten_bit: bool | None = None  # None: follow the source's bit depth
    #: Audio in the output: auto (copy what the container plays, convert the rest), copy,
    #: aac, alac, flac, opus or pcm (core.media.tracks checks it fits the container).
    audio_codec: str = "auto"
    extra_options: dict[str, str] = field(default_factory=dict)
    #: Target size (`--size WxH`: both; `--height H`: height only, the width follows the
    #: display aspect); None: the model's scale. See core.media.geometry.
    width: int | None = None
    height: int | None = None
    #: How the picture meets a `--size` box: fit (inside it), pad (black bars), crop (fill).
    fit: str = "fit"
    #: Resample anamorphic sources to square pixels (SAR 1:1) instead of keeping their SAR.
    square_pixels: bool = False
    #: Write no alpha for a source that has one (`--drop-alpha`); otherwise an output that
    #: cannot carry alpha is refused (core.media.alpha).
    drop_alpha: bool = False
    #: auto (a hardware encoder of the codec when one opens, else software with a note),
    #: software, nvenc, qsv, amf or videotoolbox (core.hardware_codecs).
    encoder: str = "auto"

    def profile(self) -> CodecProfile:
        """The codec's profile; InputError when the codec or an option does not fit it.

        Job validation calls this before any work, so a CRF, bit rate or preset the encoder
        would refuse (or silently change) is reported up front, not as a failed chunk.
        """
        try:
            profile = CODECS[self.codec]
        except KeyError:
            raise InputError(
                f"unknown codec {self.codec!r}", f"choose one of {', '.join(CODECS)}"
            ) from None
        check_encoder_options(self, profile)
        from vsr_desktop.core.hardware_codecs import check_encoder_choice

        check_encoder_choice(self.encoder, self.codec)
        return profile

    def pix_fmt(self, source_bit_depth: int, source_pix_fmt: str = "", alpha: bool = False) -> str:
        """The encoder's pixel format: deep for a deep source (or --ten-bit), FFV1's chroma
        as the source's, and with `alpha` the codec's alpha format (the alpha work's hook)."""
        profile = self.profile()
        ten = self.ten_bit if self.ten_bit is not None else source_bit_depth > 8
        if alpha and profile.pix_fmt_alpha is not None:
            return profile.pix_fmt_alpha[1 if ten else 0]
        if profile.chroma_follows_source:
            return _same_chroma(source_pix_fmt, ten)
        return profile.pix_fmt_10bit if ten else profile.pix_fmt_8bit

    def codec_options(self) -> dict[str, str]:
        """Encoder private options: quality and speed, quiet logs."""
        profile = self.profile()
        options: dict[str, str] = {}
        crf = self.crf if self.crf is not None else profile.default_crf
        if self.bitrate is None and crf is not None:
            options["crf"] = str(crf)
            if profile.encoder == "libvpx-vp9":
                options["b"] = "0"
        preset = self.preset or profile.default_preset
        if preset is not None:
            options["preset"] = preset.lower()  # x265 knows lower-case names only
        if profile.encoder == "libx265":
            options["x265-params"] = "log-level=error"
        if profile.encoder == "libvpx-vp9":
            options.setdefault("row-mt", "1")
            options.setdefault("deadline", "good")
            options.setdefault("cpu-used", "4")
        if profile.encoder == "prores_ks":
            options.setdefault("profile", "3")
        options.update(profile.fixed_options)
        options.update(self.extra_options)
        return options


def _same_chroma(source_pix_fmt: str, ten: bool) -> str:
    """A YUV format with the source's chroma subsampling (4:4:4 for RGB and 4:4:4 sources)."""
    name = source_pix_fmt.lower()
    if name.startswith(("yuv444", "yuvj444", "gbr", "rgb", "bgr", "argb", "abgr", "yuva444")):
        chroma = "444"
    elif name.startswith(("yuv422", "yuvj422", "yuva422")):
        chroma = "422"
    else:
        chroma = "420"
    return f"yuv{chroma}p10le" if ten else f"yuv{chroma}p"


def check_encoder_options(settings: EncodeSettings, profile: CodecProfile) -> None:
    """Refuse a CRF, bit rate or preset this codec would reject, ignore or clamp."""
    name = profile.label or settings.codec
    crf, bitrate, preset = settings.crf, settings.bitrate, settings.preset
    if crf is not None:
        if profile.crf_range is None:
            raise InputError(
                f"{name} has no CRF (CRF {crf} was given)",
                f"{profile.quality_note or 'its quality is fixed'}: leave the CRF unset",
            )
        low, high = profile.crf_range
        if isinstance(crf, bool) or not isinstance(crf, int) or not low <= crf <= high:
            raise InputError(
                f"CRF {crf} is out of range for {name}",
                f"use a whole number from {low} (best) to {high} (smallest file)",
            )
    if bitrate is not None:
        if profile.crf_range is None:
            raise InputError(
                f"{name} takes no bit rate (bit rate {bitrate} was given)",
                f"{profile.quality_note or 'its quality is fixed'}: leave the bit rate unset",
            )
        if isinstance(bitrate, bool) or not isinstance(bitrate, int) or bitrate < MIN_BITRATE:
            raise InputError(
                f"bit rate {bitrate} is too low or not a number",
                f"give bits per second, at least {MIN_BITRATE} (e.g. 8000000 for 8 Mbit/s)",
            )
        if crf is not None:
            raise InputError(
                f"both a CRF ({crf}) and a bit rate ({bitrate}) were given",
                "choose one: a CRF for constant quality or a bit rate for a target size",
            )
    if preset:  # "" means the default, as in codec_options
        if not profile.presets:
            raise InputError(
                f"{name} has no presets (preset {preset!r} was given)",
                "leave the preset unset",
            )
        if not isinstance(preset, str) or preset.lower() not in profile.presets:
            choices = (
                f"a number from {profile.presets[0]} (slowest) to {profile.presets[-1]} (fastest)"
                if profile.presets[0].isdigit()
                else "one of " + ", ".join(profile.presets)
            )
            raise InputError(f"{name} has no preset {preset!r}", f"use {choices}")


def check_min_size(profile: CodecProfile, width: int, height: int) -> None:
    """Refuse a frame smaller than the encoder takes (DNxHR: 256x120), saying what to do."""
    if profile.min_size is None:
        return
    min_w, min_h = profile.min_size
    if width < min_w or height < min_h:
        raise InputError(
            f"{profile.label} needs frames of at least {min_w}x{min_h}; this output is "
            f"{width}x{height}",
            "choose a larger --size or --scale, or ProRes (.mov) for small frames",
        )


def container_for(path: Path) -> str:
    """The muxer for an output path, or a clear error for an unsupported suffix.

    An image sequence (a ``%06d`` pattern, a .png/.tif name, or a folder: no suffix) is
    "image2", FFmpeg's name for numbered image files; core.media.image_sequence writes it.
    """
    suffix = path.suffix.lower()
    if "%" in path.name or not suffix or suffix in _IMAGE_SUFFIXES:
        return "image2"
    if suffix not in CONTAINERS:
        raise InputError(
            f"unsupported output type {suffix} for {path.name}",
            f"use one of {', '.join(sorted(CONTAINERS))}, or out_%06d.png for images",
        )
    return CONTAINERS[suffix]


def containers_for_codec(codec: str) -> list[str]:
    """The output suffixes a codec can be written to (the app offers only these)."""
    profile = CODECS.get(codec)
    if profile is not None and profile.image_sequence:
        return [f".{profile.default_container}"]
    suffixes = [s for s, muxer in CONTAINERS.items() if codec in _CONTAINER_CODECS[muxer]]
    return [s for s in suffixes if s != ".m4v"]


def check_codec_fits_container(codec: str, container: str) -> None:
    """Refuse a codec the container cannot hold, naming the suffixes that can."""
    if codec not in _CONTAINER_CODECS.get(container, set(CODECS)):
        label = CODECS[codec].label if codec in CODECS else codec
        valid = containers_for_codec(codec)
        if codec in IMAGE_CODECS:
            hint = f"name the output like out_%06d{valid[0]}, or give a folder"
        else:
            hint = f"use {' or '.join(valid)} for {label}"
        if container == "image2":
            raise InputError(
                f"{label} writes a video file, and the output names images or a folder",
                f"{hint}, or --codec png/tiff for numbered images",
            )
        raise InputError(f"{label} cannot be stored in a {container} file", hint)


def check_output_choices(
    info: Any, settings: EncodeSettings, output: Path, overwrite: bool
) -> None:
    """The editor's choices (size, fit, codec, container, images) checked before any work.

    `info` is the source's MediaInfo. Refuses what would fail late or lose something: an odd
    or too small target, an image name with a video codec, MXF with what MXF cannot keep.
    """
    from vsr_desktop.core.media.geometry import check_target

    profile = settings.profile()
    container = container_for(output)
    check_codec_fits_container(settings.codec, container)
    check_target(
        settings.width,
        settings.height,
        settings.fit,
        even=not profile.image_sequence,
        min_size=profile.min_size or (1, 1),
    )
    if container == "image2":
        from vsr_desktop.core.media.image_sequence import check_image_output

        check_image_output(output, settings, overwrite)
    if container == "mxf":
        odd = [s for s in info.audio if s.sample_rate not in (None, 48000)]
        if odd:
            raise InputError(
                f"MXF holds 48 kHz audio only; audio stream {odd[0].index} is "
                f"{odd[0].sample_rate} Hz",
                "write a .mov instead (DNxHR in MOV keeps the audio as it is)",
            )
        sar = info.video.sample_aspect_ratio
        if sar is not None and sar != 1 and not settings.square_pixels:
            raise InputError(
                f"the source has non-square pixels (SAR {sar}) and FFmpeg's MXF writer "
                "keeps no pixel aspect",
                "add --square-pixels, or write a .mov",
            )


def output_sample_aspect_ratio(
    source_sar: Fraction | None, source_size: tuple[int, int], output_size: tuple[int, int]
) -> Fraction | None:
    """The pixel aspect that shows the upscaled picture at the source's display aspect.

    The same SAR when both sides scale alike; when the size was rounded (even sizes for
    4:2:0) it absorbs the rounding. None for square pixels. (A ``--square-pixels`` mode
    would instead resample to ``display_size`` and write no SAR.)
    """
    if source_sar is None or source_sar <= 0 or source_sar == 1:
        return None
    (src_w, src_h), (out_w, out_h) = source_size, output_size
    sar = source_sar * src_w * out_h / (src_h * out_w)
    if sar.numerator <= 65535 and sar.denominator <= 65535:
        return sar
    # H.264/H.265 VUI and MP4's pasp hold 16-bit terms.
    return sar.limit_denominator(max(1, int(65535 / max(sar, Fraction(1)))))


def display_size(width: int, height: int, sar: Fraction | None) -> tuple[int, int]:
    """The square-pixel size a player shows a frame at (width stretched by the SAR)."""
    if sar is None or sar <= 0 or sar == 1:
        return width, height
    return max(1, round(width * sar)), height


def raise_for_os_error(exc: OSError, path: Path) -> None:
    """Turn disk-full into its own error so the user is told to free space."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        raise DiskFullError(
            f"the disk holding {path.parent} is full", "free some space, then resume the job"
        ) from exc
    raise MediaError(f"cannot write {path}: {exc.strerror or exc}") from exc


class ChunkEncoder:
    """Write RGB frames with given timestamps to one video-only file."""

    def __init__(
        self,
        path: Path,
        settings: EncodeSettings,
        *,
        container_format: str,
        width: int,
        height: int,
        time_base: Fraction,
        rate: Fraction,
        source_bit_depth: int,
        color: ColorInfo,
        rotation: int = 0,
        threads: int = 0,
        pts_offset: int = 0,
        sample_aspect_ratio: Fraction | None = None,
        source_pix_fmt: str = "",
        alpha: bool = False,
    ) -> None:
        import av

        self.path = path
        # Chunks start their own timeline at 0: an mp4 edit list for a late start is stored
        # in the movie's 1/1000 timescale and would round the timestamps. Merge adds it back.
        self.pts_offset = pts_offset
        self._rgb_format = "rgb48le" if source_bit_depth > 8 else "rgb24"
        self._pix_fmt = settings.pix_fmt(source_bit_depth, source_pix_fmt, alpha=alpha)
        # RGB sources get a YUV matrix for YUV outputs (core.media.color_tags).
        encoder = settings.profile().encoder
        self._color = output_color(color, source_pix_fmt, self._pix_fmt, width, height, encoder)
        self.frames_written = 0
        self.width, self.height = width, height
        profile = settings.profile()
        check_min_size(profile, width, height)
        software_options = with_hdr_options(settings.codec_options(), profile.encoder, color)
        # A hardware encoder where asked and able (core.hardware_codecs), holding a session.
        choice = choose_encoder(
            settings.encoder,
            settings.codec,
            software=profile.encoder,
            software_options=software_options,
            pix_fmt=self._pix_fmt,
            width=width,
            height=height,
            crf=settings.crf if settings.crf is not None else profile.default_crf,
            preset=settings.preset or profile.default_preset,
            bitrate=settings.bitrate is not None,
            extra_options=settings.extra_options,
            hdr=bool(with_hdr_options({}, "libx265", color)),  # HDR10 side data to keep
        )
        self._encoder_name, self._options = choice.name, choice.options
        self._pix_fmt = choice.pix_fmt
        self._session = SessionLease(choice.family)
        self._container: Any = None
        try:
            self._container = av.open(str(path), "w", format=container_format)
            stream: Any = self._container.add_stream(
                self._encoder_name, rate=rate, options=self._options
            )
        except BaseException as exc:
            self.abort()
            if isinstance(exc, av.FFmpegError):
                raise MediaError(f"cannot start the {settings.codec} encoder: {exc}") from exc
            if isinstance(exc, OSError):
                raise_for_os_error(exc, path)
            raise
        stream.width = width
        stream.height = height
        stream.pix_fmt = self._pix_fmt
        stream.time_base = time_base
        ctx = stream.codec_context
        ctx.time_base = time_base
        ctx.framerate = rate
        if threads:
            ctx.thread_count = threads
        ctx.color_primaries = self._color.primaries
        ctx.color_trc = self._color.trc
        ctx.colorspace = self._color.space
        ctx.color_range = self._color.range or 1  # limited range unless the source was full
        if sample_aspect_ratio is not None and sample_aspect_ratio != 1:
            # Written into the bitstream (H.264/H.265 VUI) and the container (MP4/MOV pasp).
            ctx.sample_aspect_ratio = sample_aspect_ratio
        if settings.bitrate is not None:
            ctx.bit_rate = settings.bitrate
        if rotation:
            stream.set_display_rotation(rotation)
        self._stream = stream

    def write(self, pts: int, rgb: np.ndarray) -> None:
        """Encode one frame at the source timestamp `pts`.

        The frame must have the size the encoder was opened with: FFmpeg would rescale
        another size without a word. The encoder opens on the first frame, so options it
        refuses surface here, as a MediaError naming them.
        """
        import av

        if rgb.ndim != 3 or rgb.shape[:2] != (self.height, self.width):
            raise MediaError(
                f"{self.path.name}: a frame of shape {rgb.shape} reached an encoder opened "
                f"for {self.width}x{self.height}",
                "the upscaler returned frames of another size than it announced",
            )
        fmt = self._rgb_format  # RGBA (4 channels) when the alpha is kept: core.media.alpha
        if rgb.shape[2] == 4:
            fmt = "rgba64le" if rgb.dtype == np.uint16 else "rgba"
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format=fmt)
        space = self._color.space if self._color.space not in (0, 2) else None
        frame = frame.reformat(
            format=self._pix_fmt,
            dst_colorspace=space,
            dst_color_range=self._color.range or 1,
        )
        frame.pts = pts - self.pts_offset
        frame.time_base = self._stream.codec_context.time_base
        self._mux(self._encode(frame))
        self.frames_written += 1

    def close(self) -> None:
        """Flush the encoder and finish the file."""
        try:
            self._mux(self._encode(None))
            self._container.close()
        except OSError as exc:
            raise_for_os_error(exc, self.path)
        finally:
            self._session.release()

    def abort(self) -> None:
        """Close without flushing; the caller deletes the partial file."""
        with contextlib.suppress(Exception):
            if self._container is not None:
                self._container.close()
        self._session.release()

    def _encode(self, frame: Any) -> Any:
        import av

        opened = self._stream.codec_context.is_open
        try:
            return self._stream.encode(frame)
        except (av.FFmpegError, ValueError) as exc:
            if not opened and not self._stream.codec_context.is_open:
                options = ", ".join(f"{k}={v}" for k, v in self._options.items())
                raise MediaError(
                    f"the {self._encoder_name} encoder could not start for "
                    f"{self.width}x{self.height} frames with {options}: {exc}",
                    "check the CRF, preset and bit rate for this codec",
                ) from exc
            raise MediaError(
                f"encoding {self.path.name} failed after {self.frames_written} frames: {exc}"
            ) from exc

    def _mux(self, packets: Any) -> None:
        import av

        try:
            self._container.mux(packets)
        except OSError as exc:
            raise_for_os_error(exc, self.path)
        except av.FFmpegError as exc:
            raise MediaError(f"encoding {self.path.name} failed: {exc}") from exc
