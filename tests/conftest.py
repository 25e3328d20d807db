"""Shared fixtures: real encoded clips made from a real photo, isolated user dirs, thread check."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from tests.helpers.aws_fixture import aws, moto_server  # noqa: F401 - moto server fixtures
from tests.helpers.memory_keyring import memory_keyring  # noqa: F401 - in-memory keychain
from tests.helpers.preview_pane import pane  # noqa: F401 - a shown PreviewPane
from tests.helpers.slurm_fixture import slurm_cluster  # noqa: F401 - the session fixture
from tests.helpers.ssh_fixture import ssh_server  # noqa: F401 - a private sshd
from vsr_desktop.core.media.synth import ClipSpec, make_clip

ClipFactory = Callable[..., Path]


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    """scikit-image's astronaut: a real, public-domain photograph."""
    from skimage import data

    return data.astronaut()


@pytest.fixture(scope="session")
def clip_factory(tmp_path_factory: pytest.TempPathFactory, photo: np.ndarray) -> ClipFactory:
    """Make (once per session) a real encoded clip for a spec; the suffix picks the container."""
    cache: dict[tuple[ClipSpec, str], Path] = {}
    folder = tmp_path_factory.mktemp("clips")

    def make(suffix: str = ".mp4", **changes: object) -> Path:
        spec = replace(ClipSpec(width=96, height=64, frames=24, fps=24, gop=8), **changes)
        key = (spec, suffix)
        if key not in cache:
            path = folder / f"clip{len(cache)}{suffix}"
            cache[key] = make_clip(path, photo, spec)
        return cache[key]

    return make


@pytest.fixture(autouse=True)
def isolated_user_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own data/cache/config dirs: the user's real ones are never touched."""
    home = tmp_path / "userdirs"
    for var, sub in (
        ("XDG_DATA_HOME", "data"),
        ("XDG_CACHE_HOME", "cache"),
        ("XDG_CONFIG_HOME", "config"),
        ("XDG_STATE_HOME", "state"),
    ):
        (home / sub).mkdir(parents=True)
        monkeypatch.setenv(var, str(home / sub))
    return home


@pytest.fixture(autouse=True)
def gui_thread_gc(request: pytest.FixtureRequest) -> Iterator[None]:
    """In Qt tests, cyclic garbage is collected on the GUI thread only, as in the app.

    Otherwise a worker thread (a cloud task in boto3, say) could collect a cycle holding a
    Qt object left by an earlier test and destroy it off its thread: a segfault.
    """
    if "qtbot" not in request.fixturenames:
        yield
        return
    from vsr_desktop.gui.gui_thread_gc import GuiThreadGarbageCollector

    request.getfixturevalue("qapp")
    collector = GuiThreadGarbageCollector()
    yield
    collector.stop()  # the test's leftovers are collected here, on the GUI thread


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Fail any test that leaves one of its threads running."""
    before = set(threading.enumerate())
    yield
    leaked = []
    for thread in set(threading.enumerate()) - before:
        if isinstance(thread, threading._DummyThread):  # type: ignore[attr-defined]
            # A QThread that ran Python code: Python records it once and never learns it
            # ended. QThreads are stopped and waited for by each object's shutdown(); Qt
            # itself aborts on one destroyed while running.
            continue
        if "process_request_thread" in thread.name:
            # A connection thread of the session's moto server: it lives as long as the
            # client's keep-alive connection and belongs to the server, not to the test.
            continue
        thread.join(timeout=5)
        if thread.is_alive():
            leaked.append(thread.name)
    assert not leaked, f"threads left running: {leaked}"
