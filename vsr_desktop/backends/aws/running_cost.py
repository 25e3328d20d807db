"""What a cloud job has cost so far, from the Batch jobs' own start and stop times.

The jobs panel shows a running figure; reckoning it from the frames the workers report
missed everything around the upscale itself (downloads, model loading, encoding, uploads,
retried attempts). Batch records when each attempt of each job started and stopped, and the
instance is busy (billed) for that whole span, so this is the time × the price: GPU chunk
jobs at the Spot price per GPU-hour recorded at submit, split and merge at the CPU rate.
Still left out, and said in docs/cloud.md: an instance's boot before its first job starts.
"""

from __future__ import annotations

import time
from typing import Any

from vsr_desktop.backends.aws.cost import CPU_USD_PER_HOUR


def batch_job_seconds(job: dict[str, Any], now_ms: int) -> float:
    """Seconds a Batch job (DescribeJobs shape) has held an instance: every finished
    attempt's startedAt → stoppedAt, and the running attempt's startedAt → now."""
    spans = {
        int(a["startedAt"]): int(a.get("stoppedAt") or now_ms)
        for a in job.get("attempts") or []
        if a.get("startedAt")
    }
    # The attempt running now is not among `attempts` yet; the job's own times describe it.
    started = job.get("startedAt")
    if started and int(started) not in spans:
        spans[int(started)] = int(job.get("stoppedAt") or now_ms)
    return sum(max(0, stop - start) for start, stop in spans.items()) / 1000.0


def cost_of_batch_jobs(jobs: list[dict[str, Any]], usd_per_gpu_hour: float, now_ms: int) -> float:
    """Dollars so far: GPU (chunk) jobs × the Spot price per GPU-hour, split and merge at
    the CPU rate. Instance start-up before a job's startedAt is not in it (see docs)."""
    total = 0.0
    for job in jobs:
        hours = batch_job_seconds(job, now_ms) / 3600
        is_chunk = "-chunk-" in str(job.get("jobName", ""))
        total += hours * (usd_per_gpu_hour if is_chunk else CPU_USD_PER_HOUR)
    return total


def batch_cost_so_far(
    batch: Any, queues: list[str], job_id: str, usd_per_gpu_hour: float, now_ms: int | None = None
) -> float:
    """What the job's Batch jobs have cost so far, from their real start and stop times
    (ListJobs by the job's name prefix, then DescribeJobs for every attempt)."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    ids: list[str] = []
    for queue in queues:
        pages = batch.get_paginator("list_jobs").paginate(
            jobQueue=queue, filters=[{"name": "JOB_NAME", "values": [f"vsr-{job_id}-*"]}]
        )
        ids.extend(item["jobId"] for page in pages for item in page.get("jobSummaryList", []))
    jobs: list[dict[str, Any]] = []
    for start in range(0, len(ids), 100):
        jobs.extend(batch.describe_jobs(jobs=ids[start : start + 100])["jobs"])
    return cost_of_batch_jobs(jobs, usd_per_gpu_hour, now)
