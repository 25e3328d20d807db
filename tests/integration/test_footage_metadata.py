"""Issue 15: everything but the picture comes through the real pipeline, on files made by
another tool (Debian's ffmpeg) and by PyAV, checked with ffprobe (never with our writer).

Tracks keep language, title and dispositions; chapters, the title, the timecode and
Matroska fonts are kept; audio a container cannot play is converted with a note and stays
in sync; headers declare the source's frame rate; the pixel aspect ratio survives.
"""

from __future__ import annotations

import subprocess
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from tests.conftest import ClipFactory
from tests.helpers.footage import (
    FFMPEG,
    ffmpeg,
    ffprobe,
    local_upscale,
    needs_ffmpeg,
    streams,
)
from vsr_desktop.core.media import EncodeSettings, probe

SRT = (
    "1\n00:00:00,100 --> 00:00:00,600\n<i>Hello</i> there\n\n"
    "2\n00:00:00,700 --> 00:00:00,900\nBye\n"
)
CHAPTERS = (
    ";FFMETADATA1\ntitle=Rich Film\n"
    "[CHAPTER]\nTIMEBASE=1/1000\nSTART=0\nEND=500\ntitle=Opening\n"
    "[CHAPTER]\nTIMEBASE=1/1000\nSTART=500\nEND=1000\ntitle=Ending\n"
)


def flags(stream: dict[str, Any]) -> set[str]:
    return {name for name, on in stream.get("disposition", {}).items() if on}


def tag(entry: dict[str, Any], key: str) -> str | None:
    return next((v for k, v in entry.get("tags", {}).items() if k.lower() == key), None)


VIDEO_1S = ("-f", "lavfi", "-i", "testsrc2=size=48x32:rate=24:duration=1")
X264 = ("-c:v", "libx264", "-preset", "ultrafast", "-g", "8")


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder for the ffmpeg-made sources of this module."""
    return tmp_path_factory.mktemp("ffmpeg_sources")


@pytest.fixture(scope="module")
def rich_mkv(made: Path) -> Path:
    """Two audio tracks (eng "Main" default, fre "Commentary" comment), a forced subtitle,
    two chapters, a title and an attached font: a typical Blu-ray rip."""
    if FFMPEG is None:
        pytest.skip("ffmpeg CLI missing")
    (made / "subs.srt").write_text(SRT)
    (made / "meta.txt").write_text(CHAPTERS)
    (made / "font.ttf").write_bytes(bytes(range(256)) * 8)
    out = made / "rich.mkv"
    ffmpeg(
        *VIDEO_1S,
        *("-f", "lavfi", "-i", "sine=f=440:r=48000:d=1"),
        *("-f", "lavfi", "-i", "sine=f=660:r=48000:d=1"),
        *("-i", made / "subs.srt", "-i", made / "meta.txt"),
        *("-map", "0", "-map", "1", "-map", "2", "-map", "3"),
        *("-map_metadata", "4", "-map_chapters", "4"),
        *X264,
        *("-c:a", "aac", "-c:s", "srt"),
        *("-metadata:s:a:0", "language=eng", "-metadata:s:a:0", "title=Main"),
        *("-metadata:s:a:1", "language=fre", "-metadata:s:a:1", "title=Commentary"),
        *("-metadata:s:s:0", "language=eng", "-metadata:s:s:0", "title=Signs"),
        *("-disposition:a:0", "default", "-disposition:a:1", "comment"),
        *("-disposition:s:0", "forced"),
        *("-attach", made / "font.ttf", "-metadata:s:t", "mimetype=application/x-truetype-font"),
        out,
    )
    return out


def _check_tracks(data: dict[str, Any], title_key: str) -> None:
    audio = streams(data, "audio")
    assert [tag(a, "language") for a in audio] == ["eng", "fre"]
    assert [tag(a, title_key) for a in audio] == ["Main", "Commentary"]
    assert "default" in flags(audio[0]) and "default" not in flags(audio[1])
    assert "comment" in flags(audio[1])
    (subtitle,) = streams(data, "subtitle")
    assert tag(subtitle, "language") == "eng" and tag(subtitle, title_key) == "Signs"
    assert "forced" in flags(subtitle)
    chapters = data["chapters"]
    assert [tag(c, "title") for c in chapters] == ["Opening", "Ending"]
    assert [float(c["start_time"]) for c in chapters] == [0.0, 0.5]
    assert tag(data["format"], "title") == "Rich Film"


@needs_ffmpeg
def test_tracks_chapters_title_and_fonts_survive_into_mkv(rich_mkv: Path, tmp_path: Path) -> None:
    output = tmp_path / "out.mkv"
    job = local_upscale(rich_mkv, output, tmp_path)
    data = ffprobe(output)
    _check_tracks(data, "title")
    (font,) = streams(data, "attachment")
    assert tag(font, "filename") == "font.ttf"
    assert tag(font, "mimetype") == "application/x-truetype-font"
    with av.open(str(output)) as container:
        assert container.streams.attachments[0].data == bytes(range(256)) * 8
    # Writer tags are the output's own, not copies of the source's.
    assert tag(streams(data, "audio")[0], "encoder") is None
    assert job.message == "verified: nothing but the picture changed"  # no note, nothing lost


@needs_ffmpeg
def test_mkv_to_mp4_converts_text_subtitles_and_says_what_it_left(
    rich_mkv: Path, tmp_path: Path
) -> None:
    output = tmp_path / "out.mp4"
    job = local_upscale(rich_mkv, output, tmp_path)
    data = ffprobe(output)
    # FFmpeg's MP4 muxer stores a track's title only as its handler name.
    _check_tracks(data, "handler_name")
    assert streams(data, "subtitle")[0]["codec_name"] == "mov_text"
    cues = subprocess.run(
        [FFMPEG or "ffmpeg", "-v", "error", "-i", str(output), "-map", "0:s", "-f", "srt", "-"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    source_cues = subprocess.run(
        [FFMPEG or "ffmpeg", "-v", "error", "-i", str(rich_mkv), "-map", "0:s", "-f", "srt", "-"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert cues == source_cues.replace("<i>Hello</i>", "Hello")
    assert "subtitle stream 3 (subrip) converted to mov_text" in job.message
    assert "attachment" in job.message and ".mkv" in job.message


@needs_ffmpeg
def test_mp4_track_names_become_mkv_titles(rich_mkv: Path, tmp_path: Path) -> None:
    """An MP4 keeps track names as handler names; into MKV they become real titles, and
    its mov_text subtitles become SubRip."""
    source = tmp_path / "rich.mp4"
    ffmpeg(
        *("-i", rich_mkv, "-map", "0:v", "-map", "0:a", "-map", "0:s", "-c", "copy"),
        *("-c:s", "mov_text", "-map_chapters", "0"),
        *("-metadata:s:a:0", "handler_name=Main", "-metadata:s:a:1", "handler_name=Commentary"),
        *("-metadata:s:s:0", "handler_name=Signs"),
        source,
    )
    output = tmp_path / "out.mkv"
    job = local_upscale(source, output, tmp_path)
    data = ffprobe(output)
    _check_tracks(data, "title")
    assert streams(data, "subtitle")[0]["codec_name"] == "subrip"
    assert "(mov_text) converted to subrip" in job.message


@needs_ffmpeg
@pytest.mark.parametrize("suffix", [".mov", ".mkv"])
def test_prores_mov_timecode_is_kept(made: Path, tmp_path: Path, suffix: str) -> None:
    source = made / "tape.mov"
    if not source.exists():
        ffmpeg(
            *("-f", "lavfi", "-i", "testsrc2=size=48x32:rate=25:duration=0.6"),
            *("-c:v", "prores_ks", "-profile:v", "0", "-timecode", "01:00:00:00"),
            source,
        )
    assert probe(source).timecode == "01:00:00:00"
    output = tmp_path / f"out{suffix}"
    local_upscale(source, output, tmp_path)
    data = ffprobe(output)
    (video,) = streams(data, "video")
    assert tag(video, "timecode") == "01:00:00:00"
    if suffix == ".mov":
        (tmcd,) = streams(data, "data")
        assert tmcd["codec_tag_string"] == "tmcd" and tag(tmcd, "timecode") == "01:00:00:00"
        assert Fraction(tmcd["avg_frame_rate"]) == 25  # the timecode counts the right frames


@needs_ffmpeg
@pytest.mark.parametrize(("suffix", "codec"), [(".mp4", "h264"), (".mkv", "h264"), (".mkv", "vp9")])
def test_pixel_aspect_ratio_is_kept(made: Path, tmp_path: Path, suffix: str, codec: str) -> None:
    """88x72 at SAR 16:15 shows at 1.30:1; square pixels would show 1.22:1."""
    source = made / "pal.mp4"
    if not source.exists():
        ffmpeg(
            *("-f", "lavfi", "-i", "testsrc2=size=88x72:rate=25:duration=0.48"),
            *("-vf", "setsar=16/15", *X264),
            source,
        )
    assert probe(source).video.sample_aspect_ratio == Fraction(16, 15)
    output = tmp_path / f"out{suffix}"
    local_upscale(source, output, tmp_path, codec=codec)
    (video,) = streams(ffprobe(output), "video")
    assert (video["width"], video["height"]) == (176, 144)
    assert video["sample_aspect_ratio"] == "16:15"
    assert video["display_aspect_ratio"] == "176:135"


def test_pixel_aspect_of_a_pyav_clip_reaches_webm(
    clip_factory: ClipFactory, tmp_path: Path
) -> None:
    """VP9 has no SAR of its own: WebM must carry it in its header (whole display pixels)."""
    source = clip_factory(".mp4", width=88, height=72, frames=12, sample_aspect_ratio=(16, 15))
    output = tmp_path / "out.webm"
    local_upscale(source, output, tmp_path, codec="vp9")
    with av.open(str(output)) as container:
        video = container.streams.video[0]
        sar, width, height = video.sample_aspect_ratio, video.width, video.height
    assert (width, height) == (176, 144)
    assert sar is not None and abs(float(sar * width / height) - 176 / 135) < 0.005


@needs_ffmpeg
@pytest.mark.parametrize(
    ("source_suffix", "rate", "output_suffix"),
    [
        (".mkv", "24", ".mkv"),
        (".mkv", "30000/1001", ".webm"),
        (".mp4", "30000/1001", ".mp4"),
        (".mkv", "24", ".mp4"),
        (".ts", "25", ".mkv"),
    ],
)
def test_cfr_headers_declare_the_source_rate(
    made: Path, tmp_path: Path, source_suffix: str, rate: str, output_suffix: str
) -> None:
    source = made / f"cfr_{rate.replace('/', '_')}{source_suffix}"
    if not source.exists():
        ffmpeg("-f", "lavfi", "-i", f"testsrc2=size=48x32:rate={rate}:duration=0.9", *X264, source)
    output = tmp_path / f"out{output_suffix}"
    local_upscale(source, output, tmp_path, codec="vp9" if output_suffix == ".webm" else "h264")
    (src,) = streams(ffprobe(source), "video")
    data = ffprobe(output)
    (out,) = streams(data, "video")
    assert Fraction(out["avg_frame_rate"]) == Fraction(rate)
    assert Fraction(out["r_frame_rate"]) == Fraction(rate)
    assert Fraction(src["r_frame_rate"]) == Fraction(rate)
    src_info, out_info = probe(source), probe(output)
    assert out_info.video.frame_count == src_info.video.frame_count
    frame = 1 / float(Fraction(rate))
    assert abs(out_info.video.duration_seconds - src_info.video.duration_seconds) < frame
    if source_suffix != ".ts":  # a TS starts at 1.4 s: where the output starts is item 1's
        assert abs(float(data["format"]["duration"]) - src_info.video.duration_seconds) <= frame


def _decoded_audio(path: Path) -> tuple[float, int, np.ndarray]:
    """First sample's time, the rate, and the first channel as float samples."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        first: float | None = None
        parts = []
        for frame in container.decode(stream):
            if first is None:
                first = float(frame.pts * frame.time_base)
            data = frame.to_ndarray()
            rows = data if frame.format.is_planar else data.reshape(frame.samples, -1).T
            parts.append(rows[0].astype(np.float64))
        return first or 0.0, stream.codec_context.sample_rate, np.concatenate(parts)


def _audio_offset_seconds(source: Path, output: Path) -> float:
    """How much later the output plays the same sound than the source (noise, so one lag
    fits)."""
    t0, rate, a = _decoded_audio(source)
    t1, rate_out, b = _decoded_audio(output)
    assert rate_out == rate
    a, b = a / np.abs(a).max(), b / np.abs(b).max()
    window = a[2000:6000]
    lags = range(-1500, 1500)
    lag = min(lags, key=lambda k: float(np.mean((b[2000 + k : 6000 + k] - window) ** 2)))
    return (t1 + (2000 + lag) / rate) - (t0 + 2000 / rate)


@needs_ffmpeg
def test_pcm_in_mov_becomes_lossless_alac_in_mp4(made: Path, tmp_path: Path) -> None:
    source = made / "pcm.mov"
    ffmpeg(
        *VIDEO_1S,
        *("-f", "lavfi", "-i", "anoisesrc=d=1:c=pink:r=48000:a=0.3"),
        *X264,
        *("-c:a", "pcm_s16le", "-metadata:s:a:0", "language=eng"),
        source,
    )
    output = tmp_path / "out.mp4"
    job = local_upscale(source, output, tmp_path)
    (audio,) = streams(ffprobe(output), "audio")
    assert audio["codec_name"] == "alac" and tag(audio, "language") == "eng"
    assert "audio stream 1 (pcm_s16le) converted to alac" in job.message
    _, _, before = _decoded_audio(source)
    _, _, after = _decoded_audio(output)
    assert np.array_equal(before, after)  # lossless, sample for sample
    assert abs(_audio_offset_seconds(source, output)) < 1e-3


@needs_ffmpeg
def test_vorbis_in_mkv_becomes_aac_in_mp4_in_sync(made: Path, tmp_path: Path) -> None:
    source = made / "vorbis.mkv"
    ffmpeg(
        *VIDEO_1S,
        *("-f", "lavfi", "-i", "anoisesrc=d=1:c=pink:r=44100:a=0.3"),
        *X264,
        *("-c:a", "libvorbis"),
        source,
    )
    output = tmp_path / "out.mp4"
    job = local_upscale(source, output, tmp_path)
    (audio,) = streams(ffprobe(output), "audio")
    assert audio["codec_name"] == "aac" and audio["codec_tag_string"] == "mp4a"
    assert "audio stream 1 (vorbis) converted to aac" in job.message
    # Within a millisecond: far inside one audio frame (1024 samples = 23 ms).
    assert abs(_audio_offset_seconds(source, output)) < 1e-3


def test_pyav_clip_with_tracks_timecode_and_chapters_into_mov(
    clip_factory: ClipFactory, tmp_path: Path
) -> None:
    source = clip_factory(
        ".mov",
        width=48,
        height=32,
        frames=12,
        audio_tracks=(("eng", "Main"), ("ger", "Kommentar")),
        audio_codec="pcm_s16le",
        title="Synth",
        chapters=2,
        timecode="10:00:00:00",
    )
    output = tmp_path / "out.mov"
    job = local_upscale(source, output, tmp_path)
    data = ffprobe(output)
    audio = streams(data, "audio")
    assert [a["codec_name"] for a in audio] == ["pcm_s16le", "pcm_s16le"]  # MOV plays PCM
    assert [tag(a, "language") for a in audio] == ["eng", "ger"]
    assert [tag(a, "handler_name") for a in audio] == ["Main", "Kommentar"]
    assert [tag(c, "title") for c in data["chapters"]] == ["Chapter 1", "Chapter 2"]
    assert tag(data["format"], "title") == "Synth"
    assert tag(streams(data, "video")[0], "timecode") == "10:00:00:00"
    assert job.message == "verified: nothing but the picture changed"  # no note, nothing lost


def test_audio_codec_choice_reaches_the_merge(clip_factory: ClipFactory, tmp_path: Path) -> None:
    """`--audio-codec flac` (merge_job's audio_codec) converts AAC to FLAC in MKV."""
    from vsr_desktop.core.media import ChunkEncoder, iter_frames
    from vsr_desktop.core.plan import plan_chunks
    from vsr_desktop.worker.merge import merge_job

    source = clip_factory(".mkv", width=48, height=32, frames=12)
    info = probe(source)
    plan = plan_chunks(info.video, 100.0)
    chunk = tmp_path / "chunk.mkv"
    encoder = ChunkEncoder(
        chunk,
        EncodeSettings(preset="ultrafast"),
        container_format="matroska",
        width=48,
        height=32,
        time_base=info.video.time_base,
        rate=info.video.header_rate(),
        source_bit_depth=8,
        color=info.video.color,
        pts_offset=info.video.frame_pts[0],
    )
    for frame in iter_frames(source, info.video.index, info.video.frame_pts[:12]):
        encoder.write(frame.pts, frame.rgb)
    encoder.close()
    output = tmp_path / "out.mkv"
    notes = merge_job(info, plan, [chunk], output, audio_codec="flac")
    (audio,) = streams(ffprobe(output), "audio")
    assert audio["codec_name"] == "flac"
    assert notes == ["audio stream 1 (aac) converted to flac: --audio-codec flac"]


@needs_ffmpeg
def test_a_bibliographic_language_code_survives_into_mov(rich_mkv: Path, tmp_path: Path) -> None:
    """Matroska writes "fre"; the MOV muxer knows only "fra" and dropped the language."""
    output = tmp_path / "out.mov"
    job = local_upscale(rich_mkv, output, tmp_path)
    audio = streams(ffprobe(output), "audio")
    assert [tag(a, "language") for a in audio] == ["eng", "fra"]  # "fre" would be dropped
    assert "language" not in job.message  # the same language: no difference reported
