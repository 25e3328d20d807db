"""waitress, with the few limits it lacks: request deadlines, JSON errors, a lingering close.

waitress gives the inference server what the hand-written ``http.server`` did not: a real
listen backlog, a bounded pool of worker threads, a cap on open connections (one select/poll
loop holds them, not a thread each), idle keep-alive timeouts, header and body size limits
with 413 as soon as a declared or streamed body passes the limit. Three things it does not
do are added here, in its documented extension points (channel and error-task classes,
``maintenance``):

- **Deadlines.** waitress closes a connection only after ``channel_timeout`` seconds with
  *no* bytes; a client sending one header byte every few seconds would hold its slot for
  ever. Here a request's headers must be complete ``header_timeout`` seconds after its first
  byte (or after the connection opened), and its body ``body_timeout`` seconds later.
- **JSON errors.** A request refused by the parser (413, 431, malformed) gets the same
  ``{"error", "hint"}`` body as every other refusal of the server.
- **Lingering close.** After such a refusal the server stops reading; closing a socket with
  unread bytes makes the kernel send a reset, and a client still sending its body sees
  "connection reset"/"broken pipe" instead of the 413. So the write side is shut first and
  the rest of the body is read and dropped for a short while (as nginx's lingering_close).
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.server import TcpWSGIServer
from waitress.task import ErrorTask, ThreadedTaskDispatcher

ErrorBody = Callable[[int, str], tuple[str, str]]
"""(status, waitress's detail) → (message, hint) for a refusal by the HTTP parser."""

LINGER_SECONDS = 2.0
LINGER_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """What one server process allows; the defaults suit a preview server behind SageMaker."""

    max_body: int = 16 * 1024 * 1024
    threads: int = 8
    connection_limit: int = 200
    backlog: int = 512
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    idle_timeout: float = 60.0  # an idle keep-alive connection (SageMaker reuses them)
    max_header_bytes: int = 64 * 1024


class _JsonErrorTask(ErrorTask):
    """waitress's parser refusals (413, 431, 400) with the server's JSON error body."""

    def execute(self) -> None:
        error = self.request.error
        server = self.channel.server
        message, hint = server.error_body(int(error.code), str(error.body))
        body = json.dumps({"error": message, "hint": hint}).encode()
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.channel.linger_on_close = True
        self.write(body)


class _Channel(HTTPChannel):
    """One connection, with deadlines and a lingering close (see the module docstring)."""

    error_task_class = _JsonErrorTask
    will_close: bool
    close_when_flushed: bool
    linger_on_close = False
    _lingering = False
    _linger_until = 0.0
    _linger_bytes = 0
    _served = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._request_started = time.monotonic()

    def received(self, data: bytes) -> bool:
        if self.request is None and data:
            self._request_started = time.monotonic()
        result = bool(super().received(data))
        if self.requests:
            self._served = True
        return result

    def check_deadlines(self, now: float) -> None:
        """Called from the server's loop thread: close what has overstayed."""
        limits: Limits = self.server.limits
        if self._lingering:
            if now > self._linger_until:
                self._close_now()
            return
        if self.requests or self.will_close or self.close_when_flushed:
            return  # a task runs or an answer is on its way: not the client's fault
        if self.request is not None:
            waited = now - self._request_started
            if not self.request.headers_finished:
                late = waited > limits.header_timeout
            else:
                late = waited > limits.header_timeout + limits.body_timeout
        else:
            late = not self._served and now - self._request_started > limits.header_timeout
        if late:
            self.will_close = True  # writable() → handle_write() → handle_close()

    def readable(self) -> bool:
        return True if self._lingering else bool(super().readable())

    def writable(self) -> bool:
        return False if self._lingering else bool(super().writable())

    def handle_read(self) -> None:
        if not self._lingering:
            super().handle_read()
            return
        try:
            data = self.socket.recv(65536)
        except OSError:
            data = b""
        self._linger_bytes += len(data)
        if not data or self._linger_bytes > LINGER_BYTES:
            self._close_now()

    def handle_close(self) -> None:
        if self.linger_on_close and not self._lingering and self.connected:
            try:
                self.socket.shutdown(socket.SHUT_WR)  # the answer is sent; FIN follows it
            except OSError:
                pass
            else:
                self._lingering = True
                self._linger_until = time.monotonic() + LINGER_SECONDS
                self.will_close = self.close_when_flushed = False
                return
        self._close_now()

    def _close_now(self) -> None:
        self._lingering = False
        self.linger_on_close = False
        super().handle_close()


class _Server(TcpWSGIServer):
    channel_class = _Channel

    def __init__(self, *args: Any, limits: Limits, error_body: ErrorBody, **kw: Any) -> None:
        self.limits = limits
        self.error_body = error_body
        super().__init__(*args, **kw)

    def maintenance(self, now: float) -> None:
        super().maintenance(now)  # waitress's idle timeout (channel_timeout)
        mono = time.monotonic()
        for channel in list(self.active_channels.values()):
            channel.check_deadlines(mono)


class HttpServer:
    """A waitress server for one WSGI app on one address; ``run()`` blocks, ``stop()`` ends it."""

    def __init__(
        self, app: Any, host: str, port: int, limits: Limits, error_body: ErrorBody
    ) -> None:
        adj = Adjustments(
            host=host,
            port=port,
            threads=limits.threads,
            connection_limit=limits.connection_limit,
            backlog=limits.backlog,
            channel_timeout=max(1, round(limits.idle_timeout)),
            cleanup_interval=1,  # deadlines are checked each second
            max_request_body_size=limits.max_body + 1,  # waitress refuses at >=
            max_request_header_size=limits.max_header_bytes,
            asyncore_use_poll=True,  # select() stops at fd 1024
            ident="vsr",
            clear_untrusted_proxy_headers=False,
        )
        dispatcher = ThreadedTaskDispatcher()
        dispatcher.set_thread_count(adj.threads)
        self._map: dict[int, Any] = {}
        self._server = _Server(
            app,
            self._map,
            dispatcher=dispatcher,
            adj=adj,
            sockinfo=adj.listen[0],
            limits=limits,
            error_body=error_body,
        )
        self._running = False

    @property
    def host(self) -> str:
        return str(self._server.effective_host)

    @property
    def port(self) -> int:
        return int(self._server.effective_port)

    def run(self) -> None:
        self._running = True
        try:
            self._server.run()
        finally:
            self._running = False

    def stop(self, timeout: float = 30.0) -> None:
        """Stop accepting, close every connection, then wait for running tasks to finish."""
        server = self._server

        def close_all() -> None:
            for channel in list(self._map.values()):
                if isinstance(channel, _Channel):
                    channel._close_now()
            server.close()  # the listener and the trigger: the map empties, the loop ends

        if self._running:
            server.trigger.pull_trigger(close_all)
            deadline = time.monotonic() + timeout
            while self._running and time.monotonic() < deadline:
                time.sleep(0.02)
        else:
            close_all()
        server.task_dispatcher.shutdown(cancel_pending=True, timeout=timeout)
