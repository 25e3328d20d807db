"""`vsr cloud …` as a user runs it, against the moto server over HTTP (real subprocesses)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from tests.conftest import ClipFactory
from tests.helpers.aws_fixture import MotoServer
from tests.helpers.cloud_infra import BUCKET, STACK_NAME, create_cloud_stack
from vsr_desktop import cli
from vsr_desktop.backends.aws.backend import AwsBackend
from vsr_desktop.core.job_spec import EngineSettings, JobSpec
from vsr_desktop.core.jobs import JobState, JobStore
from vsr_desktop.core.media.encode import EncodeSettings


def vsr(*args: object, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vsr_desktop.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        input=stdin,
        env=dict(os.environ),
    )


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_status_estimate_submit_poll_cancel(
    aws: MotoServer, clip_factory: ClipFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The split's Batch job runs 20 s (then fails): the job is still running when cancelled.
    monkeypatch.setenv("MOTO_SIMPLE_BATCH_FAIL_AFTER", "20")
    create_cloud_stack()
    status = vsr("cloud", "status", "--stack", STACK_NAME)
    assert status.returncode == 0, status.stderr
    assert "signed in as arn:aws:" in status.stdout and f"BucketName: {BUCKET}" in status.stdout

    source = clip_factory(frames=24, gop=8, width=48, height=32)
    output = tmp_path / "up.mp4"
    estimate = vsr("cloud", "estimate", source, "-o", output, "--stack", STACK_NAME)
    assert estimate.returncode == 0, estimate.stderr
    assert "24 frames on g" in estimate.stdout and "cost ≈ $" in estimate.stdout

    # It asks before spending; no (or no answer) sends nothing.
    declined = vsr("cloud", "submit", source, "-o", output, "--stack", STACK_NAME, stdin="n\n")
    assert declined.returncode == 1, declined.stderr
    assert "cost ≈ $" in declined.stderr and "[y/N]" in declined.stdout
    assert "nothing sent" in declined.stderr
    assert "Contents" not in boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="jobs/")

    submit = vsr(
        "cloud",
        "submit",
        source,
        "-o",
        output,
        "--stack",
        STACK_NAME,
        "--chunk-seconds",
        "0.5",
        "--yes",
    )
    assert submit.returncode == 0, submit.stderr
    job_id = submit.stdout.strip().splitlines()[-1]
    assert "started in the cloud (2 chunks)" in submit.stderr
    key = f"jobs/{job_id}/input/source.mp4"
    assert (
        boto3.client("s3").head_object(Bucket=BUCKET, Key=key)["ContentLength"]
        == source.stat().st_size
    )

    listed = vsr("jobs", "list")
    assert job_id in listed.stdout and "aws" in listed.stdout
    poll = vsr("cloud", "poll", job_id, "--stack", STACK_NAME)
    assert poll.returncode == 0 and poll.stdout.startswith(job_id), poll.stderr
    cancel = vsr("cloud", "cancel", job_id, "--stack", STACK_NAME)
    assert cancel.returncode == 0 and f"cancelled {job_id}" in cancel.stderr
    assert "cancelled" in vsr("cloud", "poll", job_id, "--stack", STACK_NAME).stdout
    assert not output.exists()  # nothing under the user's name until downloaded


def test_clear_errors_and_exit_codes(
    aws: MotoServer, clip_factory: ClipFactory, tmp_path: Path
) -> None:
    source = clip_factory(frames=24, gop=8, width=48, height=32)
    missing = vsr("cloud", "submit", source, "-o", tmp_path / "o.mp4", "--stack", "nope")
    assert missing.returncode == 8
    assert "not set up" in missing.stderr and "vsr cloud setup" in missing.stderr
    assert "Traceback" not in missing.stderr

    not_a_video = tmp_path / "notes.mp4"
    not_a_video.write_text("hello")
    bad = vsr("cloud", "estimate", not_a_video, "-o", tmp_path / "o.mp4")
    assert bad.returncode == 3 and "Traceback" not in bad.stderr

    env_region = {
        k: v for k, v in os.environ.items() if k not in {"AWS_REGION", "AWS_DEFAULT_REGION"}
    }
    no_region = subprocess.run(
        [sys.executable, "-m", "vsr_desktop.cli", "cloud", "status"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env_region,
    )
    assert no_region.returncode == 2 and "region" in no_region.stderr

    # Headless, with no OS keychain: a clear refusal, and the secret is not kept anywhere.
    keys = vsr("cloud", "keys", "set", "studio", stdin="AKIAIOSFODNN7EXAMPLE\nsecret\n")
    assert keys.returncode == 9, keys.stderr
    assert "keychain" in keys.stderr.lower() and "Traceback" not in keys.stderr


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_vsr_jobs_cancel_and_remove_reach_an_aws_job_through_the_registry(
    aws: MotoServer,
    clip_factory: ClipFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`vsr jobs` knows no backend: the registry rebuilds the AWS backend from the job's own
    target (region and stack; the default credential chain reaches the moto server)."""
    monkeypatch.setenv("MOTO_SIMPLE_BATCH_FAIL_AFTER", "8")  # still running when cancelled
    store = JobStore()
    backend = AwsBackend(store, boto3.session.Session(), stack=create_cloud_stack())
    spec = JobSpec(
        source=clip_factory(frames=24, gop=8, width=48, height=32),
        output=tmp_path / "up.mp4",
        engine=EngineSettings(outscale=2),
        encode=EncodeSettings(preset="ultrafast"),
        chunk_seconds=0.5,
    )
    job = backend.submit(spec)
    prefix = f"jobs/{job.id}/"
    s3 = boto3.client("s3")

    def keys() -> list[str]:
        return [
            o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
        ]

    assert keys()
    assert cli.main(["jobs", "remove", job.id]) == 6  # running: refused, nothing deleted
    assert "cancel it first" in capsys.readouterr().err
    assert keys() and store.exists(job.id)

    assert cli.main(["jobs", "cancel", job.id]) == 0
    assert store.get(job.id).state is JobState.CANCELLED
    assert "cancelled" in capsys.readouterr().err

    assert cli.main(["jobs", "remove", job.id]) == 0
    assert f"removed job {job.id}" in capsys.readouterr().err
    assert keys() == [] and not store.exists(job.id)


def test_submit_with_a_cost_cap_records_it_and_bounds_the_chunks(
    aws: MotoServer, clip_factory: ClipFactory, tmp_path: Path
) -> None:
    """--max-cost: said before spending, asked again when the estimate is above it, and
    recorded with the job; the execution carries the chunks' share of it as their limit."""
    create_cloud_stack()
    source = clip_factory(frames=24, gop=8, width=48, height=32)
    args = ("cloud", "submit", source, "-o", tmp_path / "up.mp4", "--stack", STACK_NAME)
    bad = vsr(*args, "--max-cost", "-2", "--yes")
    assert bad.returncode == 2 and "positive number of US dollars" in bad.stderr
    # moto's Spot price is $0.00001/h: a cap of $0.0000001 leaves each chunk 18 s, so 60 s.
    asked = vsr(*args, "--max-cost", "0.0000001", stdin="n\n")
    assert asked.returncode == 1 and "above the cap $0.00" in asked.stdout, asked.stderr
    sent = vsr(*args, "--chunk-seconds", "0.5", "--max-cost", "0.0000001", "--yes")
    assert sent.returncode == 0, sent.stderr
    assert "cost cap: $0.00 (the job is stopped when it reaches it)" in sent.stderr
    job_id = sent.stdout.strip().splitlines()[-1]
    state = AwsBackend.aws_state(JobStore().get(job_id))
    assert state["max_cost_usd"] == 1e-7 and state["price_per_gpu_hour"] == 0.00001
    arn = state["execution_arn"]
    execution = boto3.client("stepfunctions").describe_execution(executionArn=arn)
    assert '"chunk_timeout_seconds": 60' in execution["input"]

    # A stopped job goes on with a new cap: recorded, and the new execution's limit follows.
    assert vsr("cloud", "cancel", job_id, "--stack", STACK_NAME).returncode == 0
    retried = vsr("cloud", "retry", job_id, "--stack", STACK_NAME, "--max-cost", "0.000001")
    assert retried.returncode == 0, retried.stderr
    state = AwsBackend.aws_state(JobStore().get(job_id))
    assert state["max_cost_usd"] == 1e-6 and state["execution_arn"].endswith("-retry1")
    execution = boto3.client("stepfunctions").describe_execution(
        executionArn=state["execution_arn"]
    )
    # $0.000001 at $0.00001 per GPU-hour: 360 GPU-seconds over 2 chunks.
    assert '"chunk_timeout_seconds": 180' in execution["input"]
