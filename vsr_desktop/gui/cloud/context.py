"""Sessions and AWS backends for the app, built from the saved cloud settings (no Qt).

The app registers `AppAwsBackend` as the registry's "aws" backend: the protocol over the
account the user signed in to in the app (profile, SSO, keychain keys), not only what the
saved settings of a command line would give.

Why a cache per lane: the jobs poller asks for a backend for every cloud row on every
poll, and opening a boto3 session (reading profiles, the keychain) each time would be slow;
but one boto3 Session must not make clients from two threads at once. A lane of the task
runner runs one task at a time, each on a thread of its own, so every lane (poll, upload,
download; the GUI thread, by its thread) gets its own session and backend, kept while the
choices hold.
A job is always served in the region and stack it was submitted to, whatever the settings
say now.

Why a lock per job: AwsBackend.poll writes the state it computed from the job it was given;
a poll that read the row just before a cancel would write RUNNING over CANCELLED (seen in
tests). Poll and cancel of one job therefore take the same lock, and the poll re-reads the
row under it, so it sees the cancel and leaves the row alone.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vsr_desktop.backends.protocol import Backend, Progress, ProgressCallback
from vsr_desktop.core.job_spec import JobSpec
from vsr_desktop.core.jobs import JobRecord, JobStore
from vsr_desktop.core.settings import AppSettings
from vsr_desktop.gui.lanes import current_lane

if TYPE_CHECKING:
    from vsr_desktop.backends.aws.backend import AwsBackend
    from vsr_desktop.backends.aws.session import CloudCredentials
    from vsr_desktop.backends.aws.stack import StackInfo

CLOUD_FIELDS = (
    "cloud_region",
    "cloud_profile",
    "cloud_keychain_account",
    "cloud_stack_name",
    "cloud_auto_download",
)
_MAX_CACHED = 32


def with_cloud_fields(target: AppSettings, source: AppSettings) -> AppSettings:
    """`target` with the cloud choices of `source` (other panels keep stale copies of them)."""
    return replace(target, **{name: getattr(source, name) for name in CLOUD_FIELDS})


def credentials_from(settings: AppSettings, region: str | None = None) -> CloudCredentials:
    """The credentials the settings name; `region` overrides (a job's own region)."""
    from vsr_desktop.backends.aws.session import CloudCredentials

    return CloudCredentials(
        region=region if region is not None else settings.cloud_region,
        profile=settings.cloud_profile or None,
        keychain_account=None
        if settings.cloud_profile
        else settings.cloud_keychain_account or None,
    )


class CloudContext:
    """Makes AwsBackends for the current settings; `stack` pins the stack (tests, scripts)."""

    def __init__(
        self,
        settings: Callable[[], AppSettings],
        store: JobStore,
        stack: StackInfo | None = None,
        part_size: int | None = None,
    ) -> None:
        self._settings = settings
        self.store = store
        self.stack = stack
        self.part_size = part_size
        self._lock = threading.Lock()
        self._backends: dict[tuple[Any, ...], AwsBackend] = {}
        self._job_locks: dict[str, threading.Lock] = {}

    @property
    def settings(self) -> AppSettings:
        return self._settings()

    def stack_name(self) -> str:
        from vsr_desktop.backends.aws.stack import DEFAULT_STACK_NAME

        if self.stack is not None:
            return self.stack.name
        return self.settings.cloud_stack_name or DEFAULT_STACK_NAME

    def session(self, region: str | None = None) -> Any:
        """A new boto3 Session for the saved choices (CredentialsError when unusable)."""
        from vsr_desktop.backends.aws.session import open_session

        return open_session(credentials_from(self.settings, region))

    def backend(self, region: str | None = None, stack_name: str | None = None) -> AwsBackend:
        """This thread's backend for the saved account, or a job's region and stack."""
        from vsr_desktop.backends.aws.backend import AwsBackend

        creds = credentials_from(self.settings, region)
        name = stack_name or self.stack_name()
        key = (current_lane() or threading.get_ident(), creds, name)
        with self._lock:
            cached = self._backends.get(key)
        if cached is not None:
            return cached
        from vsr_desktop.backends.aws.session import open_session

        stack = self.stack if self.stack is not None and self.stack.name == name else None
        backend = AwsBackend(
            self.store, open_session(creds), stack_name=name, part_size=self.part_size, stack=stack
        )
        with self._lock:
            if len(self._backends) >= _MAX_CACHED:
                self._backends.clear()  # lanes come and go (one per cancelled job)
            self._backends[key] = backend
        return backend

    def backend_for_job(self, job: JobRecord) -> AwsBackend:
        """The backend for the account, region and stack the job was sent to."""
        region, stack = job_place(job)
        return self.backend(region=region, stack_name=stack)

    @contextmanager
    def job_lock(self, job_id: str) -> Iterator[None]:
        """Held while polling or cancelling one job (see the module's docstring)."""
        with self._lock:
            lock = self._job_locks.setdefault(job_id, threading.Lock())
        with lock:
            yield

    def registry_factory(self) -> Callable[[JobStore, JobRecord | None], Backend]:
        """What the app registers as the "aws" backend (one adapter serves every job)."""
        adapter = AppAwsBackend(self)
        return lambda _store, _job: adapter

    def forget(self) -> None:
        """Drop cached sessions (after the user changed credentials or signed in again)."""
        with self._lock:
            self._backends.clear()


def _bytes_as_progress(
    progress: ProgressCallback | None, job: JobRecord
) -> Callable[[int, int], None] | None:
    """An upload's byte counts as protocol progress events (bytes in a transfer phase)."""
    if progress is None:
        return None

    def report(done: int, total: int) -> None:
        progress(Progress(job.id, "uploading", done, total, 0, job.chunks_total, 0.0, None))

    return report


def job_place(job: JobRecord) -> tuple[str | None, str | None]:
    """The region and stack a job was sent to: its spec's target (older rows: the AWS
    backend's own section of the settings)."""
    target: dict[str, Any] = dict(job.spec.target) if job.spec is not None else {}
    legacy = job.settings.get("aws", {})
    legacy = legacy if isinstance(legacy, dict) else {}
    region = target.get("region") or legacy.get("region")
    stack = target.get("stack") or target.get("stack_name") or legacy.get("stack")
    return (str(region) if region else None, str(stack) if stack else None)


class AppAwsBackend:
    """The Backend protocol over the app's signed-in account.

    Every call is passed to this thread's AwsBackend for the job's region and stack (see
    the module's docstring); poll and cancel of one job hold the job's lock and act on the
    row as it is now, so a poll that read the row before a cancel cannot undo it.
    """

    name = "aws"
    runs_in_process = False

    def __init__(self, context: CloudContext) -> None:
        self.context = context
        self._reader: AwsBackend | None = None

    def _fresh(self, job: JobRecord) -> JobRecord:
        return self.context.store.get(job.id)

    def submit(
        self,
        spec: JobSpec,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> JobRecord:
        """Record the job, then upload and start it; progress carries the upload's bytes
        (the Spot price the estimate used rides in the spec's target until recorded)."""
        backend = self.context.backend()
        price = spec.target.get("price_per_gpu_hour")
        job = backend.create_job(spec, float(price) if price is not None else None)
        if progress is not None:  # the caller learns the job's id before the upload
            progress(Progress(job.id, "preparing", 0, 0, 0, job.chunks_total, 0.0, None))
        return backend.submit(
            spec, None, cancel, job=job, on_upload=_bytes_as_progress(progress, job)
        )

    def poll(self, job: JobRecord) -> JobRecord:
        with self.context.job_lock(job.id):
            fresh = self._fresh(job)
            return self.context.backend_for_job(fresh).poll(fresh)

    def cancel(self, job: JobRecord) -> JobRecord:
        with self.context.job_lock(job.id):
            fresh = self._fresh(job)
            return self.context.backend_for_job(fresh).cancel(fresh)

    def resume(
        self,
        job: JobRecord,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
        *,
        restart: bool = False,
        overwrite: bool = False,
    ) -> JobRecord:
        fresh = self._fresh(job)
        return self.context.backend_for_job(fresh).resume(
            fresh,
            None,
            cancel,
            restart=restart,
            overwrite=overwrite,
            on_upload=_bytes_as_progress(progress, fresh),
        )

    def fetch_output(
        self,
        job: JobRecord,
        on_bytes: Callable[[int, int], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> Path:
        fresh = self._fresh(job)
        return self.context.backend_for_job(fresh).fetch_output(fresh, on_bytes, cancel)

    def remove(self, job: JobRecord) -> None:
        self.context.backend_for_job(job).remove(job)

    # The panel asks these two on the GUI thread while drawing; they read the record only,
    # so a backend without a session answers them (opening one may prompt for the keychain).
    def needs_fetch(self, job: JobRecord) -> bool:
        return self._record_reader().needs_fetch(job)

    def work_lost_on_remove(self, job: JobRecord) -> str:
        return self._record_reader().work_lost_on_remove(job)

    def _record_reader(self) -> AwsBackend:
        if self._reader is None:
            from vsr_desktop.backends.aws.backend import AwsBackend

            self._reader = AwsBackend(self.context.store, session=None)
        return self._reader
