"""Video in and out with PyAV: probe, decode by timestamp, encode, merge with copied audio."""

from vsr_desktop.core.media.decode import DecodedFrame, iter_frames, read_frame
from vsr_desktop.core.media.encode import (
    CODECS,
    CONTAINERS,
    ChunkEncoder,
    EncodeSettings,
    check_codec_fits_container,
    container_for,
)
from vsr_desktop.core.media.mux import ChunkFile, merge_chunks
from vsr_desktop.core.media.probe import ColorInfo, MediaInfo, StreamInfo, VideoInfo, probe

__all__ = [
    "CODECS",
    "CONTAINERS",
    "ChunkEncoder",
    "ChunkFile",
    "ColorInfo",
    "DecodedFrame",
    "EncodeSettings",
    "MediaInfo",
    "StreamInfo",
    "VideoInfo",
    "check_codec_fits_container",
    "container_for",
    "iter_frames",
    "merge_chunks",
    "probe",
    "read_frame",
]
