"""``auto`` precision meets the CPU convolution choice, with the probe forced both ways.

An AMX/AVX512-BF16 Xeon's probe picks bf16, an AVX2 EPYC's fp32: every case here forces one
answer, so the suite checks both machines' paths on either. Forced bf16 is emulated (~23×
slower) on an AVX2 CPU, so the network and the frames are tiny.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from spandrel.architectures.Compact import Compact

from tests.unit.test_device import PROBE_OUTCOMES, force_probe
from vsr_desktop.core import cpu_convolution
from vsr_desktop.core.cpu_convolution import nnpack_ready
from vsr_desktop.core.device import cpu_cache_key
from vsr_desktop.core.engine import Engine
from vsr_desktop.core.errors import EngineError

needs_nnpack = pytest.mark.skipif(not nnpack_ready(), reason="this PyTorch build has no NNPACK")


def tiny_compact() -> torch.nn.Module:
    """The compact architecture (3×3 convolutions, PReLU, ×4) at 8 features, seeded."""
    torch.manual_seed(4)
    return Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=4).eval()


@pytest.fixture
def frames() -> np.ndarray:
    """Two different 16×16 frames."""
    rng = np.random.default_rng(7)
    return rng.integers(0, 256, size=(2, 16, 16, 3), dtype=np.uint8)


@pytest.fixture(autouse=True)
def no_decisions_from_other_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    """Winograd trial answers made earlier in this process must not leak in."""
    monkeypatch.setattr(cpu_convolution, "_decisions", {})


def onednn_fp32(frames: np.ndarray) -> np.ndarray:
    engine = Engine(tiny_compact(), 4, device="cpu", precision="fp32", cpu_convolution="onednn")
    return engine.upscale(frames)


def max_diff(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(np.int64) - b.astype(np.int64)).max())


@needs_nnpack
@pytest.mark.parametrize("outcome", list(PROBE_OUTCOMES))
def test_winograd_with_auto_precision_runs_fp32_whatever_the_probe_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, frames: np.ndarray, outcome: str
) -> None:
    """Asking for Winograd settles the precision: fp32, no probe, no refusal on an AMX CPU."""
    measured = force_probe(monkeypatch, outcome)
    engine = Engine(tiny_compact(), 4, device="cpu", cpu_convolution="winograd", cache_dir=tmp_path)
    assert engine.dtype == torch.float32
    assert measured == []
    assert not (tmp_path / "precision.json").exists()  # nothing probed, nothing cached
    assert engine.cpu_strategy is not None and engine.cpu_strategy.trial.forced is True
    assert engine.uses_winograd(16, 16) is True
    assert "fp32, Winograd" in engine.describe()
    out = engine.upscale(frames)
    assert out.shape == (2, 64, 64, 3)
    assert max_diff(out, onednn_fp32(frames)) <= 1
    streamed = [rgb for _, rgb in engine.upscale_stream(list(frames), lambda frame: frame)]
    assert max_diff(np.stack(streamed), out) == 0


@pytest.mark.parametrize("outcome", ["bf16", "fp32-emulated"])
def test_explicit_bf16_with_winograd_is_still_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, outcome: str
) -> None:
    force_probe(monkeypatch, outcome)
    with pytest.raises(EngineError, match="fp32 only") as info:
        Engine(
            tiny_compact(),
            4,
            device="cpu",
            precision="bf16",
            cpu_convolution="winograd",
            cache_dir=tmp_path,
        )
    assert "--precision fp32" in info.value.hint


def test_auto_everything_under_a_bf16_probe_runs_bf16_without_a_winograd_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, frames: np.ndarray
) -> None:
    measured = force_probe(monkeypatch, "bf16")
    module = tiny_compact()
    engine = Engine(module, 4, device="cpu", cache_dir=tmp_path)
    assert engine.dtype == torch.bfloat16
    assert len(measured) == 1
    assert engine.cpu_strategy is None  # Winograd is fp32 only: not even set up
    assert engine.frame_workers == 1 and engine.frames_per_call == engine.batch_size == 1
    assert engine.uses_winograd(16, 16) is False
    assert engine.describe().endswith(", bf16")
    cache = json.loads((tmp_path / "precision.json").read_text())["entries"]
    assert cache[cpu_cache_key(module)]["dtype"] == "bfloat16"
    assert not any("winograd" in key for key in cache)
    out = engine.upscale(frames[:1])  # emulated bf16 on AVX2: one tiny frame
    assert out.shape == (1, 64, 64, 3)
    assert max_diff(out, onednn_fp32(frames[:1])) <= 16  # bf16's rounding, not another net


@pytest.mark.parametrize("outcome", ["fp32-slow-bf16", "fp32-emulated"])
def test_auto_everything_under_an_fp32_probe_sets_up_the_winograd_trial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, frames: np.ndarray, outcome: str
) -> None:
    force_probe(monkeypatch, outcome)
    engine = Engine(tiny_compact(), 4, device="cpu", cache_dir=tmp_path)
    assert engine.dtype == torch.float32
    if not nnpack_ready():  # some macOS/Windows builds: oneDNN alone, as before
        assert engine.cpu_strategy is None
        return
    strategy = engine.cpu_strategy
    assert strategy is not None and strategy.trial.forced is None  # timed, not forced
    assert engine.frame_workers == torch.get_num_threads()
    assert engine.uses_winograd(16, 16) is None  # no frames of this size timed yet
    assert "where faster than oneDNN" in engine.describe()
    out = engine.upscale(frames)
    assert out.shape == (2, 64, 64, 3)
    assert max_diff(out, onednn_fp32(frames)) <= 1
