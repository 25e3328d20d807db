"""Downloads against a real HTTP server on 127.0.0.1 with Range support."""

from __future__ import annotations

import hashlib
import http.server
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from vsr_desktop.core.errors import CancelledError, ModelError
from vsr_desktop.core.models import ModelSpec, cached_model_path, download_model

PAYLOAD = os.urandom(300_000)
#: Run in a child process: take a download's lock file and keep it until killed.
HOLD_LOCK = (
    "import sys, time; from filelock import FileLock; lock = FileLock(sys.argv[1]);"
    " lock.acquire(); print('held', flush=True); time.sleep(60)"
)


@dataclass
class Served:
    """One request as the server saw it."""

    range_header: str | None
    status: int
    bytes_sent: int


@dataclass
class FileServer:
    """Serves ``payload`` at /model.pth; can ignore Range or drop the connection early."""

    payload: bytes = PAYLOAD
    honor_range: bool = True
    cut_after: int | None = None  # send only this many body bytes, then close
    slow_s: float = 0.0  # pause this long between 64 KiB pieces of the body
    status_override: int | None = None
    log: list[Served] = field(default_factory=list)
    url: str = ""


def _handler(state: FileServer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if state.status_override is not None:
                self.send_error(state.status_override)
                state.log.append(Served(self.headers.get("Range"), state.status_override, 0))
                return
            payload = state.payload
            range_header = self.headers.get("Range")
            start = 0
            if range_header and state.honor_range:
                start = int(range_header.removeprefix("bytes=").split("-")[0])
            if start >= len(payload) and start > 0:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(payload)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                state.log.append(Served(range_header, 416, 0))
                return
            body = payload[start:]
            status = 206 if start else 200
            self.send_response(status)
            if start:
                self.send_header(
                    "Content-Range", f"bytes {start}-{len(payload) - 1}/{len(payload)}"
                )
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            if state.cut_after is not None:
                body = body[: state.cut_after]
                self.close_connection = True
            for offset in range(0, len(body), 1 << 16):
                if state.slow_s and offset:
                    time.sleep(state.slow_s)
                self.wfile.write(body[offset : offset + (1 << 16)])
                self.wfile.flush()
            state.log.append(Served(range_header, status, len(body)))

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def server() -> Iterator[FileServer]:
    state = FileServer()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/model.pth"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    """A model cache directory of its own (conftest puts user dirs beside it)."""
    path = tmp_path / "model-cache"
    path.mkdir()
    return path


def leftovers(cache: Path) -> list[str]:
    """What a failed download left in the cache, besides its (empty) lock file."""
    return sorted(p.name for p in cache.iterdir() if not p.name.endswith(".lock"))


def make_spec(
    payload: bytes = PAYLOAD, *, size: int | None = None, sha256: str | None = "auto"
) -> ModelSpec:
    return ModelSpec(
        name="test-model",
        arch="SRVGGNetCompact",
        scale=4,
        url="https://example.invalid/model.pth",
        filename="test-model.pth",
        size_bytes=len(payload) if size is None else size,
        sha256=hashlib.sha256(payload).hexdigest() if sha256 == "auto" else sha256,
        description="test",
    )


def test_download_reports_progress_and_installs_atomically(server: FileServer, cache: Path) -> None:
    calls: list[tuple[int, int]] = []
    spec = make_spec()
    path = download_model(spec, cache, progress=lambda d, t: calls.append((d, t)), url=server.url)
    assert path == cache / "test-model.pth"
    assert path.read_bytes() == PAYLOAD
    assert not (cache / "test-model.pth.part").exists()
    assert calls[0] == (0, len(PAYLOAD)) and calls[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert len(calls) > 3
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert cached_model_path(spec, cache) == path
    # Already there: no second request.
    assert download_model(spec, cache, url=server.url) == path
    assert len(server.log) == 1


def test_interrupted_download_resumes_from_the_part_file(server: FileServer, cache: Path) -> None:
    spec = make_spec()
    part = cache / "test-model.pth.part"
    server.cut_after = 100_000
    with pytest.raises(ModelError) as info:
        download_model(spec, cache, url=server.url)
    assert "interrupted" in info.value.message and "resume" in info.value.hint
    assert part.stat().st_size == 100_000
    assert part.read_bytes() == PAYLOAD[:100_000]
    assert not (cache / "test-model.pth").exists()

    server.cut_after = None
    calls: list[tuple[int, int]] = []
    path = download_model(spec, cache, progress=lambda d, t: calls.append((d, t)), url=server.url)
    assert path.read_bytes() == PAYLOAD
    assert server.log[-1] == Served("bytes=100000-", 206, len(PAYLOAD) - 100_000)
    assert calls[0] == (100_000, len(PAYLOAD))
    assert sum(s.bytes_sent for s in server.log) == len(PAYLOAD)
    assert not part.exists()


def test_server_ignoring_range_restarts_from_zero(server: FileServer, cache: Path) -> None:
    server.honor_range = False
    part = cache / "test-model.pth.part"
    part.write_bytes(b"\xff" * 50_000)  # wrong bytes: appending would corrupt the file
    path = download_model(make_spec(), cache, url=server.url)
    assert path.read_bytes() == PAYLOAD
    assert server.log == [Served("bytes=50000-", 200, len(PAYLOAD))]


def test_sha256_mismatch_leaves_nothing_behind(server: FileServer, cache: Path) -> None:
    spec = make_spec(sha256="0" * 64)
    with pytest.raises(ModelError) as info:
        download_model(spec, cache, url=server.url)
    assert "sha256" in info.value.message
    assert info.value.hint
    assert leftovers(cache) == []


@pytest.mark.parametrize("size_delta", [+10, -10])
def test_size_mismatch_leaves_nothing_behind(
    server: FileServer, cache: Path, size_delta: int
) -> None:
    spec = make_spec(size=len(PAYLOAD) + size_delta)
    with pytest.raises(ModelError) as info:
        download_model(spec, cache, url=server.url)
    assert "bytes" in info.value.message
    assert leftovers(cache) == []


def test_cancel_keeps_the_part_for_a_later_resume(server: FileServer, cache: Path) -> None:
    cancel = threading.Event()

    def progress(done: int, total: int) -> None:
        if done >= 64 * 1024:
            cancel.set()

    spec = make_spec()
    with pytest.raises(CancelledError):
        download_model(spec, cache, progress=progress, cancel=cancel, url=server.url)
    part = cache / "test-model.pth.part"
    kept = part.stat().st_size
    assert 0 < kept < len(PAYLOAD)
    assert not (cache / "test-model.pth").exists()
    assert download_model(spec, cache, url=server.url).read_bytes() == PAYLOAD
    assert server.log[-1].range_header == f"bytes={kept}-"


def test_two_downloads_of_one_model_take_turns(server: FileServer, cache: Path) -> None:
    """A second downloader (say the app while `vsr` runs) waits for the first and reuses its
    file: one request in all, and never two writers appending to one .part."""
    server.slow_s = 0.05  # about 0.25 s per download: long enough to overlap
    spec = make_spec()
    results: list[Path | BaseException] = []

    def download() -> None:
        try:
            results.append(download_model(spec, cache, url=server.url))
        except BaseException as exc:  # reported by the assertion below
            results.append(exc)

    threads = [threading.Thread(target=download) for _ in range(2)]
    for thread in threads:
        thread.start()
        time.sleep(0.05)
    for thread in threads:
        thread.join(timeout=30)
    assert results == [cache / "test-model.pth"] * 2
    assert (cache / "test-model.pth").read_bytes() == PAYLOAD
    assert server.log == [Served(None, 200, len(PAYLOAD))]


def test_cancel_while_waiting_for_another_download(server: FileServer, cache: Path) -> None:
    spec = make_spec()
    cancel = threading.Event()
    holder = subprocess.Popen(  # another process downloading the same model
        [sys.executable, "-c", HOLD_LOCK, str(cache / "test-model.pth.lock")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        timer = threading.Timer(0.3, cancel.set)
        timer.start()
        started = time.monotonic()
        with pytest.raises(CancelledError):
            download_model(spec, cache, cancel=cancel, url=server.url)
        timer.join()
        assert 0.25 < time.monotonic() - started < 5
    finally:
        holder.kill()
        holder.wait(timeout=10)
    assert server.log == []
    assert leftovers(cache) == []
    # Once the other one has gone, a download goes ahead.
    assert download_model(spec, cache, url=server.url).read_bytes() == PAYLOAD


def test_trust_on_first_use_when_no_sha256_is_pinned(server: FileServer, cache: Path) -> None:
    spec = make_spec(sha256=None)
    path = download_model(spec, cache, url=server.url)
    record = cache / "test-model.pth.sha256"
    assert record.read_text().split()[0] == hashlib.sha256(PAYLOAD).hexdigest()
    # Upstream silently swaps the file (same size): the recorded digest catches it.
    path.unlink()
    server.payload = os.urandom(len(PAYLOAD))
    with pytest.raises(ModelError, match="sha256"):
        download_model(spec, cache, url=server.url)
    assert not path.exists()


def test_http_error_is_a_model_error(server: FileServer, cache: Path) -> None:
    server.status_override = 404
    with pytest.raises(ModelError, match="404"):
        download_model(make_spec(), cache, url=server.url)
    assert not (cache / "test-model.pth").exists()


def test_unreachable_server_is_a_model_error(cache: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ModelError) as info:
        download_model(make_spec(), cache, url=f"http://127.0.0.1:{port}/model.pth")
    assert "connection" in info.value.hint


def test_cached_model_path_checks_presence_and_size(cache: Path) -> None:
    spec = make_spec()
    assert cached_model_path(spec, cache) is None
    (cache / spec.filename).write_bytes(PAYLOAD[:10])
    assert cached_model_path(spec, cache) is None
    (cache / spec.filename).write_bytes(PAYLOAD)
    assert cached_model_path(spec, cache) == cache / spec.filename
