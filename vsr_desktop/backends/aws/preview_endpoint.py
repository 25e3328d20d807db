"""The cloud preview: a SageMaker real-time endpoint serving the worker image, made on demand.

Why on demand rather than part of the stack: a GPU endpoint bills every hour it exists,
used or not, so it must live only while the user previews. The app creates it when
"Preview in the cloud" is turned on, an IdleReaper says when it has sat unused too long,
and the app deletes it then and when it quits. Everything here is idempotent (create twice,
delete something already gone) because those paths race with each other and with crashes.

Resource names derive from the stack name, so a leftover endpoint from a crashed session
is found (and deleted) by the next one. The model, endpoint config and endpoint share one
name: SageMaker keeps them in separate namespaces.
"""

from __future__ import annotations

import io
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
from botocore.exceptions import BotoCoreError, ClientError

from vsr_desktop.backends.aws.errors import CloudError, cloud_error
from vsr_desktop.core.errors import CancelledError
from vsr_desktop.core.jobs import JobRecord, JobState, JobStore

DEFAULT_INSTANCE_TYPE = "ml.g4dn.xlarge"
PNG = "image/png"
ABSENT = "absent"
_READY = "InService"
_STARTING = {"Creating", "Updating", "SystemUpdating"}

# SageMaker real-time inference, on-demand, USD per instance-hour: AWS list prices for
# us-east-1 as published on aws.amazon.com/sagemaker/pricing (2025). Other regions cost
# 5-25 % more; the app shows these as estimates ("about $0.74/h").
HOURLY_USD = {
    "ml.g4dn.xlarge": 0.736,
    "ml.g4dn.2xlarge": 0.94,
    "ml.g5.xlarge": 1.408,
    "ml.g5.2xlarge": 1.515,
    "ml.g6.xlarge": 1.006,
}


#: The endpoint's row in the job store: it bills like a job, so the jobs panel shows it as one.
ENDPOINT_BACKEND = "aws-preview"
ENDPOINT_ROW_ID = "cloud-preview-endpoint"
#: What the app knows of its endpoint (the words of the preview controller's states).
OFF, STARTING, READY, DELETING, FAILED = "off", "starting", "ready", "deleting", "failed"
_ROW_STATES = {
    STARTING: (JobState.RUNNING, "starting (a few minutes)"),
    READY: (JobState.RUNNING, "in service"),
    DELETING: (JobState.RUNNING, "deleting"),
    FAILED: (JobState.FAILED, ""),
    OFF: (JobState.COMPLETED, ""),
}


def resource_name(stack_name: str) -> str:
    """`vsr-preview-<stack>`, cut to SageMaker's 63-character limit."""
    return f"vsr-preview-{stack_name}"[:63].rstrip("-")


def hourly_cost(instance_type: str) -> float | None:
    """List price per hour of one instance of this type; None when we do not know it."""
    return HOURLY_USD.get(instance_type)


def state_of_status(status: str) -> str:
    """The app's word for a SageMaker endpoint status (what a restarted app finds)."""
    if status == _READY:
        return READY
    if status in _STARTING:
        return STARTING
    if status == "Deleting":
        return DELETING
    if status == ABSENT:
        return OFF
    return FAILED  # Failed, OutOfService, RollingBack: it cannot answer


def record_endpoint_row(
    store: JobStore,
    state: str,
    *,
    hourly_price: float | None = None,
    hours: float | None = 0.0,
    failure: str = "",
) -> JobRecord | None:
    """Write the endpoint's row: its state, hourly price and cost so far (hours None: keep
    the cost recorded); None when it is off and has no row.

    A failure stays a failure: once the row says FAILED, deleting that endpoint (turning the
    preview off, quitting the app) leaves it FAILED with its reason and "deleted: no longer
    billing" — never Completed, before or after a restart. Starting again clears it.
    """
    exists = store.exists(ENDPOINT_ROW_ID)
    if state == OFF and not exists:
        return None
    previous = store.get(ENDPOINT_ROW_ID) if exists else None
    remembered = previous.settings.get(ENDPOINT_BACKEND, {}) if previous is not None else {}
    remembered = dict(remembered) if isinstance(remembered, dict) else {}
    if state == FAILED:
        remembered["failure"] = failure or remembered.get("failure") or "it failed"
    elif state == STARTING:
        remembered.pop("failure", None)
    row_state, phase = _ROW_STATES[state]
    hourly = f"${hourly_price:.2f}/h" if hourly_price is not None else "price unknown"
    reason = str(remembered.get("failure") or "")
    if state == FAILED:
        message = f"failed: {reason}; turn Cloud → Preview in the cloud on to try again"
    elif reason and state in (OFF, DELETING):
        row_state = JobState.FAILED if state == OFF else row_state
        message = (
            f"failed: {reason}; deleted: no longer billing"
            if state == OFF
            else f"failed: {reason}; deleting it"
        )
    elif state == OFF:
        message = "deleted: no longer billing"
    else:
        message = f"SageMaker preview endpoint, {hourly} while it exists"
    if previous is None:
        store.add(
            JobRecord(
                id=ENDPOINT_ROW_ID,
                name="Cloud preview endpoint",
                backend=ENDPOINT_BACKEND,
                source="",
                output="",
            )
        )
    changes: dict[str, Any] = {
        "state": row_state,
        "phase": phase,
        "message": message,
        "settings": {ENDPOINT_BACKEND: {**remembered, "downloaded": True}},
    }
    if hours is not None:
        changes["cost_usd"] = hourly_price * hours if hourly_price is not None else None
    store.update(ENDPOINT_ROW_ID, **changes)
    return store.get(ENDPOINT_ROW_ID)


def not_ready_error(name: str, status: str, reason: str = "") -> CloudError:
    """The message the preview shows when the endpoint cannot answer yet (or any more)."""
    if status in _STARTING:
        return CloudError(
            f"the cloud preview endpoint {name} is starting ({status})",
            "starting a GPU endpoint takes a few minutes (typically 5-10); "
            "the preview uses it as soon as it is in service",
        )
    if status in (ABSENT, "Deleting", "OutOfService"):
        return CloudError(
            f"the cloud preview endpoint {name} is gone ({status})",
            "it was deleted (idle timeout, or from another window); turn "
            "Preview in the cloud on again to start a new one",
        )
    detail = f": {reason}" if reason else ""
    return CloudError(
        f"the cloud preview endpoint {name} failed{detail}",
        "turn Preview in the cloud off and on again; if it fails again, "
        "look at the endpoint's CloudWatch logs",
    )


def _missing(exc: ClientError) -> bool:
    message = str(exc.response.get("Error", {}).get("Message", ""))
    return "Could not find" in message or "does not exist" in message or "not found" in message


class PreviewEndpoint:
    """One account's preview endpoint: create, watch, invoke and delete it (no Qt)."""

    def __init__(
        self,
        session: Any,
        stack_name: str,
        image: str,
        role_arn: str,
        instance_type: str = DEFAULT_INSTANCE_TYPE,
    ) -> None:
        self.name = resource_name(stack_name)
        self.image = image
        self.role_arn = role_arn
        self.instance_type = instance_type
        self._sm = session.client("sagemaker")
        self._runtime = session.client("sagemaker-runtime")
        self._in_service = False  # a cached InService, so invoke need not describe each time

    # -- lifecycle ---------------------------------------------------------------------------
    def status(self) -> str:
        """Creating, InService, Updating, Failed, Deleting …, or `absent`."""
        return self._describe()[0]

    def status_and_reason(self) -> tuple[str, str]:
        """The status and SageMaker's failure reason ("" unless it failed)."""
        return self._describe()

    def _describe(self) -> tuple[str, str]:
        try:
            reply = self._sm.describe_endpoint(EndpointName=self.name)
        except ClientError as exc:
            if _missing(exc):
                return ABSENT, ""
            raise cloud_error("reading the preview endpoint", exc) from exc
        except BotoCoreError as exc:
            raise cloud_error("reading the preview endpoint", exc) from exc
        return str(reply["EndpointStatus"]), str(reply.get("FailureReason", "") or "")

    def create(self) -> str:
        """Make the model, config and endpoint that are missing; returns the endpoint status.

        A Failed endpoint is replaced; one already starting or in service is left alone.
        """
        status = self.status()
        if status in _STARTING or status == _READY:
            return status
        if status != ABSENT:
            self.delete()
        try:
            if not self._exists(self._sm.describe_model, ModelName=self.name):
                self._sm.create_model(
                    ModelName=self.name,
                    ExecutionRoleArn=self.role_arn,
                    PrimaryContainer={
                        "Image": self.image,
                        "Mode": "SingleModel",
                        "Environment": {"VSR_SERVE": "sagemaker"},
                    },
                    Tags=[{"Key": "app", "Value": "vsr-desktop"}],
                )
            if not self._exists(self._sm.describe_endpoint_config, EndpointConfigName=self.name):
                self._sm.create_endpoint_config(
                    EndpointConfigName=self.name,
                    ProductionVariants=[
                        {
                            "VariantName": "preview",
                            "ModelName": self.name,
                            "InstanceType": self.instance_type,
                            "InitialInstanceCount": 1,
                        }
                    ],
                    Tags=[{"Key": "app", "Value": "vsr-desktop"}],
                )
            self._sm.create_endpoint(
                EndpointName=self.name,
                EndpointConfigName=self.name,
                Tags=[{"Key": "app", "Value": "vsr-desktop"}],
            )
        except (ClientError, BotoCoreError) as exc:
            raise cloud_error("creating the preview endpoint", exc) from exc
        return self.status()

    def wait_in_service(
        self,
        timeout: float = 1200.0,
        cancel: threading.Event | None = None,
        poll_seconds: float = 15.0,
        on_status: Callable[[str], None] | None = None,
    ) -> None:
        """Return once the endpoint answers; CloudError when it failed, vanished or timed out."""
        deadline = time.monotonic() + timeout
        while True:
            status, reason = self._describe()
            if on_status is not None:
                on_status(status)
            if status == _READY:
                self._in_service = True
                return
            if status not in _STARTING:
                raise not_ready_error(self.name, status, reason)
            if cancel is not None and cancel.is_set():
                raise CancelledError(
                    "stopped waiting for the preview endpoint",
                    "it keeps starting; turn the cloud preview off to delete it",
                )
            if time.monotonic() > deadline:
                raise CloudError(
                    f"the preview endpoint {self.name} is still {status}",
                    "look at the SageMaker console, or turn the preview off",
                )
            (cancel.wait if cancel is not None else time.sleep)(poll_seconds)

    def delete(self) -> bool:
        """Delete the endpoint, then its config and model; True when an endpoint existed."""
        self._in_service = False
        config = self.name
        try:
            reply = self._sm.describe_endpoint(EndpointName=self.name)
            config = str(reply.get("EndpointConfigName") or self.name)
        except ClientError as exc:
            if not _missing(exc):
                raise cloud_error("reading the preview endpoint", exc) from exc
            reply = None
        except BotoCoreError as exc:
            raise cloud_error("reading the preview endpoint", exc) from exc
        steps: list[tuple[Callable[..., Any], dict[str, str]]] = [
            (self._sm.delete_endpoint, {"EndpointName": self.name}),
            (self._sm.delete_endpoint_config, {"EndpointConfigName": config}),
            (self._sm.delete_endpoint_config, {"EndpointConfigName": self.name}),
            (self._sm.delete_model, {"ModelName": self.name}),
        ]
        if reply is None:
            steps = steps[1:]
        if config == self.name:
            del steps[-2]
        for call, kwargs in steps:
            try:
                call(**kwargs)
            except ClientError as exc:
                if not _missing(exc):
                    raise cloud_error("deleting the preview endpoint", exc) from exc
            except BotoCoreError as exc:
                raise cloud_error("deleting the preview endpoint", exc) from exc
        return reply is not None

    def hourly_cost(self) -> float | None:
        return hourly_cost(self.instance_type)

    @staticmethod
    def _exists(describe: Callable[..., Any], **kwargs: str) -> bool:
        try:
            describe(**kwargs)
        except ClientError as exc:
            if _missing(exc):
                return False
            raise
        return True

    # -- inference ---------------------------------------------------------------------------
    def invoke(self, region_png: bytes, model: str, outscale: float | None = None) -> bytes:
        """Upscale one PNG region on the endpoint; a clear CloudError when it is not ready."""
        if not self._in_service:
            status, reason = self._describe()
            if status != _READY:
                raise not_ready_error(self.name, status, reason)
            self._in_service = True
        try:
            reply = self._runtime.invoke_endpoint(
                EndpointName=self.name,
                ContentType=PNG,
                Accept=PNG,
                Body=region_png,
                CustomAttributes=custom_attributes(model, outscale),
            )
        except ClientError as exc:
            self._in_service = False
            status, reason = self._describe()
            if status != _READY:
                raise not_ready_error(self.name, status, reason) from exc
            raise cloud_error("upscaling on the preview endpoint", exc) from exc
        except BotoCoreError as exc:
            raise cloud_error("upscaling on the preview endpoint", exc) from exc
        return bytes(reply["Body"].read())


def custom_attributes(model: str, outscale: float | None) -> str:
    """The `X-Amzn-SageMaker-Custom-Attributes` value the inference server reads."""
    text = f"model={model}"
    return text if outscale is None else f"{text};outscale={outscale:g}"


class HttpInferenceClient:
    """The same `invoke` over plain HTTP: the inference server run locally, or a plain EC2 box."""

    def __init__(self, url: str, timeout: float = 120.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def invoke(self, region_png: bytes, model: str, outscale: float | None = None) -> bytes:
        query = (
            {"model": model} if outscale is None else {"model": model, "outscale": f"{outscale:g}"}
        )
        request = urllib.request.Request(
            f"{self.url}/invocations?{urllib.parse.urlencode(query)}",
            data=region_png,
            method="POST",
            headers={"Content-Type": PNG, "Accept": PNG},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as reply:
                return bytes(reply.read())
        except urllib.error.HTTPError as exc:
            raise _server_error(exc) from None
        except OSError as exc:
            raise CloudError(
                f"the preview server at {self.url} cannot be reached: {exc}",
                "check that it is running",
            ) from None


def _server_error(exc: urllib.error.HTTPError) -> CloudError:
    """The server's {"error", "hint"} JSON reply (4xx) as a CloudError."""
    import json

    try:
        body = json.loads(exc.read() or b"{}")
    except ValueError:
        body = {}
    body = body if isinstance(body, dict) else {}
    return CloudError(
        str(body.get("error") or f"the preview server answered {exc.code}"),
        str(body.get("hint") or "check the server's log"),
    )


class PreviewEndpointBackend:
    """The endpoint's row through the backend protocol (`vsr jobs`, the jobs panel): poll
    reads the endpoint's real status, cancel and remove delete it (what stops the billing).
    It is made and started only by the app's "Preview in the cloud" toggle."""

    name = ENDPOINT_BACKEND
    runs_in_process = False

    def __init__(
        self,
        store: JobStore,
        session: Any,
        stack_name: str,
        instance_type: str = DEFAULT_INSTANCE_TYPE,
    ) -> None:
        self.store = store
        self.endpoint = PreviewEndpoint(session, stack_name, "", "", instance_type)

    @classmethod
    def for_job(cls, store: JobStore, job: JobRecord | None) -> PreviewEndpointBackend:
        """The endpoint of the app's saved account and stack (the one the app made)."""
        from vsr_desktop.backends.aws.backend import job_credentials
        from vsr_desktop.backends.aws.session import open_session
        from vsr_desktop.core.settings import SettingsFile

        credentials, stack_name = job_credentials(None)
        return cls(
            store,
            open_session(credentials),
            stack_name,
            SettingsFile().load().cloud_preview_instance_type,
        )

    def submit(self, spec: Any, progress: Any = None, cancel: Any = None) -> JobRecord:
        raise _not_a_job()

    def resume(
        self,
        job: JobRecord,
        progress: Any = None,
        cancel: Any = None,
        *,
        restart: bool = False,
        overwrite: bool = False,
    ) -> JobRecord:
        raise _not_a_job()

    def poll(self, job: JobRecord) -> JobRecord:
        """The row from the endpoint as it is (one left by a crashed app included)."""
        status, reason = self.endpoint.status_and_reason()
        state = state_of_status(status)
        row = self.store.get(job.id)
        if state == OFF and row.state is not JobState.RUNNING:
            return row  # gone, and the row already says how it ended
        written = record_endpoint_row(
            self.store, state, hours=None, failure=reason, hourly_price=self.endpoint.hourly_cost()
        )
        return written if written is not None else row

    def cancel(self, job: JobRecord) -> JobRecord:
        self.endpoint.delete()
        written = record_endpoint_row(
            self.store, OFF, hours=None, hourly_price=self.endpoint.hourly_cost()
        )
        return written if written is not None else self.store.get(job.id)

    def fetch_output(self, job: JobRecord, on_bytes: Any = None, cancel: Any = None) -> Any:
        raise CloudError(
            "the cloud preview endpoint has no output to download",
            "its results go straight to the preview",
        )

    def remove(self, job: JobRecord) -> None:
        """Delete the endpoint (if it still exists), then its row."""
        self.endpoint.delete()
        self.store.delete(job.id)

    def needs_fetch(self, job: JobRecord) -> bool:
        return False

    def work_lost_on_remove(self, job: JobRecord) -> str:
        return ""


def _not_a_job() -> CloudError:
    return CloudError(
        "the cloud preview endpoint is not a job to start from here",
        "turn Cloud → Preview in the cloud on in the app",
    )


class InferenceTarget(Protocol):
    """Anything that upscales a PNG region: PreviewEndpoint or HttpInferenceClient."""

    def invoke(self, region_png: bytes, model: str, outscale: float | None = None) -> bytes: ...


class RemotePreviewUpscaler:
    """A FrameUpscaler whose work happens on the endpoint, so the preview needs no local GPU.

    Frames travel as 8-bit PNG (lossless, and what the inference contract takes); the reply's
    size is checked against output_size so a wrong model on the server cannot misplace the
    picture in the preview.
    """

    def __init__(
        self,
        target: InferenceTarget,
        model: str,
        outscale: float | None = None,
        model_scale: int | None = None,
        on_use: Callable[[], None] | None = None,
    ) -> None:
        self.target = target
        self.on_use = on_use  # e.g. IdleReaper.touch: every render keeps the endpoint alive
        self.model = model
        self.outscale_arg = outscale
        self.scale = float(
            outscale
            if outscale is not None
            else model_scale
            if model_scale is not None
            else _registry_scale(model)
        )

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        """Truncated like the local engine (and RealESRGANer) does."""
        return max(1, int(width * self.scale)), max(1, int(height * self.scale))

    def upscale(self, frames: np.ndarray, cancel: threading.Event | None = None) -> np.ndarray:
        from vsr_desktop.core.preview import to_8bit

        results = []
        for frame in frames:
            if cancel is not None and cancel.is_set():
                raise CancelledError("preview superseded")
            if self.on_use is not None:
                self.on_use()
            reply = self.target.invoke(encode_png(to_8bit(frame)), self.model, self.outscale_arg)
            image = decode_png(reply)
            want = self.output_size(frame.shape[1], frame.shape[0])
            if (image.shape[1], image.shape[0]) != want:
                raise CloudError(
                    f"the preview server returned {image.shape[1]}×"
                    f"{image.shape[0]} pixels, expected {want[0]}×{want[1]}",
                    "the server may run another model or version; restart the cloud preview",
                )
            results.append(image)
        return np.stack(results)


def _registry_scale(model: str) -> int:
    from vsr_desktop.core.models.registry import MODEL_REGISTRY

    spec = MODEL_REGISTRY.get(model)
    return spec.scale if spec is not None else 4


def encode_png(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB").save(
        buffer, "PNG", compress_level=1
    )  # speed over size: the region is sent once
    return buffer.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError):
        raise CloudError(
            f"the preview server's reply is not a PNG image ({len(data)} bytes)",
            "the endpoint may run an older worker image; update the stack",
        ) from None


class IdleReaper:
    """Says when the endpoint has been unused for `idle_seconds` (the caller deletes it).

    No timers and no Qt: the GUI asks `due()` from a timer of its own, and tests inject the
    clock so an idle quarter of an hour takes no time.
    """

    def __init__(self, idle_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.idle_seconds = idle_seconds
        self._clock = clock
        self._last = clock()

    def touch(self) -> None:
        self._last = self._clock()

    def idle_for(self) -> float:
        return max(0.0, self._clock() - self._last)

    def remaining(self) -> float:
        return max(0.0, self.idle_seconds - self.idle_for())

    def due(self) -> bool:
        return self.idle_for() >= self.idle_seconds
