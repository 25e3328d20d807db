"""How many frames a GPU batch holds, from the memory free on the device now.

Why: a fixed ``--batch-size 1`` leaves a large GPU idle between small kernels, and a fixed
large one runs out of memory at 4K. The batch is the most frames whose working set fits a
share of ``torch.cuda.mem_get_info``'s free bytes, by the model's per-pixel activation cost
(core.memory_guard's measured figures), capped where larger batches stop paying.
Pure arithmetic: tested with given numbers, no GPU needed.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Share of the free memory a batch plans to use (cuDNN workspaces, fragmentation, the
#: second batch in flight's buffers are counted separately).
BATCH_MEMORY_SHARE = 0.6
#: Beyond this a 1080p batch no longer shortens the time per frame on a large GPU, and the
#: first frames of a job wait longer; a smaller frame may take up to MAX_BATCH.
MAX_BATCH = 8
#: Output pixels per batch beyond which more frames are not worth it (one 4K frame ×4).
TARGET_OUTPUT_PIXELS = 4 * 3840 * 2160


@dataclass(frozen=True)
class BatchCost:
    """Bytes one frame of one size costs on the device (see :func:`frame_bytes`)."""

    width: int
    height: int
    model_scale: int
    outscale: float
    #: The network's activation bytes per *output* pixel, measured in fp32
    #: (memory_guard.NETWORK_BYTES_PER_OUTPUT_PIXEL); scaled by ``dtype_bytes / 4``.
    network_bytes_per_pixel: float
    #: 2 for fp16/bf16, 4 for fp32.
    dtype_bytes: int = 2
    #: Batches in flight at once (one computing while the next uploads and the last downloads).
    in_flight: int = 2

    @property
    def output_size(self) -> tuple[int, int]:
        """As Engine.output_size."""
        return max(1, int(self.width * self.outscale)), max(1, int(self.height * self.outscale))


def frame_bytes(cost: BatchCost) -> tuple[int, int]:
    """(compute, transfer) bytes of one frame: the working set while the network runs on it,
    and the device buffers each batch in flight holds (uint8 input and output)."""
    pixels = cost.width * cost.height
    net_pixels = pixels * cost.model_scale**2
    out_w, out_h = cost.output_size
    compute = pixels * 3 * 4  # the float input (converted in fp32, then cast)
    compute += int(net_pixels * cost.network_bytes_per_pixel * cost.dtype_bytes / 4)
    compute += net_pixels * 3 * 4  # the network's output in fp32 for resize and rounding
    if (out_w, out_h) != (cost.width * cost.model_scale, cost.height * cost.model_scale):
        compute += out_w * out_h * 3 * 4  # the resized float output
    transfer = pixels * 3 + out_w * out_h * 3  # uint8 RGB in (YUV 4:2:0 is half), uint8 out
    return compute, transfer


def batch_for_free_memory(cost: BatchCost, free_bytes: int, *, limit: int = MAX_BATCH) -> int:
    """The most frames per batch that fit ``free_bytes`` (0: not even one whole frame fits,
    so the engine tiles with batch 1), capped at ``limit`` and at TARGET_OUTPUT_PIXELS."""
    compute, transfer = frame_bytes(cost)
    budget = free_bytes * BATCH_MEMORY_SHARE
    per_frame = compute + cost.in_flight * transfer
    fits = int(budget // per_frame) if per_frame > 0 else limit
    out_w, out_h = cost.output_size
    worth = max(1, TARGET_OUTPUT_PIXELS // max(1, out_w * out_h))
    return max(0, min(fits, limit, worth))
