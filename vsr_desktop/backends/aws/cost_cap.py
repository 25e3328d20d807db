"""The per-job cost cap: a bound AWS enforces by itself, and a monitor that stops a job early.

Two layers, because the app may be closed while a job runs (docs/cloud.md, "Cost cap"):

1. **In the cloud, always.** Each chunk job's Batch time limit (attemptDurationSeconds, set
   per job through the execution input) is at most its share of the cap:
   cap ÷ Spot price ÷ number of chunks. Batch kills a chunk job that runs past it, so the
   GPU jobs' run time × the price cannot pass the cap by more than Batch's 60 s minimum per
   chunk, Spot-reclaim retries and instance boot time — whether or not the app is open.
2. **While the app or `vsr cloud submit --wait` polls.** Each poll reckons the cost so far
   (running_cost: the Batch jobs' real start and stop times × the price); at or past the
   cap it stops the execution and terminates the job's Batch jobs, and the row says why.
"""

from __future__ import annotations

import math

from vsr_desktop.backends.aws.cost import BATCH_MIN_TIMEOUT_S
from vsr_desktop.core.errors import InputError

#: Keys of the job's AWS state (backend settings) this module reads.
CAP_KEY = "max_cost_usd"
TABLE_TIMEOUT_KEY = "chunk_timeout_seconds"
#: Batch's reason for a job it killed at its attempt duration.
BATCH_TIMEOUT_TEXT = "exceeded timeout"


def checked_cap(value: object) -> float | None:
    """A cap from the CLI, the dialog or a stored spec: None (no cap) or dollars > 0."""
    if value is None or value == "" or value == 0:
        return None
    try:
        usd = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        usd = math.nan
    if not math.isfinite(usd) or usd <= 0:
        raise InputError(
            f"the cost cap must be a positive number of US dollars, not {value!r}",
            "pass e.g. --max-cost 5 (0 or nothing = no cap)",
        )
    return usd


def cap_chunk_seconds(cap_usd: float, usd_per_gpu_hour: float, chunks: int) -> int:
    """Each chunk job's share of the cap in GPU seconds (never below Batch's minimum)."""
    share = cap_usd / max(usd_per_gpu_hour, 1e-9) * 3600 / max(chunks, 1)
    return max(BATCH_MIN_TIMEOUT_S, math.floor(share + 1e-6))  # 179.99999… is 180


def chunk_time_limit(
    table_seconds: int | None, cap_usd: float | None, price: float | None, chunks: int
) -> int | None:
    """The chunk jobs' attemptDurationSeconds for an execution: the throughput table's limit,
    lowered to the cap's share when the job has a cap and a price (None: the stack default)."""
    if cap_usd is None or not price:
        return table_seconds
    share = cap_chunk_seconds(cap_usd, price, chunks)
    return share if table_seconds is None else min(table_seconds, share)


def over_cap(cost_usd: float | None, cap_usd: float | None) -> bool:
    return cap_usd is not None and cost_usd is not None and cost_usd >= cap_usd


def stopped_message(cost_usd: float, cap_usd: float, terminated: int) -> str:
    """The jobs panel's reason for a job the monitor stopped."""
    return (
        f"stopped by its cost cap: ${cost_usd:.2f} so far reached the cap of ${cap_usd:.2f}; "
        f"stopped the execution and {terminated} Batch job(s). Finished chunks are kept: "
        "retry with a higher cap (`vsr cloud retry JOB --max-cost USD`) to go on"
    )


def explain_timeout(message: str, cap_usd: float | None, limit_seconds: int | None) -> str:
    """A chunk that Batch killed at a time limit the cap set says so (else the limit looks
    like a hang)."""
    if cap_usd is None or limit_seconds is None or BATCH_TIMEOUT_TEXT not in message:
        return message
    return (
        f"{message} — the chunk's time limit ({limit_seconds} s) is its share of the "
        f"${cap_usd:.2f} cost cap; retry with a higher cap (--max-cost) to go on"
    )[:600]
