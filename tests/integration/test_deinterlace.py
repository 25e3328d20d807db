"""Issue 15 item 2: interlaced sources are deinterlaced before the model.

Sources are made by Debian's ffmpeg (x264 and MPEG-2 with interlaced coding, MJPEG with
no field flags at all), upscaled by the real pipeline (real model, x2) and read back with
PyAV and ffprobe. Combing is measured, not assumed: in a woven frame of moving bars,
neighbouring lines (different instants) differ far more than lines two apart.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pytest

from tests.helpers.footage import ffmpeg, ffprobe, local_upscale, needs_ffmpeg, streams, vsr
from vsr_desktop.core.errors import InputError
from vsr_desktop.core.job_spec import JobSpec
from vsr_desktop.core.media import probe
from vsr_desktop.core.media.decode import iter_frames
from vsr_desktop.core.media.deinterlace import plan_deinterlace
from vsr_desktop.core.plan import plan_chunks
from vsr_desktop.worker.job_setup import validate_spec

pytestmark = needs_ffmpeg

#: 50 progressive pictures a second woven into 25 interlaced frames: moving bars comb.
#: Vertical bars moving 3 px per 1/50 s: every line of a whole picture is the same, so any
#: difference between neighbouring lines is combing.
BARS_50P = (
    "-f", "lavfi", "-i",
    "nullsrc=s=96x64:r=50,geq=lum='if(lt(mod(X+T*150\\,24)\\,12)\\,220\\,30)':cb=128:cr=128",
)  # fmt: skip
WEAVE_TOP = ("-vf", "tinterlace=interleave_top")
INTERLACED_X264 = ("-c:v", "libx264", "-preset", "ultrafast", "-g", "6", "-pix_fmt", "yuv420p")
INTERLACED_X264 += ("-flags", "+ilme+ildct", "-top", "1")


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("interlaced_sources")


@pytest.fixture(scope="module")
def tff_h264(made: Path) -> Path:
    """1 s of 25i, top field first, H.264 with interlaced coding, and a tone."""
    out = made / "tff.mp4"
    ffmpeg(
        *BARS_50P, *("-f", "lavfi", "-i", "sine=f=440:r=48000", "-t", "0.96"),
        *WEAVE_TOP, *INTERLACED_X264, *("-c:a", "aac", "-shortest"), out,
    )  # fmt: skip
    return out


@pytest.fixture(scope="module")
def mpeg2_mkv(made: Path) -> Path:
    """25i MPEG-2 (as on a DVD), bottom field first, with a tone, in Matroska."""
    out = made / "bff.mkv"
    ffmpeg(
        *BARS_50P, *("-f", "lavfi", "-i", "sine=f=440:r=48000:d=0.96"),
        "-vf", "tinterlace=interleave_bottom", "-t", "0.96",
        *("-c:v", "mpeg2video", "-flags", "+ilme+ildct", "-top", "0", "-q:v", "2", "-g", "6"),
        *("-c:a", "aac", "-disposition:a:0", "default"), out,
    )  # fmt: skip
    return out


def comb(path: Path, scale: int = 1) -> float:
    """Mean over frames of |line y − line y+1| − |line y − line y+2| (luma levels), at the
    source's line pitch: ~0 for whole frames, tens of levels for woven fields."""
    ratios = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            ratios.append(picture_comb(frame.to_ndarray(format="gray"), scale))
    return float(np.mean(ratios))


def picture_comb(luma: np.ndarray, scale: int = 1) -> float:
    """One picture's combing (see :func:`comb`)."""
    luma = luma.astype(np.float64)
    if scale > 1:  # back to source lines: each source line is `scale` output lines
        h, w = luma.shape[0] // scale, luma.shape[1] // scale
        luma = luma[: h * scale, : w * scale].reshape(h, scale, w, scale).mean((1, 3))
    adjacent = np.abs(np.diff(luma, axis=0)).mean()
    two_apart = np.abs(luma[2:] - luma[:-2]).mean()
    return float(adjacent - two_apart)


def frame_count(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def test_auto_deinterlaces_an_interlaced_source_and_says_so_once(
    tff_h264: Path, tmp_path: Path
) -> None:
    assert probe(tff_h264).video.interlaced == "tff"
    job = local_upscale(tff_h264, tmp_path / "auto.mp4", tmp_path)
    assert job.message.count("interlaced source (top field first)") == 1, job.message
    assert "deinterlacing with bwdif" in job.message
    assert "verified: nothing but the picture changed" in job.message
    kept = local_upscale(tff_h264, tmp_path / "off.mp4", tmp_path, spec={"deinterlace": "off"})
    assert "interlaced" not in kept.message
    source_comb = comb(tff_h264)
    off_comb = comb(tmp_path / "off.mp4", scale=2)
    auto_comb = comb(tmp_path / "auto.mp4", scale=2)
    # Woven fields comb (neighbouring lines differ more than lines two apart); --deinterlace
    # off keeps that, auto removes it.
    assert source_comb > 30, source_comb
    assert off_comb > 20, off_comb
    assert abs(auto_comb) < 2, auto_comb
    assert frame_count(tmp_path / "auto.mp4") == frame_count(tff_h264) == 24


def test_cli_preview_shows_the_frame_as_the_deinterlace_setting_makes_it(
    tff_h264: Path, tmp_path: Path
) -> None:
    """`vsr preview --deinterlace`: the picture the job with that setting would upscale."""
    combs = {}
    for mode in ("auto", "off"):
        out = tmp_path / f"{mode}.png"
        result = vsr(
            "preview", tff_h264, "--frame", 5, "-o", out, "--mode", "side-by-side",
            "--scale", 2, "--precision", "fp32", "--deinterlace", mode,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        with av.open(str(out)) as container:
            luma = next(container.decode(video=0)).to_ndarray(format="gray")
        before = luma[:, : luma.shape[1] // 2]  # the bicubic side, at x2
        combs[mode] = picture_comb(before[before.shape[0] // 8 :], scale=2)  # below the label
    assert combs["off"] > 20, combs
    assert abs(combs["auto"]) < 3, combs


def test_double_rate_gives_a_frame_per_field_in_sync(mpeg2_mkv: Path, tmp_path: Path) -> None:
    info = probe(mpeg2_mkv)
    assert info.video.interlaced == "bff"
    output = tmp_path / "fields.mp4"
    job = local_upscale(mpeg2_mkv, output, tmp_path, spec={"double_rate": True})
    assert "bottom field first" in job.message and "at field rate" in job.message
    assert "verified" in job.message, job.message  # doubled count/rate are expected changes
    data = ffprobe(output)
    (video,) = streams(data, "video")
    (audio,) = streams(data, "audio")
    assert video["r_frame_rate"] == "50/1" and video["avg_frame_rate"] == "50/1"
    assert frame_count(output) == 2 * info.video.frame_count == 48
    assert (video["width"], video["height"]) == (192, 128)
    # Audio starts with the video and lasts as long (within one audio frame).
    assert abs(float(video["start_time"]) - float(audio["start_time"])) <= 0.022
    assert abs(float(video["duration"]) - float(audio["duration"])) <= 0.022
    assert abs(float(video["duration"]) - 0.96) <= 0.021
    # Field timestamps are 20 ms apart.
    with av.open(str(output)) as container:
        stream = container.streams.video[0]
        times = sorted(float(f.pts * stream.time_base) for f in container.decode(stream))
    assert np.allclose(np.diff(times), 0.02, atol=1e-3)


def test_a_progressive_source_is_not_deinterlaced(made: Path, tmp_path: Path) -> None:
    source = made / "progressive.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=96x64:rate=25", "-t", "0.96", *INTERLACED_X264[:8],
           source)  # fmt: skip
    video = probe(source).video
    assert video.interlaced is None
    assert plan_deinterlace("auto", True, video) is None
    job = local_upscale(source, tmp_path / "out.mp4", tmp_path, spec={"double_rate": True})
    assert "interlaced" not in job.message
    assert frame_count(tmp_path / "out.mp4") == 24


def test_field_order_is_detected_without_flags(made: Path) -> None:
    """MJPEG in AVI says nothing about fields: idet over the first frames decides."""
    woven, still = made / "woven.avi", made / "plain.avi"
    ffmpeg(*BARS_50P, *WEAVE_TOP, "-t", "0.96", "-c:v", "mjpeg", "-q:v", "2", woven)
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=96x64:rate=25", "-t", "0.96", "-c:v", "mjpeg", still)
    assert probe(woven).video.interlaced == "tff"
    assert probe(still).video.interlaced is None


def test_chunk_seams_match_a_continuous_run(tff_h264: Path) -> None:
    """Each chunk decodes a frame before and after its range, so the filter sees the same
    neighbours as one run through the whole file: identical pixels at every seam."""
    info = probe(tff_h264)
    video = info.video
    for double in (False, True):
        fields = plan_deinterlace("bwdif", double, video)
        assert fields is not None
        shown = fields.output_video(video)
        whole = [f.rgb for f in iter_frames(tff_h264, video.index, shown.frame_pts,
                                            first_pts=shown.frame_pts[0],
                                            deinterlacer=fields.decoder(video))]  # fmt: skip
        pieces = []
        for chunk in plan_chunks(video, 0.3).chunks:
            out = fields.output_chunk(chunk)
            end = out.start_frame + out.frame_count
            pieces += [
                f.rgb
                for f in iter_frames(
                    tff_h264,
                    video.index,
                    shown.frame_pts[out.start_frame : end],
                    end_pts=shown.frame_pts[end] if end < len(shown.frame_pts) else None,
                    first_pts=shown.frame_pts[0],
                    deinterlacer=fields.decoder(video),
                )
            ]
        assert len(whole) == len(pieces) == 24 * fields.rate_factor
        for a, b in zip(whole, pieces, strict=True):
            assert np.array_equal(a, b)


def test_settings_are_checked_and_old_specs_load(tff_h264: Path, tmp_path: Path) -> None:
    spec = JobSpec(source=tff_h264, output=tmp_path / "o.mp4")
    data = spec.to_dict()
    assert (data["deinterlace"], data["double_rate"]) == ("auto", False)
    for key in ("deinterlace", "double_rate"):
        del data[key]
    old = JobSpec.from_dict(data)
    assert (old.deinterlace, old.double_rate) == ("auto", False)
    with pytest.raises(InputError, match="deinterlace mode"):
        validate_spec(replace(spec, deinterlace="weave"))
    with pytest.raises(InputError, match="double-rate"):
        validate_spec(replace(spec, deinterlace="off", double_rate=True))
