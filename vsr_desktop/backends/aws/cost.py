"""What an AWS job will cost and how long it will take, shown before the user submits.

GPU throughput comes from resources/cloud/gpu_throughput.json: ESTIMATES scaled from
published relative GPU performance, not measured (see the file and docs/cloud.md).
Spot prices are live (describe_spot_price_history). Prices below are AWS list prices
(us-east-1 / eu-west-1, 2025); the free tier is ignored.

The model follows what the stack runs: at most min(chunks, MaxParallelChunks, the GPUs
that MaxGpuVcpus allows) chunk jobs at once; each chunk job starts a container, downloads
its segment, upscales and encodes (the slower of the two sets its pace: at 4K output the
CPU encoder, not the GPU, is often the ceiling), and uploads its output. The same figures
set each chunk job's time limit (chunk_timeout_seconds), and the running "cost so far" is
the Batch jobs' own start and stop times × the price (batch_cost_so_far).
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
STARTUP_S = 360.0  # a Spot GPU instance boots and pulls the worker image, billed each time
CHUNK_OVERHEAD_S = 30.0  # per chunk job on a running instance: container start, model load
# S3 <-> EC2 in one region, one instance: an ASSUMPTION, not measured. boto3's transfer
# manager (10 threads) on instances with "up to 10-25 Gbit/s" networking moves several
# hundred MB/s; 100 MB/s leaves room for small instances and busy S3 prefixes.
S3_MB_PER_S = 100.0
# The encoder's pace (libx264, the default codec, preset medium, CRF 18), MEASURED here:
# 3.63 frames/s of 3840x2160 on 2 vCPUs of an AMD EPYC (a 24-frame synthetic clip, PyAV
# 18 / FFmpeg 8.1), i.e. 15 Mpixel/s per vCPU, assumed to scale with the chunk job's vCPUs.
ENCODE_PIXELS_PER_S_PER_VCPU = 15.0e6
UPSCALE_JOB_VCPUS = 4  # the upscale job definition's VCPU requirement
# vCPUs of a GPU instance by size (g4dn, g5, g6, gr6 and g6e agree on these).
INSTANCE_VCPUS = {
    "xlarge": 4,
    "2xlarge": 8,
    "4xlarge": 16,
    "8xlarge": 32,
    "12xlarge": 48,
    "16xlarge": 64,
    "24xlarge": 96,
    "48xlarge": 192,
    "metal": 96,
}
DEFAULT_MAX_GPU_VCPUS = 64  # the template's MaxGpuVcpus default
# A chunk job's time limit: this many times the slowest estimate, plus a fixed allowance,
# and never below Batch's minimum of 60 s (the estimates are not measured: keep room).
TIMEOUT_MARGIN = 3.0
TIMEOUT_FIXED_S = 900.0
BATCH_MIN_TIMEOUT_S = 60
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


def vcpus_in(instance_type: str) -> int:
    """vCPUs of a GPU instance type (by its size; 4 when the size is unknown)."""
    return INSTANCE_VCPUS.get(instance_type.split(".", 1)[-1], 4)


def encode_fps(out_width: int, out_height: int, vcpus: int = UPSCALE_JOB_VCPUS) -> float:
    """Frames per second the chunk job's CPU encoder keeps up with at this OUTPUT size."""
    return ENCODE_PIXELS_PER_S_PER_VCPU * vcpus / (out_width * out_height)


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
    parallel: int = 1  # chunk jobs at once on this type (see max_parallel_on)
    effective_fps: float = 0.0  # per chunk job: the slower of the GPU and the encoder
    chunk_seconds: float = 0.0  # one chunk job: overhead, transfers, upscale+encode
    billed_gpu_hours: float = 0.0


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
            f"~{best.fps:.1f} frames/s per GPU, {best.effective_fps:.1f} with encoding, "
            f"${best.usd_per_gpu_hour:.3f}/GPU-hour Spot)",
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


def max_parallel_on(instance_type: str, max_parallel: int, max_gpu_vcpus: int) -> int:
    """Chunk jobs that can run at once on this type: the Map's MaxParallelChunks, and the
    GPUs of the instances the GPU environment's MaxGpuVcpus allows (one job per GPU)."""
    instances = max_gpu_vcpus // vcpus_in(instance_type)
    return min(max_parallel, instances * gpus_in(instance_type))


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
    max_gpu_vcpus: int = DEFAULT_MAX_GPU_VCPUS,
) -> CostEstimate:
    """Estimate GPU hours, wall time and dollars for upscaling `frames` frames of width×height.

    `scale` is the output scale (it sizes the output and the encoder's work; the model sets
    the GPU's). Types with no known throughput, no Spot price, or more vCPUs than
    MaxGpuVcpus are skipped, each with a note.
    """
    if frames <= 0 or width <= 0 or height <= 0 or scale <= 0 or max_parallel <= 0:
        raise InputError("Nothing to estimate", "frames, size, scale and parallelism must be > 0")
    table = throughput_table()
    notes: list[str] = []
    candidates: list[InstanceOption] = []
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
        if vcpus_in(itype) > max_gpu_vcpus:
            notes.append(
                f"{itype}: {vcpus_in(itype)} vCPUs, more than MaxGpuVcpus {max_gpu_vcpus}; left out"
            )
            continue
        candidates.append(
            InstanceOption(itype, str(family["gpu"]), fps, spot_prices[itype] / gpus_in(itype), 0.0)
        )
    if not candidates:
        raise CloudError(
            f"Cannot estimate {model} on {', '.join(instance_types) or 'no GPUs'}",
            "; ".join(notes) or "choose GPU instance types in the cloud settings",
        )

    chunks = max(1, min(frames, chunks if chunks is not None else max_parallel))
    out_w, out_h = width * scale, height * scale
    output_gb = _gigabytes(frames, out_w * out_h, OUTPUT_BITS_PER_PIXEL)
    input_gb = _gigabytes(frames, width * height, INPUT_BITS_PER_PIXEL)
    # Each chunk job moves its own segment in and its output out (the split cut the source).
    chunk_transfer_s = (input_gb + output_gb) / chunks * 1000 / S3_MB_PER_S
    encoder = encode_fps(out_w, out_h)

    def priced(option: InstanceOption) -> InstanceOption:
        parallel = max(
            1, min(chunks, max_parallel_on(option.instance_type, max_parallel, max_gpu_vcpus))
        )
        pace = min(option.fps, encoder)
        chunk_s = CHUNK_OVERHEAD_S + chunk_transfer_s + frames / chunks / pace
        billed = (chunks * chunk_s + parallel * STARTUP_S) / 3600
        return replace(
            option,
            parallel=parallel,
            effective_fps=pace,
            chunk_seconds=chunk_s,
            billed_gpu_hours=billed,
            gpu_usd=billed * option.usd_per_gpu_hour,
        )

    options = sorted((priced(o) for o in candidates), key=lambda o: o.gpu_usd)
    best = options[0]
    rounds = math.ceil(chunks / best.parallel)  # equal chunks: the last round may be part-empty
    # split: fetch the source, upload the segments; merge: fetch the chunks, upload the output.
    cpu_s = CPU_FIXED_S + 2 * (input_gb + output_gb) * 1000 / S3_MB_PER_S
    transitions = 10 + 6 * chunks  # split, map, merge; each chunk task a handful
    cpu_usd = cpu_s / 3600 * CPU_USD_PER_HOUR + transitions * SFN_USD_PER_TRANSITION
    # Stored: the source and its segments, the chunks and the merged output, until expiry.
    storage_usd = (2 * input_gb + 2 * output_gb) * S3_USD_PER_GB_MONTH * STORAGE_DAYS / 30
    transfer_usd = output_gb * TRANSFER_OUT_USD_PER_GB
    rest = cpu_usd + storage_usd + transfer_usd
    wall = STARTUP_S + rounds * best.chunk_seconds + cpu_s
    if wall > EXECUTION_LIMIT_S:
        notes.append(
            f"about {wall / 3600:.0f} h: longer than the {EXECUTION_LIMIT_S // 3600} h an "
            "execution may run; raise MaxGpuVcpus / MaxParallelChunks or split the video"
        )
    return CostEstimate(
        frames=frames,
        instance_type=best.instance_type,
        gpu_hours=frames / best.fps / 3600,
        billed_gpu_hours=best.billed_gpu_hours,
        wall_seconds=wall,
        parallel=best.parallel,
        gpu_usd=best.gpu_usd,
        cpu_overhead_usd=cpu_usd,
        storage_usd=storage_usd,
        transfer_out_usd=transfer_usd,
        output_gb=output_gb,
        total_usd=best.gpu_usd + rest,
        total_usd_high=options[-1].gpu_usd + rest,
        options=tuple(options),
        notes=tuple(notes),
        assumptions=ASSUMPTIONS,
    )


EXECUTION_LIMIT_S = 72 * 3600  # the state machine's TimeoutSeconds (stack_template)


def chunk_timeout_seconds(
    chunk_frames: int,
    width: int,
    height: int,
    scale: int,
    model: str,
    instance_types: list[str],
) -> int:
    """A chunk job's time limit (Batch attemptDurationSeconds): TIMEOUT_MARGIN × the
    slowest of the stack's GPU types for this chunk (GPU or encoder, whichever is slower,
    plus its transfers), plus TIMEOUT_FIXED_S. A model the table does not know is timed
    as the slowest model it knows."""
    table = throughput_table()
    slowest_model = min(table["fps_1080p"]["g4dn"], key=table["fps_1080p"]["g4dn"].get)
    paces: list[float] = []
    for itype in instance_types or ["g4dn.xlarge"]:
        fps = frames_per_second(itype, model, width, height)
        if fps is None:
            fps = frames_per_second(itype, slowest_model, width, height)
        if fps is None:  # an instance family the table does not know: the slowest GPU
            fps = frames_per_second("g4dn.xlarge", slowest_model, width, height) or 0.1
        paces.append(min(fps, encode_fps(width * scale, height * scale)))
    frames = max(1, chunk_frames)
    moved_gb = _gigabytes(frames, width * height, INPUT_BITS_PER_PIXEL) + _gigabytes(
        frames, width * height * scale * scale, OUTPUT_BITS_PER_PIXEL
    )
    transfer_s = moved_gb * 1000 / S3_MB_PER_S
    expected = CHUNK_OVERHEAD_S + transfer_s + frames / min(paces)
    return max(BATCH_MIN_TIMEOUT_S, math.ceil(TIMEOUT_MARGIN * expected + TIMEOUT_FIXED_S))


ASSUMPTIONS = (
    "GPU speed: estimated from published relative GPU performance, not measured",
    f"Spot instances start and pull the worker image in {STARTUP_S / 60:g} min, billed",
    f"each chunk job: {CHUNK_OVERHEAD_S:g} s start, its segment in and output out at "
    f"{S3_MB_PER_S:g} MB/s (assumed)",
    f"the encoder (libx264 medium) keeps up with {ENCODE_PIXELS_PER_S_PER_VCPU / 1e6:g} "
    f"Mpixel/s per vCPU ({UPSCALE_JOB_VCPUS} vCPUs a job; measured on one CPU): at 4K "
    "output it, not the GPU, often sets the pace",
    "chunks at once: the least of the chunks, MaxParallelChunks and the GPUs MaxGpuVcpus allows",
    f"output ≈ {OUTPUT_BITS_PER_PIXEL} bit per output pixel (H.264/H.265 default quality)",
    f"downloading the result costs ${TRANSFER_OUT_USD_PER_GB}/GB (AWS data transfer out)",
    f"job files stay in S3 for {STORAGE_DAYS:g} days at ${S3_USD_PER_GB_MONTH}/GB-month",
    f"split and merge on a CPU instance at ${CPU_USD_PER_HOUR}/h",
    "your upload and download time not included",
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
    from vsr_desktop.core.plan import plan_chunks
    from vsr_desktop.worker.job_setup import validate_spec

    media = validate_spec(spec)
    chunks = len(plan_chunks(media.video, spec.chunk_seconds).chunks)
    engine = spec.engine
    scale = output_scale(engine)
    defaults = tpl.parameter_defaults()
    stack = describe_stack(session, stack_name)
    chosen = stack.parameters if stack is not None else {}
    types = (
        stack.list_parameter(tpl.PARAM_GPU_INSTANCE_TYPES) if stack is not None else []
    ) or defaults[tpl.PARAM_GPU_INSTANCE_TYPES].split(",")
    parallel = int(
        chosen.get(tpl.PARAM_MAX_PARALLEL_CHUNKS) or defaults[tpl.PARAM_MAX_PARALLEL_CHUNKS]
    )
    max_gpu_vcpus = int(chosen.get(tpl.PARAM_MAX_GPU_VCPUS) or defaults[tpl.PARAM_MAX_GPU_VCPUS])
    prices = spot_prices(session, types, session.region_name)
    return estimate_job(
        frames=media.video.frame_count,
        width=media.video.width,
        height=media.video.height,
        scale=scale,
        model=Path(engine.model).stem,
        instance_types=types,
        spot_prices=prices,
        max_parallel=parallel,
        chunks=chunks,
        max_gpu_vcpus=max_gpu_vcpus,
    )


def output_scale(engine: Any) -> int:
    """The job's whole-number output scale (outscale, else the model's; x4 for a file)."""
    from vsr_desktop.core.models import get_spec

    try:
        scale = float(engine.outscale or get_spec(engine.model).scale)
    except VsrError:  # a model file rather than a registry name: the common x4
        scale = float(engine.outscale or 4)
    return max(1, round(scale))


def chunk_timeout_for(
    width: int, height: int, frame_counts: list[int], engine: Any, instance_types: list[str]
) -> int:
    """chunk_timeout_seconds for a planned job (its largest chunk)."""
    return chunk_timeout_seconds(
        max(frame_counts or [1]),
        width,
        height,
        output_scale(engine),
        Path(engine.model).stem,
        instance_types,
    )


#: The name the app's submit dialog and older callers use.
estimate_for_request = estimate_for_spec
