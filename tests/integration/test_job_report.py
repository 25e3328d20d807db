"""Every job ends with the "nothing lost" check, stored with the job and shown in the panel."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import ClipFactory
from vsr_desktop.backends.local import LocalBackend
from vsr_desktop.core.job_spec import EngineSettings, JobSpec
from vsr_desktop.core.jobs import VERIFY_REPORT_KEY, JobRecord, JobState, JobStore
from vsr_desktop.core.media import EncodeSettings, probe
from vsr_desktop.worker.job_report import summary


def vsr(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vsr_desktop.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def run_job(tmp_path: Path, source: Path, output: Path, **encode: object) -> JobRecord:
    backend = LocalBackend(JobStore(tmp_path / "jobs.sqlite3"), work_root=tmp_path / "work")
    spec = JobSpec(
        source=source,
        output=output,
        chunk_seconds=0.4,
        engine=EngineSettings(outscale=2, precision="fp32"),
        encode=EncodeSettings(preset="ultrafast", **encode),
    )  # type: ignore[arg-type]
    return backend.submit(spec)


def test_a_job_stores_its_verify_report(clip_factory: ClipFactory, tmp_path: Path) -> None:
    source = clip_factory(frames=12, gop=6, width=48, height=32)
    job = run_job(tmp_path, source, tmp_path / "out.mkv")
    assert job.state is JobState.COMPLETED
    report = job.settings[VERIFY_REPORT_KEY]
    assert report == {"ok": True, "lines": []}
    assert "verified: nothing but the picture changed" in job.message
    log = Path(job.log_path).read_text()
    assert "completed" in log


def test_an_asked_for_audio_conversion_is_expected_not_lost(
    clip_factory: ClipFactory, tmp_path: Path
) -> None:
    source = clip_factory(frames=12, gop=6, width=48, height=32)
    assert probe(source).audio[0].codec == "aac"
    job = run_job(tmp_path, source, tmp_path / "out.mkv", audio_codec="flac")
    assert probe(tmp_path / "out.mkv").audio[0].codec == "flac"
    assert job.settings[VERIFY_REPORT_KEY]["ok"] is True, job.settings[VERIFY_REPORT_KEY]


def test_audio_codec_is_checked_before_any_work(clip_factory: ClipFactory, tmp_path: Path) -> None:
    source = clip_factory(frames=12, gop=6, width=48, height=32)
    refused = vsr("upscale", source, "-o", tmp_path / "out.mp4", "--audio-codec", "pcm")
    assert refused.returncode == 2 and "pcm" in refused.stderr
    assert not (tmp_path / "out.mp4").exists()


def test_the_summary_and_the_panel_say_what_was_lost() -> None:
    from vsr_desktop.gui.jobs.jobs_model import state_text

    lost = {"ok": False, "lines": ["audio#0: language differs: 'eng' → ''", "chapters lost"]}
    assert summary(lost) == "⚠ audio#0: language differs: 'eng' → '' (+1 more: vsr jobs show)"
    job = JobRecord(
        id="j",
        name="a",
        backend="local",
        source="s",
        output="o",
        state=JobState.COMPLETED,
        settings={VERIFY_REPORT_KEY: lost},
    )
    assert "⚠" in state_text(job)
    job.settings[VERIFY_REPORT_KEY] = {"ok": True, "lines": []}
    assert state_text(job) == "Completed ✓"
