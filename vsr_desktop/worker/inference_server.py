"""SageMaker's inference contract for the preview: GET /ping, POST /invocations on port 8080.

The worker image runs this when SageMaker starts it with ``serve``; the same server runs as a
plain process (``vsr serve``) so tests and a GPU box without SageMaker use the real thing.
A request carries one region of a frame (PNG or raw RGB24, see core/remote_preview.py) and the
reply is that region upscaled by the same Engine the local preview uses, so a cloud preview
looks exactly like a local one.

Why the stdlib server: one request at a time reaches the GPU anyway (a lock serializes
inference), so an async framework would add a dependency to the image and nothing else.
Connections are threads we track ourselves, so ``stop()`` ends them all and joins them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
import traceback
from collections import OrderedDict
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

from vsr_desktop.core import remote_preview as wire
from vsr_desktop.core.errors import InputError, ModelError, VsrError
from vsr_desktop.core.upscaler import FrameUpscaler

log = logging.getLogger(__name__)

DEFAULT_PORT = 8080
DEFAULT_MAX_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_PIXELS = wire.DEFAULT_MAX_PIXELS
_DRAIN_BYTES = 1024 * 1024  # read at most this much of a refused body, so the 413 is seen


class HttpError(Exception):
    """A reply with a status other than 200, carrying the JSON body's error and hint."""

    def __init__(self, status: int, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.status, self.message, self.hint = status, message, hint


@dataclass(frozen=True)
class ServerOptions:
    """How this server process runs inference; one device and precision per process."""

    max_bytes: int = DEFAULT_MAX_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    device: str = "auto"
    precision: str = "auto"
    tile: int = 0
    allow_download: bool = False
    cached_engines: int = 4


class EngineCache:
    """Engines built lazily, kept per (model, denoise, outscale, device, precision, tile).

    Loading a model takes seconds and a preview sends many regions with the same settings,
    so the first request pays and the rest do not. Bounded (LRU): each engine holds weights.
    """

    def __init__(self, options: ServerOptions) -> None:
        self.options = options
        self._engines: OrderedDict[tuple[Any, ...], FrameUpscaler] = OrderedDict()
        # One lock for loading and inference: the device runs one region at a time, and two
        # requests for a new model must not load it twice.
        self.lock = threading.Lock()

    def available_models(self) -> list[str]:
        """Registry names this server can serve now (all of them when it may download)."""
        from vsr_desktop.core.models import (
            DEFAULT_MODEL_NAME,
            MODEL_REGISTRY,
            bundled_default_model_path,
            cached_model_path,
        )

        if self.options.allow_download:
            return list(MODEL_REGISTRY)
        bundled = bundled_default_model_path().is_file()
        return [
            name
            for name, spec in MODEL_REGISTRY.items()
            if cached_model_path(spec) is not None or (bundled and name == DEFAULT_MODEL_NAME)
        ]

    def upscale(self, settings: wire.PreviewSettings, rgb: np.ndarray) -> np.ndarray:
        with self.lock:
            engine = self._engine(settings)
            return engine.upscale(rgb[None])[0]

    def _engine(self, settings: wire.PreviewSettings) -> FrameUpscaler:
        opts = self.options
        key = (
            settings.model,
            settings.denoise,
            settings.outscale,
            opts.device,
            opts.precision,
            opts.tile,
        )
        if key in self._engines:
            self._engines.move_to_end(key)
            return self._engines[key]
        engine = self.build(settings)
        self._engines[key] = engine
        while len(self._engines) > max(1, opts.cached_engines):
            self._engines.popitem(last=False)
        return engine

    def build(self, settings: wire.PreviewSettings) -> FrameUpscaler:
        """The engine the local preview would build: same loader, same Engine class."""
        from vsr_desktop.core.job_spec import EngineSettings
        from vsr_desktop.core.models import get_spec
        from vsr_desktop.worker.job_setup import build_engine

        try:
            spec = get_spec(settings.model)  # names only: a request never names a file
        except ModelError:
            raise HttpError(
                400,
                f"unknown model {settings.model!r}",
                "use one of: " + ", ".join(self.available_models()),
            ) from None
        t0 = time.perf_counter()
        engine = build_engine(
            EngineSettings(
                model=spec.name,
                outscale=settings.outscale,
                denoise_strength=settings.denoise,
                device=self.options.device,
                precision=self.options.precision,
                tile=self.options.tile,
                allow_download=self.options.allow_download,
            )
        )
        log.info("loaded %s in %.1f s", spec.name, time.perf_counter() - t0)
        return engine


class _Handler(BaseHTTPRequestHandler):
    """One connection. Keep-alive (HTTP/1.1) because SageMaker reuses its connections."""

    protocol_version = "HTTP/1.1"
    server: InferenceServer
    timeout = 60  # an idle keep-alive connection ends after this long

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_PUT(self) -> None:
        self._route("PUT")

    def do_DELETE(self) -> None:
        self._route("DELETE")

    def do_PATCH(self) -> None:
        self._route("PATCH")

    def do_HEAD(self) -> None:
        self._route("HEAD")

    def _route(self, method: str) -> None:
        self._body_read = False
        path = self.path.partition("?")[0]
        allowed = {"/ping": "GET", "/invocations": "POST"}.get(path)
        try:
            if allowed is None:
                raise HttpError(404, f"no such path {path}", "use GET /ping or POST /invocations")
            if method != allowed:
                raise HttpError(405, f"{method} is not allowed on {path}", f"use {allowed}")
            if path == "/ping":
                self._json(200, {"status": "ok", "models": self.server.cache.available_models()})
            else:
                self._invocations()
        except HttpError as exc:
            self._error(exc.status, exc.message, exc.hint, allow=allowed)
        except VsrError as exc:
            status = 400 if isinstance(exc, InputError | ModelError) else 500
            self._error(status, exc.message, exc.hint)
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception as exc:
            log.error("request failed:\n%s", traceback.format_exc())
            self._error(
                500,
                f"internal error: {type(exc).__name__}: {exc}",
                "retry; if it fails again, the server log has the traceback",
            )

    def _invocations(self) -> None:
        length = self._body_length()  # 411/413 first: nothing else matters for them
        query = self.path.partition("?")[2]
        settings = wire.PreviewSettings.parse(
            query, self.headers.get(wire.CUSTOM_ATTRIBUTES_HEADER)
        )
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type not in (wire.PNG_TYPE, wire.RAW_TYPE):
            raise HttpError(
                415,
                f"unsupported Content-Type {content_type or 'none'!r}",
                f"send {wire.PNG_TYPE} or {wire.RAW_TYPE} with X-Width/X-Height",
            )
        raw_size = self._raw_size() if content_type == wire.RAW_TYPE else None
        body = self._read_body(length)
        max_pixels = self.server.options.max_pixels
        if raw_size is None:
            rgb = wire.decode_png(body, max_pixels)
        else:
            wire.check_region_size(*raw_size, max_pixels)
            rgb = wire.decode_raw(body, *raw_size)
        t0 = time.perf_counter()
        out = self.server.cache.upscale(settings, rgb)
        infer_ms = (time.perf_counter() - t0) * 1000
        height, width = out.shape[:2]
        headers = {"X-Inference-Ms": f"{infer_ms:.1f}"}
        if raw_size is None:
            self._send(200, wire.PNG_TYPE, wire.encode_png(out), headers)
        else:
            headers.update({wire.WIDTH_HEADER: str(width), wire.HEIGHT_HEADER: str(height)})
            self._send(200, wire.RAW_TYPE, np.ascontiguousarray(out).tobytes(), headers)

    def _raw_size(self) -> tuple[int, int]:
        try:
            return int(self.headers[wire.WIDTH_HEADER]), int(self.headers[wire.HEIGHT_HEADER])
        except (TypeError, ValueError):
            raise HttpError(
                400,
                "raw RGB24 needs integer X-Width and X-Height headers",
                "send the region's width and height in pixels",
            ) from None

    def _body_length(self) -> int:
        """The declared body length, refused (411/413) before reading any of the body."""
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            raise HttpError(
                411, "Content-Length is required", "send the body with its length"
            ) from None
        limit = self.server.options.max_bytes
        if length < 0:
            raise HttpError(400, "negative Content-Length", "send the body with its length")
        if length > limit:
            raise HttpError(
                413,
                f"body of {length} bytes is over the {limit}-byte limit",
                "send a smaller region, or PNG instead of raw",
            )
        return length

    def _read_body(self, length: int) -> bytes:
        body = self.rfile.read(length)
        self._body_read = True
        if len(body) != length:
            raise ConnectionError("the client closed the connection mid-body")
        return body

    def _drain(self, count: int) -> None:
        """Read a little of a refused body so a client still sending it sees the 413.

        Closing with unread data makes the kernel send a reset, which many clients report
        as a broken connection instead of our answer. Never read more than this, never wait.
        """
        self.close_connection = True
        self.connection.settimeout(0.2)
        try:
            while count > 0:
                chunk = self.rfile.read1(min(count, 65536))
                if not chunk:
                    break
                count -= len(chunk)
        except (OSError, TimeoutError):
            pass

    def _error(self, status: int, message: str, hint: str, allow: str | None = None) -> None:
        if status >= 500:
            log.warning("HTTP %d: %s", status, message)
        headers = {"Allow": allow} if status == 405 and allow else {}
        if not self._body_read and self.headers.get("Content-Length", "0") != "0":
            # The unread body would be parsed as the next request: end the connection.
            try:
                self._drain(min(int(self.headers["Content-Length"]), _DRAIN_BYTES))
            except ValueError:
                self.close_connection = True
        self._json(status, {"error": message, "hint": hint}, headers)

    def _json(
        self, status: int, data: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        self._send(status, "application/json", json.dumps(data).encode(), headers or {})

    def _send(self, status: int, content_type: str, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s %s", self.address_string(), format % args)


class InferenceServer(ThreadingHTTPServer):
    """The HTTP server with its engine cache; ``start()`` in a thread, ``stop()`` joins all.

    Port 0 picks a free port (tests); ``port`` tells which one it got.
    """

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        options: ServerOptions | None = None,
    ) -> None:
        self.options = options or ServerOptions()
        self.cache = EngineCache(self.options)
        self._connections: dict[threading.Thread, socket.socket] = {}
        self._conn_lock = threading.Lock()
        self._serve_thread: threading.Thread | None = None
        super().__init__((host, port), _Handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        host = str(self.server_address[0])
        return f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{self.port}"

    def process_request(self, request: Any, client_address: Any) -> None:
        """Like ThreadingMixIn's, but remembering each connection so stop() can end it."""
        thread = threading.Thread(
            target=self._handle_connection,
            args=(request, client_address),
            name=f"vsr-inference-conn-{client_address[1]}",
            daemon=True,
        )
        with self._conn_lock:
            self._connections[thread] = request
        thread.start()

    def _handle_connection(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            with self._conn_lock:
                self._connections.pop(threading.current_thread(), None)

    def start(self) -> InferenceServer:
        self._serve_thread = threading.Thread(
            target=self.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="vsr-inference-server",
            daemon=True,
        )
        self._serve_thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop accepting, end open connections (a running inference finishes), join all."""
        if self._serve_thread is not None:
            self.shutdown()
            self._serve_thread.join(timeout)
            self._serve_thread = None
        with self._conn_lock:
            connections = list(self._connections.items())
        for _thread, sock in connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RD)  # wakes a thread waiting for the next request
        for thread, _sock in connections:
            thread.join(timeout)
        self.server_close()

    def __enter__(self) -> InferenceServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(
    host: str = "0.0.0.0",
    port: int = DEFAULT_PORT,
    max_bytes: int = DEFAULT_MAX_BYTES,
    ready: threading.Event | None = None,
    *,
    stop: threading.Event | None = None,
    options: ServerOptions | None = None,
) -> None:
    """Run until ``stop`` is set (or Ctrl-C); ``ready`` is set once /ping answers."""
    opts = options or ServerOptions()
    if opts.max_bytes != max_bytes:
        opts = ServerOptions(**{**opts.__dict__, "max_bytes": max_bytes})
    stop = stop or threading.Event()
    server = InferenceServer(host, port, opts).start()
    log.info("inference server on %s:%d", host, server.port)
    if ready is not None:
        ready.set()
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
