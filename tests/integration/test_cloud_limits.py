"""The per-job cost cap and the checks before submit, against the moto server over HTTP.

The boundaries: moto's Batch runs no container (a job "runs" for MOTO_SIMPLE_BATCH_FAIL_AFTER
seconds, then ends), and moto's Service Quotas knows no EC2 quota, so the GPU Spot quota is
seeded into the emulator (cloud_infra.seed_spot_quota, said there). Everything the app does
— ListJobs/DescribeJobs for the cost, StopExecution, TerminateJob, GetServiceQuota,
DescribeImages — goes over HTTP to the server as it would to AWS.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.conftest import ClipFactory
from tests.helpers.aws_fixture import MotoServer
from tests.helpers.cloud_infra import (
    BUCKET,
    create_cloud_stack,
    push_worker_image,
    seed_spot_quota,
    worker_image_uri,
)
from vsr_desktop.backends.aws import stack_template as tpl
from vsr_desktop.backends.aws.backend import AwsBackend
from vsr_desktop.backends.aws.errors import CloudError
from vsr_desktop.backends.aws.stack import StackInfo
from vsr_desktop.core.errors import InputError
from vsr_desktop.core.job_spec import EngineSettings, JobSpec
from vsr_desktop.core.jobs import JobState, JobStore
from vsr_desktop.core.media.encode import EncodeSettings


@pytest.fixture()
def stack(aws: MotoServer) -> StackInfo:
    return create_cloud_stack()


def _backend(stack: StackInfo, tmp_path: Path, **parameters: str) -> AwsBackend:
    """A backend on the test stack, its parameters as a deployed stack would report them."""
    return AwsBackend(
        JobStore(tmp_path / "jobs.db"),
        boto3.session.Session(),
        stack=replace(stack, parameters=parameters),
    )


def _spec(clip_factory: ClipFactory, tmp_path: Path) -> JobSpec:
    (tmp_path / "out").mkdir(exist_ok=True)
    return JobSpec(
        source=clip_factory(frames=24, gop=8, width=48, height=32),
        output=tmp_path / "out" / "result.mp4",
        engine=EngineSettings(outscale=2),
        encode=EncodeSettings(preset="ultrafast"),
        chunk_seconds=0.5,
    )


def _execution(backend: AwsBackend, job_id: str) -> dict[str, Any]:
    arn = backend.aws_state(backend.store.get(job_id))["execution_arn"]
    return dict(backend.client("stepfunctions").describe_execution(executionArn=arn))


def _no_job_objects() -> bool:
    return "Contents" not in boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="jobs/")


# --------------------------------------------------------------------------- cost cap
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_job_past_its_cost_cap_is_stopped_with_its_batch_jobs_terminated(
    stack: StackInfo, clip_factory: ClipFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The split job holds its (CPU, $0.20/h) instance for 8 s: $0.00044 — past a $0.0001 cap.
    monkeypatch.setenv("MOTO_SIMPLE_BATCH_FAIL_AFTER", "8")
    backend = _backend(stack, tmp_path)
    job = backend.submit(_spec(clip_factory, tmp_path), price_per_gpu_hour=0.5, max_cost_usd=0.0001)
    assert backend.aws_state(job)["max_cost_usd"] == 0.0001
    # The bound AWS keeps by itself: the chunk jobs' time limit is their share of the cap
    # (never below Batch's 60 s minimum), sent with the execution.
    sent = json.loads(_execution(backend, job.id)["input"])
    assert sent["chunk_timeout_seconds"] == 60

    batch = backend.client("batch")
    terminated: list[str] = []
    batch.meta.events.register(
        "before-parameter-build.batch.TerminateJob",
        lambda params, **_: terminated.append(params["jobId"]),
    )
    deadline = time.monotonic() + 30
    while not job.state.is_finished and time.monotonic() < deadline:
        time.sleep(0.5)
        job = backend.poll(job)
    assert job.state is JobState.FAILED, job.message
    assert "stopped by its cost cap" in job.message and "cap of $0.00" in job.message
    assert "1 Batch job(s)" in job.message and "--max-cost" in job.message
    assert job.cost_usd is not None and job.cost_usd >= 0.0001
    (split,) = batch.list_jobs(
        jobQueue=backend.stack().outputs["CpuJobQueueArn"],
        filters=[{"name": "JOB_NAME", "values": [f"vsr-{job.id}-split"]}],
    )["jobSummaryList"]
    assert terminated == [split["jobId"]]
    # moto ends a stopped .sync execution FAILED rather than ABORTED (FACTS.md).
    while _execution(backend, job.id)["status"] == "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _execution(backend, job.id)["status"] in {"ABORTED", "FAILED"}
    assert backend.poll(job).state is JobState.FAILED  # a later poll keeps the reason
    assert "cost cap" in backend.store.get(job.id).message


def test_the_cap_lowers_the_chunk_time_limit_and_a_new_cap_applies_on_retry(
    stack: StackInfo, clip_factory: ClipFactory, tmp_path: Path
) -> None:
    backend = _backend(stack, tmp_path)
    # $0.05 at $0.50/GPU-hour over 2 chunks: 180 s each, below the throughput table's limit.
    job = backend.submit(_spec(clip_factory, tmp_path), price_per_gpu_hour=0.5, max_cost_usd=0.05)
    table = int(backend.aws_state(job)["chunk_timeout_seconds"])
    assert table > 180 and job.chunks_total == 2
    assert json.loads(_execution(backend, job.id)["input"])["chunk_timeout_seconds"] == 180
    # ... and the state machine hands it to Batch with every chunk job it submits.
    deadline = time.monotonic() + 30
    while _execution(backend, job.id)["status"] == "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.2)
    batch = backend.client("batch")
    chunk_ids = [
        j["jobId"]
        for j in batch.list_jobs(
            jobQueue=backend.stack().outputs["GpuJobQueueArn"],
            filters=[{"name": "JOB_NAME", "values": [f"vsr-{job.id}-chunk-*"]}],
        )["jobSummaryList"]
    ]
    assert len(chunk_ids) == 2
    for described in batch.describe_jobs(jobs=chunk_ids)["jobs"]:
        assert described["timeout"] == {"attemptDurationSeconds": 180}
    # No cap: the table's limit.
    job = backend.set_cost_cap(backend.store.get(job.id), None)
    assert backend.chunk_time_limit(job) == table


def test_a_bad_cap_or_a_cap_without_a_price_is_refused_before_anything_is_sent(
    stack: StackInfo, clip_factory: ClipFactory, tmp_path: Path
) -> None:
    backend = _backend(stack, tmp_path)
    spec = _spec(clip_factory, tmp_path)
    with pytest.raises(InputError, match="positive number of US dollars"):
        backend.submit(spec, price_per_gpu_hour=0.5, max_cost_usd=-3)
    with pytest.raises(InputError, match="needs the Spot price"):
        backend.submit(spec, max_cost_usd=5)
    assert backend.store.all_jobs() == [] and _no_job_objects()


# ------------------------------------------------------------------- checks before submit
def test_a_spot_quota_of_zero_refuses_submit_unless_on_demand_is_on(
    stack: StackInfo, clip_factory: ClipFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_spot_quota(monkeypatch, 0)
    backend = _backend(stack, tmp_path)
    with pytest.raises(CloudError) as refused:
        backend.submit(_spec(clip_factory, tmp_path))
    text = refused.value.user_message()
    assert "GPU Spot quota in eu-west-1 is 0 vCPUs" in text and "L-3819A6DF" in text
    assert "Service Quotas" in text and "--on-demand-fallback true" in text
    assert backend.store.all_jobs() == [] and _no_job_objects()

    on_demand = _backend(stack, tmp_path, **{tpl.PARAM_ON_DEMAND_GPU_FALLBACK: "true"})
    job = on_demand.submit(_spec(clip_factory, tmp_path))
    assert job.state is JobState.RUNNING


def test_a_quota_below_one_instance_refuses_and_enough_passes(
    stack: StackInfo, clip_factory: ClipFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_spot_quota(monkeypatch, 4)
    types = {tpl.PARAM_GPU_INSTANCE_TYPES: "g5.2xlarge,g6.2xlarge"}  # 8 vCPUs each
    with pytest.raises(CloudError, match=r"one g5\.2xlarge needs 8"):
        _backend(stack, tmp_path, **types).submit(_spec(clip_factory, tmp_path))
    seed_spot_quota(monkeypatch, 8)
    assert _backend(stack, tmp_path, **types).submit(_spec(clip_factory, tmp_path)).state is (
        JobState.RUNNING
    )


def test_a_worker_image_missing_from_ecr_refuses_submit_with_the_push_command(
    stack: StackInfo, clip_factory: ClipFactory, tmp_path: Path
) -> None:
    missing = worker_image_uri("v9")
    backend = _backend(stack, tmp_path, **{tpl.PARAM_CONTAINER_IMAGE: missing})
    with pytest.raises(CloudError) as no_repo:
        backend.submit(_spec(clip_factory, tmp_path))
    assert "no such repository" in no_repo.value.user_message()
    assert "aws ecr create-repository --repository-name vsr-worker" in no_repo.value.hint

    push_worker_image("test")  # the repository exists now, but not the tag v9
    with pytest.raises(CloudError) as no_image:
        backend.submit(_spec(clip_factory, tmp_path))
    assert f"the worker image {missing} is not in ECR (no such image)" in no_image.value.message
    assert f"docker push {missing}" in no_image.value.hint
    assert "docker login --username AWS" in no_image.value.hint
    assert backend.store.all_jobs() == [] and _no_job_objects()

    pushed = _backend(stack, tmp_path, **{tpl.PARAM_CONTAINER_IMAGE: worker_image_uri("test")})
    assert pushed.submit(_spec(clip_factory, tmp_path)).state is JobState.RUNNING


def test_the_placeholder_image_is_refused(
    stack: StackInfo, clip_factory: ClipFactory, tmp_path: Path
) -> None:
    default = tpl.parameter_defaults()[tpl.PARAM_CONTAINER_IMAGE]
    backend = _backend(stack, tmp_path, **{tpl.PARAM_CONTAINER_IMAGE: default})
    with pytest.raises(CloudError, match="placeholder worker image") as refused:
        backend.submit(_spec(clip_factory, tmp_path))
    assert "vsr cloud setup --image" in refused.value.hint
