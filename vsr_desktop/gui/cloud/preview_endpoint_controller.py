"""Cloud → "Preview in the cloud": the SageMaker endpoint's life as the window sees it.

Why a controller of its own: the endpoint bills every hour it exists, so its lifetime is tied
to three things the window does not otherwise track — the user's toggle, an idle timeout, and
the app quitting. Creating and deleting run off the GUI thread (a TaskRunner lane: creating
takes minutes); the state and hourly price sit in the status bar while the endpoint exists.
Quitting deletes it synchronously: a forgotten endpoint must not keep billing, and the user
is leaving anyway. It bills like a job, so it has a row in the jobs panel, reached like any
other row through the Backend protocol (`EndpointRowBackend`: Cancel deletes it).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal, Slot
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QLabel

from vsr_desktop.core.errors import JobError
from vsr_desktop.core.job_spec import JobSpec
from vsr_desktop.core.jobs import JobRecord, JobState
from vsr_desktop.core.settings import AppSettings
from vsr_desktop.core.upscaler import FrameUpscaler
from vsr_desktop.gui.cloud.context import CloudContext
from vsr_desktop.gui.tasks import Task, TaskContext, TaskRunner

log = logging.getLogger(__name__)

LANE = "preview-endpoint"
IDLE_CHECK_MS = 30_000
ENDPOINT_BACKEND = "aws-preview"
ENDPOINT_ROW_ID = "cloud-preview-endpoint"
OFF, STARTING, READY, DELETING, FAILED = "off", "starting", "ready", "deleting", "failed"


class PreviewEndpointController(QObject):
    """Owns the toggle action, the endpoint, its idle reaper and the status-bar text."""

    stateChanged = Signal(str)  # off / starting / ready / deleting / failed
    message = Signal(str)  # one line for the status bar
    upscalerChanged = Signal()  # the preview should rebuild its engine (cloud ↔ local)
    jobChanged = Signal(str)  # its row in the jobs panel changed
    #: Turn on/off from any thread (the row's protocol calls run off the GUI thread).
    requestEnabled = Signal(bool)

    def __init__(
        self,
        cloud: CloudContext,
        parent: QObject | None = None,
        clock: Callable[[], float] = time.monotonic,
        idle_check_ms: int = IDLE_CHECK_MS,
    ) -> None:
        super().__init__(parent)
        self.cloud = cloud
        self._clock = clock
        self.state = OFF
        self.endpoint: Any = None  # a PreviewEndpoint once in service
        self.reaper: Any = None  # an IdleReaper while the endpoint exists
        self._created_at = 0.0
        self._touched_remote = False  # something may exist in AWS: delete it on exit
        self._failure = ""  # why the last start failed: its row says so until a new start
        self._runner = TaskRunner(self)
        self._runner.progress.connect(self._on_progress)
        self._runner.finished.connect(self._on_finished)
        self._runner.failed.connect(self._on_failed)
        self.action = QAction("Preview in the &cloud", self)
        self.action.setCheckable(True)
        self.action.setToolTip(
            "Upscale the preview on a SageMaker GPU endpoint in your AWS "
            "account (billed per hour while on; deleted when idle)"
        )
        self.action.toggled.connect(self.set_enabled)
        self.requestEnabled.connect(self.set_enabled)
        self._timer = QTimer(self)
        self._timer.setInterval(idle_check_ms)
        self._timer.timeout.connect(self.check_idle)
        self.label = QLabel()  # a permanent status-bar widget: state and running cost
        self.label.setObjectName("cloudPreviewStatus")
        self.label.setVisible(False)

    # -- what the preview uses ---------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return self.state == READY and self.endpoint is not None

    def settings_key(self, local_key: str) -> str:
        """The preview cache key: cloud results never answer for local ones (or vice versa)."""
        return f"{local_key}|cloud:{self.endpoint.name}" if self.ready else local_key

    def engine_factory(self, settings: AppSettings) -> Callable[[], FrameUpscaler]:
        """Builds the RemotePreviewUpscaler in the preview's worker thread (no torch there)."""
        endpoint, reaper = self.endpoint, self.reaper

        def build() -> FrameUpscaler:
            from vsr_desktop.backends.aws.preview_endpoint import RemotePreviewUpscaler

            return RemotePreviewUpscaler(
                endpoint,
                settings.model,
                settings.outscale,
                on_use=reaper.touch if reaper is not None else None,
            )

        return build

    def status_text(self) -> str:
        """ "Cloud preview: ready · $0.74/h · $0.12 so far" (prices are list-price estimates)."""
        if self.state == OFF:
            return ""
        price = self._hourly_price()
        words = {
            STARTING: "starting (a few minutes)",
            READY: "ready",
            DELETING: "deleting",
            FAILED: "failed",
        }[self.state]
        text = f"Cloud preview: {words}"
        if price is not None and self.state in (STARTING, READY):
            hours = max(0.0, self._clock() - self._created_at) / 3600
            text += f" · about ${price:.2f}/h · ${price * hours:.2f} so far"
        return text

    # -- toggle ------------------------------------------------------------------------------
    @Slot(bool)
    def set_enabled(self, on: bool) -> None:
        """Create (on) or delete (off) the endpoint, off the GUI thread."""
        if self.action.isChecked() != on:
            self.action.setChecked(on)  # re-enters through toggled
            return
        if on and self.state in (OFF, FAILED):
            self._start()
        elif not on and self.state in (STARTING, READY, FAILED):
            self._delete("Cloud preview turned off; the endpoint is being deleted")

    def _start(self) -> None:
        from vsr_desktop.backends.aws.preview_endpoint import IdleReaper

        settings = self.cloud.settings
        self.reaper = IdleReaper(settings.cloud_preview_idle_minutes * 60, clock=self._clock)
        self._created_at = self._clock()
        self._touched_remote = True
        self._failure = ""
        self._set_state(STARTING)
        self.message.emit("Starting the cloud preview endpoint: this takes a few minutes")
        self._runner.start(
            Task(key="create", lane=LANE, fn=self._create_task, label="start cloud preview")
        )

    def _create_task(self, ctx: TaskContext) -> object:
        endpoint = self._new_endpoint()
        ctx.report(endpoint.create())
        endpoint.wait_in_service(cancel=ctx.cancel, on_status=ctx.report)
        return endpoint

    def _new_endpoint(self) -> Any:
        """A PreviewEndpoint for the saved account and stack (runs on a task thread)."""
        from vsr_desktop.backends.aws.preview_endpoint import PreviewEndpoint
        from vsr_desktop.backends.aws.stack import describe_stack
        from vsr_desktop.backends.aws.stack_template import (
            OUTPUT_PREVIEW_ROLE_ARN,
            PARAM_CONTAINER_IMAGE,
        )
        from vsr_desktop.core.errors import VsrError

        session = self.cloud.session()
        name = self.cloud.stack_name()
        stack = self.cloud.stack if self.cloud.stack is not None else describe_stack(session, name)
        if stack is None:
            raise VsrError(
                f"the AWS stack {name} is not deployed",
                "set it up first: Cloud → AWS account and stack…",
            )
        return PreviewEndpoint(
            session,
            name,
            stack.parameters.get(PARAM_CONTAINER_IMAGE, ""),
            stack.output(OUTPUT_PREVIEW_ROLE_ARN),
            self.cloud.settings.cloud_preview_instance_type,
        )

    def _delete(self, note: str) -> None:
        self._runner.cancel("create")
        self._set_state(DELETING)
        self.message.emit(note)
        self._runner.start(
            Task(key="delete", lane=LANE, fn=self._delete_task, label="delete cloud preview")
        )

    def _delete_task(self, ctx: TaskContext) -> object:
        from vsr_desktop.backends.aws.preview_endpoint import PreviewEndpoint

        return PreviewEndpoint(self.cloud.session(), self.cloud.stack_name(), "", "").delete()

    # -- idle timeout ------------------------------------------------------------------------
    @Slot()
    def check_idle(self) -> None:
        """Delete the endpoint once it sat unused for the user's idle minutes."""
        if self.state == READY and self.reaper is not None and self.reaper.due():
            minutes = self.cloud.settings.cloud_preview_idle_minutes
            self.action.blockSignals(True)
            self.action.setChecked(False)
            self.action.blockSignals(False)
            self._delete(f"Cloud preview endpoint deleted after {minutes} idle minutes")
        else:
            self._show()

    # -- task results (GUI thread) -----------------------------------------------------------
    @Slot(str, object)
    def _on_progress(self, key: str, status: object) -> None:
        if key == "create":
            self.message.emit(f"{self.status_text()} ({status})")

    @Slot(str, object)
    def _on_finished(self, key: str, result: object) -> None:
        if key == "create":
            if self.state != STARTING:
                return  # turned off meanwhile; the queued delete removes it
            self.endpoint = result
            self.reaper.touch()
            self._set_state(READY)
            self._timer.start()
            self.message.emit(self.status_text())
        elif key == "delete":
            self.endpoint, self.reaper = None, None
            self._touched_remote = False
            self._timer.stop()
            if self.state == DELETING:
                self._set_state(OFF)
            if self.action.isChecked():  # turned on again while deleting
                self._start()

    @Slot(str, object)
    def _on_failed(self, key: str, error: object) -> None:
        from vsr_desktop.core.errors import VsrError

        text = error.user_message() if isinstance(error, VsrError) else str(error)
        if key == "create" and self.state == DELETING:
            return  # turned off while starting; the delete task reports
        self.endpoint = None
        self._timer.stop()
        self._failure = text
        self._set_state(FAILED)
        self.message.emit(f"Cloud preview: {text}")

    def _set_state(self, state: str) -> None:
        was_ready = self.ready
        self.state = state
        self.stateChanged.emit(state)
        self._show()
        if was_ready != self.ready:
            self.upscalerChanged.emit()

    def _show(self) -> None:
        text = self.status_text()
        self.label.setText(text)
        self.label.setVisible(bool(text))
        self._record_row()

    def _hourly_price(self) -> float | None:
        from vsr_desktop.backends.aws.preview_endpoint import hourly_cost

        return hourly_cost(self.cloud.settings.cloud_preview_instance_type)

    # -- its row in the jobs panel (the endpoint bills like a job: show it like one) ----------
    def _record_row(self) -> None:
        """Write the endpoint's row into the job store: state, hourly price, cost so far.

        Deleted after a failed start, the row stays FAILED with the reason (it never did
        its work); deleted after use, it is COMPLETED."""
        store = self.cloud.store
        if self.state == OFF and not store.exists(ENDPOINT_ROW_ID):
            return
        price = self._hourly_price()
        hours = max(0.0, self._clock() - self._created_at) / 3600
        failed = self.state == FAILED or (self.state == OFF and bool(self._failure))
        state, phase = {
            STARTING: (JobState.RUNNING, "starting (a few minutes)"),
            READY: (JobState.RUNNING, "in service"),
            DELETING: (JobState.RUNNING, "deleting"),
            FAILED: (JobState.FAILED, ""),
            OFF: (JobState.FAILED if failed else JobState.COMPLETED, ""),
        }[self.state]
        hourly = f"${price:.2f}/h" if price is not None else "price unknown"
        if self.state == OFF:
            message = (
                f"failed ({self._failure}); deleted: no longer billing"
                if failed
                else "deleted: no longer billing"
            )
        elif self.state == FAILED:
            message = f"failed ({self._failure}); turn Cloud → Preview in the cloud on to try again"
        else:
            message = f"SageMaker preview endpoint, {hourly} while it exists"
        changes: dict[str, Any] = {
            "state": state,
            "phase": phase,
            "message": message,
            "cost_usd": price * hours if price is not None else None,
        }
        if not store.exists(ENDPOINT_ROW_ID):
            store.add(
                JobRecord(
                    id=ENDPOINT_ROW_ID,
                    name="Cloud preview endpoint",
                    backend=ENDPOINT_BACKEND,
                    source="",
                    output="",
                )
            )
        store.update(ENDPOINT_ROW_ID, **changes)
        self.jobChanged.emit(ENDPOINT_ROW_ID)

    def row_backend(self) -> EndpointRowBackend:
        """What the app registers as the row's backend."""
        return EndpointRowBackend(self)

    # -- exit --------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Stop watching, then delete whatever may exist (synchronously: the app is quitting)."""
        self._timer.stop()
        self._runner.shutdown()
        if not self._touched_remote:
            return
        try:
            self._delete_task(None)  # type: ignore[arg-type]
        except Exception:  # logged: nothing else can be done while quitting
            log.exception("could not delete the cloud preview endpoint on exit")
        self._touched_remote = False
        self.endpoint, self.state = None, OFF
        self._record_row()


class EndpointRowBackend:
    """The endpoint's row through the Backend protocol, so the jobs panel treats it like any
    row: Cancel deletes the endpoint (what stops the billing), Resume/Retry start it again,
    Remove forgets the row. The controller writes the row; calls may come from any thread,
    so they reach the controller as queued signals."""

    name = ENDPOINT_BACKEND
    runs_in_process = False

    def __init__(self, controller: PreviewEndpointController) -> None:
        self._controller = controller
        self._store = controller.cloud.store

    def submit(
        self, spec: JobSpec, progress: Any = None, cancel: threading.Event | None = None
    ) -> JobRecord:
        raise JobError(
            "the preview endpoint is not a job to submit", "turn on Cloud → Preview in the cloud"
        )

    def poll(self, job: JobRecord) -> JobRecord:
        return self._store.get(job.id)

    def cancel(self, job: JobRecord) -> JobRecord:
        self._controller.requestEnabled.emit(False)
        return self._store.get(job.id)

    def resume(
        self,
        job: JobRecord,
        progress: Any = None,
        cancel: threading.Event | None = None,
        *,
        restart: bool = False,
        overwrite: bool = False,
    ) -> JobRecord:
        self._controller.requestEnabled.emit(True)
        return self._store.get(job.id)

    def fetch_output(
        self, job: JobRecord, on_bytes: Any = None, cancel: threading.Event | None = None
    ) -> Path:
        raise JobError("the preview endpoint has no output", "its results go to the preview")

    def remove(self, job: JobRecord) -> None:
        self._store.delete(job.id)

    def needs_fetch(self, job: JobRecord) -> bool:
        return False

    def work_lost_on_remove(self, job: JobRecord) -> str:
        return ""
