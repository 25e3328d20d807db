"""Sessions and AWS backends for the app, built from the saved cloud settings (no Qt).

Why a cache per thread: the jobs poller asks for a backend for every cloud row on every
poll, and opening a boto3 session (reading profiles, the keychain) each time would be slow;
but one boto3 Session must not make clients from two threads at once, so every thread
(poller, upload, download) gets its own session and backend, kept while the choices hold.
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
from typing import TYPE_CHECKING, Any

from vsr_desktop.core.jobs import JobRecord, JobStore
from vsr_desktop.core.settings import AppSettings

if TYPE_CHECKING:
    from vsr_desktop.backends.aws.backend import AwsBackend
    from vsr_desktop.backends.aws.session import CloudCredentials
    from vsr_desktop.backends.aws.stack import StackInfo

CLOUD_FIELDS = ("cloud_region", "cloud_profile", "cloud_keychain_account", "cloud_stack_name",
                "cloud_auto_download")
_MAX_CACHED = 32


def with_cloud_fields(target: AppSettings, source: AppSettings) -> AppSettings:
    """`target` with the cloud choices of `source` (other panels keep stale copies of them)."""
    return replace(target, **{name: getattr(source, name) for name in CLOUD_FIELDS})


def credentials_from(settings: AppSettings, region: str | None = None) -> CloudCredentials:
    """The credentials the settings name; `region` overrides (a job's own region)."""
    from vsr_desktop.backends.aws.session import CloudCredentials

    return CloudCredentials(region=region if region is not None else settings.cloud_region,
                            profile=settings.cloud_profile or None,
                            keychain_account=None if settings.cloud_profile
                            else settings.cloud_keychain_account or None)


class CloudContext:
    """Makes AwsBackends for the current settings; `stack` pins the stack (tests, scripts)."""

    def __init__(self, settings: Callable[[], AppSettings], store: JobStore,
                 stack: StackInfo | None = None, part_size: int | None = None) -> None:
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
        key = (threading.get_ident(), creds, name)
        with self._lock:
            cached = self._backends.get(key)
        if cached is not None:
            return cached
        from vsr_desktop.backends.aws.session import open_session

        stack = self.stack if self.stack is not None and self.stack.name == name else None
        backend = AwsBackend(self.store, open_session(creds), stack_name=name,
                             part_size=self.part_size, stack=stack)
        with self._lock:
            if len(self._backends) >= _MAX_CACHED:
                self._backends.clear()  # threads come and go; idents get reused
            self._backends[key] = backend
        return backend

    def backend_for_job(self, job: JobRecord) -> AwsBackend:
        """The backend for the account, region and stack the job was sent to."""
        state = job.settings.get("aws", {})
        state = state if isinstance(state, dict) else {}
        return self.backend(region=str(state.get("region") or "") or None,
                            stack_name=str(state.get("stack") or "") or None)

    @contextmanager
    def job_lock(self, job_id: str) -> Iterator[None]:
        """Held while polling or cancelling one job (see the module's docstring)."""
        with self._lock:
            lock = self._job_locks.setdefault(job_id, threading.Lock())
        with lock:
            yield

    def poll_target_for(self, job: JobRecord) -> _LockedPoll:
        """What the jobs poller calls `.poll(job)` on: the job's backend, under its lock."""
        return _LockedPoll(self, self.backend_for_job(job))

    def forget(self) -> None:
        """Drop cached sessions (after the user changed credentials or signed in again)."""
        with self._lock:
            self._backends.clear()


class _LockedPoll:
    """Polls a fresh copy of the row under the job's lock (never a stale snapshot)."""

    def __init__(self, context: CloudContext, backend: AwsBackend) -> None:
        self._context = context
        self._backend = backend

    def poll(self, job: JobRecord) -> JobRecord:
        with self._context.job_lock(job.id):
            return self._backend.poll(self._context.store.get(job.id))
