"""Opt-in ``torch.compile`` / CUDA graphs for the network (``--compile MODE`` or VSR_COMPILE).

Why opt-in: neither has been measured on a GPU for these models yet (no GPU was available
when this was written; benchmarks/gpu_check.sh measures both on and off). Compiling costs
tens of seconds per frame size before the first frame, and each new size (a tile at the
frame's edge, a preview region) compiles again, so it can only pay on long videos of one
size. It is switched on by default only where a measurement shows it faster: nowhere yet.

Modes: ``off``; ``default`` (Inductor kernels); ``reduce-overhead`` (Inductor + CUDA graphs:
removes the launch gaps between small kernels, which matter most at batch 1); ``max-autotune``
(slowest to compile); ``eager`` (TorchDynamo capture without code generation: proves a model
captures, on any device; used by the CPU tests).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch

from vsr_desktop.core.errors import EngineError

log = logging.getLogger(__name__)
COMPILE_ENV = "VSR_COMPILE"
MODES = ("off", "default", "reduce-overhead", "max-autotune", "eager")
_ALIASES = {"": "off", "0": "off", "no": "off", "1": "default", "on": "default",
            "graphs": "reduce-overhead", "cudagraphs": "reduce-overhead"}  # fmt: skip


def compile_mode(value: str | None = None) -> str:
    """The mode asked for: ``value``, else the VSR_COMPILE environment variable; ``off``."""
    text = (os.environ.get(COMPILE_ENV, "") if value is None else value).strip().lower()
    mode = _ALIASES.get(text, text)
    if mode not in MODES:
        raise EngineError(
            f"unknown compile mode {text!r}", f"use one of {', '.join(MODES)} (VSR_COMPILE)"
        )
    return mode


def compile_network(module: torch.nn.Module, device: torch.device, mode: str) -> Any:
    """``module`` compiled for ``mode`` (the module itself for ``off``). Static shapes:
    video frames share one size, and a recompile per new size beats dynamic kernels."""
    if mode == "off":
        return module
    if mode == "reduce-overhead" and device.type != "cuda":
        raise EngineError("CUDA graphs (--compile reduce-overhead) need an NVIDIA GPU")
    log.warning("Compiling the network (%s): the first frames of each size wait for it", mode)
    if mode == "eager":
        return torch.compile(module, backend="eager", dynamic=False)
    return torch.compile(module, mode=mode, dynamic=False)


def mark_step(mode: str) -> None:
    """Before each forward pass under CUDA graphs: the previous outputs are no longer read
    (the engine has quantised them), so the graph may reuse their memory."""
    if mode == "reduce-overhead":
        torch.compiler.cudagraph_mark_step_begin()
