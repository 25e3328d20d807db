"""Issue 15's rules without files: header rates, the output timeline, pixel aspect, which
tracks are copied or converted, which tags are carried, subtitle text conversion."""

from __future__ import annotations

import itertools
import struct
from fractions import Fraction

import pytest

from vsr_desktop.core.errors import InputError
from vsr_desktop.core.media.convert import subtitle_payload, subtitle_text
from vsr_desktop.core.media.encode import display_size, output_sample_aspect_ratio
from vsr_desktop.core.media.probe import (
    MediaInfo,
    StreamInfo,
    VideoInfo,
    media_info_from_json,
    media_info_to_json,
)
from vsr_desktop.core.media.timeline import output_timeline
from vsr_desktop.core.media.tracks import (
    check_audio_codec,
    copyable_metadata,
    plan_audio,
    plan_subtitle,
)


def _video(pts: list[int], time_base: Fraction, rate: Fraction, **extra: object) -> VideoInfo:
    return VideoInfo(
        index=0,
        codec="h264",
        width=48,
        height=32,
        pix_fmt="yuv420p",
        bit_depth=8,
        time_base=time_base,
        average_rate=rate,
        frame_pts=tuple(pts),
        keyframe_pts=(pts[0],),
        **extra,  # type: ignore[arg-type]
    )


def _ms_grid(rate: Fraction, frames: int, start_ms: int = 0) -> list[int]:
    """What a Matroska file stores for a CFR stream: the grid rounded to milliseconds."""
    return [start_ms + round(i * 1000 / rate) for i in range(frames)]


def test_header_rate_trusts_a_declared_rate_the_timestamps_agree_with() -> None:
    ntsc = Fraction(24000, 1001)
    video = _video(_ms_grid(ntsc, 48), Fraction(1, 1000), ntsc)
    assert video.header_rate() == ntsc


def test_header_rate_ignores_a_time_base_posing_as_the_rate() -> None:
    """An MKV written without a rate declares 1000 fps; the timestamps say 29.97."""
    ntsc = Fraction(30000, 1001)
    video = _video(_ms_grid(ntsc, 30), Fraction(1, 1000), Fraction(1000))
    assert video.header_rate() == ntsc


def test_header_rate_of_vfr_is_its_measured_average() -> None:
    pts = [0, 40, 100, 130, 200, 240]
    video = _video(pts, Fraction(1, 1000), Fraction(1000))
    assert video.is_variable_frame_rate
    assert video.header_rate() == Fraction(5, 240) * 1000


def test_timeline_snaps_rounded_milliseconds_onto_the_exact_grid_for_mp4() -> None:
    video = _video(_ms_grid(Fraction(24), 24, start_ms=21), Fraction(1, 1000), Fraction(24))
    line = output_timeline(video, "mp4")
    assert line.snaps_to_grid and line.time_base == Fraction(1, 3000)
    out = [line.to_output(p) for p in video.frame_pts]
    assert out[0] == 63  # 21 ms: the first frame does not move
    assert {b - a for a, b in itertools.pairwise(out)} == {125}  # exactly 1/24 s
    for pts, mapped in zip(video.frame_pts, out, strict=True):
        assert abs(mapped * line.time_base - pts * video.time_base) <= video.time_base


def test_timeline_keeps_timestamps_that_need_no_snapping() -> None:
    exact = _video([i * 512 for i in range(24)], Fraction(1, 12288), Fraction(24))
    assert not output_timeline(exact, "mp4").snaps_to_grid
    mkv = _video(_ms_grid(Fraction(24), 24), Fraction(1, 1000), Fraction(24))
    assert not output_timeline(mkv, "matroska").snaps_to_grid  # milliseconds either way
    vfr = _video([0, 40, 100, 130, 200, 240], Fraction(1, 1000), Fraction(24))
    assert not output_timeline(vfr, "mp4").snaps_to_grid


def test_output_sar_keeps_the_display_aspect() -> None:
    sar = Fraction(16, 15)
    assert output_sample_aspect_ratio(sar, (88, 72), (176, 144)) == sar
    assert output_sample_aspect_ratio(None, (88, 72), (176, 144)) is None
    assert output_sample_aspect_ratio(Fraction(1), (88, 72), (176, 144)) is None
    rounded = output_sample_aspect_ratio(sar, (87, 71), (174, 142))
    assert rounded is not None and rounded * 174 / 142 == sar * 87 / 71
    odd = output_sample_aspect_ratio(Fraction(65521, 65519), (97, 71), (388, 282))
    assert odd is not None and max(odd.numerator, odd.denominator) <= 65535
    assert display_size(176, 144, sar) == (188, 144)


@pytest.mark.parametrize(
    ("codec", "container", "action", "target"),
    [
        ("pcm_s16le", "mp4", "convert", "alac"),
        ("pcm_s24le", "mp4", "convert", "alac"),
        ("vorbis", "mp4", "convert", "aac"),
        ("vorbis", "mov", "convert", "aac"),
        ("aac", "webm", "convert", "opus"),
        ("flac", "webm", "convert", "opus"),
        ("pcm_s16le", "mov", "copy", None),
        ("pcm_s16le", "matroska", "copy", None),
        ("vorbis", "matroska", "copy", None),
        ("aac", "mp4", "copy", None),
        ("opus", "webm", "copy", None),
    ],
)
def test_audio_is_copied_where_it_plays_and_converted_where_not(
    codec: str, container: str, action: str, target: str | None
) -> None:
    plan = plan_audio(codec, container)
    assert (plan.action, plan.target) == (action, target)
    if action == "convert":
        assert codec in plan.reason


def test_an_audio_codec_choice_converts_unless_already_that_codec() -> None:
    assert plan_audio("aac", "matroska", "flac").target == "flac"
    assert plan_audio("flac", "matroska", "flac").action == "copy"
    assert plan_audio("pcm_s24le", "mov", "pcm").action == "copy"
    assert plan_audio("pcm_s16le", "mp4", "copy").action == "copy"
    with pytest.raises(InputError, match="cannot hold pcm") as info:
        check_audio_codec("pcm", "mp4")
    assert "alac" in (info.value.hint or "")
    with pytest.raises(InputError, match="cannot hold aac"):
        check_audio_codec("aac", "webm")
    with pytest.raises(InputError, match="unknown audio codec"):
        check_audio_codec("mp3", "mp4")


def test_text_subtitles_are_converted_and_pictures_dropped_with_a_reason() -> None:
    assert plan_subtitle("subrip", "mp4").target == "mov_text"
    assert plan_subtitle("ass", "mov").target == "mov_text"
    assert plan_subtitle("mov_text", "matroska").target == "subrip"
    assert plan_subtitle("subrip", "webm").target == "webvtt"
    assert plan_subtitle("subrip", "matroska").action == "copy"
    dropped = plan_subtitle("hdmv_pgs_subtitle", "mp4")
    assert dropped.action == "drop" and "hdmv_pgs_subtitle" in dropped.reason


def test_subtitle_text_survives_conversion_without_styling() -> None:
    ass = b"0,0,Default,,0,0,0,,{\\i1}Hello{\\i0}\\Nthere, friend"
    assert subtitle_text(ass, "ass") == "Hello\nthere, friend"
    assert subtitle_text(b"<i>Hi</i> you", "subrip") == "Hi you"
    payload = subtitle_payload("Grüße", "mov_text")
    assert struct.unpack(">H", payload[:2])[0] == len("Grüße".encode())
    assert subtitle_text(payload, "mov_text") == "Grüße"


def test_only_writer_tags_are_left_behind() -> None:
    tags = {
        "title": "Film",
        "COMMENT": "kept",
        "creation_time": "2001-01-01T00:00:00Z",
        "ENCODER": "Lavf59",
        "major_brand": "isom",
        "DURATION": "00:00:01.0",
        "_STATISTICS_WRITING_APP": "mkvmerge",
        "handler_name": "SoundHandler",
    }
    assert copyable_metadata(tags) == {
        "title": "Film",
        "COMMENT": "kept",
        "creation_time": "2001-01-01T00:00:00Z",
    }
    assert copyable_metadata({"handler_name": "Director's cut"}) == {
        "handler_name": "Director's cut"
    }


def test_probe_json_keeps_the_new_fields_and_reads_old_files() -> None:
    from pathlib import Path

    video = _video([0, 40, 80], Fraction(1, 1000), Fraction(25), base_rate=Fraction(25))
    info = MediaInfo(
        path=Path("a.mkv"),
        container="matroska",
        size_bytes=1,
        video=video,
        audio=(StreamInfo(1, "audio", "aac", "fre", 48000, 2, "Commentary", ("comment",)),),
        timecode="01:00:00:00",
        chapters=2,
        attachments=1,
    )
    again = media_info_from_json(media_info_to_json(info))
    assert again == info
    import json

    old = json.loads(media_info_to_json(info))
    for key in ("timecode", "chapters", "attachments"):
        del old[key]
    del old["video"]["base_rate"]
    for stream in old["audio"]:
        del stream["title"], stream["dispositions"]
    legacy = media_info_from_json(json.dumps(old))
    assert legacy.timecode is None and legacy.audio[0].dispositions == ()
