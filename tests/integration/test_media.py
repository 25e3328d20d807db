"""Probe, decode, encode and merge on real encoded files made by the tests."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from tests.conftest import ClipFactory
from vsr_desktop.core.errors import InputError, MediaError
from vsr_desktop.core.media import (
    ChunkEncoder,
    ChunkFile,
    EncodeSettings,
    container_for,
    iter_frames,
    merge_chunks,
    probe,
    read_frame,
)
from vsr_desktop.core.media.encode import check_codec_fits_container


def test_probe_h264_with_bframes_and_audio(clip_factory: ClipFactory) -> None:
    info = probe(clip_factory(frames=24, gop=8))
    video = info.video
    assert (video.width, video.height) == (96, 64)
    assert video.frame_count == 24
    assert video.bit_depth == 8
    assert len(video.keyframe_pts) == 3
    assert video.frame_pts == tuple(sorted(video.frame_pts))
    assert not video.is_variable_frame_rate
    assert video.duration_seconds == pytest.approx(1.0, abs=1e-6)
    assert [s.codec for s in info.audio] == ["aac"]
    with av.open(str(info.path)) as container:
        assert container.streams.video[0].codec_context.has_b_frames > 0


def test_probe_ten_bit_and_vfr(clip_factory: ClipFactory) -> None:
    ten = probe(clip_factory(".mkv", ten_bit=True)).video
    assert ten.bit_depth == 10 and ten.pix_fmt == "yuv420p10le"
    vfr = probe(clip_factory(variable_frame_rate=True)).video
    assert vfr.is_variable_frame_rate


def test_probe_rejects_missing_folder_and_non_video(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        probe(tmp_path / "nope.mp4")
    with pytest.raises(InputError, match="folder"):
        probe(tmp_path)
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    with pytest.raises(MediaError):
        probe(text)


def test_probe_rejects_truncated_file(clip_factory: ClipFactory, tmp_path: Path) -> None:
    data = clip_factory().read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 3])  # mp4 index at the end is lost
    with pytest.raises(MediaError):
        probe(cut)


def test_decode_range_returns_exact_frames(clip_factory: ClipFactory) -> None:
    info = probe(clip_factory())
    video = info.video
    start = video.frame_pts.index(video.keyframe_pts[1])
    frames = list(
        iter_frames(
            info.path, video.index, video.frame_pts[start : start + 5], first_pts=video.frame_pts[0]
        )
    )
    assert [f.pts for f in frames] == list(video.frame_pts[start : start + 5])
    single = read_frame(info.path, video.index, video.frame_pts[start + 2])
    assert np.array_equal(single, frames[2].rgb)
    assert frames[0].rgb.shape == (64, 96, 3) and frames[0].rgb.dtype == np.uint8


def test_decode_ten_bit_is_sixteen_bit_rgb(clip_factory: ClipFactory) -> None:
    info = probe(clip_factory(".mkv", ten_bit=True))
    frame = read_frame(info.path, info.video.index, info.video.frame_pts[0], 10)
    assert frame.dtype == np.uint16 and frame.max() > 255


@pytest.mark.parametrize("variable", [False, True])
def test_chunked_encode_and_merge_keeps_timestamps_and_audio(
    clip_factory: ClipFactory, tmp_path: Path, variable: bool
) -> None:
    info = probe(clip_factory(variable_frame_rate=variable))
    video = info.video
    split = video.frame_pts.index(video.keyframe_pts[1])
    chunks = []
    for i, (a, b) in enumerate([(0, split), (split, video.frame_count)]):
        path = tmp_path / f"c{i}.mp4"
        enc = ChunkEncoder(
            path,
            EncodeSettings(preset="ultrafast"),
            container_format="mp4",
            width=video.width * 2,
            height=video.height * 2,
            time_base=video.time_base,
            rate=video.average_rate,
            source_bit_depth=8,
            color=video.color,
            pts_offset=video.frame_pts[a],
        )
        for frame in iter_frames(info.path, video.index, video.frame_pts[a:b]):
            enc.write(frame.pts, frame.rgb.repeat(2, 0).repeat(2, 1))
        enc.close()
        chunks.append(ChunkFile(path, video.frame_pts[a], video.time_base))
    out = tmp_path / "merged.mp4"
    assert merge_chunks(chunks, info, out, "mp4") == []
    merged = probe(out)
    assert merged.video.frame_count == video.frame_count
    scale = merged.video.time_base / video.time_base
    assert [Fraction(p) * scale for p in merged.video.frame_pts] == list(video.frame_pts)
    assert (merged.video.width, merged.video.height) == (192, 128)
    assert audio_packets(out) == audio_packets(info.path)


def audio_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(container.streams.audio[0]) if p.size]


def test_output_type_checks() -> None:
    assert container_for(Path("a.MKV")) == "matroska"
    with pytest.raises(InputError, match="unsupported output"):
        container_for(Path("a.gif"))
    with pytest.raises(InputError, match="cannot be stored"):
        check_codec_fits_container("prores", "webm")
    with pytest.raises(InputError, match="unknown codec"):
        EncodeSettings(codec="divx").profile()


@pytest.mark.parametrize(
    ("codec", "suffix", "ten_bit", "expected_codec", "expected_depth"),
    [
        ("h264", ".mp4", False, "h264", 8),
        ("h265", ".mkv", True, "hevc", 10),
        ("av1", ".mp4", False, "libdav1d", 8),
        ("prores", ".mov", None, "prores", 10),
        ("vp9", ".webm", False, "vp9", 8),
    ],
)
def test_every_codec_encodes(
    clip_factory: ClipFactory,
    tmp_path: Path,
    codec: str,
    suffix: str,
    ten_bit: bool | None,
    expected_codec: str,
    expected_depth: int,
) -> None:
    info = probe(clip_factory(frames=8, gop=8, width=64, height=48))
    video = info.video
    path = tmp_path / f"out{suffix}"
    enc = ChunkEncoder(
        path,
        EncodeSettings(codec=codec, ten_bit=ten_bit),
        container_format=container_for(path),
        width=128,
        height=96,
        time_base=video.time_base,
        rate=video.average_rate,
        source_bit_depth=8,
        color=video.color,
    )
    for frame in iter_frames(info.path, video.index, video.frame_pts[:8]):
        enc.write(frame.pts, frame.rgb.repeat(2, 0).repeat(2, 1))
    enc.close()
    out = probe(path).video
    assert out.frame_count == 8 and (out.width, out.height) == (128, 96)
    assert out.bit_depth == expected_depth
    assert out.codec in (expected_codec, codec, "av1")
