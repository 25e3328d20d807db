"""The first real error of a chunk reaches the user, with its own exit code (issue 14, item 6).

In the decode → engine → encode pipeline a failing stage stops the others, and the stopped
ones may raise CancelledError: that echo must never be what the user is told. Encoder
options FFmpeg would refuse, ignore or clamp are refused before a job starts.
"""

from __future__ import annotations

import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from tests.conftest import ClipFactory
from vsr_desktop.core.errors import (
    CancelledError,
    DamagedInputError,
    EngineError,
    InputError,
    MediaError,
)
from vsr_desktop.core.media import ChunkEncoder, EncodeSettings, MediaInfo, probe
from vsr_desktop.core.media.encode import CODECS, container_for, containers_for_codec
from vsr_desktop.core.plan import Chunk, plan_chunks
from vsr_desktop.worker import upscale_chunk as pipeline
from vsr_desktop.worker.upscale_chunk import ChunkResult, partial_path, upscale_chunk

FAST = EncodeSettings(preset="ultrafast")


class Nearest:
    """A FrameUpscaler in NumPy: nearest-neighbour ×scale, with ways to misbehave."""

    def __init__(
        self,
        scale: int = 2,
        *,
        fail_on_call: int | None = None,
        error: BaseException | None = None,
        cancel_on_call: int | None = None,
        shrink: bool = False,
    ) -> None:
        self.scale = scale
        self.fail_on_call = fail_on_call
        self.error = error
        self.cancel_on_call = cancel_on_call
        self.user_cancel: threading.Event | None = None
        self.shrink = shrink  # return frames smaller than output_size() announced
        self.calls = 0

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        return width * self.scale, height * self.scale

    def upscale(self, frames: np.ndarray, cancel: threading.Event | None = None) -> np.ndarray:
        self.calls += 1
        if cancel is not None and cancel.is_set():
            raise CancelledError("Upscaling was cancelled")
        if self.cancel_on_call == self.calls and self.user_cancel is not None:
            self.user_cancel.set()  # the user presses Ctrl-C while this batch runs
        if self.fail_on_call == self.calls:
            assert self.error is not None
            raise self.error
        scale = 1 if self.shrink else self.scale
        return frames.repeat(scale, axis=1).repeat(scale, axis=2)


@pytest.fixture
def slow_decoder(monkeypatch: pytest.MonkeyPatch) -> None:
    """A decoder that is still busy when another stage fails (like one on a long 4K file):
    it then sees the pipeline's stop and raises CancelledError, the echo the old code
    reported instead of the real error."""
    real = pipeline.iter_frames

    def slow(*args: Any, **kwargs: Any) -> Iterator[Any]:
        for frame in real(*args, **kwargs):
            yield frame
            time.sleep(0.02)

    monkeypatch.setattr(pipeline, "iter_frames", slow)


def _source(
    clip_factory: ClipFactory, tmp_path: Path, suffix: str = ".mp4", frames: int = 12
) -> tuple[MediaInfo, Chunk]:
    """A private copy of a tiny real clip (tests may damage it) and its one chunk."""
    clip = clip_factory(suffix, width=32, height=24, frames=frames, gop=frames)
    path = tmp_path / f"source{suffix}"
    shutil.copyfile(clip, path)
    info = probe(path)
    plan = plan_chunks(info.video, 100.0)
    assert len(plan.chunks) == 1
    return info, plan.chunks[0]


def _run(
    info: MediaInfo,
    chunk: Chunk,
    engine: Nearest,
    out: Path,
    settings: EncodeSettings = FAST,
    cancel: threading.Event | None = None,
) -> ChunkResult:
    return upscale_chunk(
        info, chunk, engine, settings, out, container_format=container_for(out), cancel=cancel
    )


def _nothing_left(out: Path) -> None:
    assert not out.exists()
    assert not partial_path(out).exists()
    assert list(out.parent.glob("*.partial*")) == []


def test_a_healthy_chunk_still_encodes(clip_factory: ClipFactory, tmp_path: Path) -> None:
    info, chunk = _source(clip_factory, tmp_path)
    out = tmp_path / "chunk.mp4"
    result = _run(info, chunk, Nearest(), out)
    assert result.frames == 12 and out.exists() and not partial_path(out).exists()
    video = probe(out).video
    assert (video.width, video.height, video.frame_count) == (64, 48, 12)


# (a) the encoder fails mid-chunk ---------------------------------------------------------


def test_frames_of_another_size_than_announced_are_a_media_error(
    clip_factory: ClipFactory, tmp_path: Path, slow_decoder: None
) -> None:
    """FFmpeg would rescale them without a word; the encoder refuses them instead."""
    info, chunk = _source(clip_factory, tmp_path)
    out = tmp_path / "chunk.mp4"
    with pytest.raises(MediaError, match="reached an encoder opened for 64x48") as caught:
        _run(info, chunk, Nearest(shrink=True), out)
    assert "another size" in caught.value.hint
    assert not isinstance(caught.value, CancelledError)
    assert caught.value.exit_code == 3
    _nothing_left(out)


def test_options_ffmpeg_refuses_at_open_are_a_media_error_not_a_cancel(
    clip_factory: ClipFactory, tmp_path: Path, slow_decoder: None
) -> None:
    """Validation bypassed (extra options): libx264 opens on the first frame and fails."""
    info, chunk = _source(clip_factory, tmp_path)
    out = tmp_path / "chunk.mp4"
    settings = EncodeSettings(preset="ultrafast", extra_options={"crf": "-5"})
    with pytest.raises(MediaError, match="libx264 encoder could not start") as caught:
        _run(info, chunk, Nearest(), out, settings)
    assert "crf=-5" in caught.value.message and caught.value.hint
    assert isinstance(caught.value.__cause__, av.FFmpegError)
    assert caught.value.exit_code == 3
    _nothing_left(out)


# (b) the engine fails -------------------------------------------------------------------


def test_memory_error_in_the_engine_is_an_engine_error(
    clip_factory: ClipFactory, tmp_path: Path, slow_decoder: None
) -> None:
    info, chunk = _source(clip_factory, tmp_path)
    out = tmp_path / "chunk.mp4"
    oom = MemoryError()
    engine = Nearest(fail_on_call=2, error=oom)
    with pytest.raises(EngineError) as caught:
        _run(info, chunk, engine, out)
    assert caught.value.exit_code == 5
    assert caught.value.__cause__ is oom
    assert "out of memory" in caught.value.message
    assert "--tile 256" in caught.value.hint
    assert engine.calls == 2
    _nothing_left(out)


def test_an_engine_error_is_raised_unchanged_and_other_errors_are_wrapped(
    clip_factory: ClipFactory, tmp_path: Path
) -> None:
    info, chunk = _source(clip_factory, tmp_path)
    out = tmp_path / "chunk.mp4"
    own = EngineError("the device vanished", "plug it back")
    with pytest.raises(EngineError) as caught:
        _run(info, chunk, Nearest(fail_on_call=1, error=own), out)
    assert caught.value is own
    torch_like = RuntimeError("CUDA error: an illegal memory access was encountered")
    with pytest.raises(EngineError, match="illegal memory access") as caught:
        _run(info, chunk, Nearest(fail_on_call=3, error=torch_like), out)
    assert caught.value.__cause__ is torch_like
    _nothing_left(out)


def test_a_cancel_after_the_engine_failed_still_reports_the_failure(
    clip_factory: ClipFactory, tmp_path: Path, slow_decoder: None
) -> None:
    """The failure came first, so it wins over the cancel the user pressed after it."""
    info, chunk = _source(clip_factory, tmp_path)
    out = tmp_path / "chunk.mp4"
    cancel = threading.Event()
    engine = Nearest(fail_on_call=2, error=MemoryError("cannot allocate"), cancel_on_call=2)
    engine.user_cancel = cancel
    with pytest.raises(EngineError):
        _run(info, chunk, engine, out, cancel=cancel)
    assert cancel.is_set()
    _nothing_left(out)


# (c) the decoder fails ------------------------------------------------------------------


def test_a_source_truncated_after_probing_is_a_damaged_input_error(
    clip_factory: ClipFactory, tmp_path: Path
) -> None:
    info, chunk = _source(clip_factory, tmp_path, ".mkv", frames=24)
    data = info.path.read_bytes()
    info.path.write_bytes(data[: len(data) * 2 // 5])
    out = tmp_path / "chunk.mkv"
    with pytest.raises(MediaError) as caught:
        _run(info, chunk, Nearest(), out)
    assert isinstance(caught.value, DamagedInputError)  # frames promised, not decodable
    assert caught.value.exit_code == 9
    assert info.path.name in caught.value.message
    _nothing_left(out)


# (d) the user cancels -------------------------------------------------------------------


def test_the_users_cancel_is_a_cancel(
    clip_factory: ClipFactory, tmp_path: Path, slow_decoder: None
) -> None:
    info, chunk = _source(clip_factory, tmp_path)
    out = tmp_path / "chunk.mp4"
    cancel = threading.Event()
    engine = Nearest(cancel_on_call=3)
    engine.user_cancel = cancel
    with pytest.raises(CancelledError) as caught:
        _run(info, chunk, engine, out, cancel=cancel)
    assert caught.value.exit_code == 130
    _nothing_left(out)
    already = threading.Event()
    already.set()
    with pytest.raises(CancelledError):
        _run(info, chunk, Nearest(), out, cancel=already)
    _nothing_left(out)


# (e) encoder options are checked before any work ----------------------------------------


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        (EncodeSettings(codec="h264", crf=-5), "CRF -5 is out of range"),
        (EncodeSettings(codec="h264", crf=99), "CRF 99 is out of range"),  # x264 clamps to 51
        (EncodeSettings(codec="h264", crf=52), "out of range"),
        (EncodeSettings(codec="h265", crf=99), "CRF 99 is out of range"),
        (EncodeSettings(codec="h265", crf=-1), "out of range"),
        (EncodeSettings(codec="av1", crf=0), "out of range"),  # SVT-AV1 takes 0 as "unset"
        (EncodeSettings(codec="av1", crf=64), "out of range"),
        (EncodeSettings(codec="vp9", crf=64), "out of range"),
        (EncodeSettings(codec="h264", preset="bogus"), "no preset 'bogus'"),
        (EncodeSettings(codec="h265", preset="bogus"), "no preset"),
        (EncodeSettings(codec="av1", preset="14"), "no preset '14'"),
        (EncodeSettings(codec="av1", preset="fast"), "no preset"),
        (EncodeSettings(codec="vp9", preset="fast"), "has no presets"),  # libvpx ignores it
        (EncodeSettings(codec="prores", crf=20), "ProRes has no CRF"),
        (EncodeSettings(codec="prores", preset="fast"), "has no presets"),
        (EncodeSettings(codec="prores", bitrate=50_000_000), "takes no bit rate"),
        (EncodeSettings(codec="h264", bitrate=0), "bit rate 0"),
        (EncodeSettings(codec="h264", bitrate=-5), "bit rate -5"),
        (EncodeSettings(codec="h264", bitrate=999), "bit rate 999"),  # x264 counts kbit/s
        (EncodeSettings(codec="h264", crf=20, bitrate=4_000_000), "both a CRF"),
    ],
)
def test_options_the_encoder_would_refuse_or_change_are_input_errors(
    settings: EncodeSettings, match: str
) -> None:
    with pytest.raises(InputError, match=match) as caught:
        settings.profile()
    assert caught.value.exit_code == 2
    assert caught.value.hint
    if settings.codec == "prores" and settings.crf is not None:
        assert "profile" in caught.value.hint


GOOD = [
    *(EncodeSettings(codec=codec) for codec in CODECS),  # the defaults
    EncodeSettings(codec="h264", crf=0, preset="placebo"),
    EncodeSettings(codec="h264", crf=51, preset="ULTRAFAST"),
    EncodeSettings(codec="h264", crf=51, ten_bit=True),
    EncodeSettings(codec="h264", bitrate=1000),
    EncodeSettings(codec="h265", crf=0, preset="Ultrafast"),  # passed lower-case to x265
    EncodeSettings(codec="h265", crf=51, preset="ultrafast", ten_bit=True),
    EncodeSettings(codec="av1", crf=1, preset="13"),
    EncodeSettings(codec="av1", crf=63, preset="0"),
    EncodeSettings(codec="vp9", crf=0),
    EncodeSettings(codec="vp9", crf=63),
    EncodeSettings(codec="vp9", preset=""),  # "" is the default, as in codec_options
]


@pytest.mark.parametrize("settings", GOOD, ids=lambda s: f"{s.codec}-{s.crf}-{s.preset}")
def test_defaults_and_boundaries_pass_and_ffmpeg_encodes_them_as_given(
    clip_factory: ClipFactory, tmp_path: Path, settings: EncodeSettings
) -> None:
    profile = settings.profile()
    if profile.image_sequence:
        pytest.skip("numbered image files: tests/integration/test_output_choices.py")
    info = probe(clip_factory(width=32, height=24, frames=4, gop=4))
    video = info.video
    suffixes = containers_for_codec(settings.codec)
    path = tmp_path / ("out.mkv" if ".mkv" in suffixes else f"out{suffixes[0]}")
    size = profile.min_size or (64, 48)  # DNxHR takes 256x120 and larger
    encoder = ChunkEncoder(
        path,
        settings,
        container_format=container_for(path),
        width=size[0],
        height=size[1],
        time_base=video.time_base,
        rate=video.average_rate,
        source_bit_depth=8,
        color=video.color,
    )
    rng = np.random.default_rng(0)
    for pts in video.frame_pts:
        encoder.write(pts, rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    encoder.close()
    assert probe(path).video.frame_count == len(video.frame_pts)
    if settings.codec == "h264" and settings.crf not in (None, 0):
        # x264 writes its settings into the stream: the CRF is the one asked for.
        assert f"crf={settings.crf}.0".encode() in path.read_bytes()


# (f) the command line -------------------------------------------------------------------


@pytest.fixture
def restore_signals() -> Iterator[None]:
    """cli.main installs Ctrl-C/SIGTERM handlers for the job: put pytest's back."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def _cli_engine(monkeypatch: pytest.MonkeyPatch, engine: Nearest) -> None:
    """Make `vsr upscale` build ``engine`` instead of loading a model."""
    from vsr_desktop.backends import local

    class WithEngine(local.LocalBackend):
        def __init__(self, store: Any, work_root: Path | None = None, **_: Any) -> None:
            super().__init__(store, work_root=work_root, engine_factory=lambda _s: engine)

    monkeypatch.setattr(local, "LocalBackend", WithEngine)


def test_cli_refuses_a_bad_crf_before_any_work(
    clip_factory: ClipFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    restore_signals: None,
) -> None:
    from vsr_desktop import cli

    engine = Nearest()
    _cli_engine(monkeypatch, engine)
    src = clip_factory(width=32, height=24, frames=6, gop=6)
    out = tmp_path / "out.mp4"
    code = cli.main(
        ["upscale", str(src), "-o", str(out), "--crf", "-5", "--chunk-seconds", "0.5", "--quiet"]
    )
    assert code == 2
    assert "CRF -5 is out of range" in capsys.readouterr().err
    assert not out.exists() and engine.calls == 0
    code = cli.main(["upscale", str(src), "-o", str(out), "--preset", "bogus", "--quiet"])
    assert code == 2 and not out.exists()


def test_cli_reports_an_engine_out_of_memory_with_exit_code_5(
    clip_factory: ClipFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    restore_signals: None,
    slow_decoder: None,
) -> None:
    from vsr_desktop import cli

    _cli_engine(monkeypatch, Nearest(fail_on_call=2, error=MemoryError()))
    src = clip_factory(width=32, height=24, frames=6, gop=6)
    out = tmp_path / "out.mp4"
    code = cli.main(
        [
            "upscale",
            str(src),
            "-o",
            str(out),
            "--preset",
            "ultrafast",
            "--chunk-seconds",
            "0.5",
            "--quiet",
        ]
    )
    err = capsys.readouterr().err
    assert code == 5, err
    assert "out of memory" in err and "--tile 256" in err and "cancelled" not in err
    assert not out.exists() and not list(tmp_path.glob("*.partial*"))
