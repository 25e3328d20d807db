"""Safe model loading, architecture detection, denoise blending and name resolution."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import pickle
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from vsr_desktop.core.errors import ModelError
from vsr_desktop.core.models import (
    DEFAULT_MODEL_NAME,
    LoadedModel,
    blend_state_dicts,
    bundled_default_model_path,
    load_model_file,
    load_state_dict_file,
    registry,
    resolve_model,
)


def compact_state(num_conv: int = 2, scale: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random SRVGGNetCompact state dict with the official key names (body.N)."""
    gen = torch.Generator().manual_seed(seed)
    nf = 8
    state: dict[str, torch.Tensor] = {}
    convs = [(3, nf)] + [(nf, nf)] * num_conv + [(nf, 3 * scale * scale)]
    index = 0
    for n, (cin, cout) in enumerate(convs):
        state[f"body.{index}.weight"] = torch.randn(cout, cin, 3, 3, generator=gen) * 0.1
        state[f"body.{index}.bias"] = torch.randn(cout, generator=gen) * 0.01
        index += 1
        if n < len(convs) - 1:
            state[f"body.{index}.weight"] = torch.rand(nf, generator=gen) * 0.25
            index += 1
    return state


def rrdb_state(scale: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random 1-block RRDBNet with official Real-ESRGAN keys (x2 unshuffles to 12 ch)."""
    gen = torch.Generator().manual_seed(seed)
    nf, gc = 16, 32  # spandrel assumes the official growth channels (32)
    in_ch = {4: 3, 2: 12, 1: 48}[scale]

    def conv(name: str, cin: int, cout: int) -> None:
        state[f"{name}.weight"] = torch.randn(cout, cin, 3, 3, generator=gen) * 0.05
        state[f"{name}.bias"] = torch.zeros(cout)

    state: dict[str, torch.Tensor] = {}
    conv("conv_first", in_ch, nf)
    for r in (1, 2, 3):
        for c in range(1, 6):
            conv(f"body.0.rdb{r}.conv{c}", nf + (c - 1) * gc, nf if c == 5 else gc)
    for name in ("conv_body", "conv_up1", "conv_up2", "conv_hr"):
        conv(name, nf, nf)
    conv("conv_last", nf, 3)
    return state


class Evil:
    """Unpickling this creates ``marker``: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (exec, (f"import pathlib; pathlib.Path({str(self.marker)!r}).touch()",))


@pytest.mark.parametrize("style", ["raw-pickle", "torch-save"])
@pytest.mark.parametrize("suffix", [".pth", ".pt", ".ckpt"])
def test_malicious_pickle_is_refused_without_running_code(
    tmp_path: Path, style: str, suffix: str
) -> None:
    # The payload is live: plain unpickling really does create a marker.
    control = tmp_path / "control-marker"
    pickle.loads(pickle.dumps(Evil(control)))
    assert control.exists()

    marker = tmp_path / "pwned-marker"
    path = tmp_path / f"evil{suffix}"
    payload = {"params": {"body.0.weight": torch.zeros(1), "hook": Evil(marker)}}
    if style == "raw-pickle":
        path.write_bytes(pickle.dumps(payload, protocol=2))
    else:
        torch.save(payload, path)
    with pytest.raises(ModelError) as info:
        load_model_file(path)
    assert "Refusing" in info.value.message
    with pytest.raises(ModelError):
        resolve_model(str(path))
    assert not marker.exists()


def test_spandrel_file_loaders_are_never_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import spandrel

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("spandrel must not open model files itself")

    monkeypatch.setattr(spandrel.ModelLoader, "load_from_file", forbidden)
    monkeypatch.setattr(spandrel.ModelLoader, "load_state_dict_from_file", forbidden)
    path = tmp_path / "m.pt"
    torch.save(compact_state(), path)
    assert load_model_file(path).arch == "SRVGGNetCompact"


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
@pytest.mark.parametrize("scale", [4, 2])
def test_compact_model_is_detected(tmp_path: Path, suffix: str, scale: int) -> None:
    state = compact_state(scale=scale)
    path = tmp_path / f"compact{suffix}"
    if suffix == ".pth":
        torch.save({"params": state}, path)  # the official files wrap weights in "params"
    else:
        save_file(state, str(path))
    model = load_model_file(path)
    assert isinstance(model, LoadedModel)
    assert (model.arch, model.scale, model.name, model.source) == (
        "SRVGGNetCompact",
        scale,
        "compact",
        path,
    )
    assert model.supports_half and model.supports_bfloat16
    assert not model.module.training
    assert all(not p.requires_grad for p in model.module.parameters())
    with torch.no_grad():
        out = model.module(torch.rand(1, 3, 8, 10))
    assert out.shape == (1, 3, 8 * scale, 10 * scale)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
@pytest.mark.parametrize("scale", [4, 2])
def test_rrdb_model_is_detected(tmp_path: Path, suffix: str, scale: int) -> None:
    state = rrdb_state(scale)
    path = tmp_path / f"rrdb{suffix}"
    if suffix == ".pth":
        torch.save({"params_ema": state}, path)
    else:
        save_file(state, str(path))
    model = load_model_file(path)
    assert (model.arch, model.scale) == ("RRDBNet", scale)
    with torch.no_grad():
        out = model.module(torch.rand(1, 3, 8, 8))
    assert out.shape == (1, 3, 8 * scale, 8 * scale)


def test_blend_is_reals_dni_formula() -> None:
    a, b = compact_state(seed=1), compact_state(seed=2)
    mixed = blend_state_dicts(a, b, 0.3)
    for key in a:
        torch.testing.assert_close(mixed[key], 0.3 * a[key] + 0.7 * b[key])
    for key in a:
        torch.testing.assert_close(blend_state_dicts(a, b, 1.0)[key], a[key])
        torch.testing.assert_close(blend_state_dicts(a, b, 0.0)[key], b[key])
    with pytest.raises(ModelError):
        blend_state_dicts(a, b, 1.5)
    with pytest.raises(ModelError):
        blend_state_dicts(a, compact_state(num_conv=3), 0.5)
    with pytest.raises(ModelError):
        blend_state_dicts(a, compact_state(scale=2), 0.5)


def test_default_model_is_bundled_and_loads_offline(tmp_path: Path) -> None:
    assert DEFAULT_MODEL_NAME == "realesr-animevideov3"
    assert bundled_default_model_path().is_file()
    model = resolve_model(DEFAULT_MODEL_NAME, cache_dir=tmp_path)
    assert model.source == bundled_default_model_path()
    assert (model.name, model.arch, model.scale) == (DEFAULT_MODEL_NAME, "SRVGGNetCompact", 4)
    with torch.no_grad():
        out = model.module(torch.rand(1, 3, 12, 16))
    assert out.shape == (1, 3, 48, 64)


def test_missing_model_names_the_download_command(tmp_path: Path) -> None:
    with pytest.raises(ModelError) as info:
        resolve_model("realesr-general-x4v3", cache_dir=tmp_path)
    assert "vsr models download realesr-general-x4v3" in info.value.hint


def test_unknown_name_lists_models(tmp_path: Path) -> None:
    with pytest.raises(ModelError) as info:
        resolve_model("no-such-model", cache_dir=tmp_path)
    assert "RealESRGAN_x4plus" in info.value.hint


def test_denoise_only_for_general_model(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="Denoise"):
        resolve_model(DEFAULT_MODEL_NAME, denoise_strength=0.5, cache_dir=tmp_path)
    with pytest.raises(ModelError, match="range"):
        resolve_model("realesr-general-x4v3", denoise_strength=2.0, cache_dir=tmp_path)


def _cache_as(
    monkeypatch: pytest.MonkeyPatch, cache: Path, name: str, state: dict[str, torch.Tensor]
) -> Path:
    """Put a stand-in for an official file in the cache and make the registry accept it."""
    spec = registry.MODEL_REGISTRY[name]
    path = cache / spec.filename
    torch.save({"params": state}, path)
    data = path.read_bytes()
    monkeypatch.setitem(
        registry.MODEL_REGISTRY,
        name,
        dataclasses.replace(spec, size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest()),
    )
    return path


def test_denoise_strength_blends_the_two_general_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    x4v3, wdn = compact_state(seed=3), compact_state(seed=4)
    _cache_as(monkeypatch, tmp_path, "realesr-general-x4v3", x4v3)
    _cache_as(monkeypatch, tmp_path, "realesr-general-wdn-x4v3", wdn)
    model = resolve_model("realesr-general-x4v3", denoise_strength=0.25, cache_dir=tmp_path)
    loaded = model.module.state_dict()
    for key in x4v3:
        torch.testing.assert_close(loaded[key], 0.25 * x4v3[key] + 0.75 * wdn[key])
    plain = resolve_model("realesr-general-x4v3", denoise_strength=1.0, cache_dir=tmp_path)
    for key in x4v3:
        torch.testing.assert_close(plain.module.state_dict()[key], x4v3[key])


def test_downloaded_official_default_wins_over_bundled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _cache_as(monkeypatch, tmp_path, DEFAULT_MODEL_NAME, compact_state())
    assert resolve_model(DEFAULT_MODEL_NAME, cache_dir=tmp_path).source == path


def test_wrong_file_under_an_official_name_is_rejected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _cache_as(monkeypatch, tmp_path, "RealESRGAN_x4plus", compact_state())
    with pytest.raises(ModelError, match="expected RRDBNet"):
        resolve_model("RealESRGAN_x4plus", cache_dir=tmp_path)


@pytest.fixture
def served_dir(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    root = tmp_path / "served"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_resolve_downloads_when_allowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, served_dir: tuple[Path, str]
) -> None:
    root, base = served_dir
    source = _cache_as(monkeypatch, root, "RealESRGAN_x4plus_anime_6B", rrdb_state())
    spec = registry.MODEL_REGISTRY["RealESRGAN_x4plus_anime_6B"]
    monkeypatch.setitem(
        registry.MODEL_REGISTRY, spec.name, dataclasses.replace(spec, url=f"{base}/{spec.filename}")
    )
    cache = tmp_path / "cache"
    with pytest.raises(ModelError, match="not downloaded"):
        resolve_model(spec.name, cache_dir=cache)
    seen: list[tuple[int, int]] = []
    model = resolve_model(
        spec.name, cache_dir=cache, allow_download=True, progress=lambda d, t: seen.append((d, t))
    )
    assert (model.arch, model.scale, model.source) == ("RRDBNet", 4, cache / spec.filename)
    assert (cache / spec.filename).read_bytes() == source.read_bytes()
    assert seen[-1] == (spec.size_bytes, spec.size_bytes)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("junk.pth", b"not a pickle at all"),
        ("junk.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00{broken json}   "),
        ("model.onnx", b"whatever"),
    ],
)
def test_damaged_or_unsupported_files_are_model_errors(
    tmp_path: Path, name: str, content: bytes
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ModelError):
        load_model_file(path)


def test_unknown_architecture_and_non_dict(tmp_path: Path) -> None:
    path = tmp_path / "odd.safetensors"
    save_file({"foo.weight": torch.zeros(2, 2)}, str(path))
    with pytest.raises(ModelError, match="architecture"):
        load_model_file(path)
    tensor_only = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), tensor_only)
    with pytest.raises(ModelError, match="not a state dict"):
        load_model_file(tensor_only)
    with pytest.raises(ModelError, match="not found"):
        load_state_dict_file(tmp_path / "missing.pth")


def test_importing_loading_is_lazy() -> None:
    code = (
        "import sys\n"
        "from vsr_desktop.core.models import resolve_model, LoadedModel\n"
        "assert 'torch' not in sys.modules and 'spandrel' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
