"""Peak RSS growth of one forward pass per output pixel: the figures in core/memory_guard.py.

Run one case per process (ru_maxrss is a process-wide peak):
    python benchmarks/network_memory.py animevideov3 fp32 256
Models: animevideov3 (the bundled weights), general-x4v3 and x4plus (random weights of the
official shapes: memory does not depend on the values). Precision: fp32 or bf16 (autocast
over fp32 weights, as the engine runs bf16 on a CPU).
"""

from __future__ import annotations

import contextlib
import json
import resource
import sys

import torch


def _rss() -> int:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * 4096


def _module(name: str) -> torch.nn.Module:
    if name == "animevideov3":
        from vsr_desktop.core.models import bundled_default_model_path, load_model_file

        return load_model_file(bundled_default_model_path()).module
    if name == "general-x4v3":
        from spandrel.architectures.Compact.__arch.SRVGG import SRVGGNetCompact

        return SRVGGNetCompact(num_feat=64, num_conv=32, upscale=4)
    from spandrel.architectures.ESRGAN.__arch.RRDB import RRDBNet

    return RRDBNet(in_nc=3, out_nc=3, num_filters=64, num_blocks=23, scale=4)


def main() -> None:
    name, precision, side = sys.argv[1], sys.argv[2], int(sys.argv[3])
    torch.set_num_threads(2)
    module = _module(name).eval().to(memory_format=torch.channels_last)
    module.requires_grad_(False)
    x = torch.rand(1, 3, side, side).contiguous(memory_format=torch.channels_last)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16)
    context = autocast if precision == "bf16" else contextlib.nullcontext()
    with torch.inference_mode(), context:
        module(torch.rand(1, 3, 16, 16))  # oneDNN primitives and allocator warmed up
    before = _rss()
    with torch.inference_mode(), context:
        y = module(x)
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    pixels = y.shape[-1] * y.shape[-2]
    print(json.dumps({"model": name, "precision": precision, "side": side,
                      "bytes_per_output_pixel": round(grown / pixels, 1)}))  # fmt: skip


if __name__ == "__main__":
    main()
