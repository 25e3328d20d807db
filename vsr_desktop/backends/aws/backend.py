"""The AWS backend: submit, poll, cancel, resume, fetch and remove jobs in the user's account.

submit: check the spec here (the estimate needs the probe and plan anyway) and record the
job, then upload the source (resumable), the user's model file if any, and the spec as one
object (spec.json, written last), and start the stack's state machine with an execution
named after the job, so a repeated start is harmless. poll: the execution's status plus
the workers' progress objects in S3 — no Batch calls on the common path, so polling a dozen
jobs stays cheap. cancel: StopExecution, then TerminateJob for every chunk job the execution
started (Step Functions alone leaves them running). resume: a new execution; the workers
skip the chunks already in S3 (restart forgets them). Where each object lives is
worker/s3_layout.py, shared with the workers.

This class holds the account plumbing (clients, stack, the job's AWS state) and one thin
method per protocol call; the work is in submission.py (with upload.py), job_status.py,
job_cleanup.py and job_results.py, each a set of functions of the backend they act for.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from vsr_desktop.backends.aws import job_cleanup, job_results, job_status, submission
from vsr_desktop.backends.aws.errors import CloudError
from vsr_desktop.backends.aws.job_status import ChunkProgress
from vsr_desktop.backends.aws.session import CloudCredentials
from vsr_desktop.backends.aws.stack import DEFAULT_STACK_NAME, StackInfo, describe_stack
from vsr_desktop.backends.aws.transfer import BytesProgress
from vsr_desktop.backends.protocol import ProgressCallback
from vsr_desktop.core.errors import CancelledError, VsrError
from vsr_desktop.core.job_spec import JobSpec
from vsr_desktop.core.jobs import JobRecord, JobState, JobStore
from vsr_desktop.core.redact import redact_secrets
from vsr_desktop.worker.s3_layout import JobLocation

__all__ = ["AwsBackend", "ChunkProgress", "job_credentials"]


class AwsBackend:
    """One AWS account and region, through the app's stack."""

    name = "aws"
    runs_in_process = False

    def __init__(
        self,
        store: JobStore,
        session: Any,
        stack_name: str = DEFAULT_STACK_NAME,
        part_size: int | None = None,
        stack: StackInfo | None = None,
        credentials: CloudCredentials | None = None,
    ) -> None:
        self.store = store
        self.session = session
        self.stack_name = stack.name if stack is not None else stack_name
        self.part_size = part_size
        self.credentials = credentials
        self._stack = stack
        self._clients: dict[str, Any] = {}
        self._preflight_done = False

    @classmethod
    def for_job(cls, store: JobStore, job: JobRecord | None) -> AwsBackend:
        """The backend for the account, region and stack `job` was sent to (its spec's
        target), or for the app's saved cloud settings when there is no job or no target."""
        from vsr_desktop.backends.aws.session import open_session

        credentials, stack_name = job_credentials(job)
        return cls(store, open_session(credentials), stack_name, credentials=credentials)

    # ------------------------------------------------------------------ plumbing
    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self.session.client(service)
        return self._clients[service]

    def stack(self) -> StackInfo:
        if self._stack is None:
            info = describe_stack(self.session, self.stack_name)
            if info is None or not info.ready:
                raise CloudError(
                    f"the cloud stack {self.stack_name} is not set up in "
                    f"{self.session.region_name}",
                    "run `vsr cloud setup` (or Cloud → Set up in the app) first",
                )
            self._stack = info
        return self._stack

    def target(self) -> dict[str, str]:
        """Where this backend sends jobs, as the spec records it: names only, no secrets."""
        creds = self.credentials
        profile = creds.profile if creds is not None else _explicit_profile(self.session)
        return {
            "region": str(self.session.region_name or ""),
            "profile": profile or "",
            "keychain_account": (creds.keychain_account or "") if creds else "",
            "stack": self.stack_name,
        }

    @staticmethod
    def aws_state(job: JobRecord) -> dict[str, Any]:
        state = job.settings.get("aws", {})
        return dict(state) if isinstance(state, dict) else {}

    def _remember(self, job_id: str, **changes: Any) -> None:
        """Backend state (upload id, execution ARN, tries) lives in the job's settings."""
        job = self.store.get(job_id)
        settings = dict(job.settings)
        settings["aws"] = {**self.aws_state(job), **changes}
        self.store.update(job_id, settings=settings)

    def location(self, job: JobRecord) -> JobLocation:
        bucket = self.aws_state(job).get("bucket")
        if not bucket:
            raise CloudError(f"job {job.id} has no S3 location", "submit it again")
        return JobLocation.for_job(str(bucket), job.id)

    def _fail(self, job_id: str, error: BaseException) -> None:
        """A submit or resume that stopped: FAILED with its reason (CANCELLED for a pause)."""
        if isinstance(error, CancelledError):
            self.store.update(
                job_id,
                state=JobState.CANCELLED,
                phase="",
                pid=None,
                message="upload paused; resume to continue it",
            )
            return
        text = redact_secrets(  # stored and shown: no credentials from echoed AWS replies
            error.user_message()
            if isinstance(error, VsrError)
            else f"{type(error).__name__}: {error}"
        )
        self.store.update(job_id, state=JobState.FAILED, phase="", pid=None, message=text)

    # ------------------------------------------------------------------ submit (submission.py)
    def create_job(
        self,
        spec: JobSpec,
        price_per_gpu_hour: float | None = None,
        max_cost_usd: float | None = None,
    ) -> JobRecord:
        """Check the spec here and record the job; nothing is sent yet (a spec that cannot
        run, or an account check that fails, is refused with no record)."""
        return submission.create_job(self, spec, price_per_gpu_hour, max_cost_usd)

    def submit(
        self,
        spec: JobSpec,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
        *,
        job: JobRecord | None = None,
        on_upload: BytesProgress | None = None,
        price_per_gpu_hour: float | None = None,
        max_cost_usd: float | None = None,
    ) -> JobRecord:
        """Record the job (or take `job`, made by create_job), upload what it needs (resuming
        an interrupted upload) and start the execution; returns the job, RUNNING.

        A cancel pauses the upload (CANCELLED, resumable); any other failure leaves the
        job FAILED with the reason in its message, and is raised."""
        if job is None:
            job = self.create_job(spec, price_per_gpu_hour, max_cost_usd)
        return submission.send(self, self.store.get(job.id), progress, cancel, on_upload)

    def start(self, job: JobRecord) -> JobRecord:
        """Start (or find) the execution for this try of the job."""
        return submission.start(self, job)

    def chunk_time_limit(self, job: JobRecord) -> int | None:
        """The chunk jobs' Batch time limit, lowered to the job's share of its cost cap."""
        return submission.chunk_time_limit(self, job)

    def set_cost_cap(self, job: JobRecord, max_cost_usd: float | None) -> JobRecord:
        """A new cap (None: none) for the job's next execution (`vsr cloud retry --max-cost`)."""
        return submission.set_cost_cap(self, job, max_cost_usd)

    def preflight(self) -> None:
        """The account checks before anything is recorded or spent (preflight.py), once."""
        submission.preflight(self)

    def resume(
        self,
        job: JobRecord,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
        *,
        restart: bool = False,
        overwrite: bool = False,
        on_upload: BytesProgress | None = None,
    ) -> JobRecord:
        """Finish a paused upload, or run a failed/cancelled job again in a new execution
        (the workers skip chunks already in S3). restart: forget the finished chunks (and
        upload the source again if it changed); overwrite: the download may replace an
        existing output."""
        return submission.resume(
            self, job, progress, cancel, restart=restart, overwrite=overwrite, on_upload=on_upload
        )

    def _refuse_if_running(self, job: JobRecord) -> None:
        job_cleanup.refuse_if_running(self, job)

    # ------------------------------------------------------------------ poll (job_status.py)
    def poll(self, job: JobRecord) -> JobRecord:
        """Refresh one row from the execution and the progress objects."""
        return job_status.poll(self, job)

    def read_progress(self, job: JobRecord) -> dict[int | str, ChunkProgress]:
        """The workers' progress objects: chunk index (or 'split'/'merge') → progress."""
        return job_status.read_progress(self, job)

    def _failure(self, execution: dict[str, Any], chunks: dict[int, ChunkProgress]) -> str:
        return redact_secrets(job_status.failure_text(self, execution, chunks))  # Batch text

    # ------------------------------------------------------------------ cancel (job_cleanup.py)
    def cancel(self, job: JobRecord) -> JobRecord:
        """Stop the execution and its Batch jobs; finished chunks stay in S3 for a resume."""
        return job_cleanup.cancel(self, job)

    def stop(self, job: JobRecord, reason: str = "cancelled from vsr_desktop") -> list[str]:
        """cancel, returning the Batch jobs it terminated (the CLI and the app count them)."""
        return job_cleanup.stop(self, job, reason)

    def batch_job_ids(self, execution_arn: str) -> list[str]:
        """Batch jobs this execution submitted, from its history (TaskSubmitted events)."""
        return job_cleanup.batch_job_ids(self, execution_arn)

    def queued_batch_job_ids(self, job: JobRecord) -> list[str]:
        """Unfinished Batch jobs named after this job on the stack's queues."""
        return job_cleanup.queued_batch_job_ids(self, job)

    # ------------------------------------------------------------------ output (job_results.py)
    def fetch_output(
        self,
        job: JobRecord,
        on_bytes: BytesProgress | None = None,
        cancel: threading.Event | None = None,
    ) -> Path:
        """Download the finished output to the job's output path (resumes a partial file)."""
        return self.download(job, on_progress=on_bytes, cancel=cancel)

    def download(
        self,
        job: JobRecord,
        *,
        on_progress: BytesProgress | None = None,
        cancel: threading.Event | None = None,
        target: Path | None = None,
    ) -> Path:
        """fetch_output, by its older name; `target` downloads a copy elsewhere."""
        return job_results.download(
            self, job, on_progress=on_progress, cancel=cancel, target=target
        )

    def needs_fetch(self, job: JobRecord) -> bool:
        return job_results.needs_fetch(self, job)

    def work_lost_on_remove(self, job: JobRecord) -> str:
        return job_results.work_lost_on_remove(self, job)

    # ------------------------------------------------------------------ remove (job_cleanup.py)
    def remove(self, job: JobRecord) -> None:
        """Delete every object under the job's prefix (and an unfinished upload), then its
        record; never the local output. A job still running is refused: cancel it first."""
        job_cleanup.remove(self, job)


def job_credentials(job: JobRecord | None) -> tuple[CloudCredentials, str]:
    """The credentials (names only) and stack name a job was sent with: its spec's target;
    for a job recorded before targets, or for new jobs, the app's saved cloud settings."""
    from vsr_desktop.core.settings import SettingsFile

    target = job.spec.target if job is not None and job.spec is not None else {}
    if target.get("region"):
        return (
            CloudCredentials(
                region=str(target["region"]),
                profile=str(target.get("profile") or "") or None,
                keychain_account=str(target.get("keychain_account") or "") or None,
            ),
            str(target.get("stack") or DEFAULT_STACK_NAME),
        )
    recorded = AwsBackend.aws_state(job) if job is not None else {}
    saved = SettingsFile().load()
    region = (
        str(recorded.get("region") or "")
        or saved.cloud_region
        or os.environ.get("AWS_REGION")
        or os.environ.get("AWS_DEFAULT_REGION")
        or ""
    )
    profile = saved.cloud_profile or None
    credentials = CloudCredentials(
        region=region,
        profile=profile,
        keychain_account=None if profile else saved.cloud_keychain_account or None,
    )
    return credentials, str(recorded.get("stack") or saved.cloud_stack_name or DEFAULT_STACK_NAME)


def _explicit_profile(session: Any) -> str | None:
    """The profile a session was opened with (argument or AWS_PROFILE); None for the
    default chain, which the record then leaves to the default chain again."""
    name = getattr(session, "profile_name", None)
    if not name or name == "default" or name not in getattr(session, "available_profiles", []):
        return None
    return str(name)
