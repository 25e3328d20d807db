"""Hardware video encoders and decoders: which one, with what options, and how many at once.

Why: at 4K a CPU x264 encoder caps any GPU (1.8 fps for x264 ``medium`` on a 2-core machine),
and "the GPU idles while the CPU encodes" is the first complaint about every upscaler. PyAV's
wheels carry NVENC, Quick Sync, AMF (Linux, Windows) and VideoToolbox (macOS) encoders and
NVDEC (``*_cuvid``) decoders; they open only where the hardware and its driver are.

``--encoder auto`` tries the hardware encoder of the chosen codec (NVENC, then Quick Sync,
then AMF; VideoToolbox on a Mac) and falls back to the software encoder with one note per
process when none opens. A named family that cannot open is an error: the user asked for it.
Quality keeps one scale, the CRF, mapped to each encoder's constant-quality mode
(docs/benchmarks.md has the table); presets keep x264's names (SVT-AV1's numbers for AV1).

NVENC on consumer GPUs allows few sessions at once (3 before 2023 drivers, 8 since): every
hardware encoder holds a slot of a process-wide semaphore per family for its lifetime, so the
chunk encoders of several devices wait for one another instead of failing.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from vsr_desktop.core.errors import InputError, MediaError

log = logging.getLogger(__name__)

ENCODER_CHOICES = ("auto", "software", "nvenc", "qsv", "amf", "videotoolbox")
FAMILY_LABELS = {
    "nvenc": "NVIDIA NVENC",
    "qsv": "Intel Quick Sync",
    "amf": "AMD AMF",
    "videotoolbox": "Apple VideoToolbox",
}
#: family → our codec name → FFmpeg encoder.
HARDWARE_ENCODERS: dict[str, dict[str, str]] = {
    "nvenc": {"h264": "h264_nvenc", "h265": "hevc_nvenc", "av1": "av1_nvenc"},
    "qsv": {"h264": "h264_qsv", "h265": "hevc_qsv", "av1": "av1_qsv"},
    "amf": {"h264": "h264_amf", "h265": "hevc_amf", "av1": "av1_amf"},
    "videotoolbox": {"h264": "h264_videotoolbox", "h265": "hevc_videotoolbox"},
}
#: Encoders with a 10-bit (P010) input; H.264 10-bit is rare in hardware and not relied on.
TEN_BIT_ENCODERS = frozenset(
    {"hevc_nvenc", "av1_nvenc", "hevc_qsv", "av1_qsv", "hevc_amf", "av1_amf", "hevc_videotoolbox"}
)
#: NVDEC decoders by the stream's codec name.
CUVID_DECODERS = {
    "h264": "h264_cuvid",
    "hevc": "hevc_cuvid",
    "av1": "av1_cuvid",
    "vp9": "vp9_cuvid",
    "vp8": "vp8_cuvid",
    "mpeg1video": "mpeg1_cuvid",
    "mpeg2video": "mpeg2_cuvid",
    "mpeg4": "mpeg4_cuvid",
    "vc1": "vc1_cuvid",
    "mjpeg": "mjpeg_cuvid",
}
#: x264's presets, fastest first (core.media.encode checks against the same list).
X264_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
)
_NVENC_PRESETS = ("p1", "p2", "p3", "p3", "p4", "p4", "p5", "p6", "p7", "p7")
_QSV_PRESETS = (
    "veryfast",
    "veryfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "veryslow",
)
_AMF_QUALITY = ("speed",) * 4 + ("balanced",) * 2 + ("quality",) * 4
#: FFmpeg's lambda per quantiser step (``-q:v N`` sets global_quality = N × this).
FF_QP2LAMBDA = 118
#: Default concurrent sessions per hardware family (VSR_HW_ENCODER_SESSIONS overrides).
DEFAULT_SESSIONS = 3


def auto_order() -> tuple[str, ...]:
    """The families ``auto`` tries, most likely first on this platform."""
    return ("videotoolbox",) if sys.platform == "darwin" else ("nvenc", "qsv", "amf")


def check_encoder_choice(encoder: str, codec: str) -> None:
    """Refuse an unknown ``--encoder``, or a hardware family that has no encoder for the
    codec (before any work)."""
    if encoder not in ENCODER_CHOICES:
        raise InputError(
            f"unknown encoder {encoder!r}", f"choose one of {', '.join(ENCODER_CHOICES)}"
        )
    if encoder in HARDWARE_ENCODERS and codec not in HARDWARE_ENCODERS[encoder]:
        codecs = ", ".join(HARDWARE_ENCODERS[encoder])
        raise InputError(
            f"{FAMILY_LABELS[encoder]} has no {codec} encoder (it encodes {codecs})",
            "use --encoder software (or auto) for this codec",
        )


def _preset_index(preset: str | None, codec: str) -> int:
    """A preset as a position on x264's scale 0 (fastest) .. 9 (slowest); medium = 5."""
    if not preset:
        return 5
    name = preset.lower()
    if name in X264_PRESETS:
        return X264_PRESETS.index(name)
    if codec == "av1" and name.lstrip("-").isdigit():  # SVT-AV1: 0 slowest .. 13 fastest
        return round((13 - min(13, max(0, int(name)))) * 9 / 13)
    return 5


def quality_options(
    family: str, encoder: str, codec: str, crf: int | None, preset: str | None, bitrate: bool
) -> dict[str, str]:
    """The encoder's private options for a CRF (constant quality) or a bit rate (set on the
    codec context by the caller), and the speed preset."""
    step = _preset_index(preset, codec)
    options: dict[str, str] = {}
    if family == "nvenc":
        options.update(preset=_NVENC_PRESETS[step], tune="hq", rc="vbr")
        if not bitrate and crf is not None:
            options.update(cq=str(crf), b="0")  # constant quality: no bit-rate target
    elif family == "qsv":
        options["preset"] = _QSV_PRESETS[step]
        if not bitrate and crf is not None:
            options["global_quality"] = str(crf)  # ICQ (intelligent constant quality)
    elif family == "amf":
        options["quality"] = _AMF_QUALITY[step]
        if not bitrate and crf is not None:
            qp = min(255, crf * 4) if codec == "av1" else crf  # AV1 qindex is 0..255
            options.update(rc="cqp", qp_i=str(qp), qp_p=str(qp))
            if encoder == "h264_amf":
                options["qp_b"] = str(qp)
        else:
            options["rc"] = "vbr_peak"
    elif family == "videotoolbox" and not bitrate and crf is not None:
        top = 63 if codec == "av1" else 51
        q = max(1, min(100, round((top - crf) * 100 / top)))  # -q:v: 1 (worst) .. 100
        options.update(global_quality=str(q * FF_QP2LAMBDA), flags="+qscale")
    return options


def hardware_pix_fmt(encoder: str, pix_fmt: str) -> str | None:
    """The frame format a hardware encoder takes for a software one's 4:2:0 format (NV12 or
    P010), or None when it cannot write that depth or chroma."""
    if pix_fmt in ("yuv420p", "yuvj420p"):
        return "yuv420p" if encoder.endswith("_nvenc") else "nv12"
    if pix_fmt == "yuv420p10le" and encoder in TEN_BIT_ENCODERS:
        return "p010le"
    return None


@dataclass(frozen=True)
class EncoderChoice:
    """The encoder a chunk writes with."""

    name: str
    family: str  # "software" or a key of HARDWARE_ENCODERS
    options: dict[str, str] = field(default_factory=dict)
    pix_fmt: str = ""

    @property
    def hardware(self) -> bool:
        return self.family != "software"


class _Sessions:
    """One bounded semaphore per hardware family, made on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._semaphores: dict[str, threading.BoundedSemaphore] = {}

    def limit(self) -> int:
        try:
            return max(1, int(os.environ.get("VSR_HW_ENCODER_SESSIONS", DEFAULT_SESSIONS)))
        except ValueError:
            return DEFAULT_SESSIONS

    def semaphore(self, family: str) -> threading.BoundedSemaphore:
        with self._lock:
            if family not in self._semaphores:
                self._semaphores[family] = threading.BoundedSemaphore(self.limit())
            return self._semaphores[family]


SESSIONS = _Sessions()


class SessionLease:
    """A held hardware-encoder slot; ``release`` is safe to call more than once."""

    def __init__(self, family: str) -> None:
        self._semaphore: threading.BoundedSemaphore | None = None
        if family != "software":
            self._semaphore = SESSIONS.semaphore(family)
            self._semaphore.acquire()

    def release(self) -> None:
        semaphore, self._semaphore = self._semaphore, None
        if semaphore is not None:
            semaphore.release()


_probe_lock = threading.Lock()
_probed: dict[tuple[Any, ...], str | None] = {}
_noted: set[str] = set()


def open_problem(
    name: str, options: dict[str, str], width: int, height: int, pix_fmt: str
) -> str | None:
    """Why encoder ``name`` cannot open here for these frames (None: it opens), tried once
    per process and setting; the trial holds a session slot like a real encoder."""
    import av

    key = (name, width, height, pix_fmt, tuple(sorted(options.items())))
    with _probe_lock:
        if key in _probed:
            return _probed[key]
    if name not in av.codecs_available:
        problem: str | None = "not in this FFmpeg build"
    else:
        family = next((f for f, m in HARDWARE_ENCODERS.items() if name in m.values()), "software")
        lease = SessionLease(family)
        try:
            context: Any = av.CodecContext.create(name, "w")
            context.width, context.height, context.pix_fmt = width, height, pix_fmt
            context.time_base = Fraction(1, 25)
            context.framerate = Fraction(25)
            context.options = dict(options)
            context.open()
            problem = None
            del context
        except Exception as exc:  # av errors, OSError (PermissionError without a GPU)
            problem = str(getattr(exc, "strerror", None) or exc)
        finally:
            lease.release()
    with _probe_lock:
        _probed[key] = problem
    return problem


def note_once(key: str, message: str) -> None:
    """Print a fallback note once per process."""
    with _probe_lock:
        if key in _noted:
            return
        _noted.add(key)
    log.warning("%s", message)


def choose_encoder(
    encoder: str,
    codec: str,
    *,
    software: str,
    software_options: dict[str, str],
    pix_fmt: str,
    width: int,
    height: int,
    crf: int | None,
    preset: str | None,
    bitrate: bool,
    extra_options: dict[str, str],
    hdr: bool,
) -> EncoderChoice:
    """The encoder for a chunk. ``auto`` keeps to the software encoder where the hardware
    would lose something (the user's own encoder options, HDR10 side data) and falls back to
    it, with one note, where no hardware encoder opens; a named family must open."""
    plain = EncoderChoice(software, "software", dict(software_options), pix_fmt)
    if encoder in ("software", "") or codec not in HARDWARE_ENCODERS["nvenc"]:
        return plain
    families = auto_order() if encoder == "auto" else (encoder,)
    if encoder == "auto" and (extra_options or hdr):
        return plain
    problems: list[str] = []
    for family in families:
        name = HARDWARE_ENCODERS[family].get(codec)
        if name is None:
            continue
        hw_fmt = hardware_pix_fmt(name, pix_fmt)
        if hw_fmt is None:
            problems.append(f"{name} cannot write {pix_fmt}")
            continue
        options = quality_options(family, name, codec, crf, preset, bitrate)
        options.update(extra_options)
        problem = open_problem(name, options, width, height, hw_fmt)
        if problem is None:
            return EncoderChoice(name, family, options, hw_fmt)
        problems.append(f"{name}: {problem}")
    if encoder != "auto":
        raise MediaError(
            f"the {FAMILY_LABELS[encoder]} encoder cannot start here ({'; '.join(problems)})",
            "use --encoder auto or software; hardware encoders need their GPU and driver",
        )
    note_once(
        f"encoder:{codec}",
        f"note: no hardware {codec} encoder opened here ({'; '.join(problems) or 'none'}); "
        f"encoding with {software}",
    )
    return plain


# ----------------------------------------------------------------- decoding


_decode = {"enabled": False}


def use_hardware_decode(enabled: bool) -> None:
    """Switch NVDEC decoding on or off for this process (``--hwdecode``; a job sets it)."""
    _decode["enabled"] = bool(enabled)


def hardware_decode_enabled() -> bool:
    return _decode["enabled"]


def open_hardware_decoder(stream: Any) -> Any:
    """An opened NVDEC decoder for the stream, or None (with one note) when it cannot open."""
    import av

    codec = stream.codec_context.name
    name = CUVID_DECODERS.get(codec)
    if name is None or name not in av.codecs_available:
        note_once(f"decoder:{codec}", f"note: no NVDEC decoder for {codec}; decoding on the CPU")
        return None
    try:
        context: Any = av.CodecContext.create(name, "r")
        if stream.codec_context.extradata:
            context.extradata = stream.codec_context.extradata
        context.width = stream.codec_context.width
        context.height = stream.codec_context.height
        context.open()
    except Exception as exc:  # no GPU: PermissionError; an old GPU: unsupported codec
        note_once(
            f"decoder:{codec}",
            f"note: the NVDEC decoder {name} cannot open here "
            f"({getattr(exc, 'strerror', None) or exc}); "
            "decoding on the CPU",
        )
        return None
    return context


def hardware_decode_frames(container: Any, stream: Any) -> Iterator[Any] | None:
    """The stream's frames decoded by NVDEC when ``--hwdecode`` is on and it opens, else
    None (the caller decodes in software). A packet NVDEC rejects is skipped, as the
    software path does, so the frame is counted missing instead of ending the range."""
    if not hardware_decode_enabled():
        return None
    context = open_hardware_decoder(stream)
    if context is None:
        return None
    return _decoded(container, stream, context)


def _decoded(container: Any, stream: Any, context: Any) -> Iterator[Any]:
    import av

    for packet in container.demux(stream):
        if not packet.size:
            continue  # the demuxer's end marker: flushed once below
        try:
            frames = context.decode(packet)
        except av.InvalidDataError:
            continue
        for frame in frames:
            frame.time_base = stream.time_base
            yield frame
    for frame in context.decode(None):
        frame.time_base = stream.time_base
        yield frame
