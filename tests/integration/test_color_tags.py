"""Issue 15: colour tags of the output — RGB sources get a real YUV matrix, HDR10 is kept.

Sources are made by Debian's ffmpeg (PNG rgb24 in MOV and as a still, x265 HDR10 with
mastering display and content light level); outputs are read by ffprobe and decoded by
ffmpeg as a player would (honouring the tags), never by the project's own writer.
"""

from __future__ import annotations

import json
import subprocess
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.helpers.footage import FFMPEG, FFPROBE, ffmpeg, ffprobe, local_upscale, needs_ffmpeg
from vsr_desktop.backends.local import LocalBackend
from vsr_desktop.core.errors import InputError
from vsr_desktop.core.job_spec import EngineSettings, JobSpec
from vsr_desktop.core.jobs import JobStore
from vsr_desktop.core.media import EncodeSettings, probe
from vsr_desktop.core.media.decode import iter_frames
from vsr_desktop.core.media.encode import ChunkEncoder

pytestmark = needs_ffmpeg

MASTER = "G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,1)"
HDR10_X265 = f"log-level=error:hdr10=1:master-display={MASTER}:max-cll=1000,400"


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if FFMPEG is None:
        pytest.skip("ffmpeg CLI missing")
    return tmp_path_factory.mktemp("colour_sources")


@pytest.fixture(scope="module")
def png_mov(made: Path) -> Path:
    """RGB (rgb24) PNG frames in MOV: FFmpeg tags them with the RGB matrix, full range."""
    out = made / "rgb.mov"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=24:duration=0.5", "-c:v", "png", out)
    return out


@pytest.fixture(scope="module")
def png_still(made: Path) -> Path:
    """One wide PNG picture: its x2 upscale (1280x96) is HD-wide."""
    out = made / "still.png"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=640x48:rate=1", "-frames:v", "1", "-c:v", "png", out)
    return out


@pytest.fixture(scope="module")
def hdr10(made: Path) -> Path:
    out = made / "hdr10.mp4"
    ffmpeg(
        *("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=24:duration=0.5"),
        *("-c:v", "libx265", "-preset", "ultrafast", "-x265-params", HDR10_X265),
        *("-color_primaries", "bt2020", "-color_trc", "smpte2084", "-colorspace", "bt2020nc"),
        *("-pix_fmt", "yuv420p10le"),
        out,
    )
    return out


def first_frame(path: Path) -> dict[str, Any]:
    cmd = [FFPROBE or "ffprobe", "-v", "error", "-select_streams", "v:0", "-show_frames"]
    cmd += ["-read_intervals", "%+#1", "-of", "json", str(path)]
    result = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=60)
    frame: dict[str, Any] = json.loads(result.stdout)["frames"][0]
    return frame


def as_player_sees(path: Path, width: int, height: int) -> np.ndarray:
    """The first frame as RGB, converted by ffmpeg with the file's own matrix and range."""
    cmd = [FFMPEG or "ffmpeg", "-v", "error", "-i", str(path), "-frames:v", "1"]
    cmd += ["-vf", f"scale={width}:{height}:flags=bicubic", "-f", "rawvideo"]
    cmd += ["-pix_fmt", "rgb24", "-"]
    raw = subprocess.run(cmd, check=True, capture_output=True, timeout=60).stdout
    return np.frombuffer(raw, np.uint8).reshape(height, width, 3)


def block_means(rgb: np.ndarray, block: int = 8) -> np.ndarray:
    h, w = (rgb.shape[0] // block) * block, (rgb.shape[1] // block) * block
    cut = rgb[:h, :w].astype(float)
    return cut.reshape(h // block, block, w // block, block, 3).mean(axis=(1, 3))


@pytest.mark.parametrize(
    ("codec", "suffix", "matrix"),
    [("h264", ".mp4", "smpte170m"), ("ffv1", ".mkv", "smpte170m")],
)
def test_rgb_source_gets_a_yuv_matrix(
    png_mov: Path, tmp_path: Path, codec: str, suffix: str, matrix: str
) -> None:
    """96x64 output: SD, so BT.601; limited range; colours as the source's."""
    assert probe(png_mov).video.color.space == 0  # the source is tagged RGB
    output = tmp_path / f"out{suffix}"
    job = local_upscale(png_mov, output, tmp_path, codec=codec, chunk_seconds=0.25)
    assert "⚠" not in job.message, job.message
    (stream,) = ffprobe(output)["streams"]
    assert stream["pix_fmt"].startswith("yuv")
    assert stream["color_space"] == matrix  # was "gbr": YUV shown as G, B, R
    assert stream["color_range"] == "tv"
    frame = first_frame(output)
    assert frame["color_space"] == matrix
    source = block_means(as_player_sees(png_mov, 96, 64))
    shown = block_means(as_player_sees(output, 96, 64))
    assert np.abs(shown - source).mean() < 6.0  # a wrong matrix shifts colours far more


def test_hd_output_of_a_png_still_is_bt709(png_still: Path, tmp_path: Path) -> None:
    output = tmp_path / "still.mp4"
    local_upscale(png_still, output, tmp_path, codec="h264", chunk_seconds=0.25)
    (stream,) = ffprobe(output)["streams"]
    assert (stream["width"], stream["height"]) == (1280, 96)
    assert stream["color_space"] == "bt709"
    assert stream["color_range"] == "tv"
    source = block_means(as_player_sees(png_still, 1280, 96))
    shown = block_means(as_player_sees(output, 1280, 96))
    assert np.abs(shown - source).mean() < 6.0


def test_rgb_output_keeps_the_rgb_matrix(png_mov: Path, tmp_path: Path) -> None:
    """QuickTime Animation stores RGB: no YUV matrix is claimed for it."""
    output = tmp_path / "out.mov"
    local_upscale(png_mov, output, tmp_path, codec="qtrle", chunk_seconds=0.25)
    (stream,) = ffprobe(output)["streams"]
    assert stream["pix_fmt"] in ("rgb24", "argb")
    assert stream.get("color_space", "unknown") in ("gbr", "unknown")


def _side_data(frame: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["side_data_type"]: s for s in frame.get("side_data_list", [])}


def assert_hdr10(output: Path) -> None:
    """PQ/BT.2020 tags and the source's mastering display and content light level."""
    (stream,) = ffprobe(output)["streams"]
    assert stream["pix_fmt"] == "yuv420p10le"
    assert stream["color_transfer"] == "smpte2084"
    assert stream["color_primaries"] == "bt2020"
    assert stream["color_space"] == "bt2020nc"
    side = _side_data(first_frame(output))
    mastering = side["Mastering display metadata"]
    light = side["Content light level metadata"]
    assert (light["max_content"], light["max_average"]) == (1000, 400)

    def value(key: str) -> float:
        num, den = mastering[key].split("/")
        return int(num) / int(den)

    assert value("green_x") == pytest.approx(0.265, abs=1e-4)
    assert value("red_y") == pytest.approx(0.32, abs=1e-4)
    assert value("white_point_x") == pytest.approx(0.3127, abs=1e-4)
    assert value("max_luminance") == pytest.approx(1000, rel=1e-3)
    assert value("min_luminance") == pytest.approx(0.0001, abs=5e-5)  # AV1: 18.14 fixed point


def test_hdr10_side_data_and_tags_are_kept(hdr10: Path, tmp_path: Path) -> None:
    color = probe(hdr10).video.color
    assert color.master_display == MASTER and color.max_cll == "1000,400"
    output = tmp_path / "out.mp4"
    job = local_upscale(hdr10, output, tmp_path, codec="h265", chunk_seconds=0.25)
    assert "⚠" not in job.message, job.message  # vsr verify compares the side data
    assert_hdr10(output)


def test_hdr10_reaches_svt_av1(hdr10: Path, tmp_path: Path) -> None:
    """SVT-AV1 takes the same data in its own syntax (one chunk, written directly)."""
    video = probe(hdr10).video
    output = tmp_path / "chunk.mp4"
    encoder = ChunkEncoder(
        output,
        EncodeSettings(codec="av1", preset="12"),
        container_format="mp4",
        width=64,
        height=48,
        time_base=video.time_base,
        rate=Fraction(24),
        source_bit_depth=10,
        color=video.color,
        source_pix_fmt=video.pix_fmt,
    )
    for frame in iter_frames(hdr10, video.index, video.frame_pts[:3], bit_depth=10):
        encoder.write(frame.pts, frame.rgb)
    encoder.close()
    assert_hdr10(output)


def test_hdr10_into_8_bits_is_refused(hdr10: Path, tmp_path: Path) -> None:
    output = tmp_path / "flat.mp4"
    backend = LocalBackend(JobStore(tmp_path / "jobs.sqlite3"), work_root=tmp_path / "work")
    spec = JobSpec(
        source=hdr10,
        output=output,
        engine=EngineSettings(outscale=2, precision="fp32"),
        encode=EncodeSettings(codec="h265", preset="ultrafast", ten_bit=False),
    )
    with pytest.raises(InputError) as refused:
        backend.submit(spec)
    assert refused.value.exit_code == 2
    assert "HDR" in str(refused.value) and "10-bit" in refused.value.user_message()
    assert not output.exists()


def test_hdr10_lost_by_an_encoder_that_cannot_write_it_is_reported(
    hdr10: Path, tmp_path: Path
) -> None:
    """ProRes in MOV: PyAV cannot attach the side data, so the job says it and verify warns."""
    output = tmp_path / "out.mov"
    job = local_upscale(hdr10, output, tmp_path, codec="prores", chunk_seconds=0.25)
    assert "HDR10" in job.message and "h265" in job.message
    assert "⚠" in job.message and "side data" in job.message


def test_untagged_sd_source_upscaled_to_hd_keeps_the_matrix_players_used(
    made: Path, tmp_path: Path
) -> None:
    """Players read untagged SD as BT.601 and untagged HD as BT.709: left untagged, a
    720p output of an untagged SD clip would be shown with other colours."""
    source = made / "untagged_sd.mp4"
    ffmpeg(
        *("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=24:duration=0.5"),
        *("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"),
        source,
    )
    assert ffprobe(source)["streams"][0].get("color_space") in (None, "unknown")
    output = tmp_path / "hd.mp4"
    job = local_upscale(source, output, tmp_path, codec="h264", chunk_seconds=0.25, height=720)
    assert "⚠" not in job.message, job.message
    (stream,) = ffprobe(output)["streams"]
    assert stream["height"] == 720
    assert stream["color_space"] == "smpte170m"
    shown = block_means(as_player_sees(output, 64, 48))
    original = block_means(as_player_sees(source, 64, 48))
    assert np.abs(shown - original).mean() < 8.0
