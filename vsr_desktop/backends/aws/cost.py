"""What an AWS job will cost and how long it will take, shown before the user submits.

GPU throughput comes from resources/cloud/gpu_throughput.json: ESTIMATES scaled from
published relative GPU performance, not measured (see the file and docs/cloud.md).
Spot prices are live (describe_spot_price_history). Prices below are AWS list prices
(us-east-1 / eu-west-1, 2025); the free tier is ignored.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vsr_desktop.backends.aws.errors import CloudError
from vsr_desktop.core.errors import InputError, VsrError

if TYPE_CHECKING:
    from vsr_desktop.core.job_spec import JobSpec

TRANSFER_OUT_USD_PER_GB = 0.09  # S3 → internet, first 10 TB/month: the user's download
S3_USD_PER_GB_MONTH = 0.023  # S3 Standard; in-region S3 ↔ EC2 traffic is free
STORAGE_DAYS = 7.0  # job objects are kept until the bucket's lifecycle rule expires them
CPU_USD_PER_HOUR = 0.20  # split and merge run on a small 4-vCPU CPU instance
CPU_FIXED_S = 600.0  # split + merge: two instance starts, probing, planning, muxing
CPU_S_PER_OUTPUT_GB = 30.0  # merge fetches the chunks and uploads the result (~70 MB/s)
STARTUP_S = 360.0  # a Spot GPU instance boots and pulls the worker image, billed each time
SFN_USD_PER_TRANSITION = 0.000025  # Step Functions standard workflows
OUTPUT_BITS_PER_PIXEL = 0.1  # H.264/H.265 at default quality: ~20 Mbit/s for 4K at 24 fps
INPUT_BITS_PER_PIXEL = 0.15  # a typical camera / delivery file


@cache
def throughput_table() -> dict[str, Any]:
    """The bundled GPU throughput table (estimates; see its `_about`)."""
    path = resources.files("vsr_desktop.resources") / "cloud" / "gpu_throughput.json"
    return dict(json.loads(path.read_text(encoding="utf-8")))


def family_of(instance_type: str) -> str:
    return instance_type.split(".", 1)[0]


def gpus_in(instance_type: str) -> int:
    size = instance_type.split(".", 1)[-1]
    return int(throughput_table()["gpus_per_instance"].get(size, 1))


def frames_per_second(instance_type: str, model: str, width: int, height: int) -> float | None:
    """Estimated fps of one GPU of this type at this INPUT size; None when unknown."""
    table = throughput_table()
    row = table["fps_1080p"].get(family_of(instance_type))
    if row is None or model not in row:
        return None
    return float(row[model]) * table["reference_pixels"] / (width * height)


@dataclass(frozen=True)
class InstanceOption:
    """The job priced on one instance type."""

    instance_type: str
    gpu: str
    fps: float  # per GPU
    usd_per_gpu_hour: float
    gpu_usd: float  # billed GPU hours (compute + instance starts) × price


@dataclass(frozen=True)
class CostEstimate:
    """All figures in US dollars, hours and seconds; `assumptions` says what they rest on."""

    frames: int
    instance_type: str  # the option the totals are based on: cheapest per frame
    gpu_hours: float  # pure compute, independent of parallelism
    billed_gpu_hours: float  # plus each instance's start-up
    wall_seconds: float  # submit → output ready in S3 (download not included)
    parallel: int
    gpu_usd: float
    cpu_overhead_usd: float  # split/merge CPU jobs + Step Functions transitions
    storage_usd: float
    transfer_out_usd: float
    output_gb: float
    total_usd: float
    total_usd_high: float  # if Batch picks the dearest priced option instead
    options: tuple[InstanceOption, ...]
    notes: tuple[str, ...] = ()
    assumptions: tuple[str, ...] = field(default=(), repr=False)

    @property
    def usd_per_gpu_hour(self) -> float:
        """The Spot price the totals use (the job's running cost is reckoned with it)."""
        return self.options[0].usd_per_gpu_hour

    def describe(self) -> str:
        """A few lines for the CLI and the submit dialog."""
        best = self.options[0]
        minutes = self.wall_seconds / 60
        lines = [
            f"{self.frames} frames on {best.instance_type} ({best.gpu}, "
            f"~{best.fps:.1f} frames/s per GPU, ${best.usd_per_gpu_hour:.3f}/GPU-hour Spot)",
            f"GPU time {self.gpu_hours:.2f} h, {self.parallel} in parallel: about "
            f"{minutes:.0f} min until the result is in S3",
            f"cost ≈ ${self.total_usd:.2f} (up to ${self.total_usd_high:.2f} if Batch picks "
            f"the dearest type): GPU ${self.gpu_usd:.2f}, split/merge "
            f"${self.cpu_overhead_usd:.2f}, storage ${self.storage_usd:.2f}, download "
            f"{self.output_gb:.1f} GB ${self.transfer_out_usd:.2f}",
        ]
        lines.extend(f"note: {note}" for note in self.notes)
        return "\n".join(lines)


def _gigabytes(frames: int, pixels: int, bits_per_pixel: float) -> float:
    return frames * pixels * bits_per_pixel / 8 / 1e9


def estimate_job(
    frames: int,
    width: int,
    height: int,
    scale: int,
    model: str,
    instance_types: list[str],
    spot_prices: dict[str, float],
    max_parallel: int,
    chunks: int | None = None,
) -> CostEstimate:
    """Estimate GPU hours, wall time and dollars for upscaling `frames` frames of width×height.

    `scale` is the output scale (it sizes the output; the model sets the compute).
    Types with no known throughput or no Spot price are skipped, each with a note.
    """
    if frames <= 0 or width <= 0 or height <= 0 or scale <= 0 or max_parallel <= 0:
        raise InputError("Nothing to estimate", "frames, size, scale and parallelism must be > 0")
    table = throughput_table()
    notes: list[str] = []
    options: list[InstanceOption] = []
    for itype in instance_types:
        fps = frames_per_second(itype, model, width, height)
        family = table["families"].get(family_of(itype))
        if fps is None or family is None:
            what = "model" if family is not None else "instance type"
            notes.append(f"{itype}: no throughput figure for this {what}; left out")
            continue
        if itype not in spot_prices:
            notes.append(f"{itype}: no Spot price in this region; left out")
            continue
        options.append(
            InstanceOption(itype, str(family["gpu"]), fps, spot_prices[itype] / gpus_in(itype), 0.0)
        )
    if not options:
        raise CloudError(
            f"Cannot estimate {model} on {', '.join(instance_types) or 'no GPUs'}",
            "; ".join(notes) or "choose GPU instance types in the cloud settings",
        )

    chunks = max(1, min(frames, chunks if chunks is not None else max_parallel))
    parallel = min(max_parallel, chunks)
    rounds = math.ceil(chunks / parallel)  # equal chunks: the last round may be part-empty

    def billed_hours(option: InstanceOption) -> float:
        return frames / option.fps / 3600 + parallel * STARTUP_S / 3600

    priced = sorted(
        (replace(o, gpu_usd=billed_hours(o) * o.usd_per_gpu_hour) for o in options),
        key=lambda o: o.gpu_usd,
    )
    best = priced[0]
    gpu_hours = frames / best.fps / 3600
    compute_s = rounds * (gpu_hours * 3600 / chunks)

    output_gb = _gigabytes(frames, width * height * scale * scale, OUTPUT_BITS_PER_PIXEL)
    input_gb = _gigabytes(frames, width * height, INPUT_BITS_PER_PIXEL)
    cpu_s = CPU_FIXED_S + CPU_S_PER_OUTPUT_GB * output_gb
    transitions = 10 + 6 * chunks  # split, map, merge; each chunk task a handful
    cpu_usd = cpu_s / 3600 * CPU_USD_PER_HOUR + transitions * SFN_USD_PER_TRANSITION
    # Stored: the source, the chunks and the merged output, until the lifecycle expiry.
    storage_usd = (input_gb + 2 * output_gb) * S3_USD_PER_GB_MONTH * STORAGE_DAYS / 30
    transfer_usd = output_gb * TRANSFER_OUT_USD_PER_GB
    rest = cpu_usd + storage_usd + transfer_usd
    return CostEstimate(
        frames=frames,
        instance_type=best.instance_type,
        gpu_hours=gpu_hours,
        billed_gpu_hours=billed_hours(best),
        wall_seconds=STARTUP_S + compute_s + cpu_s,
        parallel=parallel,
        gpu_usd=best.gpu_usd,
        cpu_overhead_usd=cpu_usd,
        storage_usd=storage_usd,
        transfer_out_usd=transfer_usd,
        output_gb=output_gb,
        total_usd=best.gpu_usd + rest,
        total_usd_high=priced[-1].gpu_usd + rest,
        options=tuple(priced),
        notes=tuple(notes),
        assumptions=ASSUMPTIONS,
    )


ASSUMPTIONS = (
    "GPU speed: estimated from published relative GPU performance, not measured",
    f"Spot instances start and pull the worker image in {STARTUP_S / 60:g} min, billed",
    f"output ≈ {OUTPUT_BITS_PER_PIXEL} bit per output pixel (H.264/H.265 default quality)",
    f"downloading the result costs ${TRANSFER_OUT_USD_PER_GB}/GB (AWS data transfer out)",
    f"job files stay in S3 for {STORAGE_DAYS:g} days at ${S3_USD_PER_GB_MONTH}/GB-month",
    f"split and merge on a CPU instance at ${CPU_USD_PER_HOUR}/h",
    "the GPU is the bottleneck (decode/encode keep up); upload and download time not included",
)

_LINUX = ("Linux/UNIX", "Linux/UNIX (Amazon VPC)")


def spot_prices(session: Any, instance_types: list[str], region: str) -> dict[str, float]:
    """Current Linux Spot price per type: latest per availability zone, then the cheapest AZ.

    Types with no offer in the region are absent from the result. Bad or expired
    credentials raise CredentialsError, other refusals CloudError.
    """
    import botocore.exceptions as bexc

    from vsr_desktop.backends.aws.session import as_credentials_error

    if not instance_types:
        return {}
    ec2 = session.client("ec2", region_name=region)
    latest: dict[tuple[str, str], tuple[datetime, float]] = {}
    try:
        pages = ec2.get_paginator("describe_spot_price_history").paginate(
            InstanceTypes=list(instance_types),
            ProductDescriptions=list(_LINUX),
            StartTime=datetime.now(timezone.utc),
        )
        for page in pages:
            for item in page.get("SpotPriceHistory", []):
                if item.get("ProductDescription") not in _LINUX:
                    continue
                key = (item["InstanceType"], item["AvailabilityZone"])
                seen = (item["Timestamp"], float(item["SpotPrice"]))
                if key not in latest or seen[0] > latest[key][0]:
                    latest[key] = seen
    except bexc.ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code.startswith(("Invalid", "Expired", "Unrecognized", "Signature", "AuthFailure")):
            raise as_credentials_error(exc) from None
        raise CloudError(
            f"Spot prices could not be read ({code})",
            "the estimate needs ec2:DescribeSpotPriceHistory; try again",
        ) from None
    except (bexc.NoCredentialsError, bexc.SSOError, bexc.TokenRetrievalError) as exc:
        raise as_credentials_error(exc) from None
    except bexc.EndpointConnectionError:
        raise CloudError("AWS cannot be reached", "check the internet connection") from None
    prices: dict[str, float] = {}
    for (itype, _zone), (_when, price) in latest.items():
        prices[itype] = min(price, prices.get(itype, math.inf))
    return prices


def estimate_for_spec(session: Any, spec: JobSpec, stack_name: str) -> CostEstimate:
    """The estimate for one job spec on the deployed stack (its GPU types, its parallelism),
    with today's Spot prices — what the CLI and the submit dialog show."""
    from vsr_desktop.backends.aws import stack_template as tpl
    from vsr_desktop.backends.aws.stack import describe_stack
    from vsr_desktop.core.models import get_spec
    from vsr_desktop.core.plan import plan_chunks
    from vsr_desktop.worker.job_setup import validate_spec

    media = validate_spec(spec)
    chunks = len(plan_chunks(media.video, spec.chunk_seconds).chunks)
    engine = spec.engine
    try:
        scale = float(engine.outscale or get_spec(engine.model).scale)
    except VsrError:  # a model file rather than a registry name: the common x4
        scale = float(engine.outscale or 4)
    defaults = tpl.parameter_defaults()
    stack = describe_stack(session, stack_name)
    chosen = stack.parameters if stack is not None else {}
    types = (
        stack.list_parameter(tpl.PARAM_GPU_INSTANCE_TYPES) if stack is not None else []
    ) or defaults[tpl.PARAM_GPU_INSTANCE_TYPES].split(",")
    parallel = int(
        chosen.get(tpl.PARAM_MAX_PARALLEL_CHUNKS) or defaults[tpl.PARAM_MAX_PARALLEL_CHUNKS]
    )
    prices = spot_prices(session, types, session.region_name)
    return estimate_job(
        frames=media.video.frame_count,
        width=media.video.width,
        height=media.video.height,
        scale=max(1, round(scale)),
        model=Path(engine.model).stem,
        instance_types=types,
        spot_prices=prices,
        max_parallel=parallel,
        chunks=chunks,
    )


#: The name the app's submit dialog and older callers use.
estimate_for_request = estimate_for_spec
