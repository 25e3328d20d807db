"""What keeps the first run on a GPU from failing: kernels for the GPU, a precision the model
and the GPU both take, non-finite outputs caught, allocation failures of every backend read
as "out of memory", a tile chosen from the GPU's free memory, and cuDNN autotuning only where
frame sizes repeat.

Why each exists (issue 20): a torch wheel has kernels for some compute capabilities only
(``torch.cuda.get_arch_list()``: 2.14 cu13 sm_75+), so a GTX 10xx or a V100 dies at the first
kernel with "no kernel image"; spandrel marks many architectures (SwinIR, HAT, DAT, RCAN…)
``supports_half=False`` and their fp16 output is NaN/inf, which ``clamp_`` turns into black
pixels; cuDNN, cuBLAS and MPS report a failed allocation in words of their own, so a near-OOM
crashed instead of tiling. Every torch.cuda query goes through this module, so tests fake
exactly that boundary and nothing else.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import replace

import torch

from vsr_desktop.core import memory_guard
from vsr_desktop.core.errors import EngineError
from vsr_desktop.core.upscaler import is_out_of_memory

log = logging.getLogger(__name__)

#: bf16 convolutions need Ampere (compute capability 8.0) in cuDNN.
BF16_MIN_CAPABILITY = (8, 0)
#: Share of the GPU's free memory a tile plans to use (cuDNN workspaces, fragmentation).
FREE_MEMORY_SHARE = 0.7
#: Calls of one input shape in a row before cuDNN autotuning is switched on.
TUNE_AFTER_REPEATS = 3


def is_allocation_failure(exc: BaseException) -> bool:
    """Any failed allocation, from any backend (core.upscaler.OOM_PHRASES lists the words)."""
    return is_out_of_memory(exc)


# ----------------------------------------------------------------- kernels for this GPU


def _arch_number(name: str) -> tuple[str, int] | None:
    match = re.fullmatch(r"(sm|compute)_(\d+)a?", name.strip())
    return (match.group(1), int(match.group(2))) if match else None


def arch_supported(capability: tuple[int, int], arch_list: list[str]) -> bool:
    """Whether a torch build with kernels for ``arch_list`` runs on a GPU of ``capability``.

    A cubin runs on its own major version at an equal or higher minor (sm_80 code runs on an
    sm_86 card); PTX (``compute_XY``) is compiled by the driver for any newer GPU. An empty
    list (a build that does not say) is trusted.
    """
    if not arch_list:
        return True
    major, minor = capability
    have = major * 10 + minor
    for name in arch_list:
        parsed = _arch_number(name)
        if parsed is None:
            continue
        kind, number = parsed
        if kind == "sm" and number // 10 == major and number % 10 <= minor:
            return True
        if kind == "compute" and number <= have:
            return True
    return False


def cuda_capability(index: int) -> tuple[int, int]:
    major, minor = torch.cuda.get_device_capability(index)
    return int(major), int(minor)


def cuda_arch_problem(index: int) -> str | None:
    """Why this torch cannot run on GPU ``index`` (naming the GPU and the build's kernels),
    or None when it can."""
    capability = cuda_capability(index)
    archs = list(torch.cuda.get_arch_list())
    if arch_supported(capability, archs):
        return None
    name = torch.cuda.get_device_name(index)
    return (
        f"{name} (cuda:{index}) has compute capability {capability[0]}.{capability[1]}, "
        f"but this PyTorch {torch.__version__} has kernels only for {', '.join(archs)}"
    )


def first_usable_cuda() -> tuple[int | None, list[str]]:
    """The first visible GPU this torch has kernels for (the current one first), and why
    each GPU before it was passed over."""
    count = torch.cuda.device_count()
    current = torch.cuda.current_device() if count else 0
    order = [current, *(i for i in range(count) if i != current)]
    problems: list[str] = []
    for index in order:
        problem = cuda_arch_problem(index)
        if problem is None:
            return index, problems
        problems.append(problem)
    return None, problems


ARCH_HINT = (
    "install a PyTorch build for this GPU (an older CUDA wheel, e.g. cu126, keeps sm_50–sm_70), "
    "or choose the CPU (--device cpu)"
)


def check_cuda_arch(index: int) -> None:
    """EngineError for an explicitly chosen GPU this torch has no kernels for."""
    problem = cuda_arch_problem(index)
    if problem is not None:
        raise EngineError(problem, ARCH_HINT)


# ----------------------------------------------------------------- precision


def device_bf16_ok(device: torch.device) -> bool:
    """bf16 convolutions in hardware: CUDA from Ampere on; not relied on for MPS."""
    if device.type == "cuda":
        index = 0 if device.index is None else device.index
        return cuda_capability(index) >= BF16_MIN_CAPABILITY
    return device.type == "cpu"


def gpu_dtype(
    device: torch.device, supports_half: bool = True, supports_bfloat16: bool = True
) -> torch.dtype:
    """``auto`` precision on a GPU: fp16 where the model takes it, else bf16 where model and
    GPU both take it, else fp32."""
    if supports_half:
        return torch.float16
    if supports_bfloat16 and device_bf16_ok(device):
        return torch.bfloat16
    return torch.float32


def check_requested_dtype(
    device: torch.device,
    dtype: torch.dtype,
    supports_half: bool = True,
    supports_bfloat16: bool = True,
) -> None:
    """Refuse an explicit precision the model or the device cannot run correctly."""
    if dtype == torch.float16 and not supports_half and device.type != "cpu":
        raise EngineError(
            "this model does not work in fp16 (its architecture overflows: black frames)",
            "use --precision auto or fp32",
        )
    if dtype == torch.bfloat16 and not supports_bfloat16:
        raise EngineError("this model does not work in bf16", "use --precision auto or fp32")
    if dtype == torch.bfloat16 and device.type == "cuda" and not device_bf16_ok(device):
        major, minor = cuda_capability(0 if device.index is None else device.index)
        raise EngineError(
            f"bf16 needs an Ampere or newer GPU (compute capability 8.0); this one is "
            f"{major}.{minor}",
            "use --precision fp16 or auto",
        )


def all_finite(y: torch.Tensor) -> bool:
    """Whether a network output holds no NaN or inf (one reduction, one sync)."""
    return bool(torch.isfinite(y).all())


# ----------------------------------------------------------------- memory


def free_device_bytes(device: torch.device) -> int | None:
    """Free memory on a CUDA device now (``torch.cuda.mem_get_info``); None elsewhere."""
    if device.type != "cuda":
        return None
    try:
        free, _total = torch.cuda.mem_get_info(device)
    except (RuntimeError, AssertionError):
        return None
    return int(free)


def tile_from_free_memory(
    work: memory_guard.FrameWork, frames: int, free_bytes: int | None
) -> int | None:
    """The largest tile (0: none needed) whose device working set fits the free memory, by
    the memory guard's per-pixel figures (measured on the CPU in fp32: an upper bound for
    fp16 on a GPU). None when even the smallest tile does not fit or nothing is known."""
    if free_bytes is None:
        return None
    budget = free_bytes * FREE_MEMORY_SHARE
    on_device = replace(work, network_on_host=True)  # count the network's working set

    def need(w: memory_guard.FrameWork) -> int:
        return memory_guard.engine_call_bytes(w, frames)

    if need(replace(on_device, tile=0)) <= budget:
        return 0
    return memory_guard.largest_tile(on_device, budget, need)


class ShapeTuning:
    """Whether cuDNN should autotune now: only once one input shape repeats (video frames),
    never for the preview's regions of many sizes, where each new size re-tunes."""

    def __init__(self, repeats: int = TUNE_AFTER_REPEATS) -> None:
        self._repeats = repeats
        self._shape: tuple[int, ...] | None = None
        self._seen = 0

    def observe(self, shape: tuple[int, ...]) -> bool:
        if shape == self._shape:
            self._seen += 1
        else:
            self._shape, self._seen = shape, 1
        return self._seen >= self._repeats


def apply_cudnn_tuning(device: torch.device, tuning: ShapeTuning, shape: tuple[int, ...]) -> None:
    """Set ``cudnn.benchmark`` for the coming forward pass on ``device``."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = tuning.observe(shape)


# ----------------------------------------------------------------- workers


_NO_GPU = ("", "void", "none", "nodevfiles")


def assigned_gpus(environ: Mapping[str, str] | None = None) -> bool:
    """Whether a scheduler gave this process GPUs: an AWS Batch job with a GPU resource (ECS
    sets NVIDIA_VISIBLE_DEVICES), or a Slurm task with GPUs (SLURM_JOB_GPUS/SLURM_STEP_GPUS,
    or CUDA_VISIBLE_DEVICES set inside a Slurm job)."""
    env = os.environ if environ is None else environ
    if env.get("AWS_BATCH_JOB_ID") and env.get("NVIDIA_VISIBLE_DEVICES", "") not in _NO_GPU:
        return True
    if env.get("SLURM_JOB_ID"):
        for name in ("SLURM_STEP_GPUS", "SLURM_JOB_GPUS", "CUDA_VISIBLE_DEVICES"):
            if env.get(name, "").strip().lower() not in _NO_GPU:
                return True
    return False


def worker_device(requested: str, environ: Mapping[str, str] | None = None) -> str:
    """The device a worker (AWS Batch, a Slurm task) asks for.

    A Batch job given a GPU asks for ``cuda`` whatever the desktop chose (the GPU is paid
    for), so a container that cannot see its GPU fails at once with a clear error instead
    of running for hours on a few vCPUs. A Slurm task keeps the job's device: Slurm binds its
    GPUs (CUDA_VISIBLE_DEVICES), so ``auto`` takes the task's own GPU, and the chunk log
    says loudly when it ran on the CPU instead (stages.upscale_stage). The task sees only its
    own GPUs, so ``cuda:N`` becomes ``cuda``; ``mps`` means nothing on a worker: ``auto``.
    """
    env = os.environ if environ is None else environ
    key = requested.strip().lower()
    if env.get("AWS_BATCH_JOB_ID") and assigned_gpus(env):
        return "cuda"
    if key.startswith("mps"):
        return "auto"
    if key.startswith("cuda") and assigned_gpus(env):
        return "cuda"
    return requested
