"""The first GPU run must not fail (issue 20, item 0): kernels, precision, NaN, OOM, workers.

No GPU here. Where a test needs one, it fakes only the boundary nothing here can reach — the
torch.cuda queries (``is_available``, ``device_count``, ``get_device_capability``,
``get_arch_list``, ``get_device_name``, ``mem_get_info``) through monkeypatch, said in each
test — and runs everything behind it for real on the CPU.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from pathlib import PurePosixPath
from typing import Any

import numpy as np
import pytest
import torch

from tests.unit.test_engine import compact_x4, engine
from vsr_desktop.backends.slurm import SlurmBackend, SlurmTarget, _partition_gpus
from vsr_desktop.core import device as dev
from vsr_desktop.core import gpu_checks, memory_guard
from vsr_desktop.core.device_pool import DevicePool, parse_devices
from vsr_desktop.core.errors import EngineError, VsrError
from vsr_desktop.core.upscaler import is_out_of_memory

CUDA0 = torch.device("cuda", 0)


def fake_gpus(
    monkeypatch: pytest.MonkeyPatch,
    capabilities: list[tuple[int, int]],
    archs: list[str],
    free: int = 8 << 30,
) -> None:
    """Fake the torch.cuda queries (the device boundary) for GPUs of these capabilities."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: len(capabilities))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i=0: capabilities[i])
    monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: list(archs))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: f"Fake GPU {i}")
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda d=None: (free, 2 * free))


CU13 = ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"]


@pytest.mark.parametrize(
    ("capability", "archs", "ok"),
    [
        ((6, 1), CU13, False),  # GTX 1080 on torch 2.14 cu13
        ((7, 0), CU13, False),  # V100
        ((7, 5), CU13, True),  # T4
        ((8, 9), CU13, True),  # L4: sm_86 cubins run on 8.9
        ((9, 0), ["sm_80", "compute_80"], True),  # PTX JIT for newer GPUs
        ((9, 0), ["sm_80"], False),  # cubins of another major do not
        ((7, 0), [], True),  # a build that does not say is trusted
    ],
)
def test_arch_support_follows_cuda_compatibility(
    capability: tuple[int, int], archs: list[str], ok: bool
) -> None:
    assert gpu_checks.arch_supported(capability, archs) is ok


def test_auto_skips_a_gpu_without_kernels_and_warns(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fake_gpus(monkeypatch, [(6, 1)], CU13)  # torch.cuda faked: a GTX 1080
    with caplog.at_level(logging.WARNING):
        assert dev.select_device("auto") == torch.device("cpu")
    assert "Fake GPU 0" in caplog.text and "compute capability 6.1" in caplog.text
    assert "sm_75" in caplog.text and "running on the CPU" in caplog.text


def test_auto_takes_the_next_gpu_with_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_gpus(monkeypatch, [(6, 1), (8, 6)], CU13)  # torch.cuda faked: old GPU first
    assert dev.select_device("auto") == torch.device("cuda", 1)


def test_an_explicit_gpu_without_kernels_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_gpus(monkeypatch, [(7, 0)], CU13)  # torch.cuda faked: a V100
    with pytest.raises(EngineError) as caught:
        dev.select_device("cuda")
    text = caught.value.user_message()
    assert "Fake GPU 0" in text and "7.0" in text and "sm_75, sm_80" in text
    assert "--device cpu" in text


@pytest.mark.parametrize(
    ("half", "bf16", "capability", "expected"),
    [
        (True, True, (7, 5), torch.float16),
        (False, True, (7, 5), torch.float32),  # no bf16 before Ampere
        (False, True, (8, 6), torch.bfloat16),
        (False, False, (8, 6), torch.float32),
    ],
)
def test_gpu_auto_precision_honours_the_model_and_the_gpu(
    monkeypatch: pytest.MonkeyPatch,
    half: bool,
    bf16: bool,
    capability: tuple[int, int],
    expected: torch.dtype,
) -> None:
    fake_gpus(monkeypatch, [capability], CU13)  # torch.cuda faked: capability only
    dtype = dev.choose_dtype(CUDA0, "auto", supports_half=half, supports_bfloat16=bf16)
    assert dtype == expected


def test_explicit_precisions_the_model_or_gpu_cannot_run_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_gpus(monkeypatch, [(7, 5)], CU13)  # torch.cuda faked: a T4
    with pytest.raises(EngineError, match="Ampere"):
        dev.choose_dtype(CUDA0, "bf16")
    with pytest.raises(EngineError, match="fp16"):
        dev.choose_dtype(CUDA0, "fp16", supports_half=False)
    with pytest.raises(EngineError, match="bf16"):
        dev.choose_dtype(torch.device("cpu"), "bf16", supports_bfloat16=False)


def test_cpu_auto_never_probes_bf16_for_a_model_without_it(tmp_path: Any) -> None:
    dtype = dev.choose_dtype(
        torch.device("cpu"),
        "auto",
        compact_x4(),
        cache_path=tmp_path / "p.json",
        supports_bfloat16=False,
    )
    assert dtype == torch.float32 and not (tmp_path / "p.json").exists()


class NanOnce(torch.nn.Module):
    """A network whose first forward pass overflows (NaN), as fp16 does in SwinIR or HAT."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = compact_x4()
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        y = self.inner(x)
        return y * float("nan") if int(self.calls) == 1 else y


def test_a_non_finite_batch_is_rerun_in_fp32_and_said_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The check runs on GPUs only (on the CPU fp32 cannot overflow so); forced on here to
    run the real retry path."""
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 256, size=(2, 16, 20, 3), dtype=np.uint8)
    reference = engine(compact_x4(), 4).upscale(frames)
    eng = engine(NanOnce(), 4)
    eng._check_finite = True
    with caplog.at_level(logging.WARNING):
        first = eng.upscale(frames[:1])
        eng.module.calls.zero_()  # the next batch overflows again
        second = eng.upscale(frames[1:])
    assert np.array_equal(np.concatenate([first, second]), reference)
    assert caplog.text.count("NaN/inf") == 1 and eng._nonfinite_batches == 2


@pytest.mark.parametrize(
    "message",
    [
        "CUDA out of memory. Tried to allocate 2.00 GiB",
        "cuDNN error: CUDNN_STATUS_ALLOC_FAILED",
        "GET was unable to find an engine to execute this computation",
        "CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`",
        "MPSGraph: Invalid buffer size: 12.00 GB",
        "[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory",
    ],
)
def test_every_allocation_failure_is_out_of_memory_and_tiles(message: str) -> None:
    assert is_out_of_memory(RuntimeError(message))

    class Budget(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = compact_x4()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if (
                x.shape[-1] * x.shape[-2] > 3000
            ):  # a 64² frame is too much, a padded 32² tile is not
                raise RuntimeError(message)
            return self.inner(x)

    frames = np.random.default_rng(0).integers(0, 256, size=(1, 64, 64, 3), dtype=np.uint8)
    eng = engine(Budget(), 4)
    assert eng.upscale(frames).shape == (1, 256, 256, 3)
    assert 0 < eng.tile <= 32


def test_other_errors_are_not_out_of_memory() -> None:
    assert not is_out_of_memory(RuntimeError("CUDA error: no kernel image is available"))
    assert not is_out_of_memory(ValueError("out of memory"))


def test_tile_from_free_memory_uses_the_guards_working_sets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    work = memory_guard.FrameWork(
        width=1920,
        height=1080,
        bit_depth=8,
        model_scale=4,
        outscale=4.0,
        network_bytes_per_pixel=memory_guard.network_bytes_per_pixel("SRVGGNetCompact", "fp32"),
        network_on_host=False,
    )
    assert gpu_checks.tile_from_free_memory(work, 1, 80 << 30) == 0  # an H100: whole frames
    small = gpu_checks.tile_from_free_memory(work, 1, 2 << 30)  # a 4 GB card, half in use
    assert small is not None and 32 <= small < 1920
    assert gpu_checks.tile_from_free_memory(work, 1, 1 << 20) is None
    assert gpu_checks.tile_from_free_memory(work, 1, None) is None
    fake_gpus(monkeypatch, [(8, 6)], CU13, free=3 << 30)  # torch.cuda.mem_get_info faked
    assert gpu_checks.free_device_bytes(CUDA0) == 3 << 30
    assert gpu_checks.free_device_bytes(torch.device("cpu")) is None


def test_cudnn_autotunes_only_once_a_frame_size_repeats(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    tuning = gpu_checks.ShapeTuning()
    video = [tuning.observe((1, 3, 1080, 1920)) for _ in range(5)]
    assert video == [False, False, True, True, True]
    regions = [tuning.observe((1, 3, 100 + i, 200)) for i in range(5)]
    assert not any(regions)  # the preview's regions of many sizes never re-tune
    gpu_checks.apply_cudnn_tuning(torch.device("cpu"), tuning, (1, 3, 8, 8))
    assert torch.backends.cudnn.benchmark is False
    for _ in range(3):
        gpu_checks.apply_cudnn_tuning(CUDA0, tuning, (1, 3, 8, 8))
    assert torch.backends.cudnn.benchmark is True


@pytest.mark.parametrize(
    ("requested", "env", "expected"),
    [
        ("auto", {"AWS_BATCH_JOB_ID": "j", "NVIDIA_VISIBLE_DEVICES": "0"}, "cuda"),
        ("cpu", {"AWS_BATCH_JOB_ID": "j", "NVIDIA_VISIBLE_DEVICES": "0"}, "cuda"),
        ("mps", {"AWS_BATCH_JOB_ID": "j"}, "auto"),  # a CPU queue: no GPU given
        ("cuda:1", {"SLURM_JOB_ID": "5", "SLURM_JOB_GPUS": "3"}, "cuda"),
        ("auto", {"SLURM_JOB_ID": "5", "SLURM_JOB_GPUS": "3"}, "auto"),  # its bound GPU
        ("cpu", {"SLURM_JOB_ID": "5", "CUDA_VISIBLE_DEVICES": "0"}, "cpu"),
        ("auto", {"SLURM_JOB_ID": "5"}, "auto"),
        ("auto", {}, "auto"),
    ],
)
def test_workers_ask_for_the_device_they_were_given(
    requested: str, env: dict[str, str], expected: str
) -> None:
    assert gpu_checks.worker_device(requested, env) == expected


def test_parse_devices() -> None:
    assert parse_devices("0,1") == ["cuda:0", "cuda:1"]
    assert parse_devices(" cpu, cuda:2 ") == ["cpu", "cuda:2"]
    assert parse_devices("") == []
    with pytest.raises(EngineError, match="not a device"):
        parse_devices("0;rm")


def test_the_device_pool_spreads_chunks_and_hands_results_back_on_this_thread() -> None:
    made: list[str] = []
    seen: list[tuple[int, str, str]] = []

    def work(chunk: int, engine: str, stop: threading.Event) -> int:
        time.sleep(0.02)
        return chunk * 10

    def on_result(chunk: int, result: int, device: str) -> None:
        assert result == chunk * 10
        seen.append((chunk, device, threading.current_thread().name))

    pool: DevicePool[int, str, int] = DevicePool(
        ["cpu", "cpu"], lambda d: made.append(d) or f"engine-{len(made)}", work
    )
    pool.run(list(range(8)), on_result)
    assert made == ["cpu", "cpu"]
    assert sorted(c for c, _, _ in seen) == list(range(8))
    assert {name for _, _, name in seen} == {threading.current_thread().name}


def test_the_first_error_of_a_device_stops_the_others() -> None:
    started: list[int] = []

    def work(chunk: int, engine: str, stop: threading.Event) -> int:
        started.append(chunk)
        if chunk == 1:
            raise EngineError("device 2 broke")
        for _ in range(100):
            if stop.is_set():
                raise VsrError("stopped")
            time.sleep(0.01)
        return chunk

    pool: DevicePool[int, str, int] = DevicePool(["a", "b"], lambda d: d, work)
    with pytest.raises(EngineError, match="device 2 broke"):
        pool.run(list(range(10)), lambda *_: None)
    assert len(started) < 10


class FakeTransport:
    """Stands in for the cluster's shell: answers sinfo and sbatch, keeps the scripts."""

    def __init__(self, gres: str) -> None:
        self.gres = gres
        self.calls: list[list[str]] = []

    def run(self, args: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        self.calls.append(list(args))
        out = self.gres if args[0] == "sinfo" else f"{100 + len(self.calls)}"
        return subprocess.CompletedProcess(args, 0, out, "")

    def write_text(self, path: PurePosixPath, text: str) -> None:
        pass


@pytest.mark.parametrize(
    ("gres", "wanted", "expected"),
    [
        ("gpu:a100:4(S:0-1)\n(null)\n", True, ["--gres=gpu:1"]),
        ("(null)\n", True, []),
        ("gpu:2\n", False, []),  # --device cpu asks for no GPU
    ],
)
def test_slurm_asks_one_gpu_per_task_where_the_partition_has_them(
    tmp_path: Any, gres: str, wanted: bool, expected: list[str]
) -> None:
    transport = FakeTransport(gres)
    target = SlurmTarget(workdir_root=tmp_path, partition="gpu")
    SlurmBackend._submit_three(
        transport,  # type: ignore[arg-type]
        target,
        PurePosixPath(tmp_path / "job"),
        3,
        "job",
        gpu_wanted=wanted,
    )
    [array] = [c for c in transport.calls if c[0] == "sbatch" and c[-1].endswith("upscale.sh")]
    assert [o for o in array if o.startswith("--gres")] == expected
    sinfo = [c for c in transport.calls if c[0] == "sinfo"]
    assert sinfo == ([["sinfo", "--noheader", "--format=%G", "--partition=gpu"]] if wanted else [])
    assert _partition_gpus(transport, None) == (1 if "gpu:" in gres else 0)  # type: ignore[arg-type]
