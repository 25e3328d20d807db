"""Output geometry (issue 15 item 6): target sizes, fit/pad/crop, pixel aspect kept or made
square, and the codec/container/option checks that go with an editor's choices."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from vsr_desktop.core.errors import InputError
from vsr_desktop.core.media.encode import (
    CODECS,
    EncodeSettings,
    check_codec_fits_container,
    container_for,
    containers_for_codec,
)
from vsr_desktop.core.media.geometry import (
    check_target,
    output_sar,
    parse_size,
    place,
    plan_geometry,
    resample,
)
from vsr_desktop.core.media.image_sequence import image_target

PAL = Fraction(16, 15)


def test_no_target_keeps_the_model_frame_rounded_to_even() -> None:
    g = plan_geometry((88, 72), None, (177, 145))
    assert (g.scaled, g.canvas, g.offset, g.sar) == ((177, 145), (176, 144), (0, 0), None)
    assert not g.resamples


def test_anamorphic_source_keeps_its_sar_by_default() -> None:
    g = plan_geometry((720, 576), PAL, (1440, 1152))
    assert g.canvas == (1440, 1152) and g.sar == PAL and not g.resamples


def test_square_pixels_resample_to_the_display_size() -> None:
    """720x576 SAR 16:15 is 768x576 on screen: x2 gives 1536x1152 square pixels."""
    g = plan_geometry((720, 576), PAL, (1440, 1152), square_pixels=True)
    assert g.scaled == g.canvas == (1536, 1152)
    assert g.sar is None and g.resamples


def test_height_keeps_the_display_aspect() -> None:
    # Square source: 48x32 at height 96 is 144x96.
    assert plan_geometry((48, 32), None, (96, 64), height=96).canvas == (144, 96)
    # SAR kept: the stored aspect is kept and the SAR written.
    kept = plan_geometry((48, 32), Fraction(4, 3), (96, 64), height=96)
    assert kept.canvas == (144, 96) and kept.sar == Fraction(4, 3)
    # Square pixels: the display aspect (48*4/3 : 32 = 2:1) in square pixels.
    square = plan_geometry((48, 32), Fraction(4, 3), (96, 64), height=96, square_pixels=True)
    assert square.canvas == (192, 96) and square.sar is None
    # An odd width is rounded to even: 4:3 at height 1080 is 1440; 1.6:1 at 1081 is not.
    assert plan_geometry((720, 576), PAL, (1440, 1152), height=1080, square_pixels=True).canvas == (
        1440,
        1080,
    )
    assert plan_geometry((640, 400), None, (1280, 800), height=98).canvas[0] % 2 == 0


def test_fit_pad_and_crop_in_a_box() -> None:
    src, model = (640, 480), (1280, 960)  # 4:3 into 16:9
    fit = plan_geometry(src, None, model, width=1920, height=1080, fit="fit")
    assert fit.canvas == fit.scaled == (1440, 1080) and fit.offset == (0, 0)
    pad = plan_geometry(src, None, model, width=1920, height=1080, fit="pad")
    assert pad.scaled == (1440, 1080) and pad.canvas == (1920, 1080) and pad.offset == (240, 0)
    crop = plan_geometry(src, None, model, width=1920, height=1080, fit="crop")
    assert crop.scaled == (1920, 1440) and crop.canvas == (1920, 1080) and crop.offset == (0, -180)
    # A wide source in a tall box: fit by width, pad above and below.
    wide = plan_geometry((1920, 800), None, (3840, 1600), width=1920, height=1080, fit="pad")
    assert wide.scaled == (1920, 800) and wide.offset == (0, 140)


def test_anamorphic_pad_keeps_the_pixel_shape() -> None:
    g = plan_geometry((720, 576), PAL, (1440, 1152), width=1920, height=1080, fit="pad")
    # Stored aspect 720:576 = 1.25 at height 1080 → 1350 wide, with the source's SAR.
    assert g.scaled == (1350, 1080) and g.canvas == (1920, 1080) and g.sar == PAL
    assert output_sar((720, 576), PAL, (1920, 1080), width=1920, height=1080, fit="pad") == PAL


def test_the_merge_computes_the_same_sar_as_the_chunks() -> None:
    for kwargs in (
        {},
        {"height": 96},
        {"width": 200, "height": 96, "fit": "fit"},
        {"width": 200, "height": 96, "fit": "crop"},
        {"square_pixels": True},
    ):
        g = plan_geometry((88, 72), PAL, (176, 144), **kwargs)  # type: ignore[arg-type]
        assert output_sar((88, 72), PAL, g.canvas, **kwargs) == g.sar, kwargs  # type: ignore[arg-type]


def test_display_aspect_holds_to_a_pixel() -> None:
    for height in (120, 240, 480, 1080, 2160):
        g = plan_geometry((88, 72), PAL, (176, 144), height=height)
        w, h = g.canvas
        assert g.sar is not None
        assert abs(w * g.sar / h - Fraction(88 * 16, 72 * 15)) < Fraction(1, 100)


def test_images_need_no_even_sizes() -> None:
    g = plan_geometry((48, 32), None, (96, 64), height=75, even=False)
    assert g.canvas == (112, 75)


def test_apply_resamples_pads_and_crops_real_pixels() -> None:
    white = np.full((64, 96, 3), 255, np.uint8)
    pad = plan_geometry((48, 32), None, (96, 64), width=200, height=100, fit="pad")
    frame = pad.apply(white)
    assert frame.shape == (100, 200, 3)
    assert frame[:, : pad.offset[0]].max() == 0  # black bars left …
    assert frame[50, 100].min() == 255  # … picture in the middle
    crop = plan_geometry((48, 32), None, (96, 64), width=64, height=64, fit="crop")
    assert crop.apply(white).shape == (64, 64, 3)
    deep = resample(np.full((32, 48, 4), 40000, np.uint16), 72, 48)
    assert deep.shape == (48, 72, 4) and deep.dtype == np.uint16
    assert abs(int(deep[24, 36, 0]) - 40000) < 8


def test_place_crops_the_centre() -> None:
    ramp = np.arange(10, dtype=np.uint8)[None, :, None].repeat(4, axis=0).repeat(3, axis=2)
    assert place(ramp, (4, 4), (-3, 0))[0, :, 0].tolist() == [3, 4, 5, 6]


@pytest.mark.parametrize(
    ("width", "height", "fit", "even", "message"),
    [
        (1921, 1080, "fit", True, "odd"),
        (None, 1081, "fit", True, "odd"),
        (1920, 1080, "stretch", True, "fit mode"),
        (100, 60, "fit", True, "smallest 256x120"),
        (0, 1080, "fit", False, "out of range"),
    ],
)
def test_targets_the_encoder_cannot_take_are_refused(
    width: int | None, height: int, fit: str, even: bool, message: str
) -> None:
    with pytest.raises(InputError, match=message):
        check_target(width, height, fit, even=even, min_size=(256, 120))


def test_parse_size() -> None:
    assert parse_size("3840x2160") == (3840, 2160)
    assert parse_size(" 1280 X 720 ") == (1280, 720)
    with pytest.raises(InputError, match="WIDTHxHEIGHT"):
        parse_size("4k")


def test_containers_follow_codecs() -> None:
    assert containers_for_codec("dnxhr-hq") == [".mov", ".mxf"]
    assert containers_for_codec("ffv1") == [".mkv"]
    assert containers_for_codec("prores4444") == [".mov", ".mkv"]
    assert containers_for_codec("png") == [".png"]
    for codec, suffix in (("h264", ".webm"), ("prores", ".webm"), ("ffv1", ".mp4")):
        with pytest.raises(InputError) as info:
            check_codec_fits_container(codec, container_for(Path("a" + suffix)))
        assert info.value.hint and ".mkv" in info.value.hint  # names where it can go
    with pytest.raises(InputError, match="names images or a folder"):
        check_codec_fits_container("h264", "image2")


def test_crf_and_presets_only_where_the_codec_has_them() -> None:
    for codec in ("prores4444", "dnxhr-hq", "dnxhr-hqx", "ffv1", "png", "tiff"):
        assert CODECS[codec].crf_range is None and not CODECS[codec].presets
        with pytest.raises(InputError, match="has no CRF"):
            EncodeSettings(codec=codec, crf=10).profile()
        with pytest.raises(InputError, match="has no presets"):
            EncodeSettings(codec=codec, preset="fast").profile()


def test_pixel_formats() -> None:
    assert EncodeSettings(codec="prores4444").pix_fmt(8) == "yuv444p10le"
    assert EncodeSettings(codec="prores4444").codec_options()["profile"] == "4"
    assert EncodeSettings(codec="dnxhr-hqx").pix_fmt(8) == "yuv422p10le"
    assert EncodeSettings(codec="dnxhr-hq").codec_options()["profile"] == "dnxhr_hq"
    assert EncodeSettings(codec="ffv1").pix_fmt(8, "yuv420p") == "yuv420p"
    assert EncodeSettings(codec="ffv1").pix_fmt(10, "yuv422p10le") == "yuv422p10le"
    assert EncodeSettings(codec="ffv1").pix_fmt(8, "rgb24") == "yuv444p"
    assert EncodeSettings(codec="png").pix_fmt(8) == "rgb24"
    assert EncodeSettings(codec="png", ten_bit=True).pix_fmt(8) == "rgb48be"
    assert EncodeSettings(codec="tiff").pix_fmt(10) == "rgb48le"


def test_image_targets() -> None:
    t = image_target(Path("/x/out_%06d.png"), "png")
    assert (t.folder, t.name(7), t.owns_folder) == (Path("/x"), "out_000007.png", False)
    assert t.matches("out_000123.png") and not t.matches("out_.png")
    folder = image_target(Path("/x/frames"), "tiff")
    assert folder.owns_folder and folder.name(0) == "frame_000000.tif"
    for bad, codec, message in (
        ("/x/out.png", "png", "names one image"),
        ("/x/out_%06d.png", "tiff", "does not end in .tif"),
        ("/x/out_%d_%d.png", "png", "one frame number"),
        ("/x/frames", "h264", "video codec"),
    ):
        with pytest.raises(InputError, match=message):
            image_target(Path(bad), codec)
    assert container_for(Path("out_%06d.png")) == "image2"
    assert container_for(Path("frames")) == "image2"
    assert container_for(Path("a.mxf")) == "mxf"
