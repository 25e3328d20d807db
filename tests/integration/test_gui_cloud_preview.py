"""Cloud → Preview in the cloud, in the real main window against a moto server over HTTP.

The stack is pinned (CloudContext.stack) to a StackInfo holding the two things the endpoint
needs from it — the worker image parameter and the PreviewRoleArn output — so these tests
do not deploy the whole template (test_cloud_stack does). moto puts the endpoint InService
at once, so "starting" is only seen as the first state, not as minutes of waiting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest
from PySide6.QtWidgets import QMenu

from tests.helpers.aws_fixture import MotoServer
from vsr_desktop.backends.aws.stack import StackInfo
from vsr_desktop.core.jobs import JobState, JobStore
from vsr_desktop.core.settings import AppSettings, SettingsFile
from vsr_desktop.gui.cloud import preview_endpoint_controller as ctl
from vsr_desktop.gui.main_window import MainWindow

STACK = "vsr-gui-preview"
TIMEOUT_MS = 20_000
STACK_INFO = StackInfo(
    name=STACK,
    status="CREATE_COMPLETE",
    outputs={"PreviewRoleArn": "arn:aws:iam::123456789012:role/vsr-SageMakerPreviewRole"},
    parameters={"ContainerImage": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/vsr:1"},
)


def _endpoints() -> list[str]:
    return [e["EndpointName"] for e in boto3.client("sagemaker").list_endpoints()["Endpoints"]]


@pytest.fixture()
def window(aws: MotoServer, qtbot: Any, tmp_path: Path) -> MainWindow:
    settings = SettingsFile(tmp_path / "settings.json")
    settings.save(AppSettings(cloud_stack_name=STACK, cloud_preview_idle_minutes=15))
    win = MainWindow(
        settings_file=settings,
        store=JobStore(tmp_path / "jobs.sqlite3"),
        opener=lambda path: None,
        probe_device=False,
    )
    qtbot.addWidget(win)
    win.cloud.stack = STACK_INFO
    return win


def test_toggle_starts_the_endpoint_and_quitting_deletes_it(window: MainWindow, qtbot: Any) -> None:
    controller = window.preview_cloud
    (cloud_menu,) = [a.menu() for a in window.menuBar().actions() if a.text() == "&Cloud"]
    assert isinstance(cloud_menu, QMenu) and controller.action in cloud_menu.actions()
    states: list[str] = []
    controller.stateChanged.connect(states.append)
    controller.action.trigger()  # Cloud → Preview in the cloud
    assert controller.state == ctl.STARTING and "few minutes" in controller.label.text()
    qtbot.waitUntil(lambda: controller.ready, timeout=TIMEOUT_MS)
    assert states == [ctl.STARTING, ctl.READY]
    assert _endpoints() == [f"vsr-preview-{STACK}"]
    assert "about $0.74/h" in controller.label.text()
    # The preview now renders on the endpoint, under a key of its own (no cache mix-ups).
    factory = window.preview.renderer._factories  # what the render thread will build from
    cloud_keys = [key for key in factory if "|cloud:" in key]
    assert cloud_keys and type(factory[cloud_keys[0]]()).__name__ == "RemotePreviewUpscaler"

    window.close()  # the app quits
    assert _endpoints() == []
    sm = boto3.client("sagemaker")
    assert sm.list_models()["Models"] == [] and sm.list_endpoint_configs()["EndpointConfigs"] == []


def test_idle_timeout_deletes_the_endpoint_and_unchecks_the_toggle(
    window: MainWindow, qtbot: Any
) -> None:
    now = [0.0]
    controller = window.preview_cloud
    controller._clock = lambda: now[0]  # an idle quarter of an hour in no time
    controller.set_enabled(True)
    qtbot.waitUntil(lambda: controller.ready, timeout=TIMEOUT_MS)
    now[0] += 10 * 60
    controller.reaper.touch()  # a render
    now[0] += 10 * 60
    controller.check_idle()
    assert controller.ready and _endpoints()
    now[0] += 6 * 60
    controller.check_idle()
    qtbot.waitUntil(lambda: controller.state == ctl.OFF, timeout=TIMEOUT_MS)
    assert _endpoints() == [] and not controller.action.isChecked()
    assert not controller.label.isVisible()
    window.close()


def test_turning_it_off_deletes_and_without_a_stack_it_says_so(
    window: MainWindow, qtbot: Any
) -> None:
    controller = window.preview_cloud
    controller.set_enabled(True)
    qtbot.waitUntil(lambda: controller.ready, timeout=TIMEOUT_MS)
    controller.action.setChecked(False)
    qtbot.waitUntil(lambda: controller.state == ctl.OFF, timeout=TIMEOUT_MS)
    assert _endpoints() == []
    messages: list[str] = []
    controller.message.connect(messages.append)
    window.cloud.stack = None  # nothing deployed under that name
    controller.set_enabled(True)
    qtbot.waitUntil(lambda: controller.state == ctl.FAILED, timeout=TIMEOUT_MS)
    assert "not deployed" in messages[-1]
    window.close()
    assert _endpoints() == []
    # The row says it failed, also after quitting (never "Completed 100 %").
    row = JobStore(window.store.path).get(ctl.ENDPOINT_ROW_ID)
    assert row.state is JobState.FAILED and "not deployed" in row.message
    assert "no longer billing" in row.message


def test_a_window_that_never_used_it_makes_no_aws_call_on_exit(
    tmp_path: Path, qtbot: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    win = MainWindow.in_scratch_folder(tmp_path)
    qtbot.addWidget(win)
    monkeypatch.setattr(win.cloud, "session", lambda *a: pytest.fail("AWS was called"))
    win.close()


def test_the_endpoint_has_a_row_with_its_cost_and_cancel_there_deletes_it(
    window: MainWindow, qtbot: Any
) -> None:
    now = [1000.0]
    controller = window.preview_cloud
    controller._clock = lambda: now[0]
    controller.set_enabled(True)
    qtbot.waitUntil(lambda: controller.ready, timeout=TIMEOUT_MS)
    now[0] += 1800  # half an hour in service, in use
    controller.reaper.touch()
    controller.check_idle()  # the periodic refresh
    row = window.store.get(ctl.ENDPOINT_ROW_ID)
    assert row.backend == ctl.ENDPOINT_BACKEND and row.phase == "in service"
    assert row.cost_usd is not None and abs(row.cost_usd - 0.736 / 2) < 0.01
    panel = window.jobs_panel
    panel.model.refresh()
    panel.select_job(ctl.ENDPOINT_ROW_ID)
    panel._cancel()  # the row's Cancel: what stops the billing
    qtbot.waitUntil(lambda: controller.state == ctl.OFF, timeout=TIMEOUT_MS)
    assert _endpoints() == []
    assert window.store.get(ctl.ENDPOINT_ROW_ID).message == "deleted: no longer billing"
    window.close()
