"""Issue 15 item 6: editors' output choices made by the real pipeline (real model, x2) from
sources made by Debian's ffmpeg, checked with ffprobe and PyAV — never with our writer.

ProRes 4444, DNxHR HQ/HQX (MOV, MXF), FFV1; --size with fit/pad/crop, --height keeping the
display aspect, --square-pixels; PNG/TIFF image sequences with their audio beside them;
impossible combinations refused (exit 2) before anything is written.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import pytest

from tests.helpers.footage import FFPROBE, ffmpeg, ffprobe, needs_ffmpeg, streams
from vsr_desktop.backends.local import LocalBackend
from vsr_desktop.cli import main
from vsr_desktop.core.errors import EngineError
from vsr_desktop.core.job_spec import EngineSettings, JobSpec
from vsr_desktop.core.jobs import JobRecord, JobState, JobStore
from vsr_desktop.core.media.encode import EncodeSettings
from vsr_desktop.core.media.verify import verify_files
from vsr_desktop.worker.job_setup import build_engine

pytestmark = needs_ffmpeg

VIDEO = ("-f", "lavfi", "-i", "testsrc2=size=48x32:rate=24:duration=0.5")
AUDIO = ("-f", "lavfi", "-i", "sine=f=440:r=48000:d=0.5")


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("output_choices")


@pytest.fixture(scope="module")
def clip(made: Path) -> Path:
    """12 frames 48x32 with a 48 kHz audio track."""
    out = made / "clip.mp4"
    ffmpeg(*VIDEO, *AUDIO, "-c:v", "libx264", "-preset", "ultrafast", "-g", "6", "-c:a", "aac", out)
    return out


@pytest.fixture(scope="module")
def anamorphic(made: Path) -> Path:
    """48x32 with SAR 4:3: a 2:1 picture on screen."""
    out = made / "sar.mp4"
    ffmpeg(*VIDEO, "-vf", "setsar=4/3", "-c:v", "libx264", "-preset", "ultrafast", out)
    return out


@pytest.fixture(scope="module")
def deep(made: Path) -> Path:
    """10-bit 4:2:2 ProRes: a deep source."""
    out = made / "deep.mov"
    ffmpeg(*VIDEO, "-c:v", "prores_ks", "-pix_fmt", "yuv422p10le", out)
    return out


def run(
    source: Path,
    output: Path,
    tmp_path: Path,
    engine_factory: Callable[[EngineSettings], Any] = build_engine,
    **encode: Any,
) -> JobRecord:
    """The real local pipeline, x2 fp32, in two or more chunks."""
    backend = LocalBackend(
        JobStore(tmp_path / "jobs.sqlite3"), tmp_path / "work", engine_factory=engine_factory
    )
    if encode.get("codec", "h264") == "h264":
        encode.setdefault("preset", "ultrafast")
    spec = JobSpec(
        source=source,
        output=output,
        engine=EngineSettings(outscale=2, precision="fp32"),
        encode=EncodeSettings(**encode),
        chunk_seconds=0.2,
    )
    return backend.submit(spec)


def probe_video(path: Path) -> dict[str, Any]:
    cmd = [FFPROBE or "ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0"]
    cmd += ["-show_streams", "-of", "json", str(path)]
    import json

    data = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    stream: dict[str, Any] = data["streams"][0]
    return stream


def verified(job: JobRecord) -> None:
    assert job.state is JobState.COMPLETED, job.message
    assert "verified: nothing but the picture changed" in job.message, job.message


@pytest.mark.parametrize(
    ("codec", "suffix", "name", "profile", "pix_fmt", "size"),
    [
        ("prores4444", ".mov", "prores", "4444", "yuv444p12le", None),
        ("dnxhr-hq", ".mov", "dnxhd", "DNXHR HQ", "yuv422p", (288, 192)),
        ("dnxhr-hqx", ".mxf", "dnxhd", "DNXHR HQX", "yuv422p10le", (288, 192)),
        ("ffv1", ".mkv", "ffv1", None, "yuv420p", None),
        # AV1 chunks name their decoder (libdav1d) as codec: the merge must still copy them.
        ("av1", ".mkv", "av1", None, "yuv420p", None),
        ("av1", ".mp4", "av1", None, "yuv420p", None),
    ],
)
def test_editing_and_archive_codecs(
    clip: Path,
    tmp_path: Path,
    codec: str,
    suffix: str,
    name: str,
    profile: str | None,
    pix_fmt: str,
    size: tuple[int, int] | None,
) -> None:
    output = tmp_path / f"out{suffix}"
    target = {"width": size[0], "height": size[1]} if size else {}
    verified(run(clip, output, tmp_path, codec=codec, **target))
    video = probe_video(output)
    assert video["codec_name"] == name
    assert video.get("profile") == profile or profile is None
    assert video["pix_fmt"] == pix_fmt
    assert (video["width"], video["height"]) == (size or (96, 64))
    assert int(video["nb_read_frames"]) == 12
    audio = streams(ffprobe(output), "audio")
    assert len(audio) == 1
    if suffix == ".mxf":  # MXF holds PCM only: converted, and said so
        assert audio[0]["codec_name"].startswith("pcm_s")


def test_ffv1_follows_a_deep_4_2_2_source(deep: Path, tmp_path: Path) -> None:
    output = tmp_path / "archive.mkv"
    verified(run(deep, output, tmp_path, codec="ffv1"))
    video = probe_video(output)
    assert (video["codec_name"], video["pix_fmt"]) == ("ffv1", "yuv422p10le")


@pytest.mark.parametrize(
    ("fit", "size"),
    [("fit", (96, 64)), ("pad", (96, 96)), ("crop", (96, 96))],
)
def test_fit_pad_crop(clip: Path, tmp_path: Path, fit: str, size: tuple[int, int]) -> None:
    """A 3:2 picture in a 96x96 box: fit inside it, pad to it, or crop to fill it."""
    output = tmp_path / f"{fit}.mp4"
    verified(run(clip, output, tmp_path, width=96, height=96, fit=fit))
    video = probe_video(output)
    assert (video["width"], video["height"]) == size
    assert int(video["nb_read_frames"]) == 12
    with av.open(str(output)) as container:
        rgb = next(container.decode(video=0)).to_ndarray(format="rgb24")
    top = rgb[:8].mean()
    if fit == "pad":
        assert top < 20  # black bars above and below the picture
    else:
        assert top > 20


def test_height_keeps_the_display_aspect_of_an_anamorphic_source(
    anamorphic: Path, tmp_path: Path
) -> None:
    """48x32 SAR 4:3 (2:1 on screen): --height 96 keeps the SAR (144x96 SAR 4:3), and
    --square-pixels resamples to 192x96 SAR 1:1; both show 2:1."""
    kept, square = tmp_path / "kept.mp4", tmp_path / "square.mkv"
    verified(run(anamorphic, kept, tmp_path, height=96))
    video = probe_video(kept)
    assert (video["width"], video["height"]) == (144, 96)
    assert (video["sample_aspect_ratio"], video["display_aspect_ratio"]) == ("4:3", "2:1")
    verified(run(anamorphic, square, tmp_path, height=96, square_pixels=True))
    video = probe_video(square)
    assert (video["width"], video["height"]) == (192, 96)
    assert video.get("sample_aspect_ratio", "1:1") == "1:1"  # square: 192:96 is 2:1
    assert video.get("display_aspect_ratio", "2:1") == "2:1"
    # Without a target: the model's x2 in square pixels.
    plain = tmp_path / "plain.mov"
    verified(run(anamorphic, plain, tmp_path, square_pixels=True, codec="prores"))
    assert (probe_video(plain)["width"], probe_video(plain)["height"]) == (128, 64)


def test_png_sequence_16_bit_with_audio_beside(clip: Path, tmp_path: Path) -> None:
    pattern = tmp_path / "shots" / "out_%06d.png"
    pattern.parent.mkdir()
    (pattern.parent / "notes.txt").write_text("the editor's own file")
    job = run(clip, pattern, tmp_path, codec="png", ten_bit=True)
    verified(job)
    frames = sorted(pattern.parent.glob("out_*.png"))
    assert [f.name for f in frames] == [f"out_{i:06d}.png" for i in range(12)]
    with av.open(str(frames[0])) as image:
        stream = image.streams.video[0]
        assert (stream.codec_context.name, stream.width, stream.height) == ("png", 96, 64)
        assert image.streams.video[0].format.name == "rgb48be"  # 16 bits per channel
    from PIL import Image

    with Image.open(frames[-1]) as last:
        assert last.size == (96, 64)
    wav = pattern.parent / "out_audio.wav"
    audio = streams(ffprobe(wav), "audio")[0]
    assert audio["codec_name"] in ("pcm_s16le", "pcm_s24le") and audio["sample_rate"] == "48000"
    assert abs(float(audio["duration"]) - 0.5) < 0.03
    assert "audio written beside the images" in job.message
    assert (pattern.parent / "notes.txt").exists()
    assert not [p for p in pattern.parent.iterdir() if p.name.startswith(".")]


def test_tiff_folder_deep_source(deep: Path, tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    verified(run(deep, folder, tmp_path, codec="tiff"))
    frames = sorted(folder.glob("frame_*.tif"))
    assert len(frames) == 12
    with av.open(str(frames[5])) as image:
        assert image.streams.video[0].format.name == "rgb48le"
    assert verify_files(deep, folder).ok


def test_a_failed_image_job_leaves_no_partial_folder(clip: Path, tmp_path: Path) -> None:
    """The engine fails in the second chunk: the first chunk's frames stay in the work folder
    (for resume), and nothing appears under the output's name or beside it."""

    class FailingEngine:
        def __init__(self, engine: Any) -> None:
            self._engine, self._calls = engine, 0

        def output_size(self, width: int, height: int) -> tuple[int, int]:
            size: tuple[int, int] = self._engine.output_size(width, height)
            return size

        def upscale(self, frames: Any, cancel: Any = None) -> Any:
            self._calls += 1
            if self._calls > 7:
                raise EngineError("out of memory (test)")
            return self._engine.upscale(frames, cancel)

    folder = tmp_path / "frames"
    with pytest.raises(EngineError):
        run(clip, folder, tmp_path, lambda s: FailingEngine(build_engine(s)), codec="png")
    assert not folder.exists()
    assert [p.name for p in tmp_path.iterdir() if "frames" in p.name] == []
    chunks = [p for p in (tmp_path / "work").rglob("chunk_*") if p.is_dir()]
    assert [len(list(c.iterdir())) for c in chunks] == [6]  # chunk 0, kept for resume


@pytest.mark.parametrize(
    ("output", "options", "message"),
    [
        ("out.webm", ["--codec", "h264"], "use .mp4"),
        ("out.webm", ["--codec", "prores"], "ProRes cannot be stored in a webm"),
        ("out.mp4", ["--codec", "ffv1"], "use .mkv"),
        ("out.mp4", ["--codec", "png"], "out_%06d.png"),
        ("out_%06d.png", ["--codec", "h264"], "names images"),
        ("out_%06d.png", ["--codec", "tiff"], "does not end in .tif"),
        ("out.mov", ["--codec", "dnxhr-hq", "--size", "200x100"], "smallest 256x120"),
        ("out.mp4", ["--size", "1921x1080"], "odd"),
        ("out.mp4", ["--fit", "pad"], "needs a --size"),
        ("out.mkv", ["--codec", "ffv1", "--crf", "10"], "has no CRF"),
        ("out.mov", ["--codec", "prores4444", "--preset", "fast"], "has no presets"),
        ("out.mxf", ["--codec", "prores"], "use .mov or .mkv"),
    ],
)
def test_impossible_combinations_are_refused_before_any_work(
    clip: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    output: str,
    options: list[str],
    message: str,
) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code = main(["upscale", str(clip), "-o", str(out_dir / output), *options, "--scale", "2"])
    assert code == 2
    assert message in capsys.readouterr().err
    assert list(out_dir.iterdir()) == []


def test_mxf_refuses_what_it_cannot_keep(anamorphic: Path, made: Path, tmp_path: Path) -> None:
    """Anamorphic pixels (MXF keeps no SAR) and 44.1 kHz audio (MXF takes 48 kHz only)."""
    out = tmp_path / "o.mxf"
    size = ["--size", "288x192"]
    assert main(["upscale", str(anamorphic), "-o", str(out), "--codec", "dnxhr-hq", *size]) == 2
    cd = made / "cd.mov"
    ffmpeg(*VIDEO, "-f", "lavfi", "-i", "sine=r=44100:d=0.5", "-c:v", "prores_ks", cd)
    assert main(["upscale", str(cd), "-o", str(out), "--codec", "dnxhr-hq", *size]) == 2
    assert not out.exists()
