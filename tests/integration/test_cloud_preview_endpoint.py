"""The cloud preview endpoint's lifecycle on a moto server over HTTP, and the remote upscaler.

moto's SageMaker puts an endpoint InService the moment create_endpoint returns (no Creating
phase, no Failed), and its sagemaker-runtime answers invoke_endpoint with canned text whatever
the endpoint: it cannot run our container, and it fails (HTTP 500) on any body that is not
UTF-8 text, such as a PNG, so no invoke goes through moto here. So lifecycle tests use moto;
the "starting" message is checked on the status → message mapping; and pixels are checked
through the plain HTTP client against the real inference server (worker/inference_server.py)
on localhost, running the bundled model: the same contract SageMaker would forward to.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest

from tests.helpers.aws_fixture import MotoServer
from vsr_desktop.backends.aws import preview_endpoint as pe
from vsr_desktop.backends.aws.errors import CloudError
from vsr_desktop.backends.aws.preview_endpoint import (
    ABSENT,
    HttpInferenceClient,
    IdleReaper,
    PreviewEndpoint,
    RemotePreviewUpscaler,
    custom_attributes,
    decode_png,
    encode_png,
    hourly_cost,
    not_ready_error,
    resource_name,
)
from vsr_desktop.backends.protocol import Backend
from vsr_desktop.core.errors import CancelledError
from vsr_desktop.core.jobs import JobState, JobStore

ROLE = "arn:aws:iam::123456789012:role/vsr-SageMakerPreviewRole"
IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/vsr-worker:latest"


def _endpoint(stack: str = "vsr-desktop") -> PreviewEndpoint:
    return PreviewEndpoint(boto3.session.Session(), stack, IMAGE, ROLE, "ml.g4dn.xlarge")


def _leftovers() -> tuple[list[str], list[str], list[str]]:
    sm = boto3.client("sagemaker")
    return (
        [e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]],
        [c["EndpointConfigName"] for c in sm.list_endpoint_configs()["EndpointConfigs"]],
        [m["ModelName"] for m in sm.list_models()["Models"]],
    )


def test_create_wait_delete_leaves_nothing(aws: MotoServer) -> None:
    endpoint = _endpoint()
    assert endpoint.status() == ABSENT
    assert endpoint.create() == "InService"
    seen: list[str] = []
    endpoint.wait_in_service(timeout=5, poll_seconds=0.01, on_status=seen.append)
    assert seen == ["InService"]
    sm = boto3.client("sagemaker")
    described = sm.describe_endpoint_config(EndpointConfigName=endpoint.name)
    variant = described["ProductionVariants"][0]
    assert (variant["InstanceType"], variant["ModelName"]) == ("ml.g4dn.xlarge", endpoint.name)
    model = sm.describe_model(ModelName=endpoint.name)
    assert model["PrimaryContainer"]["Image"] == IMAGE and model["ExecutionRoleArn"] == ROLE
    assert _leftovers() == ([endpoint.name], [endpoint.name], [endpoint.name])

    assert endpoint.delete() is True
    assert endpoint.status() == ABSENT
    assert _leftovers() == ([], [], [])


def test_create_and_delete_are_idempotent(aws: MotoServer) -> None:
    endpoint = _endpoint()
    endpoint.create()
    endpoint.create()  # a second toggle (or a second window) makes nothing new
    assert _leftovers() == ([endpoint.name], [endpoint.name], [endpoint.name])
    # A crash between model and endpoint: create fills in only what is missing.
    boto3.client("sagemaker").delete_endpoint(EndpointName=endpoint.name)
    assert endpoint.create() == "InService"
    assert _leftovers() == ([endpoint.name], [endpoint.name], [endpoint.name])
    assert endpoint.delete() is True
    assert endpoint.delete() is False  # already gone: fine
    # Half-deleted (endpoint gone, model left behind): delete still cleans up.
    boto3.client("sagemaker").create_model(
        ModelName=endpoint.name, ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE}
    )
    assert endpoint.delete() is False
    assert _leftovers() == ([], [], [])


def test_one_endpoint_per_stack_and_names_fit_sagemaker(aws: MotoServer) -> None:
    a, b = _endpoint("stack-a"), _endpoint("stack-b")
    a.create()
    b.create()
    assert sorted(_leftovers()[0]) == ["vsr-preview-stack-a", "vsr-preview-stack-b"]
    a.delete()
    assert _leftovers()[0] == ["vsr-preview-stack-b"]
    b.delete()
    assert len(resource_name("x" * 128)) == 63


def test_waiting_for_a_missing_endpoint_says_it_is_gone(aws: MotoServer) -> None:
    with pytest.raises(CloudError, match="gone"):
        _endpoint().wait_in_service(timeout=1, poll_seconds=0.01)


def test_idle_reaper_deletes_after_the_timeout_and_each_use_postpones_it(aws: MotoServer) -> None:
    now = [1000.0]
    reaper = IdleReaper(15 * 60, clock=lambda: now[0])
    endpoint = _endpoint()
    endpoint.create()

    now[0] += 14 * 60
    assert not reaper.due()
    reaper.touch()  # a render (RemotePreviewUpscaler's on_use, tested below)
    now[0] += 14 * 60
    assert not reaper.due() and reaper.remaining() == pytest.approx(60)
    now[0] += 61
    assert reaper.due()
    endpoint.delete()  # what the app does when due() says so
    assert _leftovers() == ([], [], [])


def test_invoking_a_deleted_endpoint_says_it_is_gone(aws: MotoServer) -> None:
    """moto's runtime cannot take a PNG (see the module docstring), and real AWS answers a
    missing endpoint with a ValidationError that invoke turns into the same describe-and-explain
    path; this covers the describe that runs before the first invoke and after our own delete,
    which stops before the runtime is called."""
    endpoint = _endpoint()
    endpoint.create()
    endpoint.wait_in_service(timeout=5, poll_seconds=0.01)
    # Deleted elsewhere (another window's idle timeout): a fresh client finds it gone.
    boto3.client("sagemaker").delete_endpoint(EndpointName=endpoint.name)
    fresh = RemotePreviewUpscaler(_endpoint(), "realesr-animevideov3")
    with pytest.raises(CloudError, match="gone"):
        fresh.upscale(np.zeros((1, 8, 8, 3), np.uint8))
    # Our own delete forgets the cached InService, so the next render explains too.
    endpoint.delete()
    with pytest.raises(CloudError, match="gone"):
        RemotePreviewUpscaler(endpoint, "realesr-animevideov3").upscale(
            np.zeros((1, 8, 8, 3), np.uint8)
        )


def test_not_ready_messages_tell_starting_from_gone() -> None:
    starting = not_ready_error("vsr-preview-x", "Creating")
    assert "starting" in starting.user_message() and "minutes" in starting.user_message()
    assert "gone" in not_ready_error("vsr-preview-x", ABSENT).user_message()
    failed = not_ready_error("vsr-preview-x", "Failed", "image not found")
    assert "failed" in failed.user_message() and "image not found" in failed.user_message()


def test_prices_and_attributes() -> None:
    assert hourly_cost("ml.g4dn.xlarge") == pytest.approx(0.736)
    assert hourly_cost("ml.g5.xlarge") > hourly_cost("ml.g4dn.xlarge")  # type: ignore[operator]
    assert hourly_cost("ml.unknown.large") is None
    assert custom_attributes("RealESRGAN_x4plus", None) == "model=RealESRGAN_x4plus"
    assert custom_attributes("x", 2.0) == "model=x;outscale=2"


# -- the remote upscaler over plain HTTP, against the real inference server -------------------

MODEL = "realesr-animevideov3"  # the bundled model: no download


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    """The worker's inference server on localhost (CPU, fp32), the real model inside."""
    server_module = pytest.importorskip("vsr_desktop.worker.inference_server")
    options = server_module.ServerOptions(device="cpu", precision="fp32")
    with server_module.InferenceServer("127.0.0.1", 0, options) as running:
        yield str(running.url)


def _local_engine(outscale: float | None = None) -> Any:

    from vsr_desktop.core.job_spec import EngineSettings
    from vsr_desktop.worker.job_setup import build_engine

    return build_engine(
        EngineSettings(model=MODEL, outscale=outscale, device="cpu", precision="fp32")
    )


def test_remote_upscaler_matches_the_local_engine(server_url: str, photo: np.ndarray) -> None:
    crop = np.ascontiguousarray(photo[100:123, 200:231])  # 31×23: odd sizes
    uses: list[int] = []
    upscaler = RemotePreviewUpscaler(
        HttpInferenceClient(server_url), MODEL, outscale=2, on_use=lambda: uses.append(1)
    )
    assert upscaler.output_size(31, 23) == (62, 46)
    out = upscaler.upscale(np.stack([crop, crop[::-1]]))
    assert out.shape == (2, 46, 62, 3) and out.dtype == np.uint8
    local = _local_engine(outscale=2).upscale(np.stack([crop, crop[::-1]]))
    np.testing.assert_array_equal(out, local)  # same Engine code, same machine: exact
    assert len(uses) == 2  # each region keeps the idle reaper at bay
    # The model's own scale (×4 in the registry) when no outscale is set.
    default = RemotePreviewUpscaler(HttpInferenceClient(server_url), MODEL)
    assert default.upscale(crop[None]).shape == (1, 92, 124, 3)


def test_remote_upscaler_reports_server_errors_and_size_mismatch(server_url: str) -> None:
    client = HttpInferenceClient(server_url)
    with pytest.raises(CloudError, match="PNG"):
        client.invoke(b"not a png", MODEL)  # the server's 4xx JSON, as our error
    # A server answering with another scale than expected must not be shown misplaced.
    wrong = RemotePreviewUpscaler(client, MODEL, outscale=2)
    wrong.scale = 3.0
    with pytest.raises(CloudError, match="expected 24×24"):
        wrong.upscale(np.zeros((1, 8, 8, 3), np.uint8))
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(CancelledError):
        wrong.upscale(np.zeros((1, 8, 8, 3), np.uint8), cancel)


def test_unreachable_server_and_garbage_replies_are_clear_errors() -> None:
    with pytest.raises(CloudError, match="cannot be reached"):
        HttpInferenceClient("http://127.0.0.1:9", timeout=2).invoke(
            encode_png(np.zeros((4, 4, 3), np.uint8)), MODEL
        )
    with pytest.raises(CloudError, match="not a PNG"):
        decode_png(b"body")  # what moto's runtime answers


def test_a_failed_endpoints_row_never_reads_completed_even_after_a_restart(tmp_path: Path) -> None:
    """Deleting a failed endpoint (turning the preview off, quitting) keeps its row FAILED
    with the reason; the next app start reads the same row from the store."""
    store = JobStore(tmp_path / "jobs.db")
    assert pe.record_endpoint_row(store, pe.OFF) is None  # never used: no row at all
    started = pe.record_endpoint_row(store, pe.STARTING, hourly_price=0.736, hours=0.5)
    assert started is not None and started.state is JobState.RUNNING
    assert started.cost_usd == pytest.approx(0.368) and "$0.74/h" in started.message
    failed = pe.record_endpoint_row(
        store, pe.FAILED, failure="the AWS stack vsr-desktop is not deployed"
    )
    assert failed is not None and failed.state is JobState.FAILED
    deleting = pe.record_endpoint_row(store, pe.DELETING)
    assert deleting is not None and "not deployed" in deleting.message
    pe.record_endpoint_row(store, pe.OFF)  # what quitting the app does after the delete
    after_restart = JobStore(tmp_path / "jobs.db").get(pe.ENDPOINT_ROW_ID)
    assert after_restart.state is JobState.FAILED and after_restart.progress == 0.0
    assert after_restart.message == (
        "failed: the AWS stack vsr-desktop is not deployed; deleted: no longer billing"
    )
    # Starting again forgets the failure; a clean turn-off is an ended endpoint.
    pe.record_endpoint_row(store, pe.STARTING)
    pe.record_endpoint_row(store, pe.READY)
    ended = pe.record_endpoint_row(store, pe.OFF)
    assert ended is not None and ended.state is JobState.COMPLETED
    assert ended.message == "deleted: no longer billing"


def test_endpoint_statuses_map_to_the_apps_states(aws: MotoServer) -> None:
    endpoint = _endpoint()
    assert pe.state_of_status(endpoint.status()) == pe.OFF
    endpoint.create()
    assert pe.state_of_status(endpoint.status()) == pe.READY
    endpoint.delete()
    assert [
        pe.state_of_status(s)
        for s in ("Creating", "Updating", "Deleting", "Failed", "OutOfService")
    ] == [pe.STARTING, pe.STARTING, pe.DELETING, pe.FAILED, pe.FAILED]


def test_the_endpoint_row_through_the_backend_protocol(aws: MotoServer, tmp_path: Path) -> None:
    """`vsr jobs` and the panel reach the row like any job: poll reads the endpoint as it is
    (a row a crashed app left "starting"), cancel and remove delete the endpoint."""
    store = JobStore(tmp_path / "jobs.db")
    backend = pe.PreviewEndpointBackend.for_job(store, None)  # the saved account and stack
    assert isinstance(backend, Backend)
    endpoint = _endpoint()
    endpoint.create()
    row = pe.record_endpoint_row(store, pe.STARTING, hourly_price=0.736, hours=0.25)
    assert row is not None
    polled = backend.poll(row)
    assert (polled.state, polled.phase) == (JobState.RUNNING, "in service")
    assert polled.cost_usd == pytest.approx(0.184)  # kept: the facts hold no start time
    cancelled = backend.cancel(polled)
    assert endpoint.status() == ABSENT
    assert cancelled.state is JobState.COMPLETED and cancelled.message.startswith("deleted")
    assert backend.poll(cancelled).state is JobState.COMPLETED  # stays so
    assert not backend.needs_fetch(cancelled) and backend.work_lost_on_remove(cancelled) == ""
    with pytest.raises(CloudError, match="not a job"):
        backend.resume(cancelled)

    endpoint.create()
    pe.record_endpoint_row(store, pe.FAILED, failure="capacity")
    backend.remove(store.get(pe.ENDPOINT_ROW_ID))
    assert not store.exists(pe.ENDPOINT_ROW_ID) and _leftovers() == ([], [], [])
