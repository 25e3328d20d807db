"""Trim points: every form names one frame; the out point is inclusive (core/trim.py)."""

from __future__ import annotations

from fractions import Fraction

import pytest

from vsr_desktop.core.errors import InputError
from vsr_desktop.core.media.probe import VideoInfo
from vsr_desktop.core.plan import plan_chunks
from vsr_desktop.core.trim import (
    frame_range,
    moved_timecode,
    timecode_frames,
    timecode_of,
)


def video(
    frames: int = 250, rate: Fraction = Fraction(25), tb: Fraction = Fraction(1, 12800)
) -> VideoInfo:
    step = 1 / rate / tb
    pts = tuple(round(1000 + i * step) for i in range(frames))  # starts at a non-zero pts
    return VideoInfo(
        index=0, codec="h264", width=48, height=32, pix_fmt="yuv420p", bit_depth=8,
        time_base=tb, average_rate=rate, frame_pts=pts, keyframe_pts=pts[::25],
    )  # fmt: skip


V = video()


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (None, None, (0, 250)),
        ("0", "249", (0, 250)),  # the out point is kept
        ("125", None, (125, 250)),
        (None, "124", (0, 125)),
        ("5s", "9.96s", (125, 250)),
        ("5.019s", "5.02s", (125, 126)),  # the frame shown at that moment
        (".5s", "1s", (12, 26)),
        ("00:00:05.000", "0:09.96", (125, 250)),
        ("00:00:05:00", "00:00:09:24", (125, 250)),
        (" 10 ", 10, (10, 11)),  # one frame; the GUI's marks arrive as numbers
    ],
)
def test_each_form_names_a_frame(start: object, end: object, expected: tuple[int, int]) -> None:
    assert frame_range(start, end, V) == expected  # type: ignore[arg-type]


def test_smpte_is_on_the_sources_timecode_when_at_or_after_it() -> None:
    assert frame_range("01:00:05:00", "01:00:05:24", V, "01:00:00:00") == (125, 150)
    # Earlier than the source's start timecode: counted from 00:00:00:00 = frame 0.
    assert frame_range("00:00:01:00", None, V, "01:00:00:00") == (25, 250)
    assert frame_range("00:00:01:00", None, V, None) == (25, 250)


def test_drop_frame_counts_as_editors_do() -> None:
    ntsc = video(frames=40000, rate=Fraction(30000, 1001), tb=Fraction(1, 30000))
    # 00:01:00;02 is the first label after 00:00:59;29 (;00 and ;01 are dropped): frame 1800.
    assert timecode_frames("00:01:00;02", 30) == 1800
    assert timecode_frames("00:10:00;00", 30) == 17982
    assert frame_range("00:01:00;02", None, ntsc)[0] == 1800
    with pytest.raises(InputError, match="does not exist in drop-frame"):
        timecode_frames("00:01:00;01", 30)
    with pytest.raises(InputError, match=r"only at 29\.97 and 59\.94"):
        frame_range("00:00:01;00", None, V)


@pytest.mark.parametrize(("rate", "drop"), [(25, False), (30, True), (60, True), (24, False)])
def test_timecode_labels_round_trip(rate: int, drop: bool) -> None:
    day = 86400 * rate - (rate // 30 * 2 * 54 * 24 if drop else 0)  # 54 minutes drop each hour
    for frame in [*range(40000), day - 1]:
        label = timecode_of(frame, rate, drop)
        assert timecode_frames(label, rate) == frame, label


def test_the_timecode_moves_to_the_trim_start() -> None:
    assert moved_timecode("01:00:00:00", Fraction(5), Fraction(25)) == "01:00:05:00"
    assert moved_timecode("00:59:59:24", Fraction(1, 25), Fraction(25)) == "01:00:00:00"
    ntsc = Fraction(30000, 1001)
    assert moved_timecode("00:00:59;28", Fraction(2 * 1001, 30000), ntsc) == "00:01:00;02"
    assert moved_timecode(None, Fraction(5), Fraction(25)) is None


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("250", None, "the source has 250 frames"),
        (None, "10s", "past the end"),
        ("100", "99", "before the start"),
        ("2s", "1s", "before the start"),
        ("12.5", None, "not a whole frame number"),
        ("abc", None, "not a frame, a time or a timecode"),
        ("-5", None, "not a frame, a time or a timecode"),
        ("00:61:00", None, "go up to 59"),
        ("00:00:01:25", None, "frames up to 24"),
        ("01:00:99:00", None, "go up to 59"),
    ],
)
def test_garbage_and_outside_points_are_refused(
    start: str | None, end: str | None, message: str
) -> None:
    with pytest.raises(InputError, match=message) as info:
        frame_range(start, end, V)
    assert info.value.exit_code == 2


def test_a_trimmed_plan_covers_only_the_range_from_mid_gop() -> None:
    plan = plan_chunks(V, 2.0, (30, 201))
    assert plan.chunks[0].start_frame == 30  # not a keyframe: decoding starts at frame 25
    assert plan.chunks[-1].end_frame == 201
    assert plan.frame_count == sum(c.frame_count for c in plan.chunks) == 171
    assert all(c.start_frame % 25 == 0 for c in plan.chunks[1:])  # later ones at keyframes
    assert plan_chunks(V, 2.0).frame_count == 250
