"""The distributed job's stages as separate real processes on a shared work folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import pytest

from tests.conftest import ClipFactory
from vsr_desktop.core.errors import CancelledError
from vsr_desktop.core.media import probe
from vsr_desktop.worker import stages


def worker(*args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vsr_desktop.cli", "worker", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def _audio(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(container.streams.audio[0]) if p.size]


def test_plan_parallel_chunks_merge(clip_factory: ClipFactory, tmp_path: Path) -> None:
    source = clip_factory(frames=24, gop=8, width=48, height=32)
    work, output = tmp_path / "work", tmp_path / "out.mp4"
    plan = worker(
        "plan",
        source,
        "-o",
        output,
        "--workdir",
        work,
        "--scale",
        "2",
        "--preset",
        "ultrafast",
        "--chunk-seconds",
        "0.3",
    )
    assert plan.returncode == 0, plan.stderr
    chunks = int(plan.stdout.strip())
    assert chunks == 3
    early = worker("merge", "--workdir", work)
    assert early.returncode == 6 and "not finished" in early.stderr
    # Array tasks: the index comes from the scheduler's environment, two at a time.
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "vsr_desktop.cli", "worker", "upscale", "--workdir", str(work)],
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "SLURM_ARRAY_TASK_ID": str(i)},
        )
        for i in range(chunks)
    ]
    for proc in procs:
        assert proc.wait(timeout=300) == 0, proc.stderr.read() if proc.stderr else ""
    again = worker("upscale", "--workdir", work, "--chunk", "1")
    assert again.returncode == 0 and "already done" in again.stderr
    status = json.loads(worker("status", "--workdir", work).stdout)
    assert status["chunks_done"] == 3 and status["frames_done"] == 24
    # A merge stopped (SIGTERM sets the same event) leaves no file under either name.
    stopped = threading.Event()
    stopped.set()
    with pytest.raises(CancelledError):
        stages.merge_stage(work, cancel=stopped)
    assert not output.exists() and not list(tmp_path.glob("*.partial*"))
    assert json.loads((work / "progress" / "merge.json").read_text())["state"] == "cancelled"
    merged = worker("merge", "--workdir", work)
    assert merged.returncode == 0, merged.stderr
    info = probe(output)
    assert info.video.frame_count == 24 and (info.video.width, info.video.height) == (96, 64)
    assert _audio(output) == _audio(source)


@pytest.mark.skipif("sys.platform == 'win32'", reason="SIGTERM is a hard kill on Windows")
def test_sigterm_stops_a_chunk_cleanly_and_rerun_redoes_it(
    clip_factory: ClipFactory, tmp_path: Path
) -> None:
    source = clip_factory(frames=48, gop=48, width=160, height=96)
    work = tmp_path / "work"
    assert (
        worker(
            "plan", source, "-o", tmp_path / "o.mp4", "--workdir", work, "--preset", "ultrafast"
        ).returncode
        == 0
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vsr_desktop.cli",
            "worker",
            "upscale",
            "--workdir",
            str(work),
            "--chunk",
            "0",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    progress = work / "progress" / "chunk_00000.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if progress.exists() and json.loads(progress.read_text())["frames_done"] > 0:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 143
    assert json.loads(progress.read_text())["state"] == "cancelled"
    assert list((work / "chunks").iterdir()) == []  # no partial chunk left behind
    redo = worker("upscale", "--workdir", work, "--chunk", "0")
    assert redo.returncode == 0 and "chunk 0 done" in redo.stderr


def test_bad_workdir_and_index_are_clear_errors(clip_factory: ClipFactory, tmp_path: Path) -> None:
    empty = worker("upscale", "--workdir", tmp_path / "nothing", "--chunk", "0")
    assert empty.returncode == 6 and "no planned job" in empty.stderr
    source = clip_factory(frames=8, gop=8, width=48, height=32)
    work = tmp_path / "w"
    assert worker("plan", source, "-o", tmp_path / "o.mp4", "--workdir", work).returncode == 0
    beyond = worker("upscale", "--workdir", work, "--chunk", "5")
    assert beyond.returncode == 6 and "does not exist" in beyond.stderr
    no_index = worker("upscale", "--workdir", work)
    assert no_index.returncode == 2 and "no chunk index" in no_index.stderr
