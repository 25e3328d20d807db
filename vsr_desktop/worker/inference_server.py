"""SageMaker's inference contract for the preview: GET /ping, POST /invocations on port 8080.

The worker image runs this when SageMaker starts it with ``serve``; the same server runs as a
plain process (``vsr serve``) so tests and a GPU box without SageMaker use the real thing.
A request carries one region of a frame (PNG or raw RGB24, see core/remote_preview.py) and the
reply is that region upscaled by the same Engine the local preview uses, so a cloud preview
looks exactly like a local one.

The HTTP side is waitress (see worker/http_server.py for the limits it enforces): a bounded
pool of threads and connections, a real backlog, deadlines, 413 as a body passes the limit.
This module is the small WSGI app on top, and the rule for who may talk to it: anyone on
loopback; beyond loopback only with the bearer token (``--token`` / ``VSR_SERVE_TOKEN``),
except inside SageMaker, where InvokeEndpoint's IAM signature is the authentication and no
one else can reach the container.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import os
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from vsr_desktop.core import remote_preview as wire
from vsr_desktop.core.errors import InputError, ModelError, VsrError
from vsr_desktop.core.upscaler import FrameUpscaler
from vsr_desktop.worker.http_server import HttpServer, Limits

log = logging.getLogger(__name__)

DEFAULT_PORT = 8080
DEFAULT_MAX_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_PIXELS = wire.DEFAULT_MAX_PIXELS
TOKEN_ENV = "VSR_SERVE_TOKEN"
# Set by the SageMaker model this app creates (backends/aws/preview_endpoint.py); the other
# two are set by SageMaker itself on hosts where it picks the port.
SAGEMAKER_ENV = ("SAGEMAKER_BIND_TO_PORT", "SAGEMAKER_SAFE_PORT_RANGE")
_STATUS = {
    200: "200 OK",
    400: "400 Bad Request",
    401: "401 Unauthorized",
    404: "404 Not Found",
    405: "405 Method Not Allowed",
    413: "413 Request Entity Too Large",
    415: "415 Unsupported Media Type",
    500: "500 Internal Server Error",
}


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
    token: str | None = None  # None or "": no token asked (loopback or SageMaker only)
    threads: int = 8
    connection_limit: int = 200
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    idle_timeout: float = 60.0

    def limits(self) -> Limits:
        return Limits(
            max_body=self.max_bytes,
            threads=self.threads,
            connection_limit=self.connection_limit,
            header_timeout=self.header_timeout,
            body_timeout=self.body_timeout,
            idle_timeout=self.idle_timeout,
        )


def in_sagemaker(env: dict[str, str] | None = None) -> bool:
    """True inside a SageMaker hosting container (the model's Environment or SageMaker's own)."""
    env = dict(os.environ) if env is None else env
    return env.get("VSR_SERVE") == "sagemaker" or any(env.get(name) for name in SAGEMAKER_ENV)


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def check_token_policy(host: str, token: str | None, env: dict[str, str] | None = None) -> None:
    """Refuse to listen beyond loopback with no token, unless SageMaker is in front."""
    if token or is_loopback(host) or in_sagemaker(env):
        return
    raise InputError(
        f"listening on {host} without a token would let anyone on the network use this server",
        f"set --token or {TOKEN_ENV} (clients send 'Authorization: Bearer TOKEN'), "
        "or listen on 127.0.0.1",
    )


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


def _parser_error(status: int, detail: str) -> tuple[str, str]:
    """Message and hint for a request waitress refused before the app saw it."""
    if status == 413:
        return (
            f"body over the size limit ({detail})",
            "send a smaller region, or PNG instead of raw",
        )
    if status == 431:
        return f"request headers too large ({detail})", "send fewer or shorter headers"
    return f"malformed HTTP request ({detail})", "send a plain HTTP/1.1 request"


class InferenceApp:
    """The WSGI app: routes, the token check, decoding and the reply for one request."""

    def __init__(self, options: ServerOptions, cache: EngineCache) -> None:
        self.options, self.cache = options, cache
        self._token = (options.token or "").encode()

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        method = str(environ.get("REQUEST_METHOD", "GET"))
        path = str(environ.get("PATH_INFO", ""))
        allowed = {"/ping": "GET", "/invocations": "POST"}.get(path)
        headers: dict[str, str] = {}
        try:
            self._authorize(environ)
            if allowed is None:
                raise HttpError(404, f"no such path {path}", "use GET /ping or POST /invocations")
            if method != allowed:
                headers["Allow"] = allowed
                raise HttpError(405, f"{method} is not allowed on {path}", f"use {allowed}")
            if path == "/ping":
                status, ctype = 200, "application/json"
                body = json.dumps({"status": "ok", "models": self.cache.available_models()})
                payload = body.encode()
            else:
                status, ctype, payload = self._invocations(environ, headers)
        except HttpError as exc:
            if exc.status == 401:
                headers["WWW-Authenticate"] = 'Bearer realm="vsr"'
            status, ctype, payload = exc.status, "application/json", _error(exc.message, exc.hint)
        except VsrError as exc:
            status = 400 if isinstance(exc, InputError | ModelError) else 500
            if status >= 500:
                log.warning("HTTP %d: %s", status, exc.message)
            ctype, payload = "application/json", _error(exc.message, exc.hint)
        except Exception as exc:
            log.error("request failed:\n%s", traceback.format_exc())
            status, ctype = 500, "application/json"
            payload = _error(
                f"internal error: {type(exc).__name__}: {exc}",
                "retry; if it fails again, the server log has the traceback",
            )
        headers.update({"Content-Type": ctype, "Content-Length": str(len(payload))})
        start_response(_STATUS.get(status, f"{status} Error"), list(headers.items()))
        return [payload]

    def _authorize(self, environ: dict[str, Any]) -> None:
        if not self._token:
            return
        scheme, _, given = str(environ.get("HTTP_AUTHORIZATION", "")).partition(" ")
        # compare_digest: the time taken does not tell how much of a guess was right.
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), self._token
        ):
            raise HttpError(
                401, "missing or wrong bearer token", "send 'Authorization: Bearer TOKEN'"
            )

    def _invocations(
        self, environ: dict[str, Any], headers: dict[str, str]
    ) -> tuple[int, str, bytes]:
        from PIL import Image

        settings = wire.PreviewSettings.parse(
            str(environ.get("QUERY_STRING", "")),
            environ.get(_environ_key(wire.CUSTOM_ATTRIBUTES_HEADER)),
        )
        content_type = str(environ.get("CONTENT_TYPE") or "").split(";")[0].strip().lower()
        if content_type not in (wire.PNG_TYPE, wire.RAW_TYPE):
            raise HttpError(
                415,
                f"unsupported Content-Type {content_type or 'none'!r}",
                f"send {wire.PNG_TYPE} or {wire.RAW_TYPE} with X-Width/X-Height",
            )
        raw_size = _raw_size(environ) if content_type == wire.RAW_TYPE else None
        body = environ["wsgi.input"].read()  # waitress has it all, within the size limit
        max_pixels = self.options.max_pixels
        if raw_size is None:
            try:
                rgb = wire.decode_png(body, max_pixels)
            except (Image.DecompressionBombError, MemoryError) as exc:
                raise HttpError(
                    400,
                    f"the PNG claims too many pixels to decode ({exc})",
                    f"send a region of at most {max_pixels} pixels",
                ) from None
        else:
            wire.check_region_size(*raw_size, max_pixels)
            rgb = wire.decode_raw(body, *raw_size)
        t0 = time.perf_counter()
        out = self.cache.upscale(settings, rgb)
        headers["X-Inference-Ms"] = f"{(time.perf_counter() - t0) * 1000:.1f}"
        height, width = out.shape[:2]
        if raw_size is None:
            return 200, wire.PNG_TYPE, wire.encode_png(out)
        headers.update({wire.WIDTH_HEADER: str(width), wire.HEIGHT_HEADER: str(height)})
        return 200, wire.RAW_TYPE, np.ascontiguousarray(out).tobytes()


def _environ_key(header: str) -> str:
    return "HTTP_" + header.upper().replace("-", "_")


def _raw_size(environ: dict[str, Any]) -> tuple[int, int]:
    try:
        return (
            int(environ[_environ_key(wire.WIDTH_HEADER)]),
            int(environ[_environ_key(wire.HEIGHT_HEADER)]),
        )
    except (KeyError, TypeError, ValueError):
        raise HttpError(
            400,
            "raw RGB24 needs integer X-Width and X-Height headers",
            "send the region's width and height in pixels",
        ) from None


def _error(message: str, hint: str) -> bytes:
    return json.dumps({"error": message, "hint": hint}).encode()


class InferenceServer:
    """The HTTP server with its engine cache; ``start()`` in a thread, ``stop()`` ends all.

    Port 0 picks a free port (tests); ``port`` tells which one it got. Refuses (InputError)
    to listen beyond loopback without a token, outside SageMaker.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        options: ServerOptions | None = None,
    ) -> None:
        self.options = options or ServerOptions()
        check_token_policy(host, self.options.token)
        self.cache = EngineCache(self.options)
        self._http = HttpServer(
            InferenceApp(self.options, self.cache), host, port, self.options.limits(), _parser_error
        )
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._http.port

    @property
    def url(self) -> str:
        host = self._http.host
        return f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{self.port}"

    def start(self) -> InferenceServer:
        self._thread = threading.Thread(
            target=self._http.run, name="vsr-inference-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop accepting, close open connections, wait for a running inference to finish."""
        self._http.stop(timeout)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

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
        opts = replace(opts, max_bytes=max_bytes)
    stop = stop or threading.Event()
    server = InferenceServer(host, port, opts).start()
    log.info(
        "inference server on %s:%d (%s)",
        host,
        server.port,
        "token required" if opts.token else "no token",
    )
    if ready is not None:
        ready.set()
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
