"""What a player or an editor sees in a media file, other than the picture itself.

`vsr verify` compares two of these. Header facts (streams, tags, chapters, colour, aspect)
come from the container and the first decoded frame; timing facts and packet checksums from
one pass over both files' packets side by side, so nothing grows with the length of a film.
Read with PyAV directly: this must not trust the project's own probe or writer.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Generator, Iterator, Sequence
from contextlib import ExitStack, closing
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

from vsr_desktop.core.errors import InputError, MediaError

#: AVDISCARD_ALL: the MOV demuxer sets it on the text track that holds the chapters.
_DISCARD_ALL = 48
#: Decoding stops looking for the first picture after this many video packets.
_FIRST_FRAME_PACKETS = 600
#: A copy may leave out this many leading packets of its stream (edit-list pre-roll).
_HEAD_PACKETS = 32
#: Looking for where the copies start reads at most this many packets.
_SCAN_LIMIT = 5000
#: Packets of one stream held while waiting for their partner in the other file.
_MAX_WAITING = 4096
#: Tags muxers and encoders write about themselves, not about the content.
WRITER_TAGS = frozenset(
    {
        "encoder",
        "encoder_options",
        "major_brand",
        "minor_version",
        "compatible_brands",
        "duration",
        "handler_name",
        "vendor_id",
        "bps",
        "number_of_frames",
        "number_of_bytes",
        "_statistics_writing_app",
        "_statistics_writing_date_utc",
        "_statistics_tags",
    }
)
#: Frame side data whose loss changes how a player shows the picture (HDR).
PICTURE_SIDE_DATA = ("MASTERING_DISPLAY_METADATA", "CONTENT_LIGHT_LEVEL")

PRIMARIES = {1: "bt709", 2: "unspecified", 4: "bt470m", 5: "bt470bg", 6: "smpte170m"}
PRIMARIES |= {7: "smpte240m", 8: "film", 9: "bt2020", 10: "smpte428", 11: "smpte431"}
PRIMARIES |= {12: "smpte432", 22: "ebu3213"}
TRANSFERS = {1: "bt709", 2: "unspecified", 4: "gamma22", 5: "gamma28", 6: "smpte170m"}
TRANSFERS |= {7: "smpte240m", 8: "linear", 9: "log100", 10: "log316", 11: "iec61966-2-4"}
TRANSFERS |= {12: "bt1361e", 13: "iec61966-2-1", 14: "bt2020-10", 15: "bt2020-12"}
TRANSFERS |= {16: "smpte2084", 17: "smpte428", 18: "arib-std-b67"}
MATRICES = {0: "gbr", 1: "bt709", 2: "unspecified", 4: "fcc", 5: "bt470bg", 6: "smpte170m"}
MATRICES |= {7: "smpte240m", 8: "ycgco", 9: "bt2020nc", 10: "bt2020c", 11: "smpte2085"}
MATRICES |= {12: "chroma-derived-nc", 13: "chroma-derived-c", 14: "ictcp"}
RANGES = {0: "unspecified", 1: "tv", 2: "pc"}


@dataclass(frozen=True)
class StreamFacts:
    """One stream other than the upscaled video: what a player lists for it."""

    index: int
    kind: str  # audio, subtitle, data, attachment, video (cover art, another angle)
    codec: str
    time_base: Fraction
    language: str | None = None
    title: str | None = None
    dispositions: tuple[str, ...] = ()
    sample_rate: int | None = None
    channels: int | None = None
    layout: str | None = None
    attachment: tuple[str, str, str] | None = None  # file name, MIME type, sha256

    def label(self, number: int) -> str:
        """`audio #1 (eng, 'Commentary')`: the words a user finds the track by."""
        name = self.attachment[0] if self.attachment else None
        extra = [
            x
            for x in (self.language, repr(self.title or name) if self.title or name else None)
            if x
        ]
        return f"{self.kind} #{number}" + (f" ({', '.join(extra)})" if extra else "")


@dataclass(frozen=True)
class VideoFacts:
    """The upscaled video stream: everything but its pixels, codec and size ratio."""

    index: int
    codec: str
    width: int
    height: int
    sar: Fraction  # 1 when the file says nothing
    pix_fmt: str
    has_alpha: bool
    is_rgb: bool
    color: dict[str, str]  # primaries, transfer, matrix, range (FFmpeg's names)
    rotation: int
    side_data: tuple[str, ...]
    time_base: Fraction
    average_rate: Fraction | None
    base_rate: Fraction | None
    first_decoded_pts: int | None
    language: str | None
    title: str | None
    dispositions: tuple[str, ...]

    @property
    def display_aspect(self) -> float:
        return float(self.width * self.sar / self.height) if self.height else 0.0


@dataclass(frozen=True)
class Chapter:
    start: float
    end: float
    title: str


@dataclass(frozen=True)
class FileFacts:
    """A file's header facts: container tags, chapters, timecode, the video and the rest."""

    path: Path
    format: str
    duration: float | None
    start_time: float | None
    metadata: dict[str, str]  # lower-case keys, writer tags and the timecode left out
    timecode: str | None
    chapters: tuple[Chapter, ...]
    video: VideoFacts
    streams: tuple[StreamFacts, ...]
    #: Only this part of the timeline is compared (a trimmed job's range; see Window).
    window: Window | None = None


@dataclass(frozen=True)
class Window:
    """The part of a source a trimmed job kept, in seconds of its own timestamps: video
    packets from `start` to `end` (None: from the top, to the end); another stream's packet
    when it starts in it, or with `overlap` (MP4/MOV outputs) also when it only ends in it."""

    start: Fraction | None
    end: Fraction | None = None
    overlap: bool = False

    def holds(self, packet: Any) -> bool:
        stamp = packet.pts if packet.pts is not None else packet.dts
        if stamp is None or packet.time_base is None:
            return False
        base = Fraction(packet.time_base)
        at = stamp * base
        if self.end is not None and at >= self.end:
            return False
        if self.start is None or at >= self.start:
            return True
        overlaps = packet.stream.type != "video" and self.overlap
        return overlaps and at + (packet.duration or 0) * base > self.start


@dataclass
class Timeline:
    """Timing read from one file's packets (no decoding)."""

    video_pts: list[int] = field(default_factory=list)  # presentable frames, sorted
    leading_skipped: int = 0  # packets before the first picture the decoder gives
    untimed_frames: int = 0
    first_seconds: dict[int, float] = field(default_factory=dict)  # per stream index
    packet_seconds: dict[int, float] = field(default_factory=dict)  # first packet's length


def _open(path: Path) -> Any:
    import av

    if not path.exists():
        raise InputError(f"{path} does not exist", "check the path and try again")
    if path.is_dir():
        raise InputError(f"{path} is a folder, not a media file", "name a video file")
    try:
        return av.open(str(path))
    except (av.FFmpegError, OSError) as exc:
        raise MediaError(
            f"{path.name} cannot be read as media ({exc})", "check that it is a whole video file"
        ) from exc


def _tag(metadata: dict[str, str], *names: str) -> str | None:
    lowered = {k.lower(): v for k, v in metadata.items()}
    for name in names:
        value = lowered.get(name)
        if value:
            return value
    return None


def _language(metadata: dict[str, str]) -> str | None:
    value = _tag(metadata, "language")
    return None if value in (None, "", "und") else value


def _dispositions(value: int) -> tuple[str, ...]:
    import av

    names = []
    for flag in av.stream.Disposition:
        if flag.value and value & flag.value == flag.value and flag.name:
            names.append(flag.name)
    return tuple(sorted(names))


def _main_video(container: Any, path: Path) -> Any:
    for stream in container.streams.video:
        if "attached_pic" not in _dispositions(int(stream.disposition)):
            return stream
    raise MediaError(f"{path.name} has no video stream", "compare a video with its upscale")


def _first_frame(path: Path, index: int) -> tuple[Any, set[str]]:
    """The first picture the decoder gives (where a player starts, its colour tags) and the
    side data kinds of the first packet (VP8/VP9 alpha travels there, beside the picture)."""
    import av

    kinds: set[str] = set()
    try:
        with av.open(str(path)) as container:
            stream = container.streams[index]
            for count, packet in enumerate(container.demux(stream)):
                if count == 0:
                    kinds = {sd.data_type for sd in packet.iter_sidedata()}
                for frame in packet.decode():
                    return frame, kinds
                if count > _FIRST_FRAME_PACKETS:
                    break
            return None, kinds
    except av.FFmpegError as exc:
        raise MediaError(
            f"{path.name}: its video cannot be decoded ({exc})", "the file may be damaged"
        ) from exc


def _video_facts(path: Path, stream: Any) -> VideoFacts:
    import av

    ctx = stream.codec_context
    frame, packet_side_data = _first_frame(path, stream.index)
    pix_fmt = frame.format.name if frame is not None else (ctx.format.name if ctx.format else "")
    try:
        fmt = av.VideoFormat(pix_fmt) if pix_fmt else None
    except (ValueError, av.FFmpegError):
        fmt = None
    alpha_tag = (  # VP8/VP9 alpha: a second picture in each Matroska block
        _tag(dict(stream.metadata), "alpha_mode") == "1"
        and "matroska_block_additional" in packet_side_data
    )
    has_alpha = alpha_tag or bool(fmt and any(c.is_alpha for c in fmt.components))

    def colour(attr: str, unset: int) -> int:
        value = int(getattr(frame, attr)) if frame is not None else unset
        return value if value != unset else int(getattr(ctx, attr, unset) or unset)

    side: tuple[str, ...] = ()
    if frame is not None:
        # PyAV 18 iterates SideData objects (not keys); their kind is `.type`.
        kinds = {getattr(sd.type, "name", str(sd.type)) for sd in frame.side_data.values()}
        side = tuple(k for k in PICTURE_SIDE_DATA if k in kinds)
    sar = stream.sample_aspect_ratio or ctx.sample_aspect_ratio  # the container's wins
    metadata = dict(stream.metadata)
    return VideoFacts(
        index=stream.index,
        codec=ctx.name,
        width=ctx.width or (frame.width if frame is not None else 0),
        height=ctx.height or (frame.height if frame is not None else 0),
        sar=Fraction(sar) if sar else Fraction(1),
        pix_fmt=pix_fmt,
        has_alpha=has_alpha,
        is_rgb=bool(fmt and fmt.is_rgb),
        color={
            "primaries": PRIMARIES.get(colour("color_primaries", 2), "unknown"),
            "transfer": TRANSFERS.get(colour("color_trc", 2), "unknown"),
            "matrix": MATRICES.get(colour("colorspace", 2), "unknown"),
            "range": RANGES.get(colour("color_range", 0), "unknown"),
        },
        rotation=int(frame.rotation or 0) % 360 if frame is not None else 0,
        side_data=side,
        time_base=Fraction(stream.time_base),
        average_rate=Fraction(stream.average_rate) if stream.average_rate else None,
        base_rate=Fraction(stream.base_rate) if stream.base_rate else None,
        first_decoded_pts=frame.pts if frame is not None else None,
        language=_language(metadata),
        title=_tag(metadata, "title", "name"),
        dispositions=_dispositions(int(stream.disposition)),
    )


def _stream_facts(stream: Any) -> StreamFacts:
    metadata = dict(stream.metadata)
    ctx = stream.codec_context
    codec = ctx.name if ctx is not None else (getattr(stream, "name", None) or "unknown")
    facts = StreamFacts(
        index=stream.index,
        kind=stream.type,
        codec=codec,
        time_base=Fraction(stream.time_base) if stream.time_base else Fraction(1, 1000),
        language=_language(metadata),
        title=_tag(metadata, "title", "name"),
        dispositions=_dispositions(int(stream.disposition)),
    )
    if stream.type == "audio":
        layout = ctx.layout.name if ctx.layout is not None else None
        return replace(facts, sample_rate=ctx.sample_rate, channels=ctx.channels, layout=layout)
    if stream.type == "attachment":
        data = bytes(stream.data or b"")
        digest = hashlib.sha256(data).hexdigest()
        found = (str(stream.name or ""), str(stream.mimetype or ""), digest)
        return replace(facts, codec="attachment", attachment=found)
    return facts


def _is_timecode_track(stream: Any) -> bool:
    metadata = dict(stream.metadata)
    return _tag(metadata, "timecode") is not None or (
        _tag(metadata, "handler_name") == "TimeCodeHandler"
    )


def read_facts(path: Path) -> FileFacts:
    """Header facts of one file (decodes only its first picture)."""
    import av

    path = Path(path)
    container = _open(path)
    try:
        with container:
            video = _main_video(container, path)
            others = []
            timecode = _tag(dict(video.metadata), "timecode")
            for stream in container.streams:
                if stream.index == video.index:
                    continue
                if stream.type == "data" and _is_timecode_track(stream):
                    timecode = timecode or _tag(dict(stream.metadata), "timecode")
                    continue  # a QuickTime tmcd track: compared as the timecode
                if stream.type == "data" and int(stream.discard) == _DISCARD_ALL:
                    continue  # the MOV chapter track: compared as the chapters
                others.append(_stream_facts(stream))
            tags = {k.lower(): v for k, v in container.metadata.items()}
            timecode = timecode or tags.get("timecode")
            chapters = tuple(
                Chapter(
                    start=float(c["start"] * c["time_base"]),
                    end=float(c["end"] * c["time_base"]),
                    title=str(c.get("metadata", {}).get("title", "")),
                )
                for c in container.chapters()
            )
            return FileFacts(
                path=path,
                format=container.format.name,
                duration=container.duration / 1_000_000 if container.duration else None,
                start_time=(
                    container.start_time / 1_000_000 if container.start_time is not None else None
                ),
                metadata={
                    k: v for k, v in tags.items() if k not in WRITER_TAGS and k != "timecode"
                },
                timecode=timecode,
                chapters=chapters,
                video=_video_facts(path, video),
                streams=tuple(others),
            )
    except av.FFmpegError as exc:
        raise MediaError(f"{path.name} cannot be read ({exc})", "the file may be damaged") from exc


def _strip_adts(data: bytes) -> bytes:
    """AAC copied from MPEG-TS into MP4/MKV loses its 7- or 9-byte ADTS header; no more."""
    if len(data) > 9 and data[0] == 0xFF and data[1] & 0xF6 == 0xF0:
        return data[7:] if data[1] & 0x01 else data[9:]
    return data


def _packets(path: Path, window: Window | None = None) -> Generator[tuple[float, Any], None, None]:
    """Every non-empty packet of a file with its time in seconds, in file order (only those
    in `window` when given)."""
    import av

    container = _open(path)
    last = float("-inf")
    try:
        with container:
            for packet in container.demux():
                if packet.size == 0 or (window is not None and not window.holds(packet)):
                    continue
                stamp = packet.dts if packet.dts is not None else packet.pts
                if stamp is not None and packet.time_base is not None:
                    last = float(stamp * packet.time_base)
                yield last, packet
    except av.FFmpegError as exc:
        raise MediaError(f"{path.name} is damaged ({exc})", "re-export the file") from exc


def _item(packet: Any) -> tuple[float | None, bytes]:
    """A packet as compared: its presentation time and a digest of its payload."""
    stamp = packet.pts if packet.pts is not None else packet.dts
    seconds = float(stamp * packet.time_base) if stamp is not None else None
    data = bytes(packet)
    if packet.stream.type == "audio" and packet.stream.codec_context.name == "aac":
        data = _strip_adts(data)
    return seconds, hashlib.blake2b(data, digest_size=16).digest() + len(data).to_bytes(8, "big")


@dataclass
class PacketTally:
    """How the packets of a stream compare with those of its copy."""

    source_packets: int = 0
    output_packets: int = 0
    leading_skipped: int = 0  # source packets before the first one the output holds
    leading_discarded: bool = True  # all of those marked discard (edit-list pre-roll)
    bytes_differ: int = 0
    times_differ: int = 0
    max_time_error: float = 0.0
    first_mismatch: float | None = None  # source time of the first differing packet


@dataclass(frozen=True)
class Alignment:
    """Where the copies start: the timeline shift (output − source seconds), read from the
    first copied packet found byte-identical, and how many source packets each copy skips."""

    shift: float | None
    skip: dict[tuple[int, int], int]


def align_copies(
    source: FileFacts, output: FileFacts, pairs: Sequence[tuple[int, int]]
) -> Alignment:
    """Find each output copy's first packet among the first packets of its source stream."""
    heads: list[dict[int, list[tuple[float | None, bytes]]]] = []
    if not pairs:
        return Alignment(None, {})
    for facts, wanted, depth in (
        (source, {s for s, _ in pairs}, _HEAD_PACKETS),
        (output, {o for _, o in pairs}, 1),
    ):
        found: dict[int, list[tuple[float | None, bytes]]] = {i: [] for i in wanted}
        with closing(_packets(facts.path, facts.window)) as packets:
            for count, (_, packet) in enumerate(packets):
                head = found.get(packet.stream_index)
                if head is not None and len(head) < depth:
                    head.append(_item(packet))
                if all(len(v) >= depth for v in found.values()) or count > _SCAN_LIMIT:
                    break
        heads.append(found)
    shift: float | None = None
    skip: dict[tuple[int, int], int] = {}
    video_shift = _video_shift(source, output)
    for s, o in pairs:
        first = heads[1][o][:1]
        if not first:
            continue
        matches = [
            (position, seconds)
            for position, (seconds, digest) in enumerate(heads[0][s])
            if digest == first[0][1]
        ]
        if not matches:
            continue
        out_seconds = first[0][0]

        position, seconds = min(matches, key=lambda m: _distance(m, out_seconds, video_shift))
        skip[(s, o)] = position
        if shift is None and seconds is not None and out_seconds is not None:
            shift = out_seconds - seconds
    return Alignment(shift, skip)


def _distance(match: tuple[int, float | None], out: float | None, shift: float | None) -> float:
    """Silence encodes to identical packets: of those, the one that moved as the video
    moved is the copy's start (without timing, the earliest)."""
    if shift is None or match[1] is None or out is None:
        return float(match[0])
    return abs(out - match[1] - shift)


def _video_shift(source: FileFacts, output: FileFacts) -> float | None:
    """How far the first shown picture moved (output − source seconds), when both have one."""
    a, b = source.video.first_decoded_pts, output.video.first_decoded_pts
    if a is None or b is None:
        return None
    if source.window is not None and source.window.start is not None:  # a trimmed job
        return float(b * output.video.time_base) - float(source.window.start)
    return float(b * output.video.time_base) - float(a * source.video.time_base)


@dataclass
class _Side:
    """One file's half of the side-by-side pass."""

    facts: FileFacts
    timeline: Timeline = field(default_factory=Timeline)
    raw_video: list[tuple[int, bool]] = field(default_factory=list)

    def take(self, packet: Any, compared: bool) -> tuple[float | None, bytes] | None:
        """Record timing; return the compared form of a paired stream's packet."""
        index = packet.stream_index
        if index == self.facts.video.index:
            stamp = packet.pts if packet.pts is not None else packet.dts
            if stamp is None:
                self.timeline.untimed_frames += 1
            else:
                self.raw_video.append((stamp, bool(packet.is_discard)))
            return None
        line = self.timeline
        item = _item(packet) if compared or index not in line.first_seconds else None
        if (
            item
            and item[0] is not None
            and not packet.is_discard
            and index not in line.first_seconds
        ):
            line.first_seconds[index] = item[0]
            if packet.duration:
                line.packet_seconds[index] = float(packet.duration * packet.time_base)
        return item if compared else None

    def finish(self) -> Timeline:
        first = self.facts.video.first_decoded_pts
        kept = sorted(p for p, discard in self.raw_video if not discard)
        if first is not None:
            self.timeline.leading_skipped = sum(1 for p in kept if p < first)
            kept = [p for p in kept if p >= first]
        self.timeline.video_pts = kept
        return self.timeline


def scan_packets(
    source: FileFacts, output: FileFacts, pairs: Sequence[tuple[int, int]], alignment: Alignment
) -> tuple[Timeline, Timeline, dict[tuple[int, int], PacketTally]]:
    """Walk both files together: video timestamps, first times, and paired packet checks.

    `pairs` maps a source stream index to its copy's index in the output. Each file is
    read once, the one behind in time first; only packets waiting for their partner are
    held, so memory does not grow with the length of the film.
    """
    src, out = _Side(source), _Side(output)
    tallies = {pair: PacketTally() for pair in pairs}
    with ExitStack() as stack:
        src_iter = stack.enter_context(closing(_packets(source.path, source.window)))
        out_iter = stack.enter_context(closing(_packets(output.path, output.window)))
        _walk(src_iter, out_iter, src, out, alignment, tallies)
    return src.finish(), out.finish(), tallies


def _walk(
    src_iter: Iterator[tuple[float, Any]],
    out_iter: Iterator[tuple[float, Any]],
    src: _Side,
    out: _Side,
    alignment: Alignment,
    tallies: dict[tuple[int, int], PacketTally],
) -> None:
    shift = alignment.shift or 0.0
    by_source = {s: (s, o) for s, o in tallies}
    by_output = {o: (s, o) for s, o in tallies}
    skip = {pair: alignment.skip.get(pair, 0) for pair in tallies}
    tolerance = {pair: _pair_tolerance(src.facts, out.facts, pair) for pair in tallies}
    waiting: dict[tuple[int, int], tuple[deque[Any], deque[Any]]] = {
        pair: (deque(), deque()) for pair in tallies
    }
    src_next, out_next = next(src_iter, None), next(out_iter, None)
    while src_next is not None or out_next is not None:
        if out_next is None or (src_next is not None and src_next[0] <= out_next[0] - shift):
            assert src_next is not None
            packet, side = src_next[1], 0
            pair = by_source.get(packet.stream_index)
            item = src.take(packet, pair is not None)
            src_next = next(src_iter, None)
        else:
            packet, side = out_next[1], 1
            pair = by_output.get(packet.stream_index)
            item = out.take(packet, pair is not None)
            out_next = next(out_iter, None)
        if pair is None or item is None:
            continue
        tally = tallies[pair]
        if side == 0:
            tally.source_packets += 1
            if skip[pair] > 0:
                skip[pair] -= 1
                tally.leading_skipped += 1
                tally.leading_discarded &= bool(packet.is_discard)
                continue
        else:
            tally.output_packets += 1
        queue = waiting[pair][side]
        queue.append(item)
        if len(queue) > _MAX_WAITING:  # the partner is missing or far away: the counts
            queue.popleft()  # already say so, and memory stays bounded
        queue_src, queue_out = waiting[pair]
        while queue_src and queue_out:
            _compare(queue_src.popleft(), queue_out.popleft(), tally, shift, tolerance[pair])


def _pair_tolerance(source: FileFacts, output: FileFacts, pair: tuple[int, int]) -> float:
    """One tick of the coarser time base: what re-stamping a copied packet may move it."""
    bases = [s.time_base for s in source.streams if s.index == pair[0]]
    bases += [s.time_base for s in output.streams if s.index == pair[1]]
    return float(max(bases, default=Fraction(1, 1000))) + 1e-6


def _compare(
    src: tuple[float | None, bytes],
    out: tuple[float | None, bytes],
    tally: PacketTally,
    shift: float,
    tolerance: float,
) -> None:
    mismatch = False
    if src[1] != out[1]:
        tally.bytes_differ += 1
        mismatch = True
    if src[0] is not None and out[0] is not None:
        error = abs(out[0] - shift - src[0])
        tally.max_time_error = max(tally.max_time_error, error)
        if error > tolerance:
            tally.times_differ += 1
            mismatch = True
    if mismatch and tally.first_mismatch is None:
        tally.first_mismatch = src[0]
