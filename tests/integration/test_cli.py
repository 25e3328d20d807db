"""The `vsr` command as a user runs it: real processes, real files, real exit codes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest

from tests.conftest import ClipFactory
from vsr_desktop.core.jobs import JobStore, default_store_path


def vsr(*args: object, check: bool = False) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "vsr_desktop.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def _frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def test_upscale_and_preview(clip_factory: ClipFactory, tmp_path: Path) -> None:
    source = clip_factory(frames=8, gop=8, width=48, height=32)
    out = tmp_path / "big.mp4"
    result = vsr("upscale", source, "-o", out, "--preset", "ultrafast", "--quiet", check=True)
    assert "wrote" in result.stderr and out.exists()
    png = tmp_path / "cmp.png"
    vsr(
        "preview",
        source,
        "--frame",
        "3",
        "-o",
        png,
        "--region",
        "8,8,16,16",
        "--mode",
        "side-by-side",
        check=True,
    )
    from PIL import Image

    assert Image.open(png).size == (64 * 2 + 8, 64)


@pytest.mark.parametrize(
    ("make_input", "extra", "code", "message"),
    [
        (lambda d, c: d / "missing.mp4", [], 2, "does not exist"),
        (lambda d, c: _text(d), [], 3, "not a video"),
        (lambda d, c: _truncated(d, c), [], 3, ""),
        (lambda d, c: c, ["--model", "no-such-model"], 4, "nknown model"),
        (lambda d, c: c, ["--codec", "prores", "-o", "{d}/x.webm"], 2, "cannot be stored"),
        (lambda d, c: c, ["-o", "{d}/missing/x.mp4"], 2, "does not exist"),
        (lambda d, c: c, ["--model", "/no/such.pth"], 4, "does not exist"),
        (lambda d, c: c, ["--frame-typo"], 2, "unrecognized"),
    ],
)
def test_bad_input_gives_one_clear_line(
    clip_factory: ClipFactory,
    tmp_path: Path,
    make_input,
    extra,
    code,
    message,  # type: ignore[no-untyped-def]
) -> None:
    source = make_input(tmp_path, clip_factory(frames=8, gop=8, width=48, height=32))
    extra = [e.replace("{d}", str(tmp_path)) for e in extra]
    if "-o" not in extra:
        extra += ["-o", str(tmp_path / "out.mp4")]
    result = vsr("upscale", source, *extra)
    assert result.returncode == code, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out.mp4").exists()


def _text(folder: Path) -> Path:
    path = folder / "notes.mp4"
    path.write_text("hello\n" * 100)
    return path


def _truncated(folder: Path, clip: Path) -> Path:
    path = folder / "cut.mp4"
    path.write_bytes(clip.read_bytes()[:2000])
    return path


def test_output_equal_to_input_and_existing_output_are_refused(
    clip_factory: ClipFactory, tmp_path: Path
) -> None:
    source = tmp_path / "mine.mp4"
    source.write_bytes(clip_factory(frames=8, gop=8, width=48, height=32).read_bytes())
    before = source.read_bytes()
    same = vsr("upscale", source, "-o", source, "--overwrite")
    assert same.returncode == 2 and "is the input" in same.stderr
    taken = tmp_path / "taken.mp4"
    taken.write_bytes(b"keep me")
    exists = vsr("upscale", source, "-o", taken)
    assert exists.returncode == 2 and "already exists" in exists.stderr
    assert source.read_bytes() == before and taken.read_bytes() == b"keep me"


@pytest.mark.skipif("sys.platform != 'linux'", reason="mounts a read-only tmpfs (Linux, root)")
def test_read_only_output_folder(clip_factory: ClipFactory, tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    if (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)], capture_output=True
        ).returncode
        != 0
    ):
        pytest.skip("needs root to mount a read-only folder")
    try:
        result = vsr(
            "upscale", clip_factory(frames=8, gop=8, width=48, height=32), "-o", folder / "x.mp4"
        )
        assert result.returncode == 2 and "not writable" in result.stderr
    finally:
        subprocess.run(["umount", str(folder)], check=False)


@pytest.mark.skipif("sys.platform == 'win32'", reason="SIGKILL is POSIX-only")
def test_sigkill_then_resume_skips_finished_chunks(
    clip_factory: ClipFactory, tmp_path: Path
) -> None:
    source = clip_factory(frames=48, gop=8, width=128, height=72)
    args = ["upscale", source, "--preset", "ultrafast", "--chunk-seconds", "0.3", "--quiet"]
    reference = tmp_path / "reference.mp4"
    vsr(*args, "-o", reference, check=True)

    output = tmp_path / "killed.mp4"
    proc = subprocess.Popen(
        [sys.executable, "-m", "vsr_desktop.cli", *map(str, args), "-o", str(output)],
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    job_id = None
    while time.monotonic() < deadline and proc.poll() is None:
        if default_store_path().exists():
            store = JobStore()
            jobs = [j for j in store.all_jobs() if j.output == str(output.resolve())]
            if jobs and len(store.finished_chunks(jobs[0].id)) >= 2:
                job_id = jobs[0].id
                os.kill(proc.pid, signal.SIGKILL)
                break
        time.sleep(0.02)
    proc.wait(timeout=30)
    assert job_id is not None, "the job finished before it could be killed"
    assert not output.exists()
    resumed = vsr(*args, "-o", output, check=True)
    assert f"resuming job {job_id}" in resumed.stderr
    log = Path(JobStore().get(job_id).log_path).read_text()
    assert "chunks already done" in log
    assert len(_frames(output)) == 48
    for a, b in zip(_frames(output), _frames(reference), strict=True):
        assert np.array_equal(a, b)


def test_models_list_and_jobs_list(tmp_path: Path) -> None:
    listing = vsr("models", "list", check=True).stdout
    assert "realesr-animevideov3" in listing and "bundled" in listing
    assert "RealESRGAN_x4plus " in listing
    assert vsr("jobs", "list", check=True).returncode == 0
    missing = vsr("jobs", "show", "nope")
    assert missing.returncode == 6 and "no job" in missing.stderr
