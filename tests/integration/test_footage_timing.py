"""Issue 15 items 1 and 5: any input a player plays, and damaged input said aloud.

Sources are cut the way real footage is cut, by Debian's ffmpeg: an MP4 trimmed with
`-ss … -c copy` (edit list, negative timestamps), a TS whose timeline starts at 1.43 s, and
TS/MKV recordings that start mid-GOP. The picture has a white flash and the sound a beep
at the same instant, so the audio/video relation a player presents (decoded with PyAV,
which honours edit lists and skip samples as players do) can be measured in the source and
in the output: it must agree within one audio frame, and the output must start at 0.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import av
import pytest

from tests.helpers.footage import (
    AAC_FRAME,
    FFPROBE,
    beep_time,
    ffmpeg,
    flash_time,
    needs_ffmpeg,
    shown_frames,
    vsr,
)
from vsr_desktop.core.errors import DamagedInputError
from vsr_desktop.core.media.probe import probe

pytestmark = needs_ffmpeg
FLASH = 1.5  # seconds into the long source: a white picture and the start of a beep


def upscale(source: Path, output: Path, *extra: object) -> subprocess.CompletedProcess[str]:
    """The real CLI job: a real model at x2, fp32, several chunks."""
    return vsr(
        "upscale", source, "-o", output, "--scale", 2, "--precision", "fp32",
        "--preset", "ultrafast", "--chunk-seconds", 0.4, "--quiet", *extra,
    )  # fmt: skip


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("timing_sources")
    ffmpeg(
        *("-f", "lavfi", "-i", "testsrc2=size=48x32:rate=24:duration=2.5"),
        *("-f", "lavfi", "-i", f"aevalsrc='if(gte(t,{FLASH}),0.8*sin(2*PI*660*t),0)':s=48000"),
        "-t",
        2.5,
        *("-vf", f"drawbox=c=white:t=fill:enable='between(t,{FLASH},{FLASH + 0.08})'"),
        *("-c:v", "libx264", "-preset", "ultrafast", "-g", "10", "-bf", "2"),
        *("-c:a", "aac", "-b:a", "64k"),
        folder / "long.mp4",
    )
    return folder


def _trimmed(made: Path) -> Path:
    out = made / "trimmed.mp4"
    ffmpeg("-ss", 1.05, "-i", made / "long.mp4", "-t", 1.0, "-c", "copy", out)
    return out


def _offset_ts(made: Path) -> Path:
    out = made / "offset.ts"
    ffmpeg("-i", made / "long.mp4", "-c", "copy", "-output_ts_offset", 1.43, "-f", "mpegts", out)
    return out


def _mid_gop_ts(made: Path) -> Path:
    """A recording that starts wherever the tuner did: the TS cut at a packet boundary."""
    whole = made / "whole.ts"
    ffmpeg("-i", made / "long.mp4", "-c", "copy", "-f", "mpegts", whole)
    data = whole.read_bytes()
    out = made / "midgop.ts"
    out.write_bytes(data[(len(data) // 188 // 4) * 188 :])
    return out


def _mid_gop_mkv(made: Path) -> Path:
    out = made / "midgop.mkv"
    ffmpeg("-i", _mid_gop_ts(made), "-c", "copy", "-copyinkf", out)
    return out


def start_time(path: Path) -> float:
    """Where a player starts the file: the earliest first timestamp of its streams."""
    cmd = [FFPROBE or "ffprobe", "-v", "error", "-show_entries", "format=start_time"]
    result = subprocess.run([*cmd, "-of", "csv=p=0", str(path)], capture_output=True, text=True)
    return float(result.stdout.strip())


CASES = {
    "trimmed-mp4": _trimmed,
    "ts-starting-at-1.43s": _offset_ts,
    "ts-mid-gop": _mid_gop_ts,
    "mkv-mid-gop": _mid_gop_mkv,
}


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
@pytest.mark.parametrize("case", list(CASES))
def test_cut_footage_comes_out_whole_starting_at_zero_and_in_sync(
    made: Path, tmp_path: Path, case: str, suffix: str
) -> None:
    source = CASES[case](made)
    output = tmp_path / f"out{suffix}"
    result = upscale(source, output)
    assert result.returncode == 0, result.stderr
    assert "verified: nothing but the picture changed" in result.stderr, result.stderr
    # Every picture a player shows was upscaled, no more (no pre-roll, no broken frame).
    assert len(shown_frames(output)) == len(shown_frames(source))
    assert start_time(output) == pytest.approx(0.0, abs=AAC_FRAME)
    source_relation = beep_time(source) - flash_time(source)
    output_relation = beep_time(output) - flash_time(output)
    assert abs(output_relation - source_relation) <= AAC_FRAME, (source_relation, output_relation)


def test_a_stream_cut_mid_gop_says_how_many_frames_it_left_out(made: Path, tmp_path: Path) -> None:
    source = _mid_gop_ts(made)
    with av.open(str(source)) as container:
        packets = sum(1 for p in container.demux(video=0) if p.size)
    decodable = len(shown_frames(source))
    assert packets > decodable  # the cut really left frames without a reference
    result = upscale(source, tmp_path / "out.mkv")
    assert result.returncode == 0, result.stderr
    assert f"its first {packets - decodable} frame(s)" in result.stderr
    assert "mid-GOP" in result.stderr


def test_a_ts_starting_late_is_said_once(made: Path, tmp_path: Path) -> None:
    result = upscale(_offset_ts(made), tmp_path / "out.mp4")
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("the output starts at 0") == 1


def _truncated_mp4(made: Path) -> Path:
    """An MP4 whose index (moved to the front) promises 24 frames; the data stops halfway."""
    whole = made / "faststart.mp4"
    ffmpeg(
        *("-f", "lavfi", "-i", "testsrc2=size=48x32:rate=24:duration=1"),
        *("-c:v", "libx264", "-preset", "ultrafast", "-g", "6", "-movflags", "+faststart"),
        whole,
    )
    data = whole.read_bytes()
    cut = made / "truncated.mp4"
    cut.write_bytes(data[: len(data) * 55 // 100])
    return cut


def test_truncated_mp4_is_refused_with_its_own_exit_code(made: Path, tmp_path: Path) -> None:
    source = _truncated_mp4(made)
    (tmp_path / "out").mkdir()
    output = tmp_path / "out" / "out.mp4"
    result = upscale(source, output)
    assert result.returncode == DamagedInputError.exit_code == 9, result.stderr
    assert "truncated" in result.stderr and "promises 24 frames" in result.stderr
    assert "--allow-damaged" in result.stderr
    assert list(output.parent.iterdir()) == []


def test_truncated_mp4_with_allow_damaged_keeps_what_can_be_read(
    made: Path, tmp_path: Path
) -> None:
    source = _truncated_mp4(made)
    readable = probe(source).video.frame_count
    assert 0 < readable < 24
    output = tmp_path / "out.mp4"
    result = upscale(source, output, "--allow-damaged")
    assert result.returncode == 0, result.stderr
    assert f"promises 24 frames, {readable} can be read" in result.stderr
    assert len(shown_frames(output)) == readable


def _damaged_mjpeg(made: Path) -> tuple[Path, int]:
    """Intra-only video whose 10th and 11th pictures were overwritten on disk (bad sectors):
    the container still lists them, the decoder cannot give them."""
    clean = made / "intra.mkv"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=48x32:rate=24:duration=1", "-c:v", "mjpeg", clean)
    with av.open(str(clean)) as container:
        packets = [(p.pos, p.size) for p in container.demux(video=0) if p.size]
    data = bytearray(clean.read_bytes())
    for pos, size in packets[10:12]:
        picture = data.index(b"\xff\xd8", pos)  # the JPEG itself, after the block header
        data[picture : pos + size] = bytes(pos + size - picture)
    damaged = made / "damaged.mkv"
    damaged.write_bytes(bytes(data))
    return damaged, len(packets)


def test_undecodable_frames_stop_the_job_with_a_count(made: Path, tmp_path: Path) -> None:
    source, _ = _damaged_mjpeg(made)
    output = tmp_path / "out.mkv"
    result = upscale(source, output)
    assert result.returncode == 9, result.stderr
    assert "2 frame(s) from 0.417 s could not be decoded" in result.stderr
    assert not output.exists()


def test_allow_damaged_fills_undecodable_frames_and_counts_them(made: Path, tmp_path: Path) -> None:
    source, listed = _damaged_mjpeg(made)
    assert len(shown_frames(source)) == listed - 2
    output = tmp_path / "out.mkv"
    result = upscale(source, output, "--allow-damaged")
    assert result.returncode == 0, result.stderr
    assert "2 damaged frame(s) could not be decoded" in result.stderr
    frames = shown_frames(output)
    assert len(frames) == listed  # timestamps and count whole: each gap repeats a neighbour
