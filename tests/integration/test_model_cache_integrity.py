"""A cached model is used only when its sha256 is right, checked once per change of the file.

Real files in a real cache folder (the user cache of the test's isolated home), the real
`vsr` command; the registry entry is pinned to a file the test writes where one is needed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.unit.test_models_loading import compact_state
from vsr_desktop.core.errors import ModelError
from vsr_desktop.core.models import (
    DEFAULT_MODEL_NAME,
    bundled_default_model_path,
    default_cache_dir,
    registry,
    resolve_model,
    verified_cached_path,
)
from vsr_desktop.core.models.cache_integrity import RECORD_NAME


def _same_size_garbage(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))


def test_a_tampered_default_model_is_never_used_the_bundled_one_is(tmp_path: Path) -> None:
    spec = registry.MODEL_REGISTRY[DEFAULT_MODEL_NAME]
    _same_size_garbage(tmp_path / spec.filename, spec.size_bytes)
    model = resolve_model(DEFAULT_MODEL_NAME, cache_dir=tmp_path)
    assert model.source == bundled_default_model_path()


def test_a_tampered_model_of_the_official_size_is_refused_with_a_way_back(tmp_path: Path) -> None:
    spec = registry.MODEL_REGISTRY["realesr-general-x4v3"]
    _same_size_garbage(tmp_path / spec.filename, spec.size_bytes)
    with pytest.raises(ModelError, match="failed its sha256 check") as caught:
        resolve_model(spec.name, cache_dir=tmp_path)
    assert "vsr models download realesr-general-x4v3" in caught.value.hint


def test_the_cli_refuses_a_tampered_cache_in_one_line(tmp_path: Path, clip_factory: object) -> None:
    spec = registry.MODEL_REGISTRY["realesr-general-x4v3"]
    _same_size_garbage(default_cache_dir() / spec.filename, spec.size_bytes)
    clip = clip_factory()  # type: ignore[operator]
    run = subprocess.run(
        [sys.executable, "-m", "vsr_desktop.cli", "upscale", str(clip), "-o",
         str(tmp_path / "out.mp4"), "--model", spec.name],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 4, run.stderr
    assert "Traceback" not in run.stderr
    assert "sha256" in run.stderr and f"vsr models download {spec.name}" in run.stderr


def _pinned_cached_model(monkeypatch: pytest.MonkeyPatch, cache: Path, name: str) -> Path:
    """A real model file in the cache, with the registry pinned to its size and digest."""
    spec = registry.MODEL_REGISTRY[name]
    path = cache / spec.filename
    cache.mkdir(parents=True, exist_ok=True)
    torch.save({"params": compact_state()}, path)
    data = path.read_bytes()
    pinned = dataclasses.replace(
        spec, size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest()
    )
    monkeypatch.setitem(registry.MODEL_REGISTRY, name, pinned)
    return path


def test_touch_is_accepted_after_a_rehash_and_a_same_size_edit_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = "realesr-general-x4v3"
    path = _pinned_cached_model(monkeypatch, tmp_path, name)
    assert resolve_model(name, cache_dir=tmp_path).source == path
    record_file = tmp_path / RECORD_NAME
    assert os.name != "posix" or stat.S_IMODE(record_file.stat().st_mode) == 0o600
    first = json.loads(record_file.read_text())[path.name]
    # touch: same bytes, new mtime → hashed again, accepted, the record follows.
    later = time.time_ns() + 5_000_000_000
    os.utime(path, ns=(later, later))
    assert resolve_model(name, cache_dir=tmp_path).source == path
    second = json.loads(record_file.read_text())[path.name]
    assert second["mtime_ns"] == later != first["mtime_ns"]
    assert second["sha256"] == first["sha256"]
    # One byte changed, same size, and the mtime set back as it was: still caught (ctime).
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(later, later))
    with pytest.raises(ModelError, match="sha256"):
        resolve_model(name, cache_dir=tmp_path)


def test_the_hash_runs_once_per_change_not_per_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """64 MB (about RealESRGAN_x4plus's size): hashed on first use and after a touch only."""
    spec = registry.MODEL_REGISTRY["RealESRGAN_x4plus"]
    path = tmp_path / spec.filename
    data = os.urandom(64 << 20)
    path.write_bytes(data)
    pinned = dataclasses.replace(
        spec, size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest()
    )

    def timed() -> float:
        started = time.perf_counter()
        assert verified_cached_path(pinned, tmp_path) == path
        return time.perf_counter() - started

    first = timed()
    again = [timed() for _ in range(5)]
    assert max(again) < first / 5, (first, again)
    os.utime(path)
    after_touch = timed()
    assert after_touch > max(again) * 3, (after_touch, again)
    assert timed() < after_touch / 5


def test_download_replaces_a_tampered_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`vsr models download NAME` (the hint) fetches it again over the bad copy."""
    import functools
    import http.server
    import threading

    from vsr_desktop.core.models import download_model

    served = tmp_path / "served"
    good = _pinned_cached_model(monkeypatch, served, "realesr-general-x4v3")
    spec = registry.MODEL_REGISTRY["realesr-general-x4v3"]
    cache = tmp_path / "cache"
    _same_size_garbage(cache / spec.filename, spec.size_bytes)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/{good.name}"
        path = download_model(spec, cache_dir=cache, url=url)
    finally:
        server.shutdown()
        server.server_close()
    assert path.read_bytes() == good.read_bytes()
    assert verified_cached_path(spec, cache) == path
