"""Trim (issue 17): only the marked range is upscaled, on every backend's path.

The source is made by Debian's ffmpeg: 25 fps with a keyframe every 10 frames, a white
flash and a beep at the same instant, three chapters and a 01:00:00:00 timecode. The trim
starts mid-GOP (frame 28, keyframe 20 before it). The output is read with ffprobe/PyAV:
frame count = the range, first frame at 0, the flash/beep relation kept within one AAC
frame, chapters clipped and moved, the timecode moved to the first kept frame.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from tests.helpers.footage import (
    AAC_FRAME,
    beep_time,
    ffmpeg,
    ffprobe,
    flash_time,
    needs_ffmpeg,
    vsr,
)
from vsr_desktop.core.media import EncodeSettings, probe
from vsr_desktop.core.media.verify import SourceRange, verify_files
from vsr_desktop.core.plan import plan_chunks
from vsr_desktop.core.trim import frame_range, kept_window
from vsr_desktop.worker import segments
from vsr_desktop.worker.upscale_chunk import upscale_chunk

pytestmark = needs_ffmpeg
FLASH = 1.5  # seconds: a white picture and the start of a beep
CHAPTERS = """;FFMETADATA1
[CHAPTER]
TIMEBASE=1/1000
START=0
END=1000
title=Opening
[CHAPTER]
TIMEBASE=1/1000
START=1000
END=1600
title=Flash
[CHAPTER]
TIMEBASE=1/1000
START=1600
END=2000
title=Ending
"""
START, END = "01:00:01:03", "1.9s"  # frames 28 (mid-GOP) … 47 (shown at 1.88 s) = 20 frames


JOB = ("--scale", 2, "--precision", "fp32", "--preset", "ultrafast", "--chunk-seconds", 0.4)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("trim_sources")
    (folder / "meta.txt").write_text(CHAPTERS)
    out = folder / "flash.mp4"
    ffmpeg(
        *("-f", "lavfi", "-i", "testsrc2=size=48x32:rate=25:duration=2"),
        *("-f", "lavfi", "-i", f"aevalsrc='if(gte(t,{FLASH}),0.8*sin(2*PI*660*t),0)':s=48000"),
        *("-i", folder / "meta.txt", "-map", "0", "-map", "1", "-map_chapters", "2"),
        "-t",
        2,
        *("-vf", f"drawbox=c=white:t=fill:enable='between(t,{FLASH},{FLASH + 0.08})'"),
        *("-c:v", "libx264", "-preset", "ultrafast", "-g", "10", "-bf", "2", "-sc_threshold", 0),
        *("-c:a", "aac", "-b:a", "64k", "-timecode", "01:00:00:00"),
        out,
    )
    return out


def _check_trimmed(source: Path, output: Path) -> None:
    data = ffprobe(output, count_frames=True)
    streams = data["streams"]
    assert isinstance(streams, list)
    video = next(s for s in streams if s["codec_type"] == "video")
    assert int(video["nb_read_frames"]) == 20  # frames 28 … 47, the out point included
    assert float(video["start_time"]) == 0.0
    assert float(data["format"]["start_time"]) == pytest.approx(0.0, abs=AAC_FRAME)  # type: ignore[index]
    assert any(s["codec_type"] == "audio" for s in streams)
    # The flash moves back by frame 28's time (1.12 s); the beep stays with it within one
    # audio frame.
    assert flash_time(output) == pytest.approx(flash_time(source) - 28 / 25, abs=0.001)
    relation = beep_time(source) - flash_time(source)
    assert abs(beep_time(output) - flash_time(output) - relation) <= AAC_FRAME
    chapters = data["chapters"]
    assert isinstance(chapters, list)
    assert [c["tags"]["title"] for c in chapters] == ["Flash", "Ending"]
    assert float(chapters[0]["start_time"]) == pytest.approx(0.0, abs=0.002)
    assert float(chapters[1]["start_time"]) == pytest.approx(1.6 - 1.12, abs=0.002)
    tags = {k.lower(): v for k, v in video["tags"].items()}  # Matroska's is TIMECODE
    assert tags["timecode"] == "01:00:01:03"


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_a_trimmed_local_job_holds_only_the_range_from_zero_in_sync(
    source: Path, tmp_path: Path, suffix: str
) -> None:
    output = tmp_path / f"out{suffix}"
    result = vsr("upscale", source, "-o", output, *JOB, "--start", START, "--end", END)
    assert result.returncode == 0, result.stderr
    assert "nothing but the picture changed in frames 28–47" in result.stderr, result.stderr
    _check_trimmed(source, output)


def test_the_worker_stages_carry_the_trim_in_the_spec(source: Path, tmp_path: Path) -> None:
    """Slurm and AWS run these stages from spec.json: the plan, the chunks and the merge."""
    work, output = tmp_path / "work", tmp_path / "out.mp4"
    plan = vsr("worker", "plan", source, "-o", output, "--workdir", work, *JOB,
               "--start", START, "--end", END)  # fmt: skip
    assert plan.returncode == 0, plan.stderr
    spec = json.loads((work / "spec.json").read_text())
    assert (spec["trim_start"], spec["trim_end"]) == (START, END)
    for index in range(int(plan.stdout)):
        done = vsr("worker", "upscale", "--workdir", work, "--chunk", index)
        assert done.returncode == 0, done.stderr
    merged = vsr("worker", "merge", "--workdir", work)
    assert merged.returncode == 0, merged.stderr
    report = json.loads((work / "progress" / "verify.json").read_text())
    assert report["ok"] and report["trimmed"].startswith("frames 28–47"), report
    _check_trimmed(source, output)


def test_verify_compares_with_the_sources_range_only(source: Path, tmp_path: Path) -> None:
    """The check is honest: the same output against a range one frame off is not ok."""
    output = tmp_path / "out.mp4"
    assert vsr("upscale", source, "-o", output, *JOB, "--start", 28, "--end", 47).returncode == 0
    media = probe(source)
    right = SourceRange(*kept_window(media.video, 28, 48), "01:00:01:03")
    assert verify_files(source, output, source_range=right).ok
    wrong = SourceRange(*kept_window(media.video, 28, 49), "01:00:01:03")
    lines = verify_files(source, output, source_range=wrong).lines()
    assert any("frame count differs: 21 → 20" in line for line in lines), lines
    assert not verify_files(source, output).ok  # the whole source: of course it differs


def test_a_bad_point_is_refused_before_any_work(source: Path, tmp_path: Path) -> None:
    output = tmp_path / "out.mp4"
    result = vsr("upscale", source, "-o", output, *JOB, "--start", "1.2", "--end", "1s")
    assert result.returncode == 2 and "for seconds write 1.2s" in result.stderr, result.stderr
    result = vsr("upscale", source, "-o", output, *JOB, "--end", 50)
    assert result.returncode == 2 and "the source has 50 frames" in result.stderr
    assert not output.exists()


class Nearest2x:
    """A deterministic ×2 engine (pixel repeat): the same frames in give the same chunk out."""

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        return width * 2, height * 2

    def upscale(self, frames: np.ndarray, cancel: threading.Event | None = None) -> np.ndarray:
        return np.repeat(np.repeat(frames, 2, axis=-3), 2, axis=-2)


def _decoded(path: Path) -> list[tuple[int | None, bytes]]:
    with av.open(str(path)) as container:
        return [(f.pts, f.to_ndarray(format="rgb24").tobytes()) for f in container.decode(video=0)]


def test_a_segment_of_a_mid_gop_start_holds_its_keyframe(source: Path, tmp_path: Path) -> None:
    """AWS cuts per-chunk segments by stream copy: the first chunk starts at frame 28, so its
    segment starts at keyframe 20 (the decoder needs it); the last one ends at 37, so its
    segment stops at keyframe 40, not at the end of the film."""
    media = probe(source)
    plan = plan_chunks(media.video, 0.4, frame_range(START, "37", media.video, media.timecode))
    assert plan.chunks[0].start_frame == 28 and plan.chunks[-1].end_frame == 38
    made: dict[int, Path] = {}
    segments.cut_segments(media, plan, tmp_path / "segments", made.__setitem__)
    assert sorted(made) == [c.index for c in plan.chunks]
    first = probe(made[0]).video
    assert first.frame_pts[0] == media.video.frame_pts[20]  # from the keyframe before it
    last = probe(made[len(plan.chunks) - 1]).video
    assert last.frame_pts[-1] == media.video.frame_pts[40]  # not the rest of the film
    for chunk in (plan.chunks[0], plan.chunks[-1]):
        outputs = []
        for name, info in (
            ("from_source", media),
            ("from_segment", segments.segment_media(media, made[chunk.index])),
        ):
            out = tmp_path / f"{name}_{chunk.index}.mkv"
            result = upscale_chunk(
                info, chunk, Nearest2x(), EncodeSettings(preset="ultrafast"), out,
                container_format="matroska",
            )  # fmt: skip
            assert result.frames == chunk.frame_count and result.damaged == 0
            outputs.append(_decoded(out))
        assert outputs[0] == outputs[1] and len(outputs[0]) == chunk.frame_count


def test_the_previews_marks_trim_the_previewed_sources_job(
    qtbot: Any, source: Path, tmp_path: Path
) -> None:
    """In/Out marks set in the preview become trim_start/trim_end (frame numbers, Out
    inclusive) of that source's job, whichever backend it goes to; other sources stay whole."""
    from vsr_desktop.core.jobs import JobStore
    from vsr_desktop.core.settings import SettingsFile
    from vsr_desktop.gui.main_window import MainWindow, spec_for

    window = MainWindow(
        settings_file=SettingsFile(tmp_path / "settings.json"),
        store=JobStore(tmp_path / "jobs.sqlite3"),
        opener=lambda path: None,
        probe_device=False,
    )
    qtbot.addWidget(window)
    other = tmp_path / "other.mp4"
    other.write_bytes(source.read_bytes())
    window.open_files([source, other])
    window.preview.set_source(source)
    window.preview._set_marks(28, 47)  # as I and O on frames 28 and 47 set them
    assert window.preview.marks() == (28, 47)
    got: list[Any] = []
    settings = window.app_settings
    specs = [spec_for(settings, source, "slurm"), spec_for(settings, other, "slurm")]
    window._then_submit(specs, got.extend)
    qtbot.waitUntil(lambda: len(got) == 2, timeout=10_000)
    assert (got[0].trim_start, got[0].trim_end) == ("28", "47")
    assert (got[1].trim_start, got[1].trim_end) == (None, None)
    media = probe(source)
    assert frame_range(got[0].trim_start, got[0].trim_end, media.video) == (28, 48)
    window.shutdown()
