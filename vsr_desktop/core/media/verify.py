"""`vsr verify`: what, other than the picture, differs between a source and its upscale.

The promise of the app is that only the picture changes. This checks it with the files
alone: timing, every other stream (bit-exact packets where copied), chapters, tags,
timecode, colour, aspect, rotation, alpha and frame-rate headers. Expected changes (the
picture, the video codec, the size) are not differences; the display aspect must hold.
"""

from __future__ import annotations

import fnmatch
import itertools
import json
from collections.abc import Collection
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

from vsr_desktop.core.media.stream_facts import (
    Alignment,
    Chapter,
    FileFacts,
    PacketTally,
    StreamFacts,
    Timeline,
    Window,
    align_copies,
    read_facts,
    scan_packets,
)
from vsr_desktop.core.media.tracks import terminology_language

#: `vsr verify` exits with this when something other than the picture differs.
DIFFERENCES_EXIT_CODE = 8
#: Matrices that are the same maths under two names (BT.601 525 and 625).
_SAME_MATRIX = {"bt470bg": "smpte170m"}


@dataclass(frozen=True)
class Difference:
    """One thing that differs: a stable key, both values, and the line a user reads."""

    what: str
    source: Any
    output: Any
    message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class VerifyReport:
    """The verdict: `ok` only when nothing but the picture (and its size/codec) changed."""

    source: Path
    output: Path
    differences: list[Difference] = field(default_factory=list)
    expected: list[Difference] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.differences

    def lines(self) -> list[str]:
        return [d.message for d in self.differences]

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "differences": [d.to_dict() for d in self.differences],
            "expected": [d.to_dict() for d in self.expected],
            "facts": self.facts,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str)


@dataclass(frozen=True)
class SourceRange:
    """The part of the source a trimmed job kept (core/trim.py), in seconds of the source's
    own timestamps (None: from the top / to the end), and the timecode of its first frame.

    The source is then compared as if it were only that part: its frames, packets and
    chapters inside it, its duration the range's, its timecode moved. Nothing else relaxes:
    streams, languages, titles, tags, colour, A/V offset and packet bytes are checked as
    for any job."""

    start: Fraction | None
    end: Fraction | None
    timecode: str | None = None


def _within(facts: FileFacts, kept: SourceRange, output: FileFacts) -> FileFacts:
    """`facts` of the source cut down to `kept` (see SourceRange)."""
    overlap = output.format.split(",")[0] in ("mov", "mp4")  # core/media/mux.py keeps
    origin = Fraction(facts.start_time or 0)  # an audio frame across the start there
    start = kept.start if kept.start is not None else origin
    duration = None
    if facts.duration is not None:
        end = kept.end if kept.end is not None else origin + Fraction(facts.duration)
        duration = float(end - start)
    chapters = tuple(
        Chapter(
            max(c.start, float(start)),
            c.end if kept.end is None else min(c.end, float(kept.end)),
            c.title,
        )
        for c in facts.chapters
        if c.end > start and (kept.end is None or c.start < kept.end)
    )
    return replace(
        facts,
        window=Window(kept.start, kept.end, overlap),
        duration=duration,
        timecode=kept.timecode,
        chapters=chapters,
    )


def _seconds(value: float | None) -> str:
    return "none" if value is None else f"{value:.3f} s"


def _show(value: Any) -> str:
    if value is None or value == "":
        return "none" if value is None else "''"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, (tuple, list)):
        return ", ".join(map(str, value)) or "none"
    return str(value)


class _Checker:
    """Collects differences, moving those the caller expected aside."""

    def __init__(self, expected: Collection[str]) -> None:
        self.expected = tuple(expected)
        self.found: list[Difference] = []
        self.allowed: list[Difference] = []

    def add(self, what: str, source: Any, output: Any, message: str) -> None:
        diff = Difference(what, source, output, message)
        if any(fnmatch.fnmatchcase(what, pattern) for pattern in self.expected):
            self.allowed.append(diff)
        else:
            self.found.append(diff)

    def compare(self, what: str, label: str, name: str, source: Any, output: Any) -> None:
        # "fre" and "fra" (ISO 639-2 B and T) are the same French: MOV keeps only one.
        same_language = (
            name == "language"
            and bool(source and output)
            and terminology_language(source) == terminology_language(output)
        )
        if same_language:
            return
        if source != output:
            verb = "differ" if name.endswith("s") else "differs"
            line = f"{label}: {name} {verb}: {_show(source)} → {_show(output)}"
            self.add(what, source, output, line)


def _pairs(
    source: FileFacts, output: FileFacts
) -> list[tuple[str, StreamFacts | None, StreamFacts | None]]:
    """Streams matched by kind and order: the source's audio #1 is the output's audio #1."""
    kinds: list[str] = []
    for stream in (*source.streams, *output.streams):
        if stream.kind not in kinds:
            kinds.append(stream.kind)
    result = []
    for kind in kinds:
        mine = [s for s in source.streams if s.kind == kind]
        theirs = [s for s in output.streams if s.kind == kind]
        for number in range(max(len(mine), len(theirs))):
            result.append(
                (
                    f"{kind}#{number}",
                    mine[number] if number < len(mine) else None,
                    theirs[number] if number < len(theirs) else None,
                )
            )
    return result


def _first_seconds(facts: FileFacts, line: Timeline) -> float | None:
    if line.video_pts:
        return float(line.video_pts[0] * facts.video.time_base)
    if facts.video.first_decoded_pts is not None:
        return float(facts.video.first_decoded_pts * facts.video.time_base)
    return None


def verify_files(
    source: Path | str,
    output: Path | str,
    *,
    expected: Collection[str] = (),
    source_range: SourceRange | None = None,
) -> VerifyReport:
    """Compare an upscale with its source and list what differs besides the picture.

    `expected` holds `what` patterns (fnmatch, e.g. "audio#*.codec") of changes the caller
    announced, such as an audio conversion the container required; they are listed apart.
    `source_range` compares a trimmed job's output with only that part of the source.
    Raises InputError for a missing path and MediaError for a file that cannot be read.
    """
    from vsr_desktop.core.media.image_sequence import is_image_output, verify_image_sequence

    if is_image_output(Path(output)):  # numbered images: the frame count is what there is
        return verify_image_sequence(Path(source), Path(output), expected=tuple(expected))
    src = read_facts(Path(source))
    out = read_facts(Path(output))
    if source_range is not None:
        src = _within(src, source_range, out)
    pairs = _pairs(src, out)
    copied = [
        (s.index, o.index)
        for _, s, o in pairs
        if s is not None and o is not None and s.codec == o.codec and s.kind != "attachment"
    ]
    found = align_copies(src, out, copied)
    shift = found.shift if found.shift is not None else _video_shift(src, out)
    src_line, out_line, tallies = scan_packets(src, out, copied, Alignment(shift, found.skip))
    check = _Checker(expected)
    _check_timing(check, src, out, src_line, out_line, shift)
    _check_picture(check, src, out, src_line)
    for key, s, o in pairs:
        _check_stream(check, key, s, o, src, out, src_line, out_line, tallies)
    _check_container(check, src, out, shift)
    facts = {
        "source": _summary(src, src_line),
        "output": _summary(out, out_line),
        "scale": [out.video.width / src.video.width, out.video.height / src.video.height],
        "timeline_shift_s": shift,
        "max_drift_s": _max_drift(src, out, src_line, out_line)[0],
        "copied_streams": [{"source": s, "output": o, **vars(tallies[(s, o)])} for s, o in copied],
    }
    return VerifyReport(Path(source), Path(output), check.found, check.allowed, facts)


def _video_shift(src: FileFacts, out: FileFacts) -> float:
    """Without a copied stream to anchor the timelines: an output whose video starts at 0
    is the source's timeline moved to 0 (what a player shows); any other is not moved."""
    a, b = src.video.first_decoded_pts, out.video.first_decoded_pts
    if a is None or b is None:
        return 0.0
    first_a, first_b = float(a * src.video.time_base), float(b * out.video.time_base)
    if src.window is not None and src.window.start is not None:  # a trimmed job
        first_a = float(src.window.start)
    tick = float(max(src.video.time_base, out.video.time_base)) + 1e-6
    return first_b - first_a if abs(first_b) <= tick else 0.0


def _frame_interval(facts: FileFacts, line: Timeline) -> float:
    pts = line.video_pts
    if len(pts) >= 2:
        deltas = sorted(b - a for a, b in itertools.pairwise(pts))
        return float(deltas[len(deltas) // 2] * facts.video.time_base)
    rate = facts.video.average_rate
    return float(1 / rate) if rate else 0.04


def _max_drift(src: FileFacts, out: FileFacts, a: Timeline, b: Timeline) -> tuple[float, int]:
    """Largest gap between corresponding frames, each timed from its file's first frame."""
    if not a.video_pts or not b.video_pts:
        return 0.0, -1
    worst, where = 0.0, -1
    tb_a, tb_b = src.video.time_base, out.video.time_base
    for i, (p, q) in enumerate(zip(a.video_pts, b.video_pts, strict=False)):
        gap = abs(float((q - b.video_pts[0]) * tb_b - (p - a.video_pts[0]) * tb_a))
        if gap > worst:
            worst, where = gap, i
    return worst, where


def _check_timing(
    check: _Checker, src: FileFacts, out: FileFacts, a: Timeline, b: Timeline, shift: float
) -> None:
    tick = float(max(src.video.time_base, out.video.time_base)) + 1e-6
    n_src = len(a.video_pts) + a.untimed_frames
    n_out = len(b.video_pts) + b.untimed_frames
    if n_src != n_out:
        check.add(
            "video.frame_count", n_src, n_out, f"video: frame count differs: {n_src} → {n_out}"
        )
    if b.leading_skipped > a.leading_skipped:
        check.add(
            "video.undecodable_start",
            a.leading_skipped,
            b.leading_skipped,
            f"video: the output starts with {b.leading_skipped} frame(s) that cannot be decoded",
        )
    first_a, first_b = _first_seconds(src, a), _first_seconds(out, b)
    both_audio = all(any(x.kind == "audio" for x in f.streams) for f in (src, out))
    # With audio on both sides, the A/V offset of each track says whether the video moved.
    if None not in (first_a, first_b) and not both_audio:
        assert first_a is not None and first_b is not None
        if abs(first_b - shift - first_a) > tick:
            check.add(
                "video.first_pts",
                first_a,
                first_b,
                f"video: first frame at {_seconds(first_b)} instead of {_seconds(first_a + shift)}",
            )
    if a.video_pts and b.video_pts:
        span_a = float((a.video_pts[-1] - a.video_pts[0]) * src.video.time_base)
        span_b = float((b.video_pts[-1] - b.video_pts[0]) * out.video.time_base)
        if abs(span_a - span_b) > tick:
            check.add(
                "video.last_pts",
                span_a,
                span_b,
                f"video: last frame {_seconds(span_a)} after the first → {_seconds(span_b)}",
            )
        drift, where = _max_drift(src, out, a, b)
        if drift > tick:
            check.add(
                "video.drift",
                0.0,
                drift,
                f"video: frame times drift by up to {_seconds(drift)} (frame {where})",
            )
    if src.duration is not None and out.duration is not None:
        audio = [a.packet_seconds.get(s.index, 0.0) for s in src.streams if s.kind == "audio"]
        slack = max(_frame_interval(src, a), *audio, 0.0) + 0.002
        if abs(src.duration - out.duration) > slack:
            check.add(
                "duration",
                src.duration,
                out.duration,
                f"duration differs: {_seconds(src.duration)} → {_seconds(out.duration)}",
            )


def _is_cfr(facts: FileFacts, line: Timeline) -> bool:
    pts = line.video_pts
    if len(pts) < 3:
        return False
    deltas = [b - a for a, b in itertools.pairwise(pts)]
    spread = float((max(deltas) - min(deltas)) * facts.video.time_base)
    return spread <= max(2 * float(facts.video.time_base), 0.0015)


def _colour_key(key: str, value: str, rgb: bool, size: tuple[int, int] = (0, 0)) -> str:
    if key == "matrix":
        if value == "unspecified" and not rgb:
            # Untagged YUV is read as players read it: BT.709 for HD, BT.601 below.
            value = "bt709" if size[0] >= 1280 or size[1] >= 720 else "smpte170m"
        return _SAME_MATRIX.get(value, value)
    if key == "range" and not rgb and value == "unspecified":
        return "tv"  # players read untagged YUV as limited range
    return value


def _check_picture(check: _Checker, src: FileFacts, out: FileFacts, line: Timeline) -> None:
    s, o = src.video, out.video
    dar_s, dar_o = s.display_aspect, o.display_aspect
    slack = 1 / max(o.width, 1) + 1 / max(o.height, 1)  # one pixel each way
    if s.rotation != o.rotation:
        shown_s = dar_s if s.rotation % 180 == 0 else 1 / dar_s
        shown_o = dar_o if o.rotation % 180 == 0 else 1 / dar_o
        turned = abs(shown_o - shown_s) / shown_s <= slack and s.rotation % 180 != o.rotation % 180
        check.add(
            "video.rotation",
            s.rotation,
            o.rotation,
            f"video: rotation differs: {s.rotation}° → {o.rotation}°"
            + (" (the pixels were turned instead)" if turned else ""),
        )
    elif dar_s and abs(dar_o - dar_s) / dar_s > slack:
        check.add(
            "video.display_aspect",
            f"{s.width}x{s.height} SAR {s.sar.numerator}:{s.sar.denominator}",
            f"{o.width}x{o.height} SAR {o.sar.numerator}:{o.sar.denominator}",
            f"video: display aspect differs: {dar_s:.4f} ({s.width}x{s.height}, SAR "
            f"{s.sar.numerator}:{s.sar.denominator}) → {dar_o:.4f} ({o.width}x{o.height}, "
            f"SAR {o.sar.numerator}:{o.sar.denominator})",
        )
    if s.has_alpha and not o.has_alpha:
        check.add(
            "video.alpha",
            s.pix_fmt,
            o.pix_fmt,
            f"video: alpha dropped: {s.codec} {s.pix_fmt} with alpha → {o.codec} {o.pix_fmt}",
        )
    for key in ("primaries", "transfer", "matrix", "range"):
        a, b = s.color[key], o.color[key]
        if key in ("matrix", "range") and s.is_rgb != o.is_rgb:
            if key == "matrix" and b == "gbr":
                check.add(
                    "video.color.matrix", a, b, "video: YUV pixels tagged with the RGB matrix"
                )
            continue  # RGB ↔ YUV: the matrix and range change with the pixels
        size_a, size_b = (s.width, s.height), (o.width, o.height)
        if _colour_key(key, a, s.is_rgb, size_a) != _colour_key(key, b, o.is_rgb, size_b):
            check.compare(f"video.color.{key}", "video", f"colour {key}", a, b)
    check.compare("video.side_data", "video", "HDR side data", s.side_data, o.side_data)
    check.compare("video.language", "video", "language", s.language, o.language)
    check.compare("video.title", "video", "title", s.title, o.title)
    check.compare(
        "video.dispositions",
        "video",
        "dispositions",
        tuple(d for d in s.dispositions if d != "default"),
        tuple(d for d in o.dispositions if d != "default"),
    )
    if _is_cfr(src, line):
        # The header must match the source's rate: its header, or its timestamps when
        # that header lies (an MKV claiming 1000 fps, say).
        pts = line.video_pts
        measured = Fraction(len(pts) - 1) / ((pts[-1] - pts[0]) * s.time_base)
        slack = max(5e-4, 1 / len(pts))
        for key, a_rate, b_rate in (
            ("average_rate", s.average_rate, o.average_rate),
            ("base_rate", s.base_rate, o.base_rate),
        ):
            near = [r for r in (a_rate, measured) if r and b_rate and abs(b_rate / r - 1) <= slack]
            if not near:
                check.add(
                    f"video.{key}",
                    str(a_rate) if a_rate else None,
                    str(b_rate) if b_rate else None,
                    f"video: {key.replace('_', ' ')} header differs: {_rate(a_rate)} fps → "
                    f"{_rate(b_rate)} fps",
                )


def _rate(value: Fraction | None) -> str:
    return "none" if not value else f"{float(value):.6g}"


def _check_stream(
    check: _Checker,
    key: str,
    s: StreamFacts | None,
    o: StreamFacts | None,
    src: FileFacts,
    out: FileFacts,
    a: Timeline,
    b: Timeline,
    tallies: dict[tuple[int, int], PacketTally],
) -> None:
    number = int(key.split("#")[1])
    if s is None:
        assert o is not None
        label = o.label(number)
        check.add(key, None, o.codec, f"{label}: not in the source ({o.codec})")
        return
    label = s.label(number)
    if o is None:
        check.add(key, s.codec, None, f"{label}: missing from the output")
        return
    for name in ("codec", "language", "title", "sample_rate", "layout"):
        check.compare(
            f"{key}.{name}", label, name.replace("_", " "), getattr(s, name), getattr(o, name)
        )
    # A source without any flag (MPEG-TS has none) gets "default" from the MP4/MOV muxer,
    # which marks the first track of each kind: what players assume anyway.
    gained_default_only = not s.dispositions and o.dispositions == ("default",)
    if not gained_default_only:
        check.compare(f"{key}.dispositions", label, "dispositions", s.dispositions, o.dispositions)
    if s.channels != o.channels and s.layout == o.layout:
        check.compare(f"{key}.channels", label, "channels", s.channels, o.channels)
    if s.attachment is not None and o.attachment is not None:
        for i, (what, name) in enumerate((("name", "file name"), ("mime", "MIME type"))):
            check.compare(f"{key}.{what}", label, name, s.attachment[i], o.attachment[i])
        if s.attachment[2] != o.attachment[2]:
            check.add(f"{key}.content", None, None, f"{label}: content differs")
    tally = tallies.get((s.index, o.index))
    if tally is not None:
        _check_packets(check, key, label, tally)
    if s.kind == "audio":
        v_a, v_b = _first_seconds(src, a), _first_seconds(out, b)
        a_a, a_b = a.first_seconds.get(s.index), b.first_seconds.get(o.index)
        if None not in (v_a, v_b, a_a, a_b):
            off_a, off_b = a_a - v_a, a_b - v_b  # type: ignore[operator]
            frame = max(a.packet_seconds.get(s.index, 0.0), float(s.time_base), float(o.time_base))
            if abs(off_a - off_b) > frame + 1e-6:
                check.add(
                    f"{key}.av_offset",
                    off_a,
                    off_b,
                    f"{label}: A/V offset differs: {off_a:+.3f} s → {off_b:+.3f} s",
                )


def _check_packets(check: _Checker, key: str, label: str, tally: PacketTally) -> None:
    problems = []
    if tally.leading_skipped and not tally.leading_discarded:
        problems.append(f"the first {tally.leading_skipped} not copied")
    kept = tally.source_packets - (tally.leading_skipped if tally.leading_discarded else 0)
    if kept != tally.output_packets:
        problems.append(f"{kept} → {tally.output_packets} packets")
    if tally.bytes_differ:
        problems.append(f"{tally.bytes_differ} differ in content")
    if tally.times_differ:
        off = _seconds(tally.max_time_error)
        problems.append(f"{tally.times_differ} timestamps off by up to {off}")
    if problems:
        first = tally.first_mismatch
        where = f", first at {_seconds(first)}" if first is not None else ""
        check.add(
            f"{key}.packets",
            tally.source_packets,
            tally.output_packets,
            f"{label}: packets differ: {'; '.join(problems)}{where}",
        )


def _check_container(check: _Checker, src: FileFacts, out: FileFacts, shift: float) -> None:
    for name in sorted(set(src.metadata) | set(out.metadata)):
        if name == "creation_time" and name not in src.metadata:
            continue  # a muxer's stamp, unless the source had its own
        a, b = src.metadata.get(name), out.metadata.get(name)
        if a != b:
            check.add(
                f"metadata.{name}",
                a,
                b,
                f"metadata {name!r} differs: {_show(a)} → {_show(b)}",
            )
    if src.timecode != out.timecode:
        check.add(
            "timecode",
            src.timecode,
            out.timecode,
            f"timecode differs: {_show(src.timecode)} → {_show(out.timecode)}",
        )
    if len(src.chapters) != len(out.chapters):
        check.add(
            "chapters",
            len(src.chapters),
            len(out.chapters),
            f"chapters differ: {len(src.chapters)} → {len(out.chapters)}",
        )
        return
    slack = 0.0015
    last = len(src.chapters) - 1
    for i, (a_ch, b_ch) in enumerate(zip(src.chapters, out.chapters, strict=True)):
        label = f"chapter {i + 1} ({a_ch.title!r})"
        check.compare(f"chapters.{i}.title", label, "title", a_ch.title, b_ch.title)
        times = [(a_ch.start, b_ch.start, "start")]
        if i < last:  # the last one ends where each muxer thinks the file ends
            times.append((a_ch.end, b_ch.end, "end"))
        for x, y, name in times:
            if min(abs(y - x), abs(y - shift - x)) > slack:
                check.add(
                    f"chapters.{i}.{name}",
                    x,
                    y,
                    f"{label}: {name} differs: {_seconds(x)} → {_seconds(y)}",
                )


def _plain(value: Any) -> Any:
    """JSON-ready copy: fractions and paths as text, tuples as lists."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (Fraction, Path)):
        return str(value)
    return value


def _summary(facts: FileFacts, line: Timeline) -> dict[str, Any]:
    """The facts a report shows next to its verdict (JSON-ready)."""
    data: dict[str, Any] = _plain(asdict(facts))
    pts, tb = line.video_pts, facts.video.time_base
    data["video"] |= {
        "display_aspect": round(facts.video.display_aspect, 6),
        "frames": len(pts) + line.untimed_frames,
        "leading_frames_not_decodable": line.leading_skipped,
        "first_pts_s": float(pts[0] * tb) if pts else None,
        "last_pts_s": float(pts[-1] * tb) if pts else None,
    }
    for stream in data["streams"]:
        first = line.first_seconds.get(stream["index"])
        stream["first_pts_s"] = first
        if stream["kind"] == "audio" and first is not None and pts:
            stream["av_offset_s"] = first - float(pts[0] * tb)
    return data
