"""The main window's job commands: Upscale all where Run on… says (this computer, Slurm,
AWS), Overwrite / Rename / Skip for existing outputs, In/Out trims, and failures shown in
the standard error dialog (a failed job with the end of its log under Details).

Methods of MainWindow (assigned in its class body), kept apart so the window's module
stays small.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Slot

from vsr_desktop.core.errors import VsrError
from vsr_desktop.core.job_spec import JobSpec
from vsr_desktop.core.settings import AppSettings
from vsr_desktop.core.trim import with_marks
from vsr_desktop.gui.cloud.context import with_cloud_fields
from vsr_desktop.gui.errors import show_error
from vsr_desktop.gui.job_specs import spec_for
from vsr_desktop.gui.jobs.existing_output import ExistingOutputs
from vsr_desktop.gui.jobs.log_dialog import job_log_tail
from vsr_desktop.gui.run_on_dialog import TARGET_SHORT, RunOnDialog, with_run_on_fields

if TYPE_CHECKING:
    from vsr_desktop.gui.main_window import MainWindow


@Slot()
def start_jobs(window: MainWindow) -> None:
    """Upscale all: every readable source as a job where Run on… says (this computer
    unless a cluster or AWS is chosen)."""
    if window.app_settings.run_on == "slurm":
        window.send_to_slurm()
    elif window.app_settings.run_on == "aws":
        window.send_to_aws()
    else:
        window.start_local_jobs()


def _readable_sources(window: MainWindow, verb: str) -> list[Path] | None:
    paths = window.sources.readable_paths()
    if not paths:
        show_error(
            window,
            f"Nothing to {verb}",
            VsrError(
                "the source list has no readable video",
                "open a video first (Ctrl+O)",
            ),
        )
        return None
    return paths


def _then_submit(
    window, specs: list[JobSpec], submit: Callable[[list[JobSpec]], None]
) -> ExistingOutputs:
    """Ask Overwrite / Rename / Skip for each output already there, then `submit`."""
    # The previewed source's In/Out marks trim its job (core/trim.py), on any backend.
    marks = getattr(window.preview, "marks", lambda: (None, None))()
    shown = getattr(window.preview, "_source", None)
    specs = [with_marks(s, marks) if s.source == shown else s for s in specs]
    asking = ExistingOutputs(specs, window, submit)
    window.output_question = asking
    asking.start()
    return asking


@Slot()
def start_local_jobs(window: MainWindow) -> None:
    """Queue every source here; bad ones are reported, the rest still start."""
    paths = window._readable_sources("upscale")
    if paths is None:
        return
    if not window.settings_panel.model_is_ready():
        show_error(
            window,
            "Model missing",
            VsrError(
                f"{window.app_settings.model} is not downloaded",
                "press Download beside the model first",
            ),
        )
        return
    window._then_submit([spec_for(window.app_settings, p) for p in paths], window._submit_local)


def _submit_local(window: MainWindow, specs: list[JobSpec]) -> None:
    started = 0
    for spec in specs:
        try:
            window.jobs_panel.submit(spec)
            started += 1
        except VsrError as exc:
            show_error(window, f"Cannot upscale {spec.source.name}", exc)
    if started:
        window.jobs_panel.show()
        window.statusBar().showMessage(f"{started} job(s) queued")


def slurm_backend(window: MainWindow) -> Any:
    """A Slurm backend for the cluster set in Run on… (InputError when none is set)."""
    from vsr_desktop.backends.slurm import SlurmBackend, SlurmTarget

    return SlurmBackend(window.store, SlurmTarget.from_settings(window.app_settings))


@Slot()
def send_to_slurm(window: MainWindow) -> None:
    """Submit every source to the Slurm cluster set in Run on…, in the background
    (a submit may copy the source over SSH); a failed one is a FAILED row saying why."""
    try:
        backend = window.slurm_backend()
    except VsrError as exc:
        show_error(window, "Slurm is not set up", exc)
        return
    paths = window._readable_sources("send")
    if paths is None:
        return

    def submit(specs: list[JobSpec]) -> None:
        for spec in specs:
            window.jobs_panel.submit(spec, backend)
        if specs:
            window.jobs_panel.show()
            window.statusBar().showMessage(f"Sending {len(specs)} job(s) to Slurm…")

    window._then_submit([spec_for(window.app_settings, p, backend.name) for p in paths], submit)


@Slot()
def open_cloud_dialog(window: MainWindow) -> None:
    """Cloud → AWS account and stack…: credentials, identity check, deploy/tear down."""
    from vsr_desktop.gui.cloud.account_dialog import CloudAccountDialog

    if window.cloud_dialog is not None and window.cloud_dialog.isVisible():
        window.cloud_dialog.raise_()
        return
    dialog = CloudAccountDialog(window.app_settings, window)
    dialog.settingsSaved.connect(window._cloud_settings_saved)
    window.cloud_dialog = dialog
    dialog.open()


@Slot(object)
def _cloud_settings_saved(window: MainWindow, settings: AppSettings) -> None:
    window.app_settings = with_cloud_fields(window.app_settings, settings)
    window.cloud.forget()
    window._save_settings()
    if window.run_on is not None:
        window.run_on.refresh_cloud(window.app_settings)
    window.statusBar().showMessage("Cloud settings saved")


@Slot()
def send_to_aws(window: MainWindow) -> None:
    """Estimate every source's cloud cost, then (on Submit) upload and start them."""
    from vsr_desktop.gui.cloud.submit_dialog import SubmitDialog

    paths = window._readable_sources("send")
    if paths is None:
        return
    if window.submit_dialog is not None and window.submit_dialog.isVisible():
        window.submit_dialog.raise_()
        return

    def submit(specs: list[JobSpec]) -> None:
        if not specs:
            return
        dialog = SubmitDialog(specs, window.cloud_jobs, window)
        dialog.accepted.connect(window.jobs_panel.show)
        window.submit_dialog = dialog
        dialog.open()

    window._then_submit([spec_for(window.app_settings, p, "aws") for p in paths], submit)


@Slot()
def open_run_on(window: MainWindow) -> RunOnDialog:
    """Run on…: where Upscale all sends jobs, and the Slurm / AWS targets' set-up."""
    if window.run_on is None:
        window.run_on = RunOnDialog(window.app_settings, window, window.open_cloud_dialog)
        window.run_on.settingsChanged.connect(window._run_on_changed)
    window.run_on.refresh_cloud(window.app_settings)
    window.run_on.show()
    window.run_on.raise_()
    return window.run_on


@Slot(object)
def _run_on_changed(window: MainWindow, settings: AppSettings) -> None:
    window.app_settings = with_run_on_fields(window.app_settings, settings)
    window.settings_panel.set_run_on(TARGET_SHORT.get(window.app_settings.run_on, "Local"))
    window._save_settings()


@Slot(str, str)
def _job_failed(window: MainWindow, job_id: str, message: str) -> None:
    """The failure in the standard error dialog, the end of the job's log under Details."""
    window.statusBar().showMessage(f"Job {job_id} failed: {message}")
    job = window.jobs_panel.model.job(job_id)
    title = f"“{job.name}” failed" if job is not None else "The job failed"
    window.job_error = show_error(window, title, message, job_log_tail(job))


@Slot(str, object)
def _action_failed(window: MainWindow, title: str, error: object) -> None:
    """A backend call made for the user failed (a submit, a cancel, a download)."""
    if isinstance(error, VsrError):
        show_error(window, title, error)
    else:  # a bug or an unexpected library error: still a dialog, with a next step
        show_error(
            window,
            title,
            VsrError(
                f"{type(error).__name__}: {error}",
                "try again; if it keeps failing, report it with the log file",
            ),
        )
