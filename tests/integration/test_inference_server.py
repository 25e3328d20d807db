"""The preview inference server over real HTTP on localhost, with the real bundled model.

Each reply is compared with what the local preview's engine makes of the same crop (same
model, CPU, fp32): the comparison is exact, pixel for pixel, because the server runs the very
same Engine code on the same machine. Regions stay tiny (32×24) to keep the suite fast.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vsr_desktop.core import remote_preview as wire
from vsr_desktop.core.errors import InputError
from vsr_desktop.core.upscaler import FrameUpscaler
from vsr_desktop.worker.inference_server import InferenceServer, ServerOptions

MODEL = "realesr-animevideov3"
MAX_PIXELS = 64 * 64  # small, so "region too large" is cheap to provoke


def local_engine(outscale: float | None = None) -> FrameUpscaler:
    """The engine `vsr preview --device cpu --precision fp32` would build."""
    from vsr_desktop.core.job_spec import EngineSettings
    from vsr_desktop.worker.job_setup import build_engine

    return build_engine(
        EngineSettings(model=MODEL, outscale=outscale, device="cpu", precision="fp32")
    )


@pytest.fixture(scope="module")
def server() -> Iterator[InferenceServer]:
    options = ServerOptions(device="cpu", precision="fp32", max_pixels=MAX_PIXELS)
    with InferenceServer("127.0.0.1", 0, options) as running:
        yield running


@pytest.fixture(scope="module")
def crop() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[100:124, 180:212])  # 32×24, the face


@pytest.fixture(scope="module")
def expected(crop: np.ndarray) -> np.ndarray:
    return local_engine().upscale(crop[None])[0]


def post(
    server: InferenceServer, body: bytes, headers: dict[str, str], query: str = ""
) -> tuple[int, dict[str, str], bytes]:
    url = f"{server.url}/invocations" + (f"?{query}" if query else "")
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            return reply.status, dict(reply.headers), reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def error_of(body: bytes) -> dict[str, Any]:
    data = json.loads(body)
    assert set(data) == {"error", "hint"} and data["error"] and data["hint"], data
    return dict(data)


def test_ping_lists_the_bundled_model(server: InferenceServer) -> None:
    with urllib.request.urlopen(f"{server.url}/ping", timeout=10) as reply:
        assert reply.status == 200
        assert reply.headers["Content-Type"] == "application/json"
        data = json.loads(reply.read())
    assert data["status"] == "ok"
    assert MODEL in data["models"]


def test_png_region_comes_back_upscaled_like_the_local_preview(
    server: InferenceServer, crop: np.ndarray, expected: np.ndarray
) -> None:
    status, headers, body = post(
        server, wire.encode_png(crop), {"Content-Type": "image/png"}, f"model={MODEL}"
    )
    assert status == 200, body
    assert headers["Content-Type"] == "image/png"
    out = wire.decode_png(body, max_pixels=1 << 30)
    assert out.shape == (96, 128, 3)
    assert np.array_equal(out, expected)  # exact: PNG is lossless, same engine, same CPU
    assert float(headers["X-Inference-Ms"]) > 0


def test_raw_rgb_region(server: InferenceServer, crop: np.ndarray, expected: np.ndarray) -> None:
    body, headers = wire.encode_request(crop, raw=True)
    status, reply_headers, reply = post(server, body, headers)  # default model
    assert status == 200, reply
    assert reply_headers["Content-Type"] == "application/octet-stream"
    assert (reply_headers["X-Width"], reply_headers["X-Height"]) == ("128", "96")
    assert np.array_equal(np.frombuffer(reply, np.uint8).reshape(96, 128, 3), expected)


def test_settings_in_sagemaker_custom_attributes(server: InferenceServer, crop: np.ndarray) -> None:
    settings = wire.PreviewSettings(MODEL, outscale=2)
    headers = {
        "Content-Type": "image/png",
        "X-Amzn-SageMaker-Custom-Attributes": settings.to_attributes(),
    }
    status, _, body = post(server, wire.encode_png(crop), headers)
    assert status == 200, body
    out = wire.decode_png(body, max_pixels=1 << 30)
    assert out.shape == (48, 64, 3)
    assert np.array_equal(out, local_engine(outscale=2).upscale(crop[None])[0])


def test_http_client_helper_matches_local_engine(
    server: InferenceServer, crop: np.ndarray, expected: np.ndarray
) -> None:
    for raw in (False, True):
        remote = wire.HttpUpscaler(server.url, wire.PreviewSettings(MODEL), raw=raw)
        assert remote.output_size(32, 24) == (128, 96)
        assert np.array_equal(remote.upscale(crop[None])[0], expected)
    with pytest.raises(InputError) as caught:
        wire.HttpUpscaler(server.url, wire.PreviewSettings("no-such-model")).upscale(crop[None])
    assert "no-such-model" in caught.value.message and MODEL in caught.value.hint


@pytest.mark.parametrize(
    ("body", "headers", "query", "status", "words"),
    [
        (b"not a png at all", {"Content-Type": "image/png"}, "", 400, "PNG"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, {"Content-Type": "image/png"}, "", 400, "PNG"),
        (
            b"\0" * 100,
            {"Content-Type": "application/octet-stream", "X-Width": "32", "X-Height": "24"},
            "",
            400,
            "2304",
        ),
        (b"\0" * 12, {"Content-Type": "application/octet-stream"}, "", 400, "X-Width"),
        (
            b"\0" * 12,
            {"Content-Type": "application/octet-stream", "X-Width": "two", "X-Height": "2"},
            "",
            400,
            "X-Width",
        ),
        (
            b"\0" * 3,
            {"Content-Type": "application/octet-stream", "X-Width": "65", "X-Height": "64"},
            "",
            400,
            "larger than",
        ),
        (b"{}", {"Content-Type": "application/json"}, "", 415, "Content-Type"),
        (
            b"\0" * 3,
            {"Content-Type": "application/octet-stream", "X-Width": "1", "X-Height": "1"},
            "outscale=lots",
            400,
            "not a number",
        ),
        (
            b"\0" * 3,
            {"Content-Type": "application/octet-stream", "X-Width": "1", "X-Height": "1"},
            "outscale=100",
            400,
            "out of range",
        ),
        (
            b"\0" * 3,
            {"Content-Type": "application/octet-stream", "X-Width": "1", "X-Height": "1"},
            "scale=2",
            400,
            "unknown setting",
        ),
        (
            b"\0" * 3,
            {"Content-Type": "application/octet-stream", "X-Width": "1", "X-Height": "1"},
            "model=../../etc/passwd",
            400,
            "unknown model",
        ),
        (
            b"\0" * 3,
            {"Content-Type": "application/octet-stream", "X-Width": "1", "X-Height": "1"},
            f"model={MODEL}&denoise=0.5",
            400,
            "Denoise",
        ),
    ],
)
def test_bad_requests_are_refused_with_a_hint(
    server: InferenceServer,
    body: bytes,
    headers: dict[str, str],
    query: str,
    status: int,
    words: str,
) -> None:
    got, _, reply = post(server, body, headers, query)
    assert got == status, reply
    assert words in error_of(reply)["error"]


def test_a_big_png_is_refused_before_its_pixels_are_decoded(server: InferenceServer) -> None:
    # 65×64 pixels of one colour: a small file claiming more pixels than allowed.
    big = wire.encode_png(np.zeros((64, 65, 3), np.uint8), compress_level=9)
    status, _, reply = post(server, big, {"Content-Type": "image/png"})
    assert status == 400 and "larger than 4096 pixels" in error_of(reply)["error"]


def test_unknown_model_names_the_models_there_are(
    server: InferenceServer, crop: np.ndarray
) -> None:
    headers = {
        "Content-Type": "image/png",
        "X-Amzn-SageMaker-Custom-Attributes": "model=RealESRGAN_x9000",
    }
    status, _, body = post(server, wire.encode_png(crop), headers)
    assert status == 400
    error = error_of(body)
    assert "RealESRGAN_x9000" in error["error"] and MODEL in error["hint"]


def test_oversized_body_gets_413_without_being_read(server: InferenceServer) -> None:
    """Claim 17 MiB, send 64 KiB and wait: a server reading the whole body would hang."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.putrequest("POST", "/invocations")
        conn.putheader("Content-Type", "application/octet-stream")
        conn.putheader("Content-Length", str(17 * 1024 * 1024))
        conn.endheaders(b"\0" * 65536)
        started = time.monotonic()
        reply = conn.getresponse()
        assert reply.status == 413
        assert "limit" in error_of(reply.read())["error"]
        assert time.monotonic() - started < 5
    finally:
        conn.close()
    with urllib.request.urlopen(f"{server.url}/ping", timeout=10) as ping:
        assert ping.status == 200


@pytest.mark.parametrize(
    ("method", "path", "status", "allow"),
    [
        ("GET", "/nowhere", 404, None),
        ("POST", "/invocations/extra", 404, None),
        ("GET", "/invocations", 405, "POST"),
        ("POST", "/ping", 405, "GET"),
        ("DELETE", "/ping", 405, "GET"),
    ],
)
def test_wrong_path_404_wrong_method_405(
    server: InferenceServer, method: str, path: str, status: int, allow: str | None
) -> None:
    request = urllib.request.Request(
        f"{server.url}{path}", method=method, data=b"" if method == "POST" else None
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    assert caught.value.code == status
    assert caught.value.headers.get("Allow") == allow
    error_of(caught.value.read())


def test_keep_alive_connection_serves_several_regions(
    server: InferenceServer, crop: np.ndarray, expected: np.ndarray
) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        for _ in range(2):
            conn.request(
                "POST", "/invocations", wire.encode_png(crop), {"Content-Type": "image/png"}
            )
            reply = conn.getresponse()
            assert reply.status == 200
            assert np.array_equal(wire.decode_png(reply.read(), 1 << 30), expected)
            assert reply.getheader("Connection") != "close"
    finally:
        conn.close()


def test_unexpected_failure_is_500_and_the_server_stays_up(
    server: InferenceServer, crop: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(settings: wire.PreviewSettings) -> FrameUpscaler:
        raise RuntimeError("the GPU caught fire")

    monkeypatch.setattr(server.cache, "build", broken)
    body, headers = wire.encode_request(crop, raw=True)
    status, _, reply = post(server, body, headers, "outscale=3")  # not cached: builds
    assert status == 500
    assert "the GPU caught fire" in error_of(reply)["error"]
    monkeypatch.undo()
    status, _, reply = post(server, body, headers, "outscale=3")
    assert status == 200 and len(reply) == 96 * 72 * 3


def test_stop_ends_idle_keep_alive_connections() -> None:
    running = InferenceServer("127.0.0.1", 0, ServerOptions(device="cpu")).start()
    conn = http.client.HTTPConnection("127.0.0.1", running.port, timeout=30)
    conn.request("GET", "/ping")
    assert conn.getresponse().read()  # the connection stays open, its thread waits
    started = time.monotonic()
    running.stop()
    assert time.monotonic() - started < 5
    conn.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_vsr_serve_command_answers_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = _free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vsr_desktop.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--device",
            "cpu",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=os.environ.copy(),
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as r:
                    assert json.loads(r.read())["status"] == "ok"
                    break
            except (urllib.error.URLError, ConnectionError):
                assert process.poll() is None, process.communicate()
                assert time.monotonic() < deadline, "vsr serve never answered /ping"
                time.sleep(0.2)
        process.terminate()
        assert process.wait(timeout=30) == 0, process.communicate()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        (["serve"], {}, "serve --host 0.0.0.0 --port 8080"),
        (
            ["serve", "--port", "9000"],
            {"SAGEMAKER_BIND_TO_PORT": "8081"},
            "serve --host 0.0.0.0 --port 8081 --port 9000",
        ),
        (["serve"], {"VSR_ALLOW_DOWNLOAD": "1"}, "serve --host 0.0.0.0 --port 8080 --download"),
        (["vsr", "worker", "split"], {}, "worker split"),
    ],
)
@pytest.mark.skipif("sys.platform == 'win32'", reason="POSIX sh entrypoint")
def test_container_entrypoint_turns_serve_into_a_public_server(
    tmp_path: Path, argv: list[str], env: dict[str, str], expected: str
) -> None:
    """SageMaker runs `IMAGE serve`: the entrypoint must listen on 0.0.0.0:8080."""
    fake = tmp_path / "bin" / "vsr"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\necho "$@"\n')
    fake.chmod(0o755)
    entrypoint = Path(__file__).parents[2] / "packaging" / "docker" / "entrypoint.sh"
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SAGEMAKER_BIND_TO_PORT", "VSR_ALLOW_DOWNLOAD")
    }
    result = subprocess.run(
        ["sh", str(entrypoint), *argv],
        capture_output=True,
        text=True,
        timeout=30,
        env={**clean, **env, "PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected
