"""The memory guard: a frame this machine cannot hold is refused before it is decoded, with
the numbers and the largest --tile that fits; each engine call is checked again.

Real parts: a 3 MB PNG-in-MOV with one 16000×16000 frame (flat colour, written row by row so
making it needs no big buffer), the real `vsr` command, the bundled model, this machine's
own available memory (sizes in the tests are derived from it).
"""

from __future__ import annotations

import contextlib
import math
import re
import struct
import subprocess
import sys
import time
import zlib
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vsr_desktop.core import memory_guard as mg
from vsr_desktop.core.errors import EngineError, InputError
from vsr_desktop.core.job_spec import EngineSettings, JobSpec
from vsr_desktop.core.system_memory import available_memory_bytes

HUGE = 16000


def _png(path: Path, width: int, height: int) -> None:
    """A flat-colour RGB PNG, compressed row by row (no frame-sized buffer)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    packer = zlib.compressobj(1)
    row = b"\x00" + bytes([40, 90, 160]) * width
    data = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )


def _png_in_mov(folder: Path, width: int, height: int) -> Path:
    """One PNG frame remuxed into a MOV (nothing decoded on the way)."""
    import av

    picture, movie = folder / f"{width}x{height}.png", folder / f"{width}x{height}.mov"
    _png(picture, width, height)
    with av.open(str(picture)) as source, av.open(str(movie), "w") as target:
        stream = target.add_stream_from_template(source.streams.video[0])
        stream.time_base = Fraction(1, 25)
        for packet in source.demux(source.streams.video[0]):
            if packet.size:
                packet.stream, packet.pts, packet.dts = stream, 0, 0
                packet.time_base, packet.duration = stream.time_base, 1
                target.mux(packet)
    picture.unlink()
    return movie


@pytest.fixture(scope="module")
def huge_movie(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _png_in_mov(tmp_path_factory.mktemp("huge"), HUGE, HUGE)


def _budget() -> float:
    available = available_memory_bytes()
    assert available is not None
    return available * mg.MEMORY_SHARE


def _available_for(budget: float) -> int:
    """The free memory for which _budget() gives `budget`: torch's own share counts only
    before torch is loaded, and another test may have loaded it already."""
    runtime = 0 if "torch" in sys.modules else mg.RUNTIME_BYTES
    return math.ceil((budget + runtime) / mg.MEMORY_SHARE)


def _work(side: int, **changes: Any) -> mg.FrameWork:
    base = mg.FrameWork(
        width=side,
        height=side,
        bit_depth=8,
        model_scale=4,
        outscale=4.0,
        network_bytes_per_pixel=mg.network_bytes_per_pixel("SRVGGNetCompact", "fp32"),
    )
    return replace(base, **changes)


def _side_where_only_tiles_fit(budget: float) -> int:
    """A square frame size whose whole-frame job does not fit ``budget`` but tiles do."""
    side = 256
    while mg.job_bytes(_work(side)) <= budget * 1.2:
        side += 256
    assert mg.largest_tile(_work(side), budget) is not None
    return side


def test_the_estimate_counts_decoder_queue_engine_and_encoder() -> None:
    small = _work(1000)
    in_frame, out_frame = 1000 * 1000 * 3, 4000 * 4000 * 3
    network = 1000 * 1000 * 16 * small.network_bytes_per_pixel
    expected = (
        2 * in_frame  # decoder's picture and its RGB copy
        + 5 * in_frame  # the decoded-frame queue (depth 4) and one being read
        + out_frame  # one call's result
        + 1000 * 1000 * 3 * 4  # float input
        + network
        + 2 * out_frame  # encoder
    )
    assert mg.job_bytes(small) == int(expected)
    # Tiles bound the network's share; the assembled float output stays.
    tiled = mg.job_bytes(replace(small, tile=128))
    assert tiled < mg.job_bytes(small) / 4
    # A GPU holds the network's working set: the host counts its buffers only.
    assert mg.job_bytes(replace(small, network_on_host=False)) < tiled


def test_the_suggested_tile_is_the_largest_that_fits() -> None:
    budget = 8e9
    work = _work(3000)
    tile = mg.largest_tile(work, budget)
    assert tile is not None and tile % 16 == 0
    assert mg.job_bytes(replace(work, tile=tile)) <= budget
    assert mg.job_bytes(replace(work, tile=tile + 16)) > budget
    available = _available_for(budget)
    with pytest.raises(InputError) as caught:
        mg.check_job_memory(work, available=available)
    assert "3000x3000" in caught.value.message and "GB" in caught.value.message
    assert f"--tile {tile} " in caught.value.hint
    # A --tile that is too large: refused naming a smaller one.
    with pytest.raises(InputError) as caught:
        mg.check_job_memory(replace(work, tile=2048), available=available)
    assert f"--tile {tile} " in caught.value.hint


def test_a_frame_too_large_for_any_tile_suggests_a_smaller_scale_or_says_shrink() -> None:
    work = _work(6000, outscale=8.0)
    budget = mg.job_bytes(replace(work, outscale=2.0, tile=mg.MIN_TILE)) * 1.01
    available = _available_for(budget)
    with pytest.raises(InputError) as caught:
        mg.check_job_memory(work, available=available)
    assert re.match(r"use --scale [0-9.]+", caught.value.hint)
    with pytest.raises(InputError) as caught:
        mg.check_job_memory(_work(HUGE), available=available)
    assert "shrink the video first" in caught.value.hint


@pytest.mark.skipif("sys.platform != 'linux'", reason="ru_maxrss is KiB only on Linux")
def test_a_header_peek_decodes_nothing(huge_movie: Path) -> None:
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert mg.frame_size_from_header(huge_movie) == (HUGE, HUGE, 8)
    grew = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
    assert grew < 100e6


def _peak_after_exec(pid: int) -> int:
    """A process's peak resident memory once it runs the vsr command (0 before or after)."""
    with contextlib.suppress(OSError):
        if b"vsr_desktop.cli" in Path(f"/proc/{pid}/cmdline").read_bytes():
            found = re.search(r"VmHWM:\s+(\d+)", Path(f"/proc/{pid}/status").read_text())
            return int(found[1]) * 1024 if found else 0
    return 0


@pytest.mark.skipif("sys.platform != 'linux'", reason="reads the child's peak from /proc")
def test_vsr_upscale_refuses_a_16000_square_frame_before_decoding_it(
    huge_movie: Path, tmp_path: Path
) -> None:
    """Exit 2 in seconds, one line naming the size and the numbers, and nothing decoded:
    the process never grows by the 768 MB one RGB frame takes (2.3 GB resident before)."""
    started = time.monotonic()
    child = subprocess.Popen(
        [sys.executable, "-m", "vsr_desktop.cli", "upscale", str(huge_movie),
         "-o", str(tmp_path / "out.mp4")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    peak = 0  # VmHWM: the child's own peak since its exec (decoding would take seconds)
    while child.poll() is None:
        peak = max(peak, _peak_after_exec(child.pid))
        time.sleep(0.01)
    stderr = child.stderr.read() if child.stderr else ""
    elapsed = time.monotonic() - started
    assert child.returncode == 2, stderr
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1
    assert "16000x16000" in stderr and "GB" in stderr
    assert elapsed < 15
    assert 0 < peak < 400e6
    assert not (tmp_path / "out.mp4").exists()


def test_validate_spec_suggests_a_tile_that_then_passes(tmp_path: Path) -> None:
    from vsr_desktop.worker.job_setup import validate_spec

    side = _side_where_only_tiles_fit(_budget() - mg.RUNTIME_BYTES)
    movie = _png_in_mov(tmp_path, side, side)
    spec = JobSpec(source=movie, output=tmp_path / "out.mp4", engine=EngineSettings(device="cpu"))
    with pytest.raises(InputError) as caught:
        validate_spec(spec)
    match = re.search(r"--tile (\d+)", caught.value.hint)
    assert match is not None
    tiled = replace(spec, engine=replace(spec.engine, tile=int(match.group(1))))
    assert validate_spec(tiled).video.width == side
    # Remote jobs meet another machine's memory: not refused here.
    assert validate_spec(replace(spec, backend="slurm")).video.width == side


def _engine():  # type: ignore[no-untyped-def]
    from vsr_desktop.core.engine import Engine
    from vsr_desktop.core.models import bundled_default_model_path, load_model_file

    model = load_model_file(bundled_default_model_path())
    return Engine(
        model.module, model.scale, device="cpu", precision="fp32", cpu_convolution="onednn"
    )


def test_an_engine_call_that_cannot_fit_is_refused_before_allocating() -> None:
    engine = _engine()
    # np.zeros maps zero pages: 768 MB that are never touched unless something reads them.
    frames = np.zeros((1, HUGE, HUGE, 3), dtype=np.uint8)
    started = time.monotonic()
    with pytest.raises(EngineError, match=r"16000x16000 frame\(s\) ×4 needs about [0-9.]+ GB"):
        engine.upscale(frames)
    assert time.monotonic() - started < 5


def test_an_automatic_tile_is_chosen_when_the_whole_frame_cannot_fit() -> None:
    engine = _engine()
    budget = _budget()
    side = 256
    while mg.engine_call_bytes(engine.frame_work(side, side, 8), 1) <= budget * 1.2:
        side += 256
    tile = mg.choose_engine_tile(engine.frame_work(side, side, 8), 1)
    assert tile > 0
    assert mg.engine_call_bytes(replace(engine.frame_work(side, side, 8), tile=tile), 1) <= budget
    # A call that fits keeps the asked tile (0: whole frames).
    assert mg.choose_engine_tile(engine.frame_work(64, 64, 8), 1) == 0
    out = engine.upscale(np.full((1, 24, 32, 3), 128, dtype=np.uint8))
    assert out.shape == (1, 96, 128, 3) and engine.tile == 0


def test_the_preview_refuses_before_decoding(huge_movie: Path) -> None:
    from vsr_desktop.core.media.probe import probe
    from vsr_desktop.core.preview import render_before_after

    info = probe(huge_movie)  # the probe decodes one frame (FFmpeg's own stream probing)
    engine = _engine()
    started = time.monotonic()
    with pytest.raises(InputError, match="previewing this 16000x16000 frame"):
        render_before_after(info, 0, engine)  # the whole frame ×4
    assert time.monotonic() - started < 2  # decoding it alone takes longer


def test_probe_refuses_a_frame_this_machine_cannot_decode_before_opening_a_decoder(
    huge_movie: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a machine with 200 MB free (the free memory is set: this one has more), even the
    probe's one decoded frame (FFmpeg's stream probing, the colour tags) would not fit."""
    from vsr_desktop.core.media.probe import probe

    monkeypatch.setattr(mg, "available_memory_bytes", lambda: 200 * 2**20)
    started = time.monotonic()
    with pytest.raises(InputError, match="a 16000x16000 frame needs"):
        probe(huge_movie)
    assert time.monotonic() - started < 2
