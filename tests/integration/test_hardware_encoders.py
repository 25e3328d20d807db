"""Hardware encoders and decoders (issue 20, items 1, 2 and 4), run for real on this machine.

This machine has no GPU: PyAV's wheel lists h264_nvenc, *_qsv, *_amf and *_cuvid, and each
fails to open here. So ``auto`` really falls back (one note), a named family really fails
with a clear error, ``--hwdecode`` really falls back, and chunks really spread over two
(CPU) devices. Nothing is faked.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from tests.conftest import ClipFactory
from vsr_desktop.backends.local import LocalBackend
from vsr_desktop.cli import main
from vsr_desktop.core import hardware_codecs as hw
from vsr_desktop.core.errors import InputError, MediaError
from vsr_desktop.core.job_spec import EngineSettings, JobSpec
from vsr_desktop.core.jobs import JobState, JobStore
from vsr_desktop.core.media import EncodeSettings, probe
from vsr_desktop.core.media.decode import iter_frames
from vsr_desktop.core.media.encode import ChunkEncoder
from vsr_desktop.core.media.probe import ColorInfo
from vsr_desktop.worker.job_setup import build_engine


@pytest.fixture(autouse=True)
def fresh_codec_state() -> Iterator[None]:
    """Each test sees the first trial and the first note of a process."""
    hw._probed.clear()
    hw._noted.clear()
    hw.use_hardware_decode(False)
    yield
    hw._probed.clear()
    hw._noted.clear()
    hw.use_hardware_decode(False)


def _encode(path: Path, settings: EncodeSettings, frames: int = 3) -> ChunkEncoder:
    encoder = ChunkEncoder(
        path,
        settings,
        container_format="mp4",
        width=256,
        height=144,
        time_base=Fraction(1, 25),
        rate=Fraction(25),
        source_bit_depth=8,
        color=ColorInfo(),
    )
    for i in range(frames):
        encoder.write(i, np.full((144, 256, 3), 40 * i, np.uint8))
    encoder.close()
    return encoder


def test_auto_falls_back_to_software_with_one_note(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        first = _encode(tmp_path / "a.mp4", EncodeSettings(encoder="auto", preset="ultrafast"))
        second = _encode(tmp_path / "b.mp4", EncodeSettings(encoder="auto", preset="ultrafast"))
    assert first._encoder_name == second._encoder_name == "libx264"
    notes = [r.getMessage() for r in caplog.records if "hardware h264 encoder" in r.getMessage()]
    assert len(notes) == 1 and "h264_nvenc" in notes[0] and "libx264" in notes[0]
    assert probe(tmp_path / "b.mp4").video.frame_count == 3


def test_a_named_hardware_encoder_that_cannot_open_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(MediaError) as caught:
        _encode(tmp_path / "n.mp4", EncodeSettings(encoder="nvenc"))
    assert "NVENC" in caught.value.user_message() and "--encoder auto" in caught.value.hint
    assert not (tmp_path / "n.mp4").exists()


def test_encoder_choices_are_checked_before_any_work() -> None:
    with pytest.raises(InputError, match="unknown encoder"):
        EncodeSettings(encoder="cuda").profile()
    with pytest.raises(InputError, match="no prores encoder"):
        EncodeSettings(codec="prores", encoder="nvenc").profile()
    with pytest.raises(InputError, match="no av1 encoder"):
        EncodeSettings(codec="av1", encoder="videotoolbox").profile()
    EncodeSettings(codec="prores", encoder="auto").profile()  # auto: software for ProRes


@pytest.mark.parametrize(
    ("family", "encoder", "codec", "expected"),
    [
        ("nvenc", "h264_nvenc", "h264", {"rc": "vbr", "cq": "18", "b": "0", "preset": "p4"}),
        ("qsv", "hevc_qsv", "h265", {"global_quality": "18", "preset": "medium"}),
        ("amf", "h264_amf", "h264", {"rc": "cqp", "qp_i": "18", "qp_p": "18", "qp_b": "18"}),
        ("amf", "av1_amf", "av1", {"rc": "cqp", "qp_i": "72", "qp_p": "72"}),
        ("videotoolbox", "hevc_videotoolbox", "h265", {"global_quality": "7670"}),
    ],
)
def test_crf_maps_to_each_encoders_constant_quality(
    family: str, encoder: str, codec: str, expected: dict[str, str]
) -> None:
    options = hw.quality_options(family, encoder, codec, 18, "medium", bitrate=False)
    assert expected.items() <= options.items()
    with_rate = hw.quality_options(family, encoder, codec, None, "medium", bitrate=True)
    assert not {"cq", "global_quality", "qp_i"} & set(with_rate)


def test_ten_bit_only_where_the_encoder_has_it() -> None:
    assert hw.hardware_pix_fmt("hevc_nvenc", "yuv420p10le") == "p010le"
    assert hw.hardware_pix_fmt("h264_nvenc", "yuv420p10le") is None
    assert hw.hardware_pix_fmt("h264_qsv", "yuv420p") == "nv12"
    assert hw.hardware_pix_fmt("hevc_amf", "yuv444p") is None


def test_hardware_sessions_wait_for_a_free_slot(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VSR_HW_ENCODER_SESSIONS", "1")
    monkeypatch.setattr(hw, "SESSIONS", hw._Sessions())
    first = hw.SessionLease("nvenc")
    got = threading.Event()

    def second() -> None:
        lease = hw.SessionLease("nvenc")
        got.set()
        lease.release()

    thread = threading.Thread(target=second)
    thread.start()
    time.sleep(0.2)
    assert not got.is_set()  # the limit holds the second encoder back
    first.release()
    first.release()  # twice is harmless
    thread.join(5)
    assert got.is_set()
    hw.SessionLease("software").release()  # software takes no slot


def test_hwdecode_falls_back_to_the_cpu_with_one_note_and_the_same_frames(
    clip_factory: ClipFactory, caplog: pytest.LogCaptureFixture
) -> None:
    source = clip_factory(frames=12, gop=4, width=64, height=48)
    video = probe(source).video
    software = [f.rgb for f in iter_frames(source, video.index, video.frame_pts)]
    hw.use_hardware_decode(True)
    with caplog.at_level(logging.WARNING):
        hardware = [f.rgb for f in iter_frames(source, video.index, video.frame_pts)]
        again = [f.rgb for f in iter_frames(source, video.index, video.frame_pts[4:8])]
    assert all(np.array_equal(a, b) for a, b in zip(software, hardware, strict=True))
    assert len(again) == 4
    assert caplog.text.count("h264_cuvid") == 1 and "decoding on the CPU" in caplog.text


def test_cli_encoder_and_hwdecode_run_here(
    clip_factory: ClipFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tqdm.tqdm.monitor_interval", 0)  # no monitor thread left behind
    source = clip_factory(frames=8, gop=4, width=48, height=32)
    output = tmp_path / "o.mp4"
    args = [str(source), "-o", str(output), "--scale", "2", "--device", "cpu"]
    assert main(["upscale", *args, "--encoder", "auto", "--hwdecode", "--preset", "ultrafast"]) == 0
    with av.open(str(output)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
    assert main(["upscale", *args, "--overwrite", "--encoder", "qsv"]) != 0


def test_chunks_spread_over_two_devices_give_the_same_output(
    clip_factory: ClipFactory, tmp_path: Path
) -> None:
    """Two CPU "devices" stand for two GPUs: one engine each, every chunk once, same file."""
    source = clip_factory(frames=24, gop=4, width=48, height=32)
    built: list[str] = []

    def factory(settings: EngineSettings) -> object:
        built.append(settings.device)
        return build_engine(settings)

    outputs = []
    for devices in ("", "cpu,cpu"):
        output = tmp_path / f"out{len(outputs)}.mp4"
        store = JobStore(tmp_path / f"jobs{len(outputs)}.sqlite3")
        backend = LocalBackend(store, work_root=tmp_path / "work", engine_factory=factory)
        spec = JobSpec(
            source=source,
            output=output,
            engine=EngineSettings(
                device="cpu", precision="fp32", cpu_convolution="onednn", devices=devices
            ),
            encode=EncodeSettings(preset="ultrafast", encoder="software"),
            chunk_seconds=0.2,
        )
        job = backend.submit(spec)
        assert job.state is JobState.COMPLETED and job.chunks_total >= 3
        outputs.append(output)
    assert built == ["cpu", "cpu", "cpu"]  # one engine, then one per device
    with av.open(str(outputs[0])) as a, av.open(str(outputs[1])) as b:
        frames_a = [f.to_ndarray() for f in a.decode(video=0)]
        frames_b = [f.to_ndarray() for f in b.decode(video=0)]
    assert len(frames_a) == 24
    assert all(np.array_equal(x, y) for x, y in zip(frames_a, frames_b, strict=True))
