"""Before/after pictures of one frame: the honest comparison a user judges an upscale by.

"Before" is the same region of the source scaled to the output size with bicubic filtering,
so both sides have the same pixel grid and only the model's work differs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vsr_desktop.core.errors import InputError
from vsr_desktop.core.media.decode import iter_frames, read_frame
from vsr_desktop.core.media.deinterlace import plan_deinterlace
from vsr_desktop.core.media.probe import MediaInfo
from vsr_desktop.core.memory_guard import check_decode_memory, check_preview_memory
from vsr_desktop.core.upscaler import FrameUpscaler


@dataclass(frozen=True)
class Region:
    """A rectangle of the source frame, in source pixels."""

    x: int
    y: int
    width: int
    height: int

    @classmethod
    def parse(cls, text: str) -> Region:
        try:
            x, y, w, h = (int(v) for v in text.split(","))
        except ValueError:
            raise InputError(f"bad region {text!r}", "write it as X,Y,WIDTH,HEIGHT") from None
        return cls(x, y, w, h)

    def clamp(self, width: int, height: int) -> Region:
        x = min(max(self.x, 0), max(width - 1, 0))
        y = min(max(self.y, 0), max(height - 1, 0))
        w = max(1, min(self.width, width - x))
        h = max(1, min(self.height, height - y))
        return Region(x, y, w, h)


def to_8bit(rgb: np.ndarray) -> np.ndarray:
    """Display copy of a frame: 16-bit sources are shown at 8 bits."""
    if rgb.dtype == np.uint16:
        return (rgb.astype(np.uint32) * 255 // 65535).astype(np.uint8)
    return rgb


def bicubic_resize(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    from PIL import Image

    image = Image.fromarray(to_8bit(rgb))
    return np.asarray(image.resize((width, height), Image.Resampling.BICUBIC))


def frame_pts(info: MediaInfo, frame_index: int) -> int:
    count = info.video.frame_count
    if not 0 <= frame_index < count:
        raise InputError(
            f"frame {frame_index} is outside the video", f"choose a frame from 0 to {count - 1}"
        )
    return info.video.frame_pts[frame_index]


def shown_frame(info: MediaInfo, frame_index: int, deinterlace: str = "auto") -> np.ndarray:
    """Frame `frame_index` as the job will see it: deinterlaced (with its real neighbours)
    as the job's `deinterlace` mode says (auto: bwdif when interlaced; off: as decoded),
    at single rate, so the preview judges the picture the job will upscale."""
    video = info.video
    pts = frame_pts(info, frame_index)
    fields = plan_deinterlace(deinterlace, False, video)
    # The frame and (when deinterlacing) its neighbours must fit before they are decoded.
    check_decode_memory(video.width, video.height, video.bit_depth, 1 if fields is None else 3)
    if fields is None:
        return read_frame(info.path, video.index, pts, video.bit_depth)
    following = video.frame_pts[frame_index + 1] if frame_index + 1 < video.frame_count else None
    for frame in iter_frames(
        info.path,
        video.index,
        [pts],
        end_pts=following,
        bit_depth=video.bit_depth,
        first_pts=video.frame_pts[0],
        deinterlacer=fields.decoder(video),
    ):
        return frame.rgb
    return read_frame(info.path, video.index, pts, video.bit_depth)


def render_before_after(
    info: MediaInfo,
    frame_index: int,
    engine: FrameUpscaler,
    region: Region | None = None,
    deinterlace: str = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """Upscale only `region` of frame `frame_index` (deinterlaced as `deinterlace` says);
    return (before, after) as 8-bit RGB."""
    video = info.video
    area = (region or Region(0, 0, video.width, video.height)).clamp(video.width, video.height)
    # Refused before the frame is decoded when it, the region's upscale and the pictures
    # cannot fit in memory (a small file can hold a 16000x16000 frame).
    frame_work = getattr(engine, "frame_work", None)
    out_w, out_h = engine.output_size(area.width, area.height)
    check_preview_memory(
        video.width,
        video.height,
        video.bit_depth,
        frame_work(area.width, area.height, video.bit_depth) if frame_work else None,
        out_w * out_h,
    )
    source = shown_frame(info, frame_index, deinterlace)
    crop = source[area.y : area.y + area.height, area.x : area.x + area.width]
    after = to_8bit(engine.upscale(crop[None])[0])
    before = bicubic_resize(crop, after.shape[1], after.shape[0])
    return before, after


def compose(
    before: np.ndarray,
    after: np.ndarray,
    mode: str = "split",
    labels: tuple[str, str] | None = None,
) -> np.ndarray:
    """One picture of both: a split wipe at the middle, or side by side with a gap."""
    if before.shape != after.shape:
        raise ValueError("before and after must have the same shape")
    height, width = before.shape[:2]
    if mode == "split":
        out = before.copy()
        half = width // 2
        out[:, half:] = after[:, half:]
        out[:, max(half - 1, 0) : half + 1] = (255, 255, 255)
        positions = (0, half)
    elif mode == "side-by-side":
        gap = np.full((height, 8, 3), 255, dtype=np.uint8)
        out = np.concatenate([before, gap, after], axis=1)
        positions = (0, width + 8)
    else:
        raise InputError(f"unknown comparison mode {mode!r}", "use split or side-by-side")
    return _label(out, labels, positions) if labels else out


def _label(rgb: np.ndarray, labels: tuple[str, str], positions: tuple[int, int]) -> np.ndarray:
    """Caption each side in its top-left corner, on a dark box so it reads on any picture."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.fromarray(rgb)
    draw = ImageDraw.Draw(image)
    size = max(10, min(28, rgb.shape[0] // 16))
    font = ImageFont.load_default(size=size)
    for text, x in zip(labels, positions, strict=True):
        left, top, right, bottom = draw.textbbox((x + 8, 6), text, font=font)
        draw.rectangle((left - 4, top - 3, right + 4, bottom + 3), fill=(0, 0, 0))
        draw.text((x + 8, 6), text, fill=(255, 255, 255), font=font)
    return np.asarray(image)


def save_png(rgb: np.ndarray, path: Path) -> None:
    """Write atomically so an interrupted save never leaves a broken picture."""
    import os

    from PIL import Image

    tmp = path.with_name(f"{path.stem}.partial.png")
    try:
        Image.fromarray(rgb).save(tmp, format="PNG")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
