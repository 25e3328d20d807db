"""SMPTE timecode maths: non-drop, drop-frame at 29.97 and 59.94, parsing, start offsets."""

from __future__ import annotations

from fractions import Fraction

import pytest

from vsr_desktop.core.timecode import (
    SourceTimecode,
    TimecodeRate,
    format_timecode,
    parse_timecode,
)

NTSC = TimecodeRate.of(Fraction(30000, 1001))
NTSC60 = TimecodeRate.of(Fraction(60000, 1001))


def test_rates_are_recognised() -> None:
    assert TimecodeRate.of(25) == TimecodeRate(25, False)
    assert TimecodeRate.of(Fraction(24000, 1001)) == TimecodeRate(24, False)
    assert TimecodeRate(30, True) == NTSC and TimecodeRate(60, True) == NTSC60
    assert TimecodeRate.of(30) == TimecodeRate(30, False)
    assert TimecodeRate.of(None) == TimecodeRate(25) and TimecodeRate.of(0) == TimecodeRate(25)


@pytest.mark.parametrize(
    ("frame", "fps", "text"),
    [
        (0, 25, "00:00:00:00"),
        (24, 25, "00:00:00:24"),
        (25, 25, "00:00:01:00"),
        (25 * 3600 + 25 * 61 + 3, 25, "01:01:01:03"),
        (23, 24, "00:00:00:23"),
        (24 * 60, 24, "00:01:00:00"),
    ],
)
def test_non_drop(frame: int, fps: int, text: str) -> None:
    rate = TimecodeRate(fps)
    assert format_timecode(frame, rate) == text
    assert parse_timecode(text, rate) == frame


@pytest.mark.parametrize(
    ("frame", "text"),
    [
        (0, "00:00:00;00"),
        (1799, "00:00:59;29"),
        (1800, "00:01:00;02"),  # ;00 and ;01 do not exist at minute 1
        (3597, "00:01:59;29"),
        (3598, "00:02:00;02"),
        (17981, "00:09:59;29"),
        (17982, "00:10:00;00"),  # every tenth minute keeps them
        (17982 * 6, "01:00:00;00"),  # one hour of 29.97 drop-frame is 107 892 frames
    ],
)
def test_drop_frame_2997(frame: int, text: str) -> None:
    assert format_timecode(frame, NTSC) == text
    assert parse_timecode(text, NTSC) == frame


def test_drop_frame_5994_drops_four() -> None:
    assert format_timecode(3599, NTSC60) == "00:00:59;59"
    assert format_timecode(3600, NTSC60) == "00:01:00;04"
    assert format_timecode(35964, NTSC60) == "00:10:00;00"
    for frame in (0, 3599, 3600, 35963, 35964, 123_456):
        assert parse_timecode(format_timecode(frame, NTSC60), NTSC60) == frame


def test_drop_frame_round_trip_and_wall_clock() -> None:
    for frame in range(0, 200_000, 997):
        assert parse_timecode(format_timecode(frame, NTSC), NTSC) == frame
    # An hour of real time at 29.97 reads 01:00:00;00 (within a frame), unlike non-drop.
    frames_in_hour = round(3600 * 30000 / 1001)
    assert format_timecode(frames_in_hour, NTSC) in ("00:59:59;29", "01:00:00;00")
    assert format_timecode(frames_in_hour, TimecodeRate(30)) == "00:59:56:12"


def test_parse_rejects_nonsense() -> None:
    for text in ("1:2:3", "00:61:00:00", "00:00:00:25", "ab:cd:ef:gh"):
        with pytest.raises(ValueError):
            parse_timecode(text, TimecodeRate(25))
    with pytest.raises(ValueError):
        parse_timecode("00:01:00;00", NTSC)  # a dropped number


def test_wraps_at_24_hours() -> None:
    rate = TimecodeRate(25)
    assert format_timecode(25 * 86400 + 5, rate) == "00:00:00:05"
    assert format_timecode(-1, rate) == "23:59:59:24"


def test_source_start_timecode_offsets_every_frame() -> None:
    tc = SourceTimecode.of(25, "10:00:00:00")
    assert tc.at_frame(0) == "10:00:00:00"
    assert tc.at_frame(26) == "10:00:01:01"
    assert tc.at_seconds(1.04) == "10:00:01:01"
    plain = SourceTimecode.of(Fraction(24000, 1001))
    assert plain.at_frame(0) == "00:00:00:00"
    # 23.976: the 1000th frame is 41.708 s in, and is still frame 1000 (00:00:41:16).
    assert plain.at_seconds(1000 * 1001 / 24000) == "00:00:41:16"


def test_source_drop_frame_start() -> None:
    tc = SourceTimecode.of(Fraction(30000, 1001), "01:00:00;00")
    assert tc.rate.drop_frame and tc.at_frame(1800) == "01:01:00;02"
    assert SourceTimecode.of(25, "garbage").at_frame(0) == "00:00:00:00"
