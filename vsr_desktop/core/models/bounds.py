"""Every number read from a model file, parsed strictly and kept within sane bounds.

Why: a model file is input like any other. A scale stored in it used to bypass the command
line's 0.25–8 limit (40× accepted), and ``1e400``, ``inf``, ``nan`` or ``abc`` in an ncnn
``.param`` or in safetensors metadata ended in raw tracebacks or absurd output sizes. The
limits are far above every Real-ESRGAN model (64 features, 23 blocks, ×4) and every network
spandrel knows, and far below what would exhaust memory before the engine's own guard runs.
A value outside them is a crafted or damaged file: one ModelError line (exit 4).
"""

from __future__ import annotations

import math
import re

from vsr_desktop.core.errors import ModelError

#: Network scales of the architectures we know (spandrel's are 1..8 too).
MIN_SCALE, MAX_SCALE = 1, 8
#: An output scale a file may ask for (an ncnn graph ending in a resize): the CLI's range.
MIN_OUTPUT_SCALE, MAX_OUTPUT_SCALE = 0.25, 8.0
#: Channels of one layer (Real-ESRGAN: 64; transformer SR models: up to ~360).
MAX_CHANNELS = 4096
#: Any one dimension of a tensor (attention tables reach 256²=65536 elements, not dims).
MAX_DIM = 16384
#: Elements of one tensor, and of all of them (RRDB x4plus: 16.7 M parameters).
MAX_TENSOR_ELEMENTS = 1 << 28
MAX_TOTAL_ELEMENTS = 1 << 29
#: Tensors in one file (RRDB x4plus: 702).
MAX_TENSORS = 20_000
#: Layers, blobs and one layer's inputs/outputs in an ncnn graph (RRDB x4plus: ~1000 layers).
MAX_LAYERS = 20_000
MAX_LAYER_BLOBS = 64
#: RRDB blocks and compact convolutions (official: 23 and 32).
MAX_BLOCKS = 64
MAX_CONVS = 256
#: Bytes: a .param text, a safetensors header, and a weights file.
MAX_PARAM_BYTES = 16 << 20
MAX_HEADER_BYTES = 64 << 20
MAX_MODEL_BYTES = 4 << 30

_INT = re.compile(r"[+-]?[0-9]{1,12}")
_FLOAT = re.compile(r"[+-]?(?:[0-9]{1,12}(?:\.[0-9]{0,12})?|\.[0-9]{1,12})(?:[eE][+-]?[0-9]{1,3})?")


def _refuse(where: str, what: str, raw: object, allowed: str) -> ModelError:
    shown = repr(raw) if len(repr(raw)) <= 40 else repr(raw)[:37] + "..."
    return ModelError(
        f"{where}: {what} {shown} is not {allowed}",
        "the model file is damaged or was crafted; use an official model file",
    )


def parse_int(raw: str, where: str, what: str, low: int, high: int) -> int:
    """A decimal integer within [low, high]; also ``N.0`` (some exporters write floats)."""
    text = raw.strip()
    if _INT.fullmatch(text):
        value = int(text)
    elif _FLOAT.fullmatch(text):
        number = float(text)
        if not math.isfinite(number) or number != int(number):
            raise _refuse(where, what, raw, f"an integer from {low} to {high}")
        value = int(number)
    else:
        raise _refuse(where, what, raw, f"an integer from {low} to {high}")
    if not low <= value <= high:
        raise _refuse(where, what, raw, f"an integer from {low} to {high}")
    return value


def parse_float(raw: str, where: str, what: str, low: float, high: float) -> float:
    """A finite decimal number within [low, high] (no ``inf``, ``nan``, hex or ``1e400``)."""
    text = raw.strip()
    value = float(text) if _FLOAT.fullmatch(text) else math.nan
    if not math.isfinite(value) or not low <= value <= high:
        raise _refuse(where, what, raw, f"a number from {low:g} to {high:g}")
    return value


def check_scale(value: object, where: str) -> int:
    """A network scale: an integer from 1 to 8."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _refuse(where, "scale", value, f"an integer from {MIN_SCALE} to {MAX_SCALE}")
    if not math.isfinite(value) or value != int(value) or not MIN_SCALE <= value <= MAX_SCALE:
        raise _refuse(where, "scale", value, f"an integer from {MIN_SCALE} to {MAX_SCALE}")
    return int(value)


def check_shape(shape: tuple[int, ...] | list[int], where: str, name: str) -> int:
    """A tensor shape with every dimension and the element count bounded; its element count."""
    if len(shape) > 8:
        raise _refuse(where, f"tensor {name[:60]} rank", len(shape), "8 or less")
    count = 1
    for dim in shape:
        if isinstance(dim, bool) or not isinstance(dim, int) or not 0 <= dim <= MAX_DIM:
            raise _refuse(where, f"tensor {name[:60]} dimension", dim, f"0 to {MAX_DIM}")
        count *= dim
    if count > MAX_TENSOR_ELEMENTS:
        raise _refuse(where, f"tensor {name[:60]} size", count, f"{MAX_TENSOR_ELEMENTS} or less")
    return count


def check_shapes(shapes: dict[str, tuple[int, ...] | list[int]], where: str) -> None:
    """Every tensor's shape, their number and their total size."""
    if len(shapes) > MAX_TENSORS:
        raise _refuse(where, "number of tensors", len(shapes), f"{MAX_TENSORS} or less")
    total = sum(check_shape(shape, where, name) for name, shape in shapes.items())
    if total > MAX_TOTAL_ELEMENTS:
        raise _refuse(where, "total weights", total, f"{MAX_TOTAL_ELEMENTS} or less")
