"""Device selection, the CPU precision probe and its cache, and the malloc tuning."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from spandrel.architectures.Compact import Compact

from vsr_desktop.core import device as dev
from vsr_desktop.core.errors import EngineError
from vsr_desktop.core.malloc_tuning import tune_malloc

CPU = torch.device("cpu")


def _compact() -> torch.nn.Module:
    torch.manual_seed(0)
    return Compact(num_in_ch=3, num_out_ch=3, num_feat=64, num_conv=16, upscale=4).eval()


#: Probe outcomes a test can force: what ``auto`` precision then picks on the CPU.
PROBE_OUTCOMES = {
    # name: (native bf16 hardware, measured bf16 speedup or None when never measured, dtype)
    "bf16": (True, 3.0, torch.bfloat16),  # AMX / AVX512-BF16: bf16 pays
    "fp32-slow-bf16": (True, 1.0, torch.float32),  # native, but not 1.3x faster
    "fp32-emulated": (False, None, torch.float32),  # AVX2 only: never measured
}


def force_probe(monkeypatch: pytest.MonkeyPatch, outcome: str) -> list[torch.nn.Module]:
    """Make the CPU probe answer ``outcome`` on any CPU; returns the modules it measured.

    So tests of ``auto`` precision give the same answer on an AMX Xeon and an AVX2 EPYC.
    """
    native, speedup, _ = PROBE_OUTCOMES[outcome]
    measured: list[torch.nn.Module] = []

    def measure(module: torch.nn.Module, *_args: object, **_kwargs: object) -> float:
        assert speedup is not None, "emulated bf16 must not be measured"
        measured.append(module)
        return speedup

    monkeypatch.setattr(dev, "cpu_has_native_bf16", lambda: native)
    monkeypatch.setattr(dev, "measure_bf16_speedup", measure)
    return measured


def test_cpu_and_auto() -> None:
    assert dev.select_device("cpu") == CPU
    assert dev.select_device(CPU) == CPU
    auto = dev.select_device("auto")
    if torch.cuda.is_available():
        assert auto.type == "cuda"
    elif dev._mps_available():
        assert auto.type == "mps"
    else:
        assert auto == CPU


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
@pytest.mark.parametrize("name", ["cuda", "cuda:0", "CUDA:1"])
def test_cuda_requested_without_gpu_is_an_error(name: str) -> None:
    with pytest.raises(EngineError) as info:
        dev.select_device(name)
    assert "CUDA" in info.value.message
    assert "CPU" in info.value.hint


@pytest.mark.skipif(dev._mps_available(), reason="this machine has MPS")
def test_mps_requested_without_mps_is_an_error() -> None:
    with pytest.raises(EngineError, match="MPS"):
        dev.select_device("mps")


@pytest.mark.parametrize("name", ["banana", "tpu", ""])
def test_unknown_device_is_an_error(name: str) -> None:
    with pytest.raises(EngineError) as info:
        dev.select_device(name)
    assert "auto, cpu" in info.value.hint


def test_describe_cpu() -> None:
    text = dev.describe_device(CPU)
    assert text.startswith("CPU: ")
    assert f"{torch.get_num_threads()} threads" in text


def test_explicit_precisions() -> None:
    assert dev.choose_dtype(CPU, "fp32") == torch.float32
    assert dev.choose_dtype(CPU, "bf16") == torch.bfloat16
    assert dev.choose_dtype(torch.device("cuda"), "auto") == torch.float16
    assert dev.choose_dtype(torch.device("mps"), "auto") == torch.float16
    assert dev.choose_dtype(CPU, "auto", module=None) == torch.float32
    with pytest.raises(EngineError, match="fp16"):
        dev.choose_dtype(CPU, "fp16")
    with pytest.raises(EngineError, match="precision"):
        dev.choose_dtype(CPU, "int8")


@pytest.mark.parametrize("outcome", list(PROBE_OUTCOMES))
def test_auto_precision_follows_the_probe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, outcome: str
) -> None:
    measured = force_probe(monkeypatch, outcome)
    cache = tmp_path / "precision.json"
    module = _compact()
    expected = PROBE_OUTCOMES[outcome][2]
    assert dev.choose_dtype(CPU, "auto", module, cache_path=cache) == expected
    assert len(measured) == (0 if outcome == "fp32-emulated" else 1)
    entry = json.loads(cache.read_text())["entries"][dev.cpu_cache_key(module)]
    assert entry["dtype"] == str(expected).removeprefix("torch.")
    # Explicit precisions never probe, whatever the CPU.
    assert dev.choose_dtype(CPU, "fp32", module, cache_path=cache) == torch.float32
    assert dev.choose_dtype(CPU, "bf16", module, cache_path=cache) == torch.bfloat16
    assert len(measured) == (0 if outcome == "fp32-emulated" else 1)


@pytest.mark.parametrize("outcome", ["bf16", "fp32-emulated"])
def test_probe_result_is_cached_and_reread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, outcome: str
) -> None:
    measured = force_probe(monkeypatch, outcome)
    cache = tmp_path / "sub" / "precision.json"
    module = _compact()
    first = dev.choose_dtype(CPU, "auto", module, sample_hw=(32, 32), cache_path=cache)
    assert first == PROBE_OUTCOMES[outcome][2]
    probes = len(measured)
    data = json.loads(cache.read_text())
    key = dev.cpu_cache_key(module)
    assert data["entries"][key]["dtype"] == str(first).removeprefix("torch.")

    # Flip the stored decision: only a function that reads the cache can return it.
    flipped = "float32" if first == torch.bfloat16 else "bfloat16"
    data["entries"][key]["dtype"] = flipped
    cache.write_text(json.dumps(data))
    second = dev.choose_dtype(CPU, "auto", module, sample_hw=(32, 32), cache_path=cache)
    assert str(second).removeprefix("torch.") == flipped
    assert len(measured) == probes  # no probe ran


@pytest.mark.parametrize("garbage", ["{not json", "[]", '{"version": 1, "entries": 3}', ""])
def test_corrupt_cache_is_ignored_and_rewritten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, garbage: str
) -> None:
    force_probe(monkeypatch, "bf16")
    cache = tmp_path / "precision.json"
    cache.write_text(garbage)
    module = _compact()
    dtype = dev.choose_dtype(CPU, "auto", module, sample_hw=(32, 32), cache_path=cache)
    assert dtype == torch.bfloat16
    data = json.loads(cache.read_text())
    assert data["entries"][dev.cpu_cache_key(module)]["dtype"] == "bfloat16"


@pytest.mark.parametrize("outcome", ["bf16", "fp32-emulated"])
def test_unwritable_cache_still_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, outcome: str
) -> None:
    force_probe(monkeypatch, outcome)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    dtype = dev.choose_dtype(
        CPU, "auto", _compact(), sample_hw=(32, 32), cache_path=blocker / "precision.json"
    )
    assert dtype == PROBE_OUTCOMES[outcome][2]


def test_bf16_probe_is_short_and_leaves_the_module_alone() -> None:
    module = _compact()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    t0 = time.perf_counter()
    speedup = dev.measure_bf16_speedup(module)
    elapsed = time.perf_counter() - t0
    assert speedup > 0
    assert elapsed < 6  # budget 2.5 s plus one run over it; the machine is shared
    for k, v in module.state_dict().items():
        assert v.dtype == torch.float32
        assert torch.equal(v, before[k])


def test_cache_key_names_cpu_threads_torch_and_arch() -> None:
    key = dev.cpu_cache_key(_compact())
    assert key.startswith("cpu|")
    assert f"threads={torch.get_num_threads()}" in key
    assert torch.__version__ in key
    assert key.endswith("|SRVGGNetCompact")


def test_malloc_tuning_is_idempotent() -> None:
    first = tune_malloc()
    assert tune_malloc() == first
    if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
        assert first["trim_threshold"] >= 1 << 30
        assert first["mmap_threshold"] >= 16 << 20
    else:
        assert first == {}


_FRAME_FAULTS = """
import resource, numpy as np
from tests.unit.test_engine import compact_x4
from vsr_desktop.core.engine import Engine
engine = Engine(compact_x4(), 4, device="cpu", precision="fp32", cpu_convolution="winograd")
frames = [np.full((180, 320, 3), 40 * i, np.uint8) for i in range(6)]
for _ in engine.upscale_stream(frames, lambda f: f):  # first touches: not counted
    pass
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in engine.upscale_stream(frames, lambda f: f):
    pass
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / len(frames))
"""


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="glibc's per-thread arenas",
)
def test_frame_workers_reuse_their_memory_instead_of_faulting_it_in_again() -> None:
    """glibc deletes a thread arena's emptied 64 MiB heap: each 320x180 frame's worker then
    mapped a new heap per 15 MB activation and faulted it in (~4,500 faults per frame)."""
    result = subprocess.run(
        [sys.executable, "-c", _FRAME_FAULTS],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    faults_per_frame = float(result.stdout.strip().splitlines()[-1])
    assert faults_per_frame < 1_000  # 1,000 faults = 4 MB faulted in again per frame
