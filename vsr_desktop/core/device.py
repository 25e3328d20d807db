"""Pick the device and the numeric precision the engine runs on.

Device: CUDA first (what most users with a GPU have), then Apple MPS, then the CPU, unless the
user names one. Naming a device that is not there is an error rather than a silent fallback, so
a user who asked for the GPU never waits hours on the CPU without knowing.

Precision: fp16 on GPUs (the Real-ESRGAN default, about twice as fast as fp32 with no visible
change) unless the model overflows in it (spandrel's ``supports_half``), then bf16 on GPUs
that have it, else fp32; ``auto`` skips GPUs this torch build has no kernels for
(``core.gpu_checks``).

On CPUs bf16 is only a win where the hardware runs it natively (AMX or AVX512-BF16, measured
3-4× faster here); on AVX2-only CPUs it is emulated and measured 13-23× *slower*. Since CPU names
do not reliably tell which is which, a short timed probe of the actual model decides,
and the answer is cached per CPU, thread count, torch version and architecture so the probe
runs once.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch

from vsr_desktop.core import gpu_checks
from vsr_desktop.core.atomic_file import write_text_atomic
from vsr_desktop.core.errors import EngineError

log = logging.getLogger(__name__)
#: bf16 must beat fp32 by this factor before we accept its small loss of precision.
BF16_MIN_SPEEDUP = 1.3
#: Total seconds the CPU probe may spend (it also shrinks its sample for slow models).
PROBE_BUDGET_S = 2.5
_CACHE_VERSION = 1
_PRECISIONS = {
    "fp32": torch.float32,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
}


def select_device(requested: str | torch.device = "auto") -> torch.device:
    """Return the device to run on: ``auto`` prefers CUDA, then MPS, then the CPU.

    An explicit device ("cuda", "cuda:1", "mps", "cpu") that is not usable raises
    :class:`EngineError` instead of falling back, because a silent CPU fallback turns a
    minutes-long job into a days-long one.
    """
    if isinstance(requested, torch.device):
        requested = str(requested)
    name = requested.strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            index, problems = gpu_checks.first_usable_cuda()
            if index is not None:
                return torch.device("cuda", index)
            for problem in problems:  # no kernels for any GPU here: the CPU, said loudly
                log.warning("%s: running on the CPU (%s)", problem, gpu_checks.ARCH_HINT)
            return torch.device("cpu")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as exc:
        raise EngineError(
            f"Unknown device {requested!r}",
            "Use auto, cpu, cuda, cuda:N or mps.",
        ) from exc
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise EngineError(
                "CUDA was requested but no usable NVIDIA GPU was found",
                "Install the NVIDIA driver and a CUDA build of PyTorch, or choose the CPU.",
            )
        count = torch.cuda.device_count()
        index = 0 if device.index is None else device.index
        if index >= count:
            raise EngineError(
                f"GPU cuda:{index} does not exist (this machine has {count})",
                f"Choose a GPU between cuda:0 and cuda:{count - 1}.",
            )
        gpu_checks.check_cuda_arch(index)
        return torch.device("cuda", index)
    if device.type == "mps":
        if not _mps_available():
            raise EngineError(
                "Apple MPS was requested but is not available",
                "MPS needs an Apple-silicon Mac with macOS 12.3 or newer; choose the CPU.",
            )
        return device
    raise EngineError(
        f"Device type {device.type!r} is not supported",
        "Use auto, cpu, cuda, cuda:N or mps.",
    )


def describe_device(device: torch.device) -> str:
    """A short human-readable name, e.g. ``CPU: AMD EPYC (2 threads, AVX2)``."""
    if device.type == "cuda":
        index = 0 if device.index is None else device.index
        props = torch.cuda.get_device_properties(index)
        gib = props.total_memory / 2**30
        return f"GPU: {props.name} ({gib:.0f} GiB, cuda:{index})"
    if device.type == "mps":
        return "GPU: Apple silicon (MPS)"
    features = ", ".join(_cpu_features()) or "baseline"
    return f"CPU: {_cpu_model()} ({torch.get_num_threads()} threads, {features})"


def choose_dtype(
    device: torch.device,
    requested: str = "auto",
    module: torch.nn.Module | None = None,
    sample_hw: tuple[int, int] = (64, 64),
    cache_path: str | os.PathLike[str] | None = None,
    *,
    supports_half: bool = True,
    supports_bfloat16: bool = True,
) -> torch.dtype:
    """Return the dtype to run ``module`` in on ``device``.

    ``requested`` is ``auto``, ``fp32``, ``fp16`` or ``bf16``. On CPU ``auto`` uses a cached
    decision, else measures ``module`` (see :func:`measure_bf16_speedup`) and caches the result
    in ``cache_path`` (default: a JSON file in the user cache dir). Without a module there is
    nothing to measure, so the CPU gets fp32. ``supports_half``/``supports_bfloat16`` are the
    model's own (spandrel's descriptor): a model that overflows in fp16 never gets it, and
    bf16 goes only to GPUs that run it (Ampere on; core.gpu_checks).
    """
    key = requested.strip().lower()
    if key != "auto":
        if key not in _PRECISIONS:
            raise EngineError(f"Unknown precision {requested!r}", "Use auto, fp32, fp16 or bf16.")
        dtype = _PRECISIONS[key]
        if device.type == "cpu" and dtype == torch.float16:
            raise EngineError(
                "fp16 is not supported on the CPU",
                "Use bf16 (fast on CPUs with AMX/AVX512-BF16) or fp32.",
            )
        gpu_checks.check_requested_dtype(device, dtype, supports_half, supports_bfloat16)
        return dtype
    if device.type in ("cuda", "mps"):
        return gpu_checks.gpu_dtype(device, supports_half, supports_bfloat16)
    if module is None or not supports_bfloat16:
        return torch.float32

    path = Path(cache_path) if cache_path is not None else default_cache_path()
    entry_key = cpu_cache_key(module)
    cached = read_probe_cache(path).get(entry_key)
    if isinstance(cached, dict) and cached.get("dtype") in ("float32", "bfloat16"):
        return torch.bfloat16 if cached["dtype"] == "bfloat16" else torch.float32

    if cpu_has_native_bf16():
        speedup = measure_bf16_speedup(module, sample_hw)
        reason = f"probe: bf16 {speedup:.2f}x fp32"
    else:
        # Emulated bf16 is many times slower (measured 13x on AVX2): no need to measure.
        speedup, reason = 0.0, "no native bf16 on this CPU"
    dtype = torch.bfloat16 if speedup >= BF16_MIN_SPEEDUP else torch.float32
    write_probe_cache_entry(
        path,
        entry_key,
        {"dtype": str(dtype).removeprefix("torch."), "speedup": round(speedup, 3), "why": reason},
    )
    return dtype


def measure_bf16_speedup(
    module: torch.nn.Module,
    sample_hw: tuple[int, int] = (64, 64),
    budget_s: float = PROBE_BUDGET_S,
) -> float:
    """Time ``module`` on the CPU in fp32 and in bf16 autocast; return fp32 time / bf16 time.

    Both run channels_last, as the engine does. The caller's module is not modified (a copy is
    measured). Fits in ``budget_s``: the sample shrinks for heavy models and the number of
    repetitions adapts. Returns 0.0 when bf16 fails to run at all.
    """
    probe = copy.deepcopy(module).float().eval().to(memory_format=torch.channels_last)
    h, w = sample_hw
    start = time.perf_counter()

    def run(x: torch.Tensor, bf16: bool) -> float:
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            probe(x)
        return time.perf_counter() - t0

    with torch.inference_mode():
        x = torch.rand(1, 3, h, w).contiguous(memory_format=torch.channels_last)
        first = run(x, False)
        if first > budget_s / 8 and min(h, w) > 16:
            # A heavy model (RRDBNet is ~25× the compact one): a quarter of the pixels is
            # still plenty to compare the two paths.
            x = torch.rand(1, 3, h // 2, w // 2).contiguous(memory_format=torch.channels_last)
            run(x, False)
        try:
            run(x, True)  # warm-up: oneDNN builds its bf16 kernels on first use
        except RuntimeError:
            return 0.0
        best32 = best16 = float("inf")
        for _ in range(3):
            best32 = min(best32, run(x, False))
            best16 = min(best16, run(x, True))
            if time.perf_counter() - start > budget_s:
                break
    return best32 / best16 if best16 > 0 else 0.0


def cpu_has_native_bf16() -> bool:
    """True when oneDNN can run bf16 convolutions in hardware (AVX512-BF16 or AMX)."""
    with contextlib.suppress(AttributeError, RuntimeError):
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return "amx_bf16" in _cpu_flags() or "avx512_bf16" in _cpu_flags()


def cpu_cache_key(module: torch.nn.Module | None = None) -> str:
    """Key of a cached CPU decision: the CPU, its thread count, torch, and the architecture.

    The CPU is identified by its model name plus a hash of its feature flags, because VMs often
    report a generic name ("AMD EPYC") for very different generations.
    """
    flags = " ".join(sorted(_cpu_flags()))
    digest = hashlib.sha1(flags.encode(), usedforsecurity=False).hexdigest()[:10]
    arch = type(module).__name__ if module is not None else "-"
    return (
        f"cpu|{_cpu_model()}|{digest}|threads={torch.get_num_threads()}"
        f"|torch={torch.__version__}|{arch}"
    )


def default_cache_path() -> Path:
    """Where CPU precision decisions are cached (``platformdirs`` user cache dir)."""
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("vsr_desktop")) / "precision.json"


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def _cpuinfo_field(name: str) -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith(name):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return ""


def _cpu_model() -> str:
    return _cpuinfo_field("model name") or platform.processor() or platform.machine() or "CPU"


def _cpu_flags() -> set[str]:
    return set(_cpuinfo_field("flags").split())


def _cpu_features() -> list[str]:
    """The instruction-set features that matter for inference speed, best first."""
    flags = _cpu_flags()
    found = [
        label
        for flag, label in (("amx_bf16", "AMX-BF16"), ("avx512_bf16", "AVX512-BF16"))
        if flag in flags
    ]
    if not found:
        with contextlib.suppress(AttributeError, RuntimeError):
            found.append(torch.backends.cpu.get_cpu_capability())
    return [f for f in found if f and f != "DEFAULT"]


def read_probe_cache(path: Path) -> dict[str, Any]:
    """The cached entries, or {} when the file is missing, unreadable or corrupt."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    if not isinstance(data, dict) or data.get("version") != _CACHE_VERSION:
        return {}
    entries = data.get("entries")
    return entries if isinstance(entries, dict) else {}


def write_probe_cache_entry(path: Path, key: str, entry: dict[str, Any]) -> None:
    """Add one entry atomically; a read-only cache dir only costs a re-probe next time."""
    entries = read_probe_cache(path)
    entries[key] = entry
    payload = json.dumps({"version": _CACHE_VERSION, "entries": entries}, indent=1)
    with contextlib.suppress(OSError):
        write_text_atomic(path, payload)
