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
from vsr_desktop.core.media.deinterlace import job_deinterlace
from vsr_desktop.core.media.encode import container_for
from vsr_desktop.core.media.probe import MediaInfo
from vsr_desktop.core.media.tracks import plan_audio, plan_subtitle

REPORT_KEY = VERIFY_REPORT_KEY
#: What --double-rate changes on purpose: twice the frames at twice the rate, so frame i of
#: the output is not frame i of the source, and the last field ends half a frame later.
FIELD_RATE_CHANGES = (
    "video.frame_count",
    "video.average_rate",
    "video.base_rate",
    "video.drift",
    "video.last_pts",
)


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
    fields = job_deinterlace(spec, info.video)
    if fields is not None and fields.double_rate:
        expected += FIELD_RATE_CHANGES  # one frame per field, at twice the rate
    expected += picture_changes(info, spec, container)
    expected += output_choice_changes(info, spec, container)
    return expected


def output_choice_changes(info: MediaInfo, spec: JobSpec, container: str) -> list[str]:
    """--size with pad or crop changes the frame's aspect on purpose (the picture's is kept);
    MXF keeps no chapters or subtitles and writes its own descriptive tags; DNxHR declares a
    matrix in every frame header (BT.709 where the source said none)."""
    encode, changes = spec.encode, []
    if encode.width is not None and encode.height is not None and encode.fit in ("pad", "crop"):
        changes.append("video.display_aspect")
    if encode.codec.startswith("dnxhr") and info.video.color.space in (0, 2):
        changes.append("video.color.matrix")
    if container == "mxf":  # FFmpeg's MXF writer stores no layout, no dispositions
        changes += ["chapters*", "subtitle#*", "metadata.*"]
        changes += ["audio#*.layout", "audio#*.dispositions"]
        if not info.timecode:  # and writes a 00:00:00:00 timecode of its own
            changes.append("timecode")
    return changes


def picture_changes(info: MediaInfo, spec: JobSpec, container: str) -> list[str]:
    """Alpha dropped on request (--drop-alpha); an RGB source's matrix and range replaced
    by a YUV matrix (core.media.color_tags). Lost HDR side data stays a difference."""
    from vsr_desktop.core.media.alpha import keeps_alpha
    from vsr_desktop.core.media.color_tags import SPC_RGB, is_rgb_pix_fmt

    video, changes = info.video, []
    if video.has_alpha and not keeps_alpha(True, spec.encode, container):
        changes.append("video.alpha")
    if video.color.space == SPC_RGB or is_rgb_pix_fmt(video.pix_fmt):
        changes += ["video.color.matrix", "video.color.range"]
    return changes


def picture_notes(info: MediaInfo, spec: JobSpec) -> list[str]:
    """What the user is told about the picture: alpha dropped, HDR data not carried."""
    from vsr_desktop.core.media.alpha import check_alpha_output
    from vsr_desktop.core.media.color_tags import hdr_note

    notes = []
    try:
        container = container_for(spec.output)
        alpha = check_alpha_output(info.video.has_alpha, spec.encode, container)
        hdr = hdr_note(info.video.color, spec.encode.profile().encoder, spec.encode.codec)
    except VsrError:  # validate_spec refused such a spec before any work
        return []
    notes += [alpha] if alpha else []
    notes += [hdr] if hdr else []
    return notes


def verify_output(info: MediaInfo, spec: JobSpec, output: Path | None = None) -> dict[str, Any]:
    """The report stored with the job; never raises (a check that cannot run says so)."""
    from vsr_desktop.core.media.verify import verify_files

    try:
        kept, trimmed = source_range(info, spec)
        report = verify_files(
            spec.source,
            output or spec.output,
            expected=expected_changes(info, spec),
            source_range=kept,
        )
    except VsrError as exc:
        return {"ok": False, "lines": [f"could not verify the output: {exc.user_message()}"]}
    notes = picture_notes(info, spec)  # said with the verdict, on every backend
    extra: dict[str, Any] = {"notes": notes} if notes else {}
    if trimmed:
        extra["trimmed"] = trimmed
    return {"ok": report.ok, "lines": list(report.lines()), **extra}


def source_range(info: MediaInfo, spec: JobSpec) -> tuple[Any, str]:
    """A trimmed job's part of the source for verify_files (None when untrimmed) and the
    range in words: the output is compared with that part only (core/media/verify.py)."""
    from vsr_desktop.core.media.verify import SourceRange
    from vsr_desktop.core.trim import describe, job_range, kept_window, moved_timecode

    frames = job_range(spec, info)
    if frames is None:
        return None, ""
    video = info.video
    start, end = kept_window(video, *frames)
    offset = (video.frame_pts[frames[0]] - video.frame_pts[0]) * video.time_base
    timecode = moved_timecode(info.timecode, offset, video.header_rate())
    return SourceRange(start, end, timecode), describe(*frames, video)


def read_report(path: Path) -> dict[str, Any] | None:
    """A report a worker wrote (`progress/verify.json`), or None when absent or unreadable."""
    import json

    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(report, dict) or not isinstance(report.get("lines"), list):
        return None
    notes = report.get("notes") if isinstance(report.get("notes"), list) else []
    trimmed = report.get("trimmed")
    return {
        "ok": report.get("ok") is True,
        "lines": [str(x) for x in report["lines"]],
        **({"notes": [str(x) for x in notes]} if notes else {}),
        **({"trimmed": trimmed} if isinstance(trimmed, str) and trimmed else {}),
    }


def summary(report: dict[str, Any]) -> str:
    """One line for the job's message."""
    lines = report.get("lines") or []
    notes = "".join(f"{note}; " for note in report.get("notes") or [])
    if report.get("ok") and report.get("trimmed"):
        return f"{notes}verified: nothing but the picture changed in {report['trimmed']}"
    if report.get("ok"):
        return f"{notes}verified: nothing but the picture changed"
    first = lines[0] if lines else "the output differs from the source"
    more = f" (+{len(lines) - 1} more: vsr jobs show)" if len(lines) > 1 else ""
    return f"{notes}⚠ {first}{more}"
