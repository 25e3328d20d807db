"""Make real encoded test footage from a still photo: a slow pan and zoom, with audio.

Used for the bundled sample clip and by the tests (H.264 with B-frames, AAC audio, odd sizes,
variable frame rate, 10-bit, subtitles) — real files, encoded the way cameras and editors do.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ClipSpec:
    """What kind of clip to make."""

    width: int = 320
    height: int = 180
    frames: int = 48
    fps: int = 24
    codec: str = "libx264"
    bframes: int = 3
    gop: int = 12
    audio: bool = True
    variable_frame_rate: bool = False
    ten_bit: bool = False
    subtitles: bool = False
    crf: int = 20
    rotation: int = 0  # display rotation (phone footage shot upright)
    bt709: bool = False  # tag BT.709 colour (HD footage) instead of leaving it unspecified
    #: Pixel aspect (num, den), e.g. (16, 15) for PAL 4:3 DV-style footage; None: square.
    sample_aspect_ratio: tuple[int, int] | None = None
    #: More audio tracks as (language, title); the first is default. Empty: one plain track.
    audio_tracks: tuple[tuple[str, str], ...] = ()
    audio_codec: str = "aac"
    title: str | None = None
    chapters: int = 0  # equal parts titled "Chapter N"
    timecode: str | None = None  # start timecode (a tmcd track in MOV/MP4)


def pan_zoom_frames(photo: np.ndarray, spec: ClipSpec) -> list[np.ndarray]:
    """Crop a window that drifts and tightens across the photo, resized to the clip size."""
    from PIL import Image

    src_h, src_w = photo.shape[:2]
    image = Image.fromarray(photo[..., :3].astype(np.uint8))
    aspect = spec.width / spec.height
    frames = []
    for i in range(spec.frames):
        t = i / max(spec.frames - 1, 1)
        zoom = 1.0 + 0.35 * t
        crop_w = min(src_w, src_h * aspect) / zoom
        crop_h = crop_w / aspect
        x0 = (src_w - crop_w) * (0.15 + 0.6 * t)
        y0 = (src_h - crop_h) * (0.3 + 0.2 * np.sin(np.pi * t))
        box = (x0, y0, x0 + crop_w, y0 + crop_h)
        frame = image.resize((spec.width, spec.height), Image.Resampling.BICUBIC, box=box)
        frames.append(np.asarray(frame))
    return frames


def _frame_pts(spec: ClipSpec, time_base: Fraction) -> list[int]:
    """Constant rate, or an irregular cadence (phone-style VFR) in the same time base."""
    tick = int(1 / (spec.fps * time_base))
    if not spec.variable_frame_rate:
        return [i * tick for i in range(spec.frames)]
    pattern = (1.0, 1.5, 0.75, 1.0, 2.0)
    pts, now = [], 0
    for i in range(spec.frames):
        pts.append(now)
        now += int(tick * pattern[i % len(pattern)])
    return pts


def make_clip(path: Path, photo: np.ndarray, spec: ClipSpec = ClipSpec()) -> Path:
    """Encode the clip to `path` (container from the suffix) and return the path."""
    import av

    time_base = Fraction(1, spec.fps * 60)
    pts_list = _frame_pts(spec, time_base)
    with av.open(str(path), "w") as container:
        options = {
            "crf": str(spec.crf),
            "preset": "veryfast",
            "bf": str(spec.bframes),
            "g": str(spec.gop),
            "keyint_min": str(spec.gop),
        }
        if spec.codec == "libx265":
            options = {
                "crf": str(spec.crf),
                "preset": "ultrafast",
                "x265-params": f"log-level=error:keyint={spec.gop}:bframes={spec.bframes}",
            }
        video: Any = container.add_stream(spec.codec, rate=spec.fps, options=options)
        video.width = spec.width
        video.height = spec.height
        video.pix_fmt = "yuv420p10le" if spec.ten_bit else "yuv420p"
        video.time_base = time_base
        video.codec_context.time_base = time_base
        if spec.rotation:
            video.set_display_rotation(spec.rotation)
        if spec.bt709:
            video.codec_context.color_primaries = 1
            video.codec_context.color_trc = 1
            video.codec_context.colorspace = 1
        if spec.sample_aspect_ratio:
            video.codec_context.sample_aspect_ratio = Fraction(*spec.sample_aspect_ratio)
        if spec.timecode:
            video.metadata["timecode"] = spec.timecode
        tracks = spec.audio_tracks or ((("", ""),) if spec.audio else ())
        mp4 = path.suffix.lower() in (".mp4", ".m4v", ".mov")
        audio = [
            _add_audio_stream(container, spec.audio_codec, i, *track, mp4=mp4)
            for i, track in enumerate(tracks)
        ]
        subtitle: Any = _add_subtitle_stream(container) if spec.subtitles else None
        duration = float(pts_list[-1] * time_base) + 1 / spec.fps
        _set_container_tags(container, spec, duration)
        for pts, rgb in zip(pts_list, pan_zoom_frames(photo, spec), strict=True):
            if spec.ten_bit:
                frame = av.VideoFrame.from_ndarray(rgb.astype(np.uint16) * 257, format="rgb48le")
            else:
                frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = pts
            frame.time_base = time_base
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        for stream in audio:
            _write_tone(container, stream, duration)
        if subtitle is not None:
            _write_subtitles(container, subtitle, duration)
    return path


def _add_audio_stream(
    container: Any, codec: str, index: int, language: str, title: str, *, mp4: bool
) -> Any:
    stream: Any = container.add_stream(codec, rate=48000)
    stream.layout = "stereo"
    if language:
        stream.metadata["language"] = language
    if title:
        # MP4/MOV keep a track's title only as its handler name (as HandBrake writes it).
        stream.metadata["handler_name" if mp4 else "title"] = title
    if language or title:
        import av

        stream.disposition = av.stream.Disposition.default if index == 0 else 0
    return stream


def _set_container_tags(container: Any, spec: ClipSpec, duration: float) -> None:
    if spec.title:
        container.metadata["title"] = spec.title
    if spec.chapters:
        step = Fraction(duration).limit_denominator(1000) / spec.chapters
        container.set_chapters(
            [
                {
                    "id": i + 1,
                    "start": round(i * step * 1000),
                    "end": round((i + 1) * step * 1000),
                    "time_base": Fraction(1, 1000),
                    "metadata": {"title": f"Chapter {i + 1}"},
                }
                for i in range(spec.chapters)
            ]
        )


def _write_tone(container: Any, stream: Any, seconds: float) -> None:
    """A two-tone chirp, so shifted audio would not look identical to the original."""
    import av

    rate = 48000
    samples = int(seconds * rate)
    t = np.arange(samples) / rate
    left = 0.2 * np.sin(2 * np.pi * (330 + 40 * t) * t)
    right = 0.2 * np.sin(2 * np.pi * 550 * t)
    pcm = np.stack([left, right]).astype(np.float32)
    ctx = stream.codec_context
    if not ctx.is_open:
        ctx.open()
    # Whatever sample format and frame size the encoder takes (AAC 1024, FLAC 4608, PCM any).
    resampler = av.AudioResampler(
        format=ctx.format, layout="stereo", rate=rate, frame_size=ctx.frame_size or None
    )
    block = 1024
    for start in range(0, samples + block, block):
        frame: Any = None
        if start < samples:
            chunk = np.ascontiguousarray(pcm[:, start : start + block])
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
            frame.sample_rate = rate
            frame.pts = start
            frame.time_base = Fraction(1, rate)
        for out in resampler.resample(frame):
            container.mux(stream.encode(out))
    container.mux(stream.encode(None))


def _add_subtitle_stream(container: Any) -> Any:
    stream: Any = container.add_stream("subrip")
    stream.codec_context.time_base = Fraction(1, 1000)
    # FFmpeg refuses to open a text subtitle stream without an (ASS-style) header.
    stream.codec_context.subtitle_header = (
        b"[Script Info]\nScriptType: v4.00+\n\n[V4+ Styles]\n"
        b"Format: Name, Fontname, Fontsize\nStyle: Default,Arial,16\n\n"
        b"[Events]\nFormat: Layer, Start, End, Style, Text\n"
    )
    stream.time_base = Fraction(1, 1000)
    return stream


def _write_subtitles(container: Any, stream: Any, seconds: float) -> None:
    import av

    for i, start in enumerate(np.arange(0.0, seconds, 1.0)):
        packet = av.Packet(f"Line {i + 1}".encode())
        packet.pts = packet.dts = int(start * 1000)
        packet.duration = 800
        packet.time_base = Fraction(1, 1000)
        packet.stream = stream
        container.mux(packet)
