"""Issue 15: alpha (transparency) is kept, upscaled beside the picture, or refused aloud.

Sources are made by Debian's ffmpeg (QuickTime Animation argb, PNG-in-MOV rgba, VP9
yuva420p in WebM), each with an alpha gradient that moves over time; outputs are checked
with ffprobe and by decoding their alpha with PyAV against the source's alpha resized.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from tests.helpers.footage import FFMPEG, ffmpeg, ffprobe, local_upscale, needs_ffmpeg
from tests.integration.test_cli import vsr
from vsr_desktop.core.media import probe
from vsr_desktop.core.media.verify import verify_files

pytestmark = needs_ffmpeg

#: 48x32, 12 frames at 24 fps; alpha: a horizontal ramp that slides with time.
PICTURE = "testsrc2=size=48x32:rate=24:duration=0.5"
TWO_CHUNKS = 0.25  # seconds: the alpha must line up across the join
RAMP = "a='clip(X*255/W+60*sin(T*6),0,255)'"


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if FFMPEG is None:
        pytest.skip("ffmpeg CLI missing")
    return tmp_path_factory.mktemp("alpha_sources")


def _rgba_source(made: Path, name: str, *codec: str) -> Path:
    out = made / name
    if not out.exists():
        graph = f"{PICTURE},format=rgba,geq=r='r(X,Y)':g='g(X,Y)':b='b(X,Y)':{RAMP}"
        ffmpeg("-f", "lavfi", "-i", graph, *codec, out)
    return out


@pytest.fixture(scope="module")
def qtrle_mov(made: Path) -> Path:
    return _rgba_source(made, "anim.mov", "-c:v", "qtrle", "-pix_fmt", "argb")


@pytest.fixture(scope="module")
def png_mov(made: Path) -> Path:
    return _rgba_source(made, "png.mov", "-c:v", "png", "-pix_fmt", "rgba")


@pytest.fixture(scope="module")
def vp9_webm(made: Path) -> Path:
    return _rgba_source(
        made, "alpha.webm", "-c:v", "libvpx-vp9", "-pix_fmt", "yuva420p", "-crf", "20", "-b:v", "0"
    )


def alpha_planes(path: Path) -> list[np.ndarray]:
    """Every frame's alpha as 8-bit, decoded by PyAV (libvpx for VP9: the native decoder
    drops the alpha that travels beside the picture)."""
    planes = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if stream.codec_context.name == "vp9":
            decoder: Any = av.CodecContext.create("libvpx-vp9", "r")
            frames = [f for p in container.demux(stream) if p.size for f in decoder.decode(p)]
            frames += list(decoder.decode(None))
        else:
            frames = list(container.decode(stream))
        for frame in frames:
            planes.append(frame.reformat(format="rgba").to_ndarray()[..., 3])
    return planes


def resized(plane: np.ndarray, width: int, height: int) -> np.ndarray:
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(plane), format="gray")
    return frame.reformat(width=width, height=height, interpolation="BICUBIC").to_ndarray()


def test_probe_finds_alpha(qtrle_mov: Path, png_mov: Path, vp9_webm: Path, made: Path) -> None:
    opaque = made / "opaque.mov"
    ffmpeg("-f", "lavfi", "-i", PICTURE, "-c:v", "png", "-pix_fmt", "rgb24", opaque)
    assert probe(qtrle_mov).video.has_alpha
    assert probe(png_mov).video.has_alpha
    assert probe(vp9_webm).video.has_alpha  # yuv420p to the native decoder: alpha_mode=1
    assert not probe(opaque).video.has_alpha


@pytest.mark.parametrize(
    ("source_name", "codec", "suffix", "pix_fmts"),
    [
        ("qtrle_mov", "prores4444", ".mov", {"yuva444p10le", "yuva444p12le"}),
        ("png_mov", "ffv1", ".mkv", {"yuva444p", "yuva420p"}),
        ("vp9_webm", "vp9", ".webm", {"yuv420p"}),  # alpha beside it: ALPHA_MODE=1
        ("png_mov", "qtrle", ".mov", {"argb"}),
    ],
)
def test_alpha_is_upscaled_beside_the_picture(
    source_name: str,
    codec: str,
    suffix: str,
    pix_fmts: set[str],
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    source: Path = request.getfixturevalue(source_name)
    output = tmp_path / f"out{suffix}"
    job = local_upscale(source, output, tmp_path, codec=codec, chunk_seconds=TWO_CHUNKS)
    assert "⚠" not in job.message, job.message  # vsr verify: the alpha is there

    (stream,) = ffprobe(output)["streams"]
    assert (stream["width"], stream["height"]) == (96, 64)
    assert stream["pix_fmt"] in pix_fmts
    if codec == "vp9":
        tags = {k.lower(): v for k, v in stream.get("tags", {}).items()}
        assert tags.get("alpha_mode") == "1"

    src_alpha, out_alpha = alpha_planes(source), alpha_planes(output)
    assert len(out_alpha) == len(src_alpha) == 12
    for before, after in zip(src_alpha, out_alpha, strict=True):
        expected = resized(before, 96, 64).astype(float)
        error = np.abs(after.astype(float) - expected)
        assert error.mean() < 3.0, error.mean()  # the moving ramp, frame by frame
        assert int(after.max()) - int(after.min()) > 150  # not flattened to opaque


def test_alpha_into_h264_is_refused_and_nothing_written(qtrle_mov: Path, tmp_path: Path) -> None:
    output = tmp_path / "flat.mp4"
    result = vsr("upscale", qtrle_mov, "-o", output, "--scale", "2", "--quiet")
    assert result.returncode == 2, result.stderr
    assert "alpha" in result.stderr and "prores4444" in result.stderr
    assert "--drop-alpha" in result.stderr
    assert not output.exists()
    assert not list(tmp_path.glob("flat*"))


def test_drop_alpha_on_request_is_said(png_mov: Path, tmp_path: Path) -> None:
    output = tmp_path / "flat.mp4"
    job = local_upscale(png_mov, output, tmp_path, chunk_seconds=TWO_CHUNKS, drop_alpha=True)
    assert "alpha" in job.message and "dropped" in job.message
    assert "⚠" not in job.message  # dropped on request is expected, not a loss
    (stream,) = ffprobe(output)["streams"]
    assert stream["pix_fmt"] == "yuv420p"
    assert stream["color_space"] != "gbr"  # an RGB source gets a YUV matrix


def test_verify_says_when_alpha_is_lost(png_mov: Path, tmp_path: Path) -> None:
    """What an upscaler that drops alpha produces: vsr verify names it."""
    output = tmp_path / "lost.mp4"
    ffmpeg("-i", png_mov, "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", output)
    report = verify_files(png_mov, output)
    assert any(d.what == "video.alpha" for d in report.differences)
    result = vsr("verify", png_mov, output)
    assert result.returncode != 0 and "alpha" in result.stdout + result.stderr


def test_cli_drop_alpha_flag(qtrle_mov: Path, tmp_path: Path) -> None:
    output = tmp_path / "flat.mp4"
    result = vsr(
        "upscale", qtrle_mov, "-o", output, "--scale", "2", "--drop-alpha", "--quiet",
        "--precision", "fp32", "--preset", "ultrafast",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "dropped" in result.stderr
    assert output.exists() and sys.executable


def test_png_sequence_keeps_alpha(png_mov: Path, tmp_path: Path) -> None:
    """PNG images from an RGBA source are RGBA, each with its frame's alpha."""
    local_upscale(png_mov, tmp_path / "f_%06d.png", tmp_path, codec="png", chunk_seconds=TWO_CHUNKS)
    images = sorted(tmp_path.glob("f_*.png"))
    assert len(images) == 12
    (stream,) = ffprobe(images[0])["streams"]
    assert stream["pix_fmt"] == "rgba"
    for before, image in zip(alpha_planes(png_mov)[::5], images[::5], strict=False):
        (after,) = alpha_planes(image)
        assert np.abs(after.astype(float) - resized(before, 96, 64)).mean() < 3.0
