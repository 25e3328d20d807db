"""Backend name → backend: how `vsr jobs` and the jobs panel reach any job's backend.

A job's record names its backend and its spec's `target` says where it runs (a Slurm login,
an AWS profile and region), so a backend can be rebuilt for any stored job without asking
the user again. The GUI registers its own AWS factory (its signed-in session) over the
default one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from vsr_desktop.backends.protocol import Backend
from vsr_desktop.core.errors import JobError
from vsr_desktop.core.jobs import JobRecord, JobStore

#: Builds the backend for one job (None: for new jobs, from the app's current settings).
BackendFactory = Callable[[JobStore, JobRecord | None], Backend]


class BackendRegistry:
    """Factories by backend name; one registry per store."""

    def __init__(self, store: JobStore) -> None:
        self.store = store
        self._factories: dict[str, BackendFactory] = {}
        self._cache: dict[tuple[str, str], Backend] = {}

    def register(self, name: str, factory: BackendFactory) -> None:
        self._factories[name] = factory
        self._cache = {k: v for k, v in self._cache.items() if k[0] != name}

    def names(self) -> list[str]:
        return sorted(self._factories)

    def for_name(self, name: str) -> Backend:
        """The backend for new jobs of this kind (the app's current settings)."""
        return self._build(name, None)

    def for_job(self, job: JobRecord) -> Backend:
        """The backend that runs `job`, reached the way the job was sent."""
        return self._build(job.backend, job)

    def _build(self, name: str, job: JobRecord | None) -> Backend:
        factory = self._factories.get(name)
        if factory is None:
            raise JobError(
                f"no backend named {name!r} in this version of vsr",
                f"known: {', '.join(self.names())}",
            )
        key = (name, _target_key(job))
        if key not in self._cache:
            self._cache[key] = factory(self.store, job)
        return self._cache[key]


def _target_key(job: JobRecord | None) -> str:
    """Jobs sent to the same place share one backend (and its open connections)."""
    if job is None:
        return ""
    import json

    target = job.spec.target if job.spec is not None else {}
    where = str(Path(job.work_dir).parent) if job.work_dir else ""
    return json.dumps([target, where], sort_keys=True, default=str)


def _local(store: JobStore, job: JobRecord | None) -> Backend:
    from vsr_desktop.backends.local import LocalBackend

    work_root = Path(job.work_dir).parent if job is not None and job.work_dir else None
    return LocalBackend(store, work_root=work_root)


def _slurm(store: JobStore, job: JobRecord | None) -> Backend:
    from vsr_desktop.backends.slurm import SlurmBackend

    return SlurmBackend.for_job(store, job)


def _aws(store: JobStore, job: JobRecord | None) -> Backend:
    from vsr_desktop.backends.aws.backend import AwsBackend

    return AwsBackend.for_job(store, job)


def _aws_preview(store: JobStore, job: JobRecord | None) -> Backend:
    from vsr_desktop.backends.aws.preview_endpoint import PreviewEndpointBackend

    return PreviewEndpointBackend.for_job(store, job)


def default_registry(store: JobStore | None = None) -> BackendRegistry:
    """Local, Slurm and AWS (jobs and the preview endpoint's row), each built from the
    job's own target."""
    registry = BackendRegistry(store if store is not None else JobStore())
    registry.register("local", _local)
    registry.register("slurm", _slurm)
    registry.register("aws", _aws)
    registry.register("aws-preview", _aws_preview)
    return registry
