"""The worker image in real Docker containers, against the moto server over HTTP.

What runs for real: the image built from packaging/docker/Dockerfile (on a Debian + CUDA-torch
test base, packaging/docker/build_test_image.sh), started by a real dockerd with
`--network host`, so each container reaches the moto server on 127.0.0.1 through
`AWS_ENDPOINT_URL` as a Batch container reaches S3. The tests run the stages the way Batch
does — `worker split`, one `worker upscale` container per chunk at once, `worker merge` —
on a job the app submitted, then download and probe the file; `serve` answers SageMaker's
`/ping` and `/invocations` on the port SageMaker names; and, with moto's Batch switched to
Docker, the app's state machine runs the whole chain Step Functions → Batch → containers →
S3 by itself. The boundary: no GPU here (the containers run torch on the CPU), and AWS
itself is moto.

Needs the image and its daemon: `make test-container` builds them, runs this module and
stops the daemon. Without them the module is skipped (as in `make test`), unless
VSR_CONTAINER_TESTS=1, which turns a missing image into a failure.
"""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import av
import boto3
import numpy as np
import pytest

from tests.conftest import ClipFactory
from tests.helpers.aws_fixture import REGION, MotoServer
from tests.helpers.cloud_infra import create_cloud_stack
from vsr_desktop.backends.aws import stack_template as tpl
from vsr_desktop.backends.aws.backend import AwsBackend
from vsr_desktop.backends.aws.stack import StackInfo
from vsr_desktop.core import remote_preview as wire
from vsr_desktop.core.job_spec import EngineSettings, JobSpec
from vsr_desktop.core.jobs import JobRecord, JobState, JobStore
from vsr_desktop.core.media import probe
from vsr_desktop.core.media.encode import EncodeSettings

# Each test runs several containers (torch starts in each): minutes on a busy 2-core machine.
pytestmark = [pytest.mark.container, pytest.mark.slow, pytest.mark.timeout(900)]

# Where build_test_image.sh leaves its daemon and what it tags (keep in step with it).
STATE = os.environ.get("VSR_DOCKER_STATE", "/var/tmp/vsr-docker")
DOCKER_HOST = os.environ.get("VSR_DOCKER_HOST", f"unix://{STATE}/docker.sock")
IMAGE = os.environ.get("VSR_WORKER_IMAGE", "vsr-worker:test")
REQUIRED = os.environ.get("VSR_CONTAINER_TESTS") == "1"
MODEL = "realesr-animevideov3"  # bundled in the package, so in the image
STAGE_TIMEOUT = 300


@pytest.fixture(scope="module")
def docker_client() -> Iterator[Any]:
    """The private daemon with the image, or a skip (a failure under VSR_CONTAINER_TESTS=1)."""
    docker = pytest.importorskip("docker", reason="the docker SDK comes with moto[server]")
    try:
        client = docker.DockerClient(base_url=DOCKER_HOST, timeout=STAGE_TIMEOUT)
        client.ping()
        client.images.get(IMAGE)
    except Exception as exc:  # any reason means "no image here"
        reason = (
            f"no worker image {IMAGE} on {DOCKER_HOST} ({type(exc).__name__}); "
            "`make test-container` builds it (packaging/docker/build_test_image.sh)"
        )
        if REQUIRED:
            pytest.fail(reason)
        pytest.skip(reason)
    yield client
    client.close()


def container_env(moto: MotoServer, **extra: str) -> dict[str, str]:
    """What a Batch job's container gets from its role and region, pointed at moto."""
    return {
        "AWS_ENDPOINT_URL": moto.url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
        **extra,
    }


def run_containers(client: Any, commands: list[tuple[list[str], dict[str, str]]]) -> list[str]:
    """Start one container per (command, environment) at once, as Batch runs a stage's jobs;
    wait for all; returns their stdout. A non-zero exit fails with the container's stderr."""
    containers = [
        client.containers.run(IMAGE, command, environment=env, network_mode="host", detach=True)
        for command, env in commands
    ]
    outputs = []
    try:
        for container, (command, _) in zip(containers, commands, strict=True):
            status = container.wait(timeout=STAGE_TIMEOUT)["StatusCode"]
            err = container.logs(stdout=False, stderr=True).decode(errors="replace")
            assert status == 0, f"{' '.join(command)} exited {status}: {err}"
            outputs.append(container.logs(stdout=True, stderr=False).decode())
    finally:
        for container in containers:
            container.remove(force=True)
    return outputs


def audio_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(container.streams.audio[0]) if p.size]


def wait(check: Callable[[], Any], what: str, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def execution_status(backend: AwsBackend, job: JobRecord) -> str:
    arn = backend.aws_state(backend.store.get(job.id))["execution_arn"]
    return str(backend.client("stepfunctions").describe_execution(executionArn=arn)["status"])


def small_job(clip_factory: ClipFactory, tmp_path: Path) -> JobSpec:
    """24 frames with audio, keyframes every 6: four chunks of a quarter second each."""
    (tmp_path / "out").mkdir()
    return JobSpec(
        source=clip_factory(frames=24, gop=6, width=48, height=32),
        output=tmp_path / "out" / "result.mp4",
        engine=EngineSettings(outscale=2),
        encode=EncodeSettings(preset="ultrafast"),
        chunk_seconds=0.25,
    )


def check_result(backend: AwsBackend, job: JobRecord, source: Path) -> None:
    """The job completed, and the file it downloads is the upscaled source with its audio."""
    polled = backend.poll(backend.store.get(job.id))
    assert polled.state == JobState.COMPLETED, polled.message
    assert (polled.chunks_done, polled.frames_done) == (job.chunks_total, 24)
    path = backend.download(polled)
    info = probe(path)
    assert info.video.frame_count == 24
    assert (info.video.width, info.video.height) == (96, 64)
    assert audio_packets(path) == audio_packets(source)
    done = backend.store.get(job.id)
    assert done.verify_report is not None and done.verify_report["ok"], done.verify_report


def test_split_upscale_merge_in_containers(
    docker_client: Any, aws: MotoServer, clip_factory: ClipFactory, tmp_path: Path
) -> None:
    backend = AwsBackend(
        JobStore(tmp_path / "jobs.db"), boto3.session.Session(), stack=create_cloud_stack()
    )
    spec = small_job(clip_factory, tmp_path)
    job = backend.submit(spec)
    assert job.chunks_total == 4
    # moto's Batch (without Docker) ends the execution's jobs at once; the work is below.
    wait(lambda: execution_status(backend, job) == "SUCCEEDED", "the execution", 60)

    uri = job.work_dir
    # The stack's job definitions pass the whole command (`vsr worker split`); the entrypoint
    # takes both forms.
    [printed] = run_containers(
        docker_client, [(["vsr", "worker", "split"], container_env(aws, VSR_JOB_URI=uri))]
    )
    assert printed.strip() == "4"
    run_containers(
        docker_client,
        [
            (["worker", "upscale"], container_env(aws, VSR_JOB_URI=uri, VSR_CHUNK_INDEX=str(i)))
            for i in range(job.chunks_total)
        ],
    )
    run_containers(docker_client, [(["worker", "merge"], container_env(aws, VSR_JOB_URI=uri))])
    check_result(backend, job, spec.source)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_answers_sagemaker_ping_and_invocations(docker_client: Any) -> None:
    """SageMaker runs `IMAGE serve` and talks to the port it names (8080 unless
    SAGEMAKER_BIND_TO_PORT says otherwise; another port here, as the network is the host's)."""
    from skimage import data

    port = free_port()
    # Outside SageMaker a server on every address needs a token: it refuses to start.
    refused = docker_client.containers.run(
        IMAGE, ["serve", "--port", str(port)], network_mode="host", detach=True
    )
    try:
        assert refused.wait(timeout=60)["StatusCode"] == 2
        assert "token" in refused.logs(stdout=False, stderr=True).decode()
    finally:
        refused.remove(force=True)

    container = docker_client.containers.run(
        IMAGE,
        ["serve"],
        # As the app's SageMaker model sets it (preview_endpoint.py): a public listener
        # without a token is allowed there only.
        environment={"SAGEMAKER_BIND_TO_PORT": str(port), "VSR_SERVE": "sagemaker"},
        network_mode="host",
        detach=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:

        def ping() -> dict[str, Any] | None:
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=2) as reply:
                    assert reply.status == 200
                    return dict(json.loads(reply.read()))
            except (urllib.error.URLError, ConnectionError):
                container.reload()
                assert container.status == "running", container.logs().decode()
                return None

        answer = wait(ping, "/ping", 60)
        assert answer["status"] == "ok" and MODEL in answer["models"]

        crop = np.ascontiguousarray(data.astronaut()[100:124, 180:212])  # 32×24
        request = urllib.request.Request(
            f"{url}/invocations?model={MODEL}",
            data=wire.encode_png(crop),
            headers={"Content-Type": "image/png"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=120) as reply:
            assert reply.status == 200
            assert reply.headers["Content-Type"] == "image/png"
            out = wire.decode_png(reply.read(), max_pixels=1 << 30)
        assert out.shape == (96, 128, 3)  # ×4
        # Close to the input scaled up: the model ran, not a blank or a wrong crop.
        small = out.reshape(24, 4, 32, 4, 3).mean(axis=(1, 3))
        assert np.abs(small - crop.astype(np.float64)).mean() < 12

        # `docker stop` (and SageMaker) send SIGTERM to PID 1: the entrypoint exec'd vsr, so
        # it stops at once and cleanly, not after the 10 s grace period with SIGKILL (137).
        started = time.monotonic()
        container.stop(timeout=10)
        assert time.monotonic() - started < 8
        assert container.wait(timeout=30)["StatusCode"] == 0, container.logs().decode()
    finally:
        container.remove(force=True)


def docker_stack(moto: MotoServer) -> StackInfo:
    """The test stack with job definitions as the template has them (image, command), whose
    containers reach moto: a new revision of each, and the state machine pointed at them."""
    stack = create_cloud_stack()
    batch: Any = boto3.client("batch")
    resources = tpl.load_template()["Resources"]
    names = tpl.resource_names(stack.name)
    env = [{"name": k, "value": v} for k, v in sorted(container_env(moto).items())]
    arns = {}
    for stage, resource in (
        ("split", "SplitJobDefinition"),
        ("upscale", "UpscaleJobDefinition"),
        ("merge", "MergeJobDefinition"),
    ):
        props = resources[resource]["Properties"]
        arns[stage] = batch.register_job_definition(
            jobDefinitionName=names[stage],
            type="container",
            containerProperties={
                "image": IMAGE,
                "command": props["ContainerProperties"]["Command"],
                "environment": env,
                "resourceRequirements": [
                    {"type": "VCPU", "value": "2"},
                    {"type": "MEMORY", "value": "3072"},
                ],
            },
            timeout={"attemptDurationSeconds": props["Timeout"]["AttemptDurationSeconds"]},
        )["jobDefinitionArn"]
    queues = {q["jobQueueName"]: q["jobQueueArn"] for q in batch.describe_job_queues()["jobQueues"]}
    definition = tpl.state_machine_definition(
        {
            tpl.SUB_CPU_JOB_QUEUE_ARN: queues[names["cpu"]],
            tpl.SUB_GPU_JOB_QUEUE_ARN: queues[names["gpu"]],
            tpl.SUB_SPLIT_JOB_DEFINITION_ARN: arns["split"],
            tpl.SUB_UPSCALE_JOB_DEFINITION_ARN: arns["upscale"],
            tpl.SUB_MERGE_JOB_DEFINITION_ARN: arns["merge"],
        },
        max_concurrency=4,
    )
    boto3.client("stepfunctions").update_state_machine(
        stateMachineArn=stack.outputs[tpl.OUTPUT_STATE_MACHINE_ARN], definition=definition
    )
    return stack


def test_step_functions_runs_the_job_in_batch_containers(
    docker_client: Any,
    aws: MotoServer,
    clip_factory: ClipFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The whole chain with nobody's help: the app submits, the state machine submits Batch
    jobs, moto's Batch runs each in a container of the image (docker SDK, host network),
    the containers do the work in S3, the app downloads the result."""
    monkeypatch.setenv("DOCKER_HOST", DOCKER_HOST)  # moto's Batch: docker.from_env()
    monkeypatch.setenv("MOTO_DOCKER_NETWORK_MODE", "host")
    aws.post("/moto-api/config", {"batch": {"use_docker": True}})  # the fixture resets it
    backend = AwsBackend(
        JobStore(tmp_path / "jobs.db"), boto3.session.Session(), stack=docker_stack(aws)
    )
    spec = small_job(clip_factory, tmp_path)
    job = backend.submit(spec)
    status = wait(
        lambda: (s := execution_status(backend, job)) != "RUNNING" and s, "the execution", 600
    )
    arn = backend.aws_state(backend.store.get(job.id))["execution_arn"]
    assert status == "SUCCEEDED", backend.client("stepfunctions").describe_execution(
        executionArn=arn
    )
    # Six Batch jobs ran, each a container: split, four chunks, merge.
    batch_jobs = backend.batch_job_ids(arn)
    assert len(batch_jobs) == 6
    described = backend.client("batch").describe_jobs(jobs=batch_jobs)["jobs"]
    assert {j["status"] for j in described} == {"SUCCEEDED"}
    # moto copies each container's output to CloudWatch Logs: split printed the chunk count.
    logs = backend.client("logs")
    split = next(j for j in described if j["jobName"].endswith("-split"))
    events = logs.get_log_events(
        logGroupName="/aws/batch/job", logStreamName=split["container"]["logStreamName"]
    )["events"]
    assert "4" in [e["message"] for e in events]
    check_result(backend, job, spec.source)
