"""The rules of `vsr verify` on hand-made facts: what counts as lost, what is expected."""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import pytest

from vsr_desktop.core.media import verify
from vsr_desktop.core.media.stream_facts import (
    Chapter,
    FileFacts,
    PacketTally,
    Timeline,
    VideoFacts,
    _strip_adts,
)

YUV = {"primaries": "bt709", "transfer": "bt709", "matrix": "bt709", "range": "tv"}


def video(**changes: object) -> VideoFacts:
    base = VideoFacts(
        index=0,
        codec="h264",
        width=720,
        height=480,
        sar=Fraction(8, 9),
        pix_fmt="yuv420p",
        has_alpha=False,
        is_rgb=False,
        color=dict(YUV),
        rotation=0,
        side_data=(),
        time_base=Fraction(1, 24000),
        average_rate=Fraction(24000, 1001),
        base_rate=Fraction(24000, 1001),
        first_decoded_pts=0,
        language=None,
        title=None,
        dispositions=(),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def facts(v: VideoFacts | None = None, **changes: object) -> FileFacts:
    base = FileFacts(
        path=Path("x.mkv"),
        format="matroska,webm",
        duration=10.0,
        start_time=0.0,
        metadata={},
        timecode=None,
        chapters=(),
        video=v or video(),
        streams=(),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def cfr(frames: int = 48, tick: int = 1001) -> Timeline:
    return Timeline(video_pts=[i * tick for i in range(frames)])


def picture(src: FileFacts, out: FileFacts, line: Timeline | None = None) -> list[str]:
    check = verify._Checker(())
    verify._check_picture(check, src, out, line or cfr())
    return [d.what for d in check.found]


@pytest.mark.parametrize(
    ("width", "height", "sar", "lost"),
    [
        (1440, 960, Fraction(8, 9), False),  # SAR kept, size doubled
        (1280, 960, Fraction(1), False),  # resampled to square pixels: same display shape
        (1280, 720, Fraction(1), True),  # 16:9 is not the source's 4:3
        (1440, 960, Fraction(1), True),  # SAR dropped: a 3:2 picture
    ],
)
def test_display_aspect_is_what_must_hold(
    width: int, height: int, sar: Fraction, lost: bool
) -> None:
    out = facts(video(width=width, height=height, sar=sar))
    assert ("video.display_aspect" in picture(facts(), out)) is lost


def test_rotation_lost_or_turned_into_the_pixels_is_said_apart() -> None:
    src = facts(video(rotation=90))
    check = verify._Checker(())
    verify._check_picture(check, src, facts(video(rotation=0)), cfr())
    assert [d.message for d in check.found] == ["video: rotation differs: 90° → 0°"]
    check = verify._Checker(())
    turned = facts(video(rotation=0, width=480, height=720, sar=Fraction(9, 8)))
    verify._check_picture(check, src, turned, cfr())
    assert [d.what for d in check.found] == ["video.rotation"]
    assert "pixels were turned" in check.found[0].message


def test_colour_tags_compare_as_a_player_reads_them() -> None:
    src = facts()
    same_601 = facts(video(color={**YUV, "matrix": "smpte170m"}))
    assert picture(facts(video(color={**YUV, "matrix": "bt470bg"})), same_601) == []
    untagged_range = facts(video(color={**YUV, "range": "unspecified"}))
    assert picture(src, untagged_range) == []
    assert picture(src, facts(video(color={**YUV, "primaries": "unspecified"}))) == [
        "video.color.primaries"
    ]
    rgb = facts(
        video(
            pix_fmt="gbrp",
            is_rgb=True,
            color={**YUV, "matrix": "gbr", "range": "pc"},
        )
    )
    assert picture(rgb, src) == []  # RGB → YUV: matrix and range follow the pixels
    wrong = facts(video(color={**YUV, "matrix": "gbr"}))
    assert picture(rgb, wrong) == ["video.color.matrix"]


def test_alpha_must_survive_but_may_appear() -> None:
    with_alpha = facts(video(pix_fmt="yuva444p12le", has_alpha=True))
    assert picture(with_alpha, facts()) == ["video.alpha"]
    assert picture(facts(), with_alpha) == []


def test_frame_rate_headers_are_checked_for_constant_rate_sources_only() -> None:
    lying = facts(video(average_rate=Fraction(1000), time_base=Fraction(1, 1000)))
    assert picture(facts(), lying) == ["video.average_rate"]
    uneven = Timeline(video_pts=[0, 1001, 3003, 3500, 7000])
    assert picture(facts(), lying, uneven) == []
    ntsc = Fraction(30000, 1001)
    src = facts(video(average_rate=ntsc, base_rate=ntsc, time_base=Fraction(1, 30000)))
    thirty = facts(video(average_rate=Fraction(30), base_rate=Fraction(30)))
    assert picture(src, thirty, cfr(frames=20000)) == ["video.average_rate", "video.base_rate"]
    # A source header that lies is no standard: its timestamps say 24 fps.
    honest = facts(video(average_rate=Fraction(24000, 1001)))
    in_ms = Timeline(video_pts=[round(i * 1001 / 24) for i in range(48)])
    assert picture(lying, honest, in_ms) == []
    assert picture(lying, lying, in_ms) == []


def container(src: FileFacts, out: FileFacts, shift: float = 0.0) -> list[str]:
    check = verify._Checker(())
    verify._check_container(check, src, out, shift)
    return [d.what for d in check.found]


def test_chapters_follow_a_moved_timeline_and_keep_their_titles() -> None:
    chapters = (Chapter(1.0, 2.0, "One"), Chapter(2.0, 5.0, "Two"))
    src = facts(chapters=chapters)
    moved = facts(chapters=tuple(replace(c, start=c.start - 1, end=c.end - 1) for c in chapters))
    assert container(src, moved, shift=-1.0) == []
    assert container(src, moved) == ["chapters.0.start", "chapters.0.end", "chapters.1.start"]
    renamed = facts(chapters=(chapters[0], replace(chapters[1], title="")))
    assert container(src, renamed) == ["chapters.1.title"]
    assert container(src, facts()) == ["chapters"]


def test_muxer_stamps_are_not_content_unless_the_source_had_them() -> None:
    stamped = facts(metadata={"creation_time": "2026-01-01T00:00:00Z"})
    assert container(facts(), stamped) == []
    assert container(stamped, facts()) == ["metadata.creation_time"]
    assert container(facts(timecode="01:00:00:00"), facts()) == ["timecode"]


def test_packets_left_out_at_the_start_count_unless_the_source_discarded_them() -> None:
    def lines(tally: PacketTally) -> list[str]:
        check = verify._Checker(())
        verify._check_packets(check, "audio#0", "audio #0", tally)
        return [d.message for d in check.found]

    assert lines(PacketTally(source_packets=50, output_packets=48, leading_skipped=2)) == []
    cut = PacketTally(
        source_packets=50, output_packets=48, leading_skipped=2, leading_discarded=False
    )
    assert lines(cut) == ["audio #0: packets differ: the first 2 not copied; 50 → 48 packets"]
    recoded = PacketTally(source_packets=5, output_packets=5, bytes_differ=5, first_mismatch=0.0)
    assert lines(recoded) == ["audio #0: packets differ: 5 differ in content, first at 0.000 s"]


def test_expected_changes_are_listed_apart() -> None:
    check = verify._Checker(["audio#*.codec"])
    check.add("audio#1.codec", "pcm_s16le", "flac", "audio #1: codec differs")
    check.add("audio#1.title", "A", None, "audio #1: title differs")
    assert [d.what for d in check.allowed] == ["audio#1.codec"]
    assert [d.what for d in check.found] == ["audio#1.title"]


def test_adts_headers_are_not_content() -> None:
    payload = bytes(range(20))
    adts = bytes([0xFF, 0xF1, 0x50, 0x80, 0x02, 0x9F, 0xFC]) + payload
    assert _strip_adts(adts) == payload
    assert _strip_adts(payload) == payload
