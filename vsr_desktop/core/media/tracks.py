"""What the output keeps besides the picture: tags, dispositions, chapters, timecode, and
which audio and subtitle tracks are copied as they are or converted for the container.

Only the picture changes. Tags an encoder or muxer writes about itself (encoder, brands,
Matroska statistics) are left out: the output's own muxer writes true ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from vsr_desktop.core.errors import InputError

#: Tags that describe how a file was written, not what it holds; lower-case.
_WRITER_TAGS = frozenset(
    {
        "encoder",
        "major_brand",
        "minor_version",
        "compatible_brands",
        "duration",
        "number_of_frames",
        "number_of_bytes",
        "bps",
        "vendor_id",
        "encoder-eng",
    }
)
_WRITER_TAG_PREFIXES = ("_statistics_", "duration-", "bps-", "number_of_")
#: Handler names FFmpeg and Apple write by default: not titles, and noise in other containers.
_DEFAULT_HANDLERS = frozenset(
    {
        "videohandler",
        "soundhandler",
        "subtitlehandler",
        "timecodehandler",
        "datahandler",
        "core media video",
        "core media audio",
        "core media text",
        "alias data handler",
        "apple video media handler",
        "apple sound media handler",
        "gpac iso video handler",
        "gpac iso audio handler",
        "l-smash video handler",
        "l-smash audio handler",
    }
)

#: What `--audio-codec` accepts.
AUDIO_CODEC_CHOICES = ("auto", "copy", "aac", "alac", "flac", "opus", "pcm")

#: Lossless audio codecs: converted to a lossless codec wherever the container has one.
_LOSSLESS = frozenset(
    {"flac", "alac", "wavpack", "tta", "ape", "truehd", "mlp", "s302m", "pcm_bluray", "pcm_dvd"}
)

#: Codecs FFmpeg would mux but common players cannot play there (PCM in MP4 is written as
#: `ipcm`: noise or silence in QuickTime, browsers, most TVs; Vorbis in MP4 is not standard).
_UNPLAYABLE: dict[str, tuple[str, ...]] = {"mp4": ("pcm_", "vorbis"), "mov": ("vorbis",)}

#: What a track that must be converted becomes: lossless stays lossless where the
#: container has a lossless codec players know (WebM has none: Opus).
_LOSSLESS_TARGET = {
    "mp4": "alac",
    "mov": "alac",
    "matroska": "flac",
    "webm": "opus",
    "mxf": "pcm",
}
_LOSSY_TARGET = {"mp4": "aac", "mov": "aac", "matroska": "aac", "webm": "opus", "mxf": "pcm"}
#: The `--audio-codec` choices each container takes: what FFmpeg 8.1's muxers accept
#: (avformat_query_codec, as measured here), less what players cannot play there (PCM in MP4
#: is `ipcm`; QuickTime plays neither FLAC nor Opus in MOV).
_CONTAINER_AUDIO = {
    "mp4": {"aac", "alac", "flac", "opus"},
    "mov": {"aac", "alac", "pcm"},
    "matroska": {"aac", "alac", "flac", "opus", "pcm"},
    "webm": {"opus"},
    "mxf": {"pcm"},  # FFmpeg's MXF muxer writes 16/24-bit PCM at 48 kHz only
}

#: Text subtitles each container takes, in order of preference, for converting text tracks.
_TEXT_SUBTITLES = frozenset({"subrip", "ass", "ssa", "webvtt", "mov_text", "text"})
_SUBTITLE_TARGET = {"mp4": "mov_text", "mov": "mov_text", "matroska": "subrip", "webm": "webvtt"}


def copyable_metadata(metadata: dict[str, str]) -> dict[str, str]:
    """The tags worth carrying over: everything except what a writer says about itself."""
    kept = {}
    for key, value in metadata.items():
        low = key.lower()
        if low in _WRITER_TAGS or low.startswith(_WRITER_TAG_PREFIXES):
            continue
        if low == "handler_name" and value.strip().lower() in _DEFAULT_HANDLERS:
            continue
        kept[key] = value
    return kept


def is_pcm(codec: str) -> bool:
    return codec.startswith("pcm_")


def is_lossless(codec: str) -> bool:
    return is_pcm(codec) or codec in _LOSSLESS


@dataclass(frozen=True)
class TrackPlan:
    """How one audio or subtitle track reaches the output."""

    #: "copy" (packets bit-exact), "convert" (decode and encode to ``target``), or "drop".
    action: str
    target: str | None = None
    #: Why it is converted or dropped, for the note the user sees.
    reason: str = ""


def check_audio_codec(choice: str, container: str) -> None:
    """Refuse an `--audio-codec` the container cannot hold (or that would not play there).

    Job validation can call it so the refusal comes before any frame is upscaled.
    """
    if choice not in AUDIO_CODEC_CHOICES:
        raise InputError(
            f"unknown audio codec {choice!r}", f"choose one of {', '.join(AUDIO_CODEC_CHOICES)}"
        )
    if choice in ("auto", "copy"):
        return
    allowed = _CONTAINER_AUDIO.get(container)
    if allowed is not None and choice not in allowed:
        hint = {
            ("pcm", "mp4"): "PCM in MP4 plays as noise in common players: use alac (lossless) "
            "or a .mov/.mkv output",
        }.get((choice, container), f"use one of {', '.join(sorted(allowed))}, or another suffix")
        raise InputError(f"a {container} file cannot hold {choice} audio", hint)


def plan_audio(codec: str, container: str, choice: str = "auto") -> TrackPlan:
    """Copy when the container plays the codec; otherwise convert (lossless where it can)."""
    check_audio_codec(choice, container)
    if choice == "copy":
        return TrackPlan("copy")
    if choice != "auto":
        if codec == choice or (choice == "pcm" and is_pcm(codec)):
            return TrackPlan("copy")
        return TrackPlan("convert", choice, f"--audio-codec {choice}")
    if not _plays_in(codec, container):
        target = (_LOSSLESS_TARGET if is_lossless(codec) else _LOSSY_TARGET).get(container, "aac")
        where = {"matroska": "MKV", "webm": "WebM", "mp4": "MP4", "mov": "MOV"}.get(
            container, container
        )
        return TrackPlan("convert", target, f"{codec} does not play in {where}")
    return TrackPlan("copy")


def plan_subtitle(codec: str, container: str) -> TrackPlan:
    """Copy when the container holds the subtitle codec; convert text ones; drop pictures."""
    if _muxer_takes(codec, container):
        return TrackPlan("copy")
    if codec in _TEXT_SUBTITLES and container in _SUBTITLE_TARGET:
        target = _SUBTITLE_TARGET[container]
        return TrackPlan("convert", target, f"{container} holds no {codec} subtitles")
    return TrackPlan("drop", None, f"a {container} file cannot hold {codec} subtitles")


def _plays_in(codec: str, container: str) -> bool:
    if container == "mxf":
        return codec in ("pcm_s16le", "pcm_s24le")
    if any(codec.startswith(prefix) for prefix in _UNPLAYABLE.get(container, ())):
        return False
    return _muxer_takes(codec, container)


def _muxer_takes(codec: str, container: str) -> bool:
    """Whether FFmpeg's muxer accepts the codec (avformat_query_codec, as PyAV checks it)."""
    import io

    import av

    try:
        out = av.open(io.BytesIO(), "w", format=container)
    except (av.FFmpegError, ValueError):
        return False
    try:
        out.add_mux_stream(codec)
    except (av.FFmpegError, ValueError):
        return False
    finally:
        _close(out)
    return True


def _close(container: Any) -> None:
    import contextlib

    with contextlib.suppress(Exception):
        container.close()


def chapters_of(
    container: Any, start: Fraction = Fraction(0), end: Fraction | None = None, trim: bool = False
) -> list[dict[str, Any]]:
    """The source's chapters, in the form OutputContainer.set_chapters takes, moved back by
    `start` seconds (the output's 0 is the source's presentation start). With `trim` only
    the part from `start` to `end` (source seconds, None: the end) is kept: chapters outside
    it are left out, those across its edges clipped to it."""

    def moved(chapter: dict[str, Any], key: str) -> int:
        base = Fraction(chapter["time_base"])
        value = int(chapter[key])
        if trim and end is not None:
            value = min(value, round(end / base))
        shift = round(start / base) if start else 0
        return max(0, value - shift)

    def inside(chapter: dict[str, Any]) -> bool:
        base = Fraction(chapter["time_base"])
        begins, ends = int(chapter["start"]) * base, int(chapter["end"]) * base
        return ends > start and (end is None or begins < end)

    return [
        {
            "id": chapter["id"],
            "start": moved(chapter, "start"),
            "end": moved(chapter, "end"),
            "time_base": chapter["time_base"],
            "metadata": dict(chapter["metadata"]),
        }
        for chapter in container.chapters()
        if not trim or inside(chapter)
    ]


#: The ASS-style header FFmpeg's text subtitle encoders (mov_text, subrip, webvtt) need
#: before they open; only the default style is used.
TEXT_SUBTITLE_HEADER = (
    b"[Script Info]\nScriptType: v4.00+\nPlayResX: 384\nPlayResY: 288\n\n"
    b"[V4+ Styles]\nFormat: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, "
    b"OutlineColour, BackColour, Bold, Italic, Underline, StrikeOut, ScaleX, ScaleY, "
    b"Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, "
    b"MarginV, Encoding\nStyle: Default,Arial,16,&Hffffff,&Hffffff,&H0,&H0,0,0,0,0,100,"
    b"100,0,0,1,1,0,2,10,10,10,0\n\n[Events]\nFormat: Layer, Start, End, Style, Name, "
    b"MarginL, MarginR, MarginV, Effect, Text\n"
)


#: ISO 639-2 has two codes for 20 languages: bibliographic (B, what Matroska and TS files
#: mostly carry) and terminology (T). Both name the same language.
_ISO639_B_TO_T = {
    "alb": "sqi", "arm": "hye", "baq": "eus", "bur": "mya", "chi": "zho",
    "cze": "ces", "dut": "nld", "fre": "fra", "geo": "kat", "ger": "deu",
    "gre": "ell", "ice": "isl", "mac": "mkd", "mao": "mri", "may": "msa",
    "per": "fas", "rum": "ron", "slo": "slk", "tib": "bod", "wel": "cym",
}  # fmt: skip
#: The one form of each pair FFmpeg's MOV muxer knows (measured with FFmpeg 8.1: the other
#: form, "fre" or "deu", is dropped without a word). Maori it knows in neither.
_MOV_KNOWS_T = {"ces", "fra", "ron", "slk"}


def terminology_language(code: str) -> str:
    """The ISO 639-2/T form of a language code, for comparing: "fre" and "fra" are French."""
    return _ISO639_B_TO_T.get(code.lower(), code.lower())


def mov_language(code: str) -> str:
    """The form of `code` the MOV muxer writes (see _MOV_KNOWS_T)."""
    t = terminology_language(code)
    if t in _MOV_KNOWS_T:
        return t
    b = {v: k for k, v in _ISO639_B_TO_T.items()}.get(t)
    return b or code
