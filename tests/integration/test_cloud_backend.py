"""The AWS backend end to end against the moto server: upload, execution, progress, cancel.

The boundary: moto's Batch does not run containers (no Docker, no GPU here); its jobs end at
once. Where a test needs the work itself done, it runs the same `vsr worker …` commands the
containers run, against the same S3 — that part is real.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import av
import boto3
import pytest

from tests.conftest import ClipFactory
from tests.helpers.aws_fixture import REGION, MotoServer
from tests.helpers.cloud_infra import BUCKET, STACK_NAME, create_cloud_stack
from tests.helpers.model_files import custom_x2_model
from vsr_desktop.backends.aws.backend import AwsBackend
from vsr_desktop.backends.aws.errors import CloudError
from vsr_desktop.backends.protocol import Backend, Progress
from vsr_desktop.core.errors import CancelledError, JobError, ModelError
from vsr_desktop.core.job_spec import EngineSettings, JobSpec
from vsr_desktop.core.jobs import JobRecord, JobState, JobStore
from vsr_desktop.core.media import probe
from vsr_desktop.core.media.encode import EncodeSettings
from vsr_desktop.core.settings import AppSettings, SettingsFile
from vsr_desktop.core.source_identity import SourceIdentity
from vsr_desktop.worker.s3_job import load_spec, local_spec
from vsr_desktop.worker.s3_layout import JobLocation
from vsr_desktop.worker.s3_transfer import S3Job

PART = 64 * 1024


@pytest.fixture()
def backend(aws: MotoServer, tmp_path: Path) -> AwsBackend:
    backend = AwsBackend(
        JobStore(tmp_path / "jobs.db"),
        boto3.session.Session(),
        stack=create_cloud_stack(),
        part_size=PART,
    )
    assert isinstance(backend, Backend) and not backend.runs_in_process
    return backend


def _spec(source: Path, tmp_path: Path) -> JobSpec:
    return JobSpec(
        source=source,
        output=tmp_path / "out" / "result.mp4",
        engine=EngineSettings(outscale=2),
        encode=EncodeSettings(preset="ultrafast"),
        chunk_seconds=0.5,
    )


def _wait(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _execution_status(backend: AwsBackend, job: JobRecord) -> str:
    arn = backend.aws_state(backend.store.get(job.id))["execution_arn"]
    return str(backend.client("stepfunctions").describe_execution(executionArn=arn)["status"])


def _workers(stage: str, uri: str, chunks: list[int | None]) -> None:
    """Run a stage as Batch would: one container per chunk, all at once."""
    procs = []
    for chunk in chunks:
        env = {**os.environ, "VSR_JOB_URI": uri}
        if chunk is not None:
            env["VSR_CHUNK_INDEX"] = str(chunk)
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "vsr_desktop.cli", "worker", stage],
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
        )
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err


def _audio(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(container.streams.audio[0]) if p.size]


def test_submit_run_poll_download(
    backend: AwsBackend, clip_factory: ClipFactory, tmp_path: Path
) -> None:
    source = clip_factory(frames=24, gop=8, width=48, height=32)
    (tmp_path / "out").mkdir()
    uploads: list[tuple[int, int]] = []
    events: list[Progress] = []
    job = backend.submit(
        _spec(source, tmp_path),
        events.append,
        on_upload=lambda d, t: uploads.append((d, t)),
        price_per_gpu_hour=0.36,
    )
    assert job.backend == "aws" and job.chunks_total == 2 and job.frames_total == 24
    size = source.stat().st_size
    assert uploads[-1] == (size, size)
    # Protocol progress: the job's id before any byte is sent, then bytes (a transfer phase).
    assert {e.job_id for e in events} == {job.id} and {e.phase for e in events} == {"uploading"}
    assert (events[0].frames_done, events[-1].frames_done, events[-1].frames_total) == (
        0,
        size,
        size,
    )
    s3 = backend.client("s3")
    stored = s3.get_object(Bucket=BUCKET, Key=f"jobs/{job.id}/input/source.mp4")["Body"].read()
    assert stored == source.read_bytes()
    # The execution is named after the job, so a repeated start cannot run it twice.
    assert backend.aws_state(job)["execution_arn"].endswith(f":{job.id}")
    assert _wait(lambda: _execution_status(backend, job) == "SUCCEEDED", "the execution")

    # What the Batch containers run: split, the chunks, merge — real work on the same S3.
    uri = job.work_dir
    _workers("split", uri, [None])
    _workers("upscale", uri, [0, 1])
    progress = backend.read_progress(job)
    assert progress["split"].state == "done" and progress[0].state == "done"
    assert progress[0].frames_done + progress[1].frames_done == 24
    _workers("merge", uri, [None])

    polled = backend.poll(backend.store.get(job.id))
    assert polled.state == JobState.COMPLETED
    assert (polled.chunks_done, polled.frames_done) == (2, 24)
    assert polled.cost_usd is not None and polled.cost_usd > 0  # GPU seconds × Spot price
    path = backend.download(polled)
    assert path == tmp_path / "out" / "result.mp4"
    info = probe(path)
    assert info.video.frame_count == 24 and (info.video.width, info.video.height) == (96, 64)
    assert _audio(path) == _audio(source)
    done = backend.store.get(job.id)
    assert backend.aws_state(done)["downloaded"] is True
    # The cloud merge never sees the source: the check runs here, after the download.
    assert done.verify_report is not None and done.verify_report["ok"], done.verify_report
    assert "verified: nothing but the picture changed" in done.message


def test_a_model_file_given_by_path_goes_with_the_job(
    backend: AwsBackend, clip_factory: ClipFactory, tmp_path: Path
) -> None:
    """Workers cannot read the user's disk: the app uploads the model file with the job and
    every stage finds it in S3, even once the user's copy is gone."""
    source = clip_factory(frames=12, gop=12, width=48, height=32)
    model = custom_x2_model(tmp_path / "my models" / "sharp_x2.safetensors")
    (tmp_path / "out").mkdir()
    spec = JobSpec(
        source=source,
        output=tmp_path / "out" / "mine.mp4",
        engine=EngineSettings(model=str(model)),
        encode=EncodeSettings(preset="ultrafast"),
    )
    job = backend.submit(spec)
    s3 = backend.client("s3")
    key = f"jobs/{job.id}/input/model/sharp_x2.safetensors"
    assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == model.read_bytes()
    model.unlink()  # not on the worker's disk in any case
    uri = job.work_dir
    _workers("split", uri, [None])
    _workers("upscale", uri, list(range(job.chunks_total)))
    _workers("merge", uri, [None])
    _wait(lambda: _execution_status(backend, job) == "SUCCEEDED", "the execution")
    path = backend.download(backend.poll(backend.store.get(job.id)))
    info = probe(path)
    assert info.video.frame_count == 12
    assert (info.video.width, info.video.height) == (96, 64)  # ×2: the user's model ran


def test_an_ncnn_model_without_its_bin_is_refused_before_any_upload(
    backend: AwsBackend, clip_factory: ClipFactory, tmp_path: Path
) -> None:
    param = tmp_path / "models" / "lonely.param"
    param.parent.mkdir()
    param.write_text("7767517\n")
    spec = JobSpec(
        source=clip_factory(frames=4, width=48, height=32),
        output=tmp_path / "lonely.mp4",
        engine=EngineSettings(model=str(param)),
    )
    with pytest.raises(ModelError, match=r"no lonely\.bin beside it"):
        backend.submit(spec)
    assert backend.store.all_jobs() == []
    listed = backend.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="jobs/")
    assert listed.get("KeyCount", 0) == 0


def test_interrupted_upload_resumes_on_resubmit(
    backend: AwsBackend, clip_factory: ClipFactory, tmp_path: Path
) -> None:
    source = clip_factory(width=320, height=240, frames=48, crf=4)
    (tmp_path / "out").mkdir()
    spec = _spec(source, tmp_path)
    cancel = threading.Event()
    with pytest.raises(CancelledError):
        backend.submit(
            spec,
            cancel=cancel,
            on_upload=lambda done, total: cancel.set() if done >= PART else None,
        )
    job = backend.store.all_jobs()[0]
    assert job.state == JobState.CANCELLED and backend.aws_state(job).get("upload_id")
    assert "execution_arn" not in backend.aws_state(job)
    sent: list[int] = []
    backend.client("s3").meta.events.register(
        "before-parameter-build.s3.UploadPart",
        lambda params, **_: sent.append(params["PartNumber"]),
    )
    job = backend.resume(job)
    assert 1 not in sent and sent[0] == 2  # the first part was not sent again
    assert job.state == JobState.RUNNING and backend.aws_state(job)["execution_arn"]
    _wait(lambda: _execution_status(backend, job) != "RUNNING", "the execution")


def test_upload_cut_off_by_a_crash_reads_interrupted(
    backend: AwsBackend, clip_factory: ClipFactory, tmp_path: Path
) -> None:
    """The app died mid-upload: on the next start the row is resumable, not 'uploading'."""
    (tmp_path / "out").mkdir()
    job = backend.create_job(_spec(clip_factory(frames=8, width=48, height=32), tmp_path))
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    backend.store.update(
        job.id, state=JobState.RUNNING, phase="uploading 40%", pid=int(dead.stdout)
    )
    backend.store.mark_dead_as_interrupted()
    assert backend.store.get(job.id).state == JobState.INTERRUPTED
    # A cloud job running in AWS (no pid here) is left alone.
    backend.store.update(job.id, state=JobState.RUNNING, pid=None)
    backend.store.mark_dead_as_interrupted()
    assert backend.store.get(job.id).state == JobState.RUNNING


# StopExecution of a running .sync task trips moto's interpreter thread (see below).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_stale_poll_does_not_undo_a_cancel(
    backend: AwsBackend, clip_factory: ClipFactory, tmp_path: Path
) -> None:
    (tmp_path / "out").mkdir()
    job = backend.submit(_spec(clip_factory(frames=24, gop=8, width=48, height=32), tmp_path))
    stale = backend.store.get(job.id)
    backend.cancel(stale)
    assert backend.poll(stale).state == JobState.CANCELLED
    _wait(lambda: _execution_status(backend, job) != "RUNNING", "the execution")


def test_failing_batch_job_fails_the_job_with_its_cause(
    backend: AwsBackend, clip_factory: ClipFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOTO_SIMPLE_BATCH_FAIL_AFTER", "0")  # read by the in-process server
    (tmp_path / "out").mkdir()
    job = backend.submit(_spec(clip_factory(frames=24, gop=8, width=48, height=32), tmp_path))
    assert _wait(lambda: _execution_status(backend, job) == "FAILED", "the failure")
    polled = backend.poll(backend.store.get(job.id))
    assert polled.state == JobState.FAILED
    assert polled.message and polled.message != "FAILED"  # says what failed, not just that


def test_failed_chunk_progress_names_the_chunk(
    backend: AwsBackend, clip_factory: ClipFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOTO_SIMPLE_BATCH_FAIL_AFTER", "0")
    (tmp_path / "out").mkdir()
    job = backend.submit(_spec(clip_factory(frames=24, gop=8, width=48, height=32), tmp_path))
    backend.client("s3").put_object(  # what a worker writes when its chunk fails
        Bucket=BUCKET,
        Key=f"jobs/{job.id}/progress/chunk_00001.json",
        Body=b'{"state": "failed", "frames_done": 3, "message": "out of GPU memory"}',
    )
    _wait(lambda: _execution_status(backend, job) == "FAILED", "the failure")
    polled = backend.poll(backend.store.get(job.id))
    assert polled.message == "chunk 1 failed: out of GPU memory"


# moto's interpreter thread for the stopped .sync task dies on its own bug (a dict passed as a
# timeout); the execution still ends, and this test checks what the backend does.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_cancel_stops_the_execution_and_terminates_batch_jobs(
    backend: AwsBackend, clip_factory: ClipFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """moto gap: StopExecution alone never terminates Batch jobs — the backend must."""
    monkeypatch.setenv("MOTO_SIMPLE_BATCH_FAIL_AFTER", "4")  # the split job runs for 4 s
    (tmp_path / "out").mkdir()
    job = backend.submit(_spec(clip_factory(frames=24, gop=8, width=48, height=32), tmp_path))
    batch = backend.client("batch")
    split_ids = _wait(lambda: backend.queued_batch_job_ids(job), "the split job to start")
    assert [j["jobName"] for j in batch.describe_jobs(jobs=split_ids)["jobs"]] == [
        f"vsr-{job.id}-split"
    ]
    terminated_calls: list[str] = []
    batch.meta.events.register(
        "before-parameter-build.batch.TerminateJob",
        lambda params, **_: terminated_calls.append(params["jobId"]),
    )
    terminated = backend.stop(backend.store.get(job.id))
    assert terminated == split_ids == terminated_calls
    assert backend.store.get(job.id).state == JobState.CANCELLED
    # moto ends a stopped .sync execution FAILED rather than ABORTED (FACTS.md).
    assert _wait(lambda: _execution_status(backend, job) in {"ABORTED", "FAILED"}, "the stop")
    assert backend.poll(backend.store.get(job.id)).state == JobState.CANCELLED  # stays so


def test_retry_starts_a_new_execution_and_keeps_the_upload(
    backend: AwsBackend, clip_factory: ClipFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOTO_SIMPLE_BATCH_FAIL_AFTER", "0")
    (tmp_path / "out").mkdir()
    job = backend.submit(_spec(clip_factory(frames=24, gop=8, width=48, height=32), tmp_path))
    _wait(lambda: _execution_status(backend, job) == "FAILED", "the failure")
    job = backend.poll(backend.store.get(job.id))
    monkeypatch.delenv("MOTO_SIMPLE_BATCH_FAIL_AFTER")
    parts: list[int] = []
    backend.client("s3").meta.events.register(
        "before-parameter-build.s3.UploadPart", lambda params, **_: parts.append(1)
    )
    again = backend.resume(job)
    assert parts == []  # nothing uploaded again
    assert backend.aws_state(again)["execution_arn"].endswith(f":{job.id}-retry1")
    assert _wait(lambda: _execution_status(backend, again) == "SUCCEEDED", "the retry")


def _keys(backend: AwsBackend, prefix: str) -> list[str]:
    listed = backend.client("s3").list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return sorted(item["Key"] for item in listed.get("Contents", []))


def test_the_spec_written_at_submit_is_what_the_worker_reads(
    backend: AwsBackend, clip_factory: ClipFactory, tmp_path: Path
) -> None:
    """Every engine and encoder setting crosses to the worker as one object, unchanged."""
    source = clip_factory(frames=12, gop=12, width=48, height=32)
    output = tmp_path / "out" / "all settings.mkv"
    output.parent.mkdir()
    output.write_bytes(b"an older result")  # overwrite=True lets the job replace it
    engine = EngineSettings(
        model="realesr-general-x4v3",
        outscale=3.0,
        denoise_strength=0.4,
        device="cpu",
        precision="fp32",
        cpu_convolution="onednn",
        tile=64,
        batch_size=2,
        allow_download=True,
    )
    encode = EncodeSettings(codec="h265", crf=26, preset="fast", ten_bit=True)
    spec = JobSpec(
        source=source,
        output=output,
        engine=engine,
        encode=encode,
        chunk_seconds=0.25,
        overwrite=True,
        target={"price_per_gpu_hour": 0.5},
    )  # the app's dialog hands it over so
    job = backend.submit(spec)
    assert backend.aws_state(job)["price_per_gpu_hour"] == 0.5  # kept with the job's state

    stored = backend.store.get(job.id).spec
    assert stored is not None and stored.source_identity is not None  # recorded at submit
    assert stored.target == {
        "region": REGION,
        "profile": "",
        "keychain_account": "",
        "stack": STACK_NAME,
    }
    read = load_spec(S3Job(JobLocation.parse(job.work_dir), backend.client("s3")))
    assert read == stored
    assert (read.engine, read.encode, read.chunk_seconds, read.overwrite) == (
        engine,
        encode,
        0.25,
        True,
    )
    assert read.source_identity == SourceIdentity.of(source)
    # What a worker runs: its own paths and allow_download; the device it was given (here
    # no Batch GPU: the job's own "cpu"; core.gpu_checks.worker_device).
    local = local_spec(read, tmp_path / "worker")
    assert local.engine == replace(engine, allow_download=True)
    assert local.output.name == "all settings.mkv" and local.encode == encode
    assert _keys(backend, f"jobs/{job.id}/") == [
        f"jobs/{job.id}/input/source.mp4",
        f"jobs/{job.id}/spec.json",
    ]
    _wait(lambda: _execution_status(backend, job) != "RUNNING", "the execution")


@pytest.mark.parametrize("broken", ["no stack", "no bucket", "no state machine"])
def test_a_failed_submit_is_failed_with_its_reason_and_removable(
    aws: MotoServer, clip_factory: ClipFactory, tmp_path: Path, broken: str
) -> None:
    stack = create_cloud_stack()
    outputs = dict(stack.outputs)
    if broken == "no bucket":
        outputs["BucketName"] = "vsr-no-such-bucket"
    if broken == "no state machine":
        outputs["StateMachineArn"] = outputs["StateMachineArn"] + "-gone"
    backend = AwsBackend(
        JobStore(tmp_path / "jobs.db"),
        boto3.session.Session(),
        stack_name="nope" if broken == "no stack" else STACK_NAME,
        stack=None if broken == "no stack" else replace(stack, outputs=outputs),
        part_size=PART,
    )
    (tmp_path / "out").mkdir()
    with pytest.raises(CloudError) as raised:
        backend.submit(_spec(clip_factory(frames=8, width=48, height=32), tmp_path))
    [job] = backend.store.all_jobs()
    assert job.state is JobState.FAILED and job.pid is None and job.phase == ""
    assert job.message == raised.value.user_message()
    assert {
        "no stack": "not set up",
        "no bucket": "NoSuchBucket",
        "no state machine": "starting the job",
    }[broken] in job.message
    if broken == "no state machine":  # the inputs were sent: remove takes them away
        assert _keys(backend, f"jobs/{job.id}/") == [
            f"jobs/{job.id}/input/source.mp4",
            f"jobs/{job.id}/spec.json",
        ]
    assert backend.work_lost_on_remove(job) == ""
    backend.remove(job)
    assert backend.store.all_jobs() == [] and _keys(backend, "jobs/") == []


def test_remove_deletes_the_jobs_objects_and_its_unfinished_upload_only(
    backend: AwsBackend, clip_factory: ClipFactory, tmp_path: Path
) -> None:
    (tmp_path / "out").mkdir()
    kept = backend.submit(_spec(clip_factory(frames=24, gop=8, width=48, height=32), tmp_path))
    _wait(lambda: _execution_status(backend, kept) == "SUCCEEDED", "the execution")
    s3 = backend.client("s3")
    s3.put_object(Bucket=BUCKET, Key=f"jobs/{kept.id}/chunks/chunk_00000.mp4", Body=b"x")
    cancel = threading.Event()
    big = clip_factory(width=320, height=240, frames=48, crf=4)
    with pytest.raises(CancelledError):
        backend.submit(
            JobSpec(source=big, output=tmp_path / "out" / "big.mp4"),
            cancel=cancel,
            on_upload=lambda done, total: cancel.set() if done >= PART else None,
        )
    paused = next(j for j in backend.store.all_jobs() if j.id != kept.id)
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads")
    backend.remove(paused)
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
    assert _keys(backend, f"jobs/{paused.id}/") == []

    done = backend.poll(backend.store.get(kept.id))
    assert done.state is JobState.COMPLETED and backend.needs_fetch(done)
    assert "not downloaded" in backend.work_lost_on_remove(done)
    other = f"jobs/{kept.id}x/spec.json"  # a neighbour whose id starts with this one's
    s3.put_object(Bucket=BUCKET, Key=other, Body=b"{}")
    backend.remove(done)
    assert _keys(backend, "jobs/") == [other]
    assert [j.id for j in backend.store.all_jobs()] == []


def test_restart_forgets_the_finished_chunks_and_keeps_the_upload(
    backend: AwsBackend, clip_factory: ClipFactory, tmp_path: Path
) -> None:
    (tmp_path / "out").mkdir()
    job = backend.submit(_spec(clip_factory(frames=24, gop=8, width=48, height=32), tmp_path))
    _wait(lambda: _execution_status(backend, job) == "SUCCEEDED", "the execution")
    s3 = backend.client("s3")
    prefix = f"jobs/{job.id}/"
    for name in (
        "chunks/chunk_00000.mp4",
        "progress/chunk_00000.json",
        "plan.json",
        "media.json",
        "output/result.mp4",
    ):  # what the workers left
        s3.put_object(Bucket=BUCKET, Key=prefix + name, Body=b"{}")
    job = backend.poll(backend.store.get(job.id))
    assert job.state is JobState.COMPLETED
    assert backend.resume(job).state is JobState.COMPLETED  # nothing to continue
    parts: list[int] = []
    s3.meta.events.register(
        "before-parameter-build.s3.UploadPart", lambda params, **_: parts.append(1)
    )
    again = backend.resume(job, restart=True)
    assert parts == []  # the source in S3 is the same file: not sent again
    assert again.state is JobState.RUNNING and (again.frames_done, again.chunks_done) == (0, 0)
    assert backend.aws_state(again)["execution_arn"].endswith(f":{job.id}-retry1")
    assert _keys(backend, prefix) == [prefix + "input/source.mp4", prefix + "spec.json"]
    _wait(lambda: _execution_status(backend, again) != "RUNNING", "the execution")


def test_a_source_replaced_during_a_paused_upload_is_refused(
    backend: AwsBackend, clip_factory: ClipFactory, tmp_path: Path
) -> None:
    """Parts of the old file plus parts of the new one would be a splice: never sent."""
    source = tmp_path / "take.mp4"
    shutil.copyfile(clip_factory(width=320, height=240, frames=48, crf=4), source)
    (tmp_path / "out").mkdir()
    cancel = threading.Event()
    with pytest.raises(CancelledError):
        backend.submit(
            _spec(source, tmp_path),
            cancel=cancel,
            on_upload=lambda done, total: cancel.set() if done >= PART else None,
        )
    [job] = backend.store.all_jobs()
    shutil.copyfile(clip_factory(width=320, height=240, frames=48, crf=8), source)
    with pytest.raises(JobError, match="changed since") as refused:
        backend.resume(job)
    assert "--restart" in refused.value.user_message()
    assert backend.store.get(job.id).state is JobState.FAILED
    again = backend.resume(backend.store.get(job.id), restart=True)
    assert again.state is JobState.RUNNING
    uploaded = (
        backend.client("s3")
        .get_object(Bucket=BUCKET, Key=f"jobs/{job.id}/input/source.mp4")["Body"]
        .read()
    )
    assert uploaded == source.read_bytes()
    assert again.spec is not None and again.spec.source_identity == SourceIdentity.of(source)
    _wait(lambda: _execution_status(backend, again) != "RUNNING", "the execution")


def test_for_job_reaches_the_account_and_stack_the_job_was_sent_to(
    backend: AwsBackend, clip_factory: ClipFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "out").mkdir()
    job = backend.submit(_spec(clip_factory(frames=8, width=48, height=32), tmp_path))
    SettingsFile().save(
        replace(AppSettings(), cloud_region="us-east-2", cloud_stack_name="elsewhere")
    )
    rebuilt = AwsBackend.for_job(backend.store, job)
    assert (rebuilt.session.region_name, rebuilt.stack_name) == (REGION, STACK_NAME)
    assert rebuilt.poll(job).id == job.id  # it reaches the stack through the moto server
    fresh = AwsBackend.for_job(backend.store, None)  # new jobs: the saved settings
    assert (fresh.session.region_name, fresh.stack_name) == ("us-east-2", "elsewhere")
    _wait(lambda: _execution_status(backend, job) != "RUNNING", "the execution")
