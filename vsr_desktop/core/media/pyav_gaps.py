"""Fill one gap in PyAV 18: an output stream's sample aspect ratio.

Matroska and WebM muxers write the display size (DisplayWidth/Height) from
`AVStream.sample_aspect_ratio`, which PyAV reads but cannot set; the codec context's SAR
reaches MP4/MOV (pasp) and the H.264/H.265 bitstream, but not Matroska. Without it a
VP9, AV1, ProRes or FFV1 picture in MKV/WebM would play with square pixels.

The field is written through ctypes only after the pointer is proven to be the stream's
AVStream: its AVClass is named "AVStream" and its index matches. Anything else (another
Python, another PyAV layout) makes it a no-op that returns False, never a stray write.
"""

from __future__ import annotations

import ctypes
import sys
import sysconfig
from fractions import Fraction
from typing import Any

# CPython object header (refcount, type) then the Cython vtable pointer, then Stream.ptr.
_PTR_OFFSET = 2 * ctypes.sizeof(ctypes.c_void_p) + ctypes.sizeof(ctypes.c_void_p)


class _Rational(ctypes.Structure):
    _fields_ = [("num", ctypes.c_int), ("den", ctypes.c_int)]


class _AVStreamHead(ctypes.Structure):
    """The start of AVStream (libavformat 61/62, stable within a major version)."""

    _fields_ = [
        ("av_class", ctypes.c_void_p),
        ("index", ctypes.c_int),
        ("id", ctypes.c_int),
        ("codecpar", ctypes.c_void_p),
        ("priv_data", ctypes.c_void_p),
        ("time_base", _Rational),
        ("start_time", ctypes.c_int64),
        ("duration", ctypes.c_int64),
        ("nb_frames", ctypes.c_int64),
        ("disposition", ctypes.c_int),
        ("discard", ctypes.c_int),
        ("sample_aspect_ratio", _Rational),
    ]


def _avstream_of(stream: Any) -> _AVStreamHead | None:
    """The AVStream behind a PyAV stream, or None when it cannot be proven to be one."""
    import av

    if sys.implementation.name != "cpython" or not av.__version__.startswith("18."):
        return None
    if hasattr(sys, "getobjects") or sysconfig.get_config_var("Py_GIL_DISABLED"):
        return None  # a debug or free-threaded CPython has a longer object header
    address = ctypes.c_void_p.from_address(id(stream) + _PTR_OFFSET).value
    if not address:
        return None
    head = _AVStreamHead.from_address(address)
    if not head.av_class or head.index != stream.index or not head.codecpar:
        return None
    class_name = ctypes.c_char_p.from_address(head.av_class).value
    if class_name != b"AVStream":
        return None
    return head


def set_stream_sample_aspect_ratio(stream: Any, sar: Fraction) -> bool:
    """Write `sar` into the output stream's AVStream; False when that is not possible."""
    head = _avstream_of(stream)
    if head is None:
        return False
    head.sample_aspect_ratio.num = sar.numerator
    head.sample_aspect_ratio.den = sar.denominator
    return True
