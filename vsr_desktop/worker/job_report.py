"""The "nothing lost" check after every job: what the merge was asked to change is expected,
anything else that differs from the source is reported.

Every backend's merge runs it where both files are (locally, or on the worker next to the
chunks), so the jobs panel shows ✓ or ⚠ without reading the source again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vsr_desktop.core.errors import VsrError
from vsr_desktop.core.job_spec import JobSpec
from vsr_desktop.core.jobs import VERIFY_REPORT_KEY
from vsr_desktop.core.media.encode import container_for
from vsr_desktop.core.media.probe import MediaInfo
from vsr_desktop.core.media.tracks import plan_audio, plan_subtitle

REPORT_KEY = VERIFY_REPORT_KEY


def expected_changes(info: MediaInfo, spec: JobSpec) -> list[str]:
    """`what` patterns of the changes this job makes on purpose (conversions and drops the
    output container requires, or the user's --audio-codec)."""
    container = container_for(spec.output)
    expected: list[str] = []
    for number, stream in enumerate(info.audio):
        if plan_audio(stream.codec, container, spec.encode.audio_codec).action == "convert":
            expected += [f"audio#{number}.codec", f"audio#{number}.packets"]
    plans = [plan_subtitle(stream.codec, container) for stream in info.subtitles]
    if any(plan.action == "drop" for plan in plans):
        expected.append("subtitle#*")  # later tracks move up: their pairs all change
    for number, plan in enumerate(plans):
        if plan.action == "convert":
            expected += [f"subtitle#{number}.codec", f"subtitle#{number}.packets"]
    if getattr(info, "attachments", ()) and container != "matroska":
        expected.append("attachment*")  # only Matroska carries fonts
    return expected


def verify_output(info: MediaInfo, spec: JobSpec, output: Path | None = None) -> dict[str, Any]:
    """The report stored with the job; never raises (a check that cannot run says so)."""
    from vsr_desktop.core.media.verify import verify_files

    try:
        report = verify_files(
            spec.source, output or spec.output, expected=expected_changes(info, spec)
        )
    except VsrError as exc:
        return {"ok": False, "lines": [f"could not verify the output: {exc.user_message()}"]}
    return {"ok": report.ok, "lines": list(report.lines())}


def read_report(path: Path) -> dict[str, Any] | None:
    """A report a worker wrote (`progress/verify.json`), or None when absent or unreadable."""
    import json

    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(report, dict) or not isinstance(report.get("lines"), list):
        return None
    return {"ok": report.get("ok") is True, "lines": [str(x) for x in report["lines"]]}


def summary(report: dict[str, Any]) -> str:
    """One line for the job's message."""
    lines = report.get("lines") or []
    if report.get("ok"):
        return "verified: nothing but the picture changed"
    first = lines[0] if lines else "the output differs from the source"
    more = f" (+{len(lines) - 1} more: vsr jobs show)" if len(lines) > 1 else ""
    return f"⚠ {first}{more}"
