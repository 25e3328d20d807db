"""The words and numbers the send-to-cloud dialog shows (pure functions, no widgets).

Kept apart from the dialog so the figures a user decides on can be checked without a
window, and so the dialog only lays them out.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vsr_desktop.core.errors import CancelledError, InputError, MediaError, VsrError

if TYPE_CHECKING:
    from vsr_desktop.backends.aws.cost import CostEstimate
    from vsr_desktop.core.job_spec import JobSpec

COLUMNS = ("Source", "Frames", "GPU", "GPU time", "Ready in", "Cost", "Download")


@dataclass(frozen=True)
class SourceEstimate:
    """One source's estimate, or why there is none."""

    spec: JobSpec
    estimate: CostEstimate | None = None
    error: VsrError | None = None

    @property
    def submittable(self) -> bool:
        """A bad source cannot go; an estimate that failed for a cloud reason (no Spot
        price permission, say) does not stop the job itself."""
        return self.estimate is not None or not isinstance(self.error, (InputError, MediaError))

    @property
    def price_per_gpu_hour(self) -> float | None:
        return self.estimate.usd_per_gpu_hour if self.estimate is not None else None


def minutes(seconds: float) -> str:
    if seconds < 90:
        return "about 1 min"
    if seconds < 5400:
        return f"about {seconds / 60:.0f} min"
    return f"about {seconds / 3600:.1f} h"


def gpu_time(hours: float) -> str:
    """Hours, or minutes for short clips (a preview-length job is seconds of GPU time)."""
    if hours >= 0.1:
        return f"{hours:.2f} h"
    if hours >= 1 / 60:
        return f"{hours * 60:.1f} min"
    return f"{hours * 3600:.0f} s" if hours * 3600 >= 1 else "under 1 s"


def size(gigabytes: float) -> str:
    return f"{gigabytes:.2f} GB" if gigabytes >= 1 else f"{gigabytes * 1000:.1f} MB"


def dollars(low: float, high: float | None = None) -> str:
    if high is None or abs(high - low) < 0.005:
        return f"${low:.2f}"
    return f"${low:.2f}–${high:.2f}"


def row_cells(item: SourceEstimate) -> list[str]:
    """The table row for one source; a failed estimate says why in the GPU column."""
    name = item.spec.source.name
    est = item.estimate
    if est is None:
        reason = item.error.message if item.error is not None else "no estimate"
        return [name, "", f"no estimate: {reason}", "", "", "", ""]
    best = est.options[0]
    return [
        name,
        f"{est.frames:,}",
        f"{best.instance_type} ({best.gpu})",
        gpu_time(est.gpu_hours),
        minutes(est.wall_seconds),
        dollars(est.total_usd, est.total_usd_high),
        f"{size(est.output_gb)} · ${est.transfer_out_usd:.2f}",
    ]


def summary(items: list[SourceEstimate]) -> str:
    """One sentence over every source: what it costs, how long, what the download is."""
    priced = [i.estimate for i in items if i.estimate is not None]
    if not priced:
        return "No estimate is available."
    low = sum(e.total_usd for e in priced)
    high = sum(e.total_usd_high for e in priced)
    gpu_hours = sum(e.gpu_hours for e in priced)
    gigabytes = sum(e.output_gb for e in priced)
    transfer = sum(e.transfer_out_usd for e in priced)
    longest = max(e.wall_seconds for e in priced)
    types = sorted({f"{e.options[0].instance_type} ({e.options[0].gpu})" for e in priced})
    skipped = len(items) - len(priced)
    text = (
        f"Total {dollars(low, high)} for {gpu_time(gpu_hours)} of GPU time on Spot "
        f"{', '.join(types)}; results in S3 after {minutes(longest)}; "
        f"download {size(gigabytes)} (${transfer:.2f} of that total)."
    )
    if skipped:
        text += f" {skipped} source(s) have no estimate."
    return text


def notes(items: list[SourceEstimate]) -> list[str]:
    """The estimate's own notes and every failure, once each, in order."""
    lines: list[str] = []
    for item in items:
        if item.estimate is not None:
            lines.extend(item.estimate.notes)
        elif item.error is not None:
            what = "cannot be sent" if not item.submittable else "has no estimate"
            lines.append(f"{item.spec.source.name} {what}: {item.error.user_message()}")
    return list(dict.fromkeys(lines))


def assumptions(items: list[SourceEstimate]) -> list[str]:
    for item in items:
        if item.estimate is not None:
            return list(item.estimate.assumptions)
    return []


def estimate_all(
    session: Any,
    specs: list[JobSpec],
    stack_name: str,
    cancel: threading.Event,
    check_stack: bool = True,
) -> list[SourceEstimate]:
    """Estimate every job spec (runs in a worker thread: probing and Spot prices are slow).

    The stack is checked first: without it nothing can be submitted, and the user should
    learn that before reading prices.
    """
    from vsr_desktop.backends.aws.cost import estimate_for_spec
    from vsr_desktop.backends.aws.errors import CloudError
    from vsr_desktop.backends.aws.stack import describe_stack

    if check_stack:
        info = describe_stack(session, stack_name)
        if info is None or not info.ready:
            status = "is not deployed" if info is None else f"is {info.status}"
            raise CloudError(
                f"the cloud stack {stack_name} {status} in {session.region_name}",
                "open Cloud → AWS account and stack… and press Deploy / update",
            )
    results = []
    for spec in specs:
        if cancel.is_set():
            raise CancelledError("estimate cancelled")
        try:
            results.append(SourceEstimate(spec, estimate_for_spec(session, spec, stack_name)))
        except VsrError as exc:
            results.append(SourceEstimate(spec, error=exc))
    return results
