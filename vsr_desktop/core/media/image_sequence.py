"""PNG and TIFF image sequences: one numbered file per frame, for editors and compositors.

An output is an image sequence when it names a frame-number pattern (``out_%06d.png``) or a
folder (``frames`` with ``--codec png|tiff``). Each chunk writes its frames (numbered by
frame index from 0) into its own folder in the work folder, renamed into place when whole,
so resume per chunk works as for video chunks. The merge moves them under the user's names
in a temporary folder that becomes the output only when complete (nothing partial under the
final name), and writes the source's audio beside them as WAV (an image has no sound).
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vsr_desktop.core.errors import CancelledError, InputError, MediaError
from vsr_desktop.core.media.encode import CODECS, EncodeSettings, raise_for_os_error

if TYPE_CHECKING:
    from vsr_desktop.core.media.probe import MediaInfo
    from vsr_desktop.core.media.verify import VerifyReport

#: Image file suffix → codec.
IMAGE_SUFFIXES = {".png": "png", ".tif": "tiff", ".tiff": "tiff"}
_CODEC_SUFFIX = {"png": ".png", "tiff": ".tif"}
_NUMBER = re.compile(r"%0?(\d*)d")
DEFAULT_STEM = "frame_"


def is_image_output(path: Path) -> bool:
    """An image sequence: a pattern, an image suffix, or no suffix (a folder of frames)."""
    return "%" in path.name or path.suffix.lower() in IMAGE_SUFFIXES or not path.suffix


@dataclass(frozen=True)
class ImageTarget:
    """Where the frames go: `folder` and the file name `pattern` (one ``%0Nd``)."""

    folder: Path
    pattern: str
    #: The output names the folder itself (it is built aside and renamed into place).
    owns_folder: bool

    def name(self, index: int) -> str:
        return self.pattern % index

    def matches(self, name: str) -> bool:
        number = _NUMBER.search(self.pattern)
        head, _, tail = self.pattern.partition(number.group(0) if number else "%d")
        middle = name[len(head) : len(name) - len(tail)]
        return name.startswith(head) and name.endswith(tail) and middle.isdigit()

    @property
    def stem(self) -> str:
        """The pattern's fixed start (``out_`` of ``out_%06d.png``) for side files."""
        return self.pattern.split("%", 1)[0] or DEFAULT_STEM


def image_target(output: Path, codec: str) -> ImageTarget:
    """The folder and names of an image output; InputError for a pattern that cannot be."""
    if codec not in _CODEC_SUFFIX:
        raise InputError(
            f"{output.name} is a folder or image name, and {codec} is a video codec",
            f"use --codec png or --codec tiff, or an output such as {output.stem or 'out'}.mkv",
        )
    if "%" not in output.name:
        if output.suffix.lower() in IMAGE_SUFFIXES:
            raise InputError(
                f"{output.name} names one image; a video has many frames",
                f"number them: {output.stem}_%06d{output.suffix}, or give a folder",
            )
        return ImageTarget(output, f"{DEFAULT_STEM}%06d{_CODEC_SUFFIX[codec]}", owns_folder=True)
    numbers = _NUMBER.findall(output.name)
    if len(numbers) != 1 or output.name.count("%") != 1:
        raise InputError(
            f"{output.name} must hold one frame number such as %06d",
            "name the output like out_%06d.png",
        )
    suffix = output.suffix.lower()
    if IMAGE_SUFFIXES.get(suffix) != codec:
        raise InputError(
            f"{output.name} does not end in {_CODEC_SUFFIX[codec]} for --codec {codec}",
            f"name the output like out_%06d{_CODEC_SUFFIX[codec]}",
        )
    return ImageTarget(output.parent, output.name, owns_folder=False)


def check_image_output(output: Path, settings: EncodeSettings, overwrite: bool) -> None:
    """Everything about an image output that can be refused before any work."""
    target = image_target(output, settings.codec)
    if settings.audio_codec not in ("auto", "pcm"):
        raise InputError(
            f"--audio-codec {settings.audio_codec} does not apply to an image sequence",
            "its audio is written beside the images as WAV: leave --audio-codec auto",
        )
    if target.owns_folder:
        if target.folder.is_file():
            raise InputError(f"{target.folder} is a file, not a folder", "choose a folder name")
        if _non_empty_dir(target.folder) and not overwrite:
            raise InputError(
                f"the folder {target.folder} is not empty",
                "pass --overwrite to replace it, or choose another folder",
            )
        parent = target.folder.parent
    else:
        parent = target.folder
        if target.folder.is_dir() and not overwrite:
            taken = [p.name for p in target.folder.iterdir() if target.matches(p.name)]
            if taken:
                raise InputError(
                    f"{target.folder} already holds {len(taken)} frame(s) named like "
                    f"{target.pattern} ({taken[0]} …)",
                    "pass --overwrite or choose another name",
                )
    if not parent.is_dir():
        raise InputError(f"the output folder {parent} does not exist", "create it or pick another")


def _non_empty_dir(path: Path) -> bool:
    return path.is_dir() and any(path.iterdir())


class ImageSequenceWriter:
    """Write one chunk's frames as numbered image files into a folder (ChunkEncoder's API)."""

    def __init__(
        self,
        path: Path,
        settings: EncodeSettings,
        *,
        final: Path,
        first_frame: int,
        width: int,
        height: int,
        source_bit_depth: int,
        source_pix_fmt: str = "",
        alpha: bool = False,
    ) -> None:
        import av

        self.path = path
        self.width, self.height = width, height
        self.frames_written = 0
        self._index = first_frame
        self._suffix = _CODEC_SUFFIX[settings.codec]
        self._pix_fmt = settings.pix_fmt(source_bit_depth, source_pix_fmt, alpha=alpha)
        self._codec = CODECS[settings.codec].encoder
        try:
            for stale in (path, final):  # a killed run's leftovers: this chunk is redone
                if stale.is_dir():
                    shutil.rmtree(stale)
            path.mkdir(parents=True)
        except OSError as exc:
            raise_for_os_error(exc, path)
        self._av = av

    def write(self, pts: int, rgb: np.ndarray) -> None:
        """Encode one frame to its own file (the timestamp is the frame's index's)."""
        av = self._av
        if rgb.ndim != 3 or rgb.shape[:2] != (self.height, self.width):
            raise MediaError(
                f"{self.path.name}: a frame of shape {rgb.shape} reached a writer opened "
                f"for {self.width}x{self.height}"
            )
        channels = rgb.shape[2]
        deep = rgb.dtype == np.uint16
        fmt = {3: ("rgb24", "rgb48le"), 4: ("rgba", "rgba64le")}[channels][1 if deep else 0]
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format=fmt)
        frame = frame.reformat(format=self._pix_fmt)
        ctx: Any = av.CodecContext.create(self._codec, "w")
        ctx.width, ctx.height, ctx.pix_fmt = self.width, self.height, self._pix_fmt
        ctx.time_base = Fraction(1, 25)
        try:
            data = b"".join(bytes(p) for p in [*ctx.encode(frame), *ctx.encode(None)])
        except av.FFmpegError as exc:
            raise MediaError(f"writing frame {self._index} as {self._codec} failed: {exc}") from exc
        target = self.path / f"{self._index:08d}{self._suffix}"
        try:
            target.write_bytes(data)
        except OSError as exc:
            raise_for_os_error(exc, target)
        self._index += 1
        self.frames_written += 1

    def close(self) -> None:
        """Nothing to flush: every frame is its own file."""

    def abort(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def open_frame_writer(
    path: Path,
    settings: EncodeSettings,
    *,
    final: Path,
    first_frame: int,
    source_pix_fmt: str = "",
    **encoder: Any,
) -> Any:
    """The chunk's writer: a ChunkEncoder for video codecs, image files for PNG/TIFF."""
    from vsr_desktop.core.media.encode import ChunkEncoder

    if settings.profile().image_sequence:
        return ImageSequenceWriter(
            path,
            settings,
            final=final,
            first_frame=first_frame,
            width=encoder["width"],
            height=encoder["height"],
            source_bit_depth=encoder["source_bit_depth"],
            source_pix_fmt=source_pix_fmt,
            alpha=encoder.get("alpha", False),  # RGBA images for a source with alpha
        )
    return ChunkEncoder(path, settings, source_pix_fmt=source_pix_fmt, **encoder)


def chunk_frame_count(path: Path) -> int | None:
    """Frames in a finished chunk (a video file, or a folder of images); None if unreadable."""
    from vsr_desktop.core.errors import VsrError
    from vsr_desktop.core.media.probe import probe

    try:
        if path.is_dir():
            return sum(1 for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not path.exists():
            return None
        return probe(path).video.frame_count
    except (OSError, VsrError):
        return None


def merge_image_sequence(
    source: MediaInfo,
    chunk_paths: Sequence[Path],
    output: Path,
    codec: str,
    cancel: threading.Event | None = None,
) -> list[str]:
    """Gather the chunks' frames under the output's names, atomically; returns notes."""
    target = image_target(output, codec)
    parent = target.folder.parent if target.owns_folder else target.folder
    parent.mkdir(parents=True, exist_ok=True)
    building = (
        parent / f".{target.folder.name}.partial"
        if target.owns_folder
        else target.folder / f".{target.stem}vsr.partial"
    )
    shutil.rmtree(building, ignore_errors=True)
    try:
        building.mkdir()
        index = 0
        for chunk in chunk_paths:
            for frame in sorted(chunk.iterdir()):
                if frame.suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                if cancel is not None and cancel.is_set():
                    raise CancelledError("merge cancelled")
                _move(frame, building / target.name(index))
                index += 1
        notes = write_audio_sidecars(source, building, target.stem)
        if target.owns_folder:
            swap_folder(building, target.folder)
        else:
            for frame in sorted(building.iterdir()):
                os.replace(frame, target.folder / frame.name)
            building.rmdir()
    except OSError as exc:
        shutil.rmtree(building, ignore_errors=True)
        raise_for_os_error(exc, output)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return notes


def _move(src: Path, dst: Path) -> None:
    """Rename (same disk) or copy: the work folder may be on another disk than the output."""
    try:
        os.replace(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def swap_folder(built: Path, folder: Path) -> None:
    """Put the finished folder under its name; an old one (overwrite allowed) goes only then
    (local merges and cloud downloads)."""
    old = folder.with_name(f".{folder.name}.old")
    if folder.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(folder, old)
    os.replace(built, folder)
    shutil.rmtree(old, ignore_errors=True)


def write_audio_sidecars(source: MediaInfo, folder: Path, stem: str) -> list[str]:
    """Each audio track as WAV beside the frames, starting with the first frame."""
    import av

    tracks = [s for s in source.copied_streams if s.kind == "audio"]
    if not tracks:
        return []
    video = source.video
    start = Fraction(video.frame_pts[0]) * video.time_base if video.frame_pts else Fraction(0)
    names = []
    try:
        with av.open(str(source.path)) as src:
            for number, track in enumerate(tracks, start=1):
                name = f"{stem}audio.wav" if len(tracks) == 1 else f"{stem}audio_{number}.wav"
                _write_wav(src, src.streams[track.index], start, folder / name)
                names.append(name)
    except av.FFmpegError as exc:
        raise MediaError(f"writing the audio beside the images failed: {exc}") from exc
    return [f"audio written beside the images as {', '.join(names)} (images hold no sound)"]


def _write_wav(src: Any, stream: Any, start: Fraction, path: Path) -> None:
    """Decode one track to PCM (16 or 24 bit), aligned so sample 0 is the first frame."""
    import av

    from vsr_desktop.core.media.convert import audio_encoder_settings

    encoder, sample_format, rate, _ = audio_encoder_settings("pcm", stream.codec_context)
    layout = stream.codec_context.layout
    with av.open(str(path), "w", format="wav") as out:
        ostream: Any = out.add_stream(encoder, rate=rate)
        ostream.layout = layout
        ostream.format = sample_format
        resampler = av.AudioResampler(format=sample_format, layout=layout, rate=rate)
        written = 0
        skip: int | None = None  # samples before the first frame's time, not written

        def emit(chunk: Any, when: Fraction) -> None:
            nonlocal written, skip
            if skip is None:
                lead = round((when - start) * rate)
                skip = max(0, -lead)
                if lead > 0:  # audio starts after the picture: silence first
                    emit_frame(_silence(lead, chunk))
            if skip:
                count = chunk.samples
                chunk = _trim(chunk, skip)
                skip = max(0, skip - count)
                if chunk is None:
                    return
            emit_frame(chunk)

        def emit_frame(frame: Any) -> None:
            nonlocal written
            frame.pts, frame.time_base = written, Fraction(1, rate)
            written += frame.samples
            out.mux(ostream.encode(frame))

        for packet in src.demux(stream):
            for frame in packet.decode():
                when = frame.pts * frame.time_base if frame.pts is not None else start
                for chunk in resampler.resample(frame):
                    emit(chunk, when)
        for chunk in resampler.resample(None):
            emit(chunk, start)
        out.mux(ostream.encode(None))


def _silence(samples: int, like: Any) -> Any:
    import av

    channels = like.layout.nb_channels
    dtype = like.to_ndarray().dtype
    frame = av.AudioFrame.from_ndarray(
        np.zeros((1, samples * channels), dtype=dtype), format=like.format.name, layout=like.layout
    )
    frame.sample_rate = like.sample_rate
    return frame


def _trim(frame: Any, samples: int) -> Any:
    """The frame without its first `samples` samples (None when nothing is left)."""
    import av

    if samples >= frame.samples:
        return None
    channels = frame.layout.nb_channels
    data = frame.to_ndarray()[:, samples * channels :]
    trimmed = av.AudioFrame.from_ndarray(
        np.ascontiguousarray(data), format=frame.format.name, layout=frame.layout
    )
    trimmed.sample_rate = frame.sample_rate
    return trimmed


def verify_image_sequence(
    source: Path, output: Path, codec: str | None = None, expected: Sequence[str] = ()
) -> VerifyReport:
    """`vsr verify` for an image sequence: the frame count (images hold no container facts)."""
    import av

    from vsr_desktop.core.media.probe import probe
    from vsr_desktop.core.media.verify import Difference, VerifyReport

    if codec is None:  # a folder: the frames' own suffix says which
        tifs = sorted(output.glob(f"{DEFAULT_STEM}*.tif")) if output.is_dir() else []
        codec = IMAGE_SUFFIXES.get(output.suffix.lower(), "tiff" if tifs else "png")
    target = image_target(output, codec)
    frames = []
    if target.folder.is_dir():
        frames = sorted(p for p in target.folder.iterdir() if target.matches(p.name))
    info = probe(source)
    differences = []
    if len(frames) != info.video.frame_count:
        differences.append(
            Difference(
                "video.frame_count",
                info.video.frame_count,
                len(frames),
                f"video: frame count differs: {info.video.frame_count} → {len(frames)} images",
            )
        )
    width = height = 0
    if frames:
        with av.open(str(frames[0])) as first:
            width, height = first.streams.video[0].width, first.streams.video[0].height
    video = {"frames": len(frames), "width": width, "height": height}
    facts = {"source": {"video": {"frames": info.video.frame_count}}, "output": {"video": video}}
    allowed = [d for d in differences if any(fnmatch.fnmatchcase(d.what, p) for p in expected)]
    found = [d for d in differences if d not in allowed]
    return VerifyReport(source, output, found, allowed, facts)
