"""Convert an audio or text subtitle track the output container cannot carry as it is.

Audio is decoded, resampled to what the encoder takes and encoded, keeping the source's
start time to the sample (the encoder's priming goes into an edit list, as FFmpeg does).
Text subtitles keep their cues and timing; styling that the target format lacks is dropped.
"""

from __future__ import annotations

import re
import struct
from fractions import Fraction
from typing import Any

from vsr_desktop.core.errors import MediaError
from vsr_desktop.core.media.tracks import TEXT_SUBTITLE_HEADER

#: Sample rates the AAC encoder takes; others are resampled to 48 kHz.
_AAC_RATES = frozenset({96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000})
_OPUS_RATES = frozenset({48000, 24000, 16000, 12000, 8000})
#: FFmpeg's default layout for a channel count (av_channel_layout_default).
_DEFAULT_LAYOUTS = {
    1: "mono",
    2: "stereo",
    3: "2.1",
    4: "4.0",
    5: "5.0",
    6: "5.1",
    7: "6.1",
    8: "7.1",
}


def _bits_of(ctx: Any) -> int:
    """Bits per sample of the decoded source (24 for 24-bit PCM held in 32-bit samples)."""
    name = ctx.name
    if name in ("pcm_s16le", "pcm_s16be", "pcm_u8", "pcm_s8") or ctx.format.name.startswith(
        ("s16", "u8")
    ):
        return 16
    return 24


def audio_encoder_settings(target: str, ctx: Any) -> tuple[str, str, int, int]:
    """(encoder, sample format, sample rate, bit rate) for converting to `target`."""
    rate = int(ctx.sample_rate or 48000)
    channels = max(1, int(ctx.channels or 2))
    bits = _bits_of(ctx)
    lossy_rate = max(128_000, 64_000 * channels)
    if target == "aac":
        return "aac", "fltp", rate if rate in _AAC_RATES else 48000, min(lossy_rate, 512_000)
    if target == "opus":
        return "libopus", "flt", rate if rate in _OPUS_RATES else 48000, min(lossy_rate, 510_000)
    if target == "alac":
        return "alac", "s16p" if bits <= 16 else "s32p", rate, 0
    if target == "flac":
        return "flac", "s16" if bits <= 16 else "s32", rate, 0
    if target == "pcm":
        return ("pcm_s16le", "s16", rate, 0) if bits <= 16 else ("pcm_s24le", "s32", rate, 0)
    raise ValueError(f"no audio encoder for {target!r}")


class AudioConverter:
    """Decode one source audio stream and encode it into a new stream of `out`."""

    def __init__(self, out: Any, source_stream: Any, target: str) -> None:
        import av

        self._decoder = source_stream.codec_context
        encoder, sample_format, rate, bit_rate = audio_encoder_settings(target, self._decoder)
        layout = self._decoder.layout
        channels = int(self._decoder.channels or 2)
        if layout.name.endswith("channels") and channels in _DEFAULT_LAYOUTS:
            # An unordered layout (PCM in Matroska): encoders want a named one.
            layout = av.AudioLayout(_DEFAULT_LAYOUTS[channels])
        stream: Any = out.add_stream(encoder, rate=rate)
        stream.layout = layout
        stream.format = sample_format
        if bit_rate:
            stream.bit_rate = bit_rate
        stream.time_base = Fraction(1, rate)
        stream.codec_context.time_base = Fraction(1, rate)
        try:
            # Opened now so its frame size is known (AAC 1024, ALAC 4096, Opus 960).
            stream.codec_context.open()
        except av.FFmpegError as exc:
            raise MediaError(
                f"cannot start the {encoder} encoder for audio stream {source_stream.index} "
                f"({layout.name}, {rate} Hz): {exc}",
                "choose another --audio-codec, or an .mkv output that copies it",
            ) from exc
        self.stream = stream
        self._rate = rate
        frame_size = int(stream.codec_context.frame_size or 0)
        self._resampler = av.AudioResampler(
            format=sample_format, layout=layout, rate=rate, frame_size=frame_size or None
        )
        self._next_pts: int | None = None

    def convert(self, packet: Any | None) -> list[Any]:
        """Encoded packets for one source packet (None flushes everything)."""
        out = []
        for frame in self._decoder.decode(packet):
            if self._next_pts is None:
                # The first decoded sample's time; the encoder's frames follow it contiguously.
                start = frame.pts * frame.time_base if frame.pts is not None else 0
                self._next_pts = round(start * self._rate)
            out.extend(self._encode_frames(self._resampler.resample(frame)))
        if packet is None:
            out.extend(self._encode_frames(self._resampler.resample(None)))
            out.extend(self.stream.encode(None))
        return out

    def _encode_frames(self, frames: list[Any]) -> list[Any]:
        packets = []
        for frame in frames:
            if self._next_pts is None:
                self._next_pts = 0
            # Contiguous sample counts: the source's start is kept to the sample.
            frame.pts = self._next_pts
            frame.time_base = Fraction(1, self._rate)
            self._next_pts += frame.samples
            packets.extend(self.stream.encode(frame))
        return packets


_HTML_TAG = re.compile(r"</?[a-zA-Z][^>]*>")
_ASS_OVERRIDE = re.compile(r"\{[^}]*\}")


def subtitle_text(payload: bytes, codec: str) -> str:
    """The plain text of one subtitle packet (styling removed)."""
    if codec == "mov_text":
        if len(payload) < 2:
            return ""
        (length,) = struct.unpack(">H", payload[:2])
        return payload[2 : 2 + length].decode("utf-8", "replace")
    text = payload.decode("utf-8", "replace")
    if codec in ("ass", "ssa"):
        # Matroska/FFmpeg ASS packets: ReadOrder,Layer,Style,Name,MarginL,MarginR,MarginV,
        # Effect,Text — the text is everything after the eighth comma.
        parts = text.split(",", 8)
        text = parts[8] if len(parts) == 9 else text
        text = _ASS_OVERRIDE.sub("", text).replace("\\N", "\n").replace("\\n", "\n")
        text = text.replace("\\h", " ")
    return _HTML_TAG.sub("", text).replace("\r\n", "\n").strip()


def subtitle_payload(text: str, target: str) -> bytes:
    data = text.encode("utf-8")
    if target == "mov_text":
        return struct.pack(">H", len(data)) + data
    return data


class SubtitleConverter:
    """Rewrite the cues of one text subtitle stream in the format the container holds."""

    def __init__(self, out: Any, source_stream: Any, target: str) -> None:
        self._source_codec = source_stream.codec_context.name
        self._target = target
        stream: Any = out.add_stream(target)
        time_base = source_stream.time_base or Fraction(1, 1000)
        stream.codec_context.time_base = time_base
        # FFmpeg's text subtitle encoders refuse to open without an ASS-style header.
        stream.codec_context.subtitle_header = TEXT_SUBTITLE_HEADER
        stream.time_base = time_base
        self.stream = stream

    def convert(self, packet: Any | None) -> list[Any]:
        import av

        if packet is None or packet.pts is None:
            return []
        text = subtitle_text(bytes(packet), self._source_codec)
        if not text:
            return []
        converted = av.Packet(subtitle_payload(text, self._target))
        converted.pts = packet.pts
        converted.dts = packet.dts if packet.dts is not None else packet.pts
        converted.duration = packet.duration
        converted.time_base = packet.time_base
        converted.stream = self.stream
        return [converted]
