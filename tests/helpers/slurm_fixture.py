"""Session fixture `slurm_cluster`: a real one-node Slurm on localhost for the Slurm backend.

Why a real one: sbatch arrays, afterok dependencies and scancel have behaviours (pending
reasons, array throttling, state names) a mock would only guess. The cluster comes from
scripts/slurm/local_cluster.py (outside the package, so it is loaded by path); it starts in
about a second and is stopped, with every job process, at the end of the session. Tests are
skipped, with the reason, only where Slurm cannot run (not root, binaries missing).

Use it from conftest.py: ``from tests.helpers.slurm_fixture import slurm_cluster  # noqa: F401``.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # for type checkers only: at run time it is loaded by path below
    from scripts.slurm.local_cluster import LocalSlurmCluster

_MODULE_PATH = Path(__file__).resolve().parents[2] / "scripts" / "slurm" / "local_cluster.py"
_MODULE_NAME = "vsr_local_slurm_cluster"


def _load_local_cluster() -> ModuleType:
    """Import scripts/slurm/local_cluster.py once, under a name of its own."""
    if _MODULE_NAME in sys.modules:
        return sys.modules[_MODULE_NAME]
    spec = importlib.util.spec_from_file_location(_MODULE_NAME, _MODULE_PATH)
    assert spec is not None and spec.loader is not None, _MODULE_PATH
    module = importlib.util.module_from_spec(spec)
    sys.modules[_MODULE_NAME] = module  # dataclasses look their module up while loading
    spec.loader.exec_module(module)
    return module


local_cluster = _load_local_cluster()
if not TYPE_CHECKING:
    LocalSlurmCluster = local_cluster.LocalSlurmCluster


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSlurmCluster]:
    """A started LocalSlurmCluster shared by the session; `cluster.env()` for subprocesses."""
    ok, reason = local_cluster.available()
    if not ok:
        pytest.skip(reason)
    cluster = local_cluster.LocalSlurmCluster(tmp_path_factory.mktemp("slurm"))
    with cluster:
        yield cluster
