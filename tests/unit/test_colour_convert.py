"""YUV 4:2:0 → RGB in torch (the GPU pipeline's conversion) against FFmpeg's own (swscale,
through PyAV) on real decoded frames of a real photo, for each matrix and range; and the
decoder's planes hand-over, whose RGB is converted only when asked."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch
from skimage import data

from vsr_desktop.core.colour_convert import (
    YuvPlanes,
    packed_size,
    packed_to_rgb,
    planes_of,
    want_planes,
)
from vsr_desktop.core.media.decode import iter_frames
from vsr_desktop.core.media.probe import probe
from vsr_desktop.core.media.synth import ClipSpec, make_clip

BT709, BT601, BT2020 = 1, 6, 9
LIMITED, FULL = 1, 2


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = ClipSpec(width=320, height=180, frames=4, fps=24, gop=4, crf=18)
    return make_clip(tmp_path_factory.mktemp("yuv") / "a.mp4", data.astronaut(), spec)


def _decoded(path: Path) -> list[av.VideoFrame]:
    with av.open(str(path)) as container:
        return list(container.decode(video=0))


def _torch_rgb(planes: YuvPlanes) -> np.ndarray:
    packed = np.empty(packed_size(planes.height, planes.width), np.uint8)
    planes.write_into(packed)
    rgb = packed_to_rgb(
        torch.from_numpy(packed)[None],
        planes.height,
        planes.width,
        planes.layout,
        planes.matrix,
        planes.full_range,
    )
    return (rgb[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()


def _with(planes: YuvPlanes, matrix: int, full: bool) -> YuvPlanes:
    return YuvPlanes(planes.layout, planes.planes, matrix, full)


@pytest.mark.parametrize("matrix", [BT601, BT709, BT2020])
@pytest.mark.parametrize("color_range", [LIMITED, FULL])
def test_matches_ffmpeg_on_real_frames(clip: Path, matrix: int, color_range: int) -> None:
    for frame in _decoded(clip):
        planes = planes_of(frame, matrix)
        assert planes is not None and planes.layout == "i420"
        ours = _torch_rgb(_with(planes, matrix, color_range == FULL)).astype(int)
        ffmpeg = frame.reformat(
            format="rgb24", src_colorspace=matrix, src_color_range=color_range
        ).to_ndarray()
        error = np.abs(ours - ffmpeg.astype(int))
        # swscale's fixed-point tables are within a level or two of the exact matrix.
        assert error.max() <= 3 and error.mean() < 1.0, (error.max(), error.mean())
    # The matrices differ by more than that: a wrong one would be caught.
    other = BT601 if matrix != BT601 else BT709
    assert planes is not None
    wrong = np.abs(_torch_rgb(_with(planes, other, color_range == FULL)) - ffmpeg.astype(int))
    assert wrong.max() > 3 and wrong.mean() > error.mean()


def test_nv12_gives_the_same_picture_as_its_i420_planes(clip: Path) -> None:
    frame = _decoded(clip)[0]
    nv12 = frame.reformat(format="nv12")
    planes = planes_of(nv12, BT709)
    assert planes is not None and planes.layout == "nv12"
    back = nv12.reformat(format="yuv420p")  # same samples, three planes
    i420 = planes_of(back, BT709)
    assert i420 is not None
    assert np.array_equal(planes.planes[0], i420.planes[0])
    assert np.array_equal(_torch_rgb(planes), _torch_rgb(i420))


def _odd_frame(height: int, width: int) -> av.VideoFrame:
    rgb = np.ascontiguousarray(data.astronaut()[:height, :width])
    return av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
        format="yuv420p", dst_colorspace=BT709, dst_color_range=LIMITED
    )


def test_odd_sizes_and_padded_rows() -> None:
    """4:2:0 pictures of odd width or height (chroma rounded up), rows padded by FFmpeg."""
    frame = _odd_frame(180, 321)
    assert frame.planes[0].line_size > 321  # padded rows: the views must skip the padding
    planes = planes_of(frame, BT709)
    assert planes is not None and planes.planes[1].shape == (90, 161)
    ours = _torch_rgb(planes).astype(int)
    ffmpeg = frame.reformat(format="rgb24", src_colorspace=BT709, src_color_range=LIMITED)
    error = np.abs(ours - ffmpeg.to_ndarray().astype(int))
    assert error.max() <= 3 and error.mean() < 1.0
    # An odd height sends swscale down its scaling path, which interpolates chroma
    # vertically: at colour edges the two differ (max ~24 levels), on average by ~1 level.
    frame = _odd_frame(181, 321)
    planes = planes_of(frame, BT709)
    assert planes is not None and planes.planes[1].shape == (91, 161)
    ffmpeg = frame.reformat(format="rgb24", src_colorspace=BT709, src_color_range=LIMITED)
    error = np.abs(_torch_rgb(planes).astype(int) - ffmpeg.to_ndarray().astype(int))
    assert error.mean() < 1.5 and np.median(error) <= 1


def test_formats_and_matrices_it_cannot_convert_stay_on_the_cpu(clip: Path) -> None:
    frame = _decoded(clip)[0]
    assert planes_of(frame.reformat(format="yuv444p"), BT709) is None
    assert planes_of(frame, 7) is None  # SMPTE 240M: swscale's path keeps it


def test_decoder_hands_planes_over_and_converts_only_on_demand(clip: Path) -> None:
    info = probe(clip).video
    eager = list(iter_frames(clip, info.index, info.frame_pts, planes=False))
    lazy = list(iter_frames(clip, info.index, info.frame_pts, planes=True))
    assert [f.pts for f in lazy] == [f.pts for f in eager]
    assert all(f.yuv is None for f in eager) and all(f.yuv is not None for f in lazy)
    assert lazy[0]._rgb is None  # nothing converted yet
    for a, b in zip(eager, lazy, strict=True):
        assert np.array_equal(a.rgb, b.rgb)  # the same swscale conversion, when asked
    owner = type("Owner", (), {})()
    want_planes(owner)
    try:
        assert next(iter_frames(clip, info.index, info.frame_pts[:1])).yuv is not None
    finally:
        want_planes(owner, False)
    assert next(iter_frames(clip, info.index, info.frame_pts[:1])).yuv is None
    ten_bit = list(iter_frames(clip, info.index, info.frame_pts[:1], bit_depth=10, planes=True))
    assert ten_bit[0].yuv is None and ten_bit[0].rgb.dtype == np.uint16


def test_a_lazy_frame_converts_once_even_when_repeated() -> None:
    """A damaged frame's stand-in shares its neighbour's conversion (core.media.decode)."""
    from vsr_desktop.core.media.decode import DecodedFrame

    calls: list[int] = []

    def convert() -> np.ndarray:
        calls.append(1)
        return np.zeros((2, 2, 3), np.uint8)

    frame = DecodedFrame(5, convert=convert)
    stand_in = frame.repeated(7)
    assert stand_in.pts == 7 and not calls
    assert stand_in.rgb is frame.rgb and len(calls) == 1
    with pytest.raises(ValueError):
        DecodedFrame(1)
