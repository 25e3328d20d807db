"""Load on `vsr serve`: 50 clients for 30 s, p50/p99 latency and the count of resets.

Run: `python -m benchmarks.bench_serve [--clients 50] [--seconds 30] [--size 8]`.
Starts `vsr serve` as its own process on localhost (CPU, fp32) and has N client threads, each
on its own keep-alive connection, send tiny raw RGB24 regions (8×8 by default) and a /ping
now and then, back to back, for the duration. The region is tiny on purpose: this measures
the server (accept queue, thread pool, parsing, the inference lock), not the model. A reset,
refused connection or timeout is counted, never retried on the same request; the client
reconnects and goes on. Not part of `make test`: it takes the full duration.

The hand-written http.server this replaced reset 29–47 of 50 concurrent clients (issue 16).
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from vsr_desktop.core import remote_preview as wire


@dataclass
class ClientStats:
    latencies_ms: dict[str, list[float]] = field(default_factory=lambda: {"ping": [], "region": []})
    errors: dict[str, int] = field(default_factory=dict)
    non_200: int = 0

    def error(self, exc: BaseException) -> None:
        name = type(exc).__name__
        self.errors[name] = self.errors.get(name, 0) + 1


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start_server(port: int, threads: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "vsr_desktop.cli", "serve", "--host", "127.0.0.1",
         "--port", str(port), "--device", "cpu", "--precision", "fp32",
         "--threads", str(threads)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=os.environ.copy(),
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"vsr serve exited with {process.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/ping")
            if conn.getresponse().status == 200:
                conn.close()
                return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("vsr serve never answered /ping")


def _client(
    port: int, body: bytes, headers: dict[str, str], until: float, out: ClientStats
) -> None:
    conn: http.client.HTTPConnection | None = None
    count = 0
    while time.monotonic() < until:
        if conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        kind = "ping" if count % 10 == 9 else "region"
        count += 1
        started = time.perf_counter()
        try:
            if kind == "ping":
                conn.request("GET", "/ping")
            else:
                conn.request("POST", "/invocations", body, headers)
            reply = conn.getresponse()
            reply.read()
            out.latencies_ms[kind].append((time.perf_counter() - started) * 1000)
            if reply.status != 200:
                out.non_200 += 1
        except (OSError, http.client.HTTPException) as exc:
            out.error(exc)
            conn.close()
            conn = None
    if conn is not None:
        conn.close()


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return float(np.percentile(values, q))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--size", type=int, default=8, help="region side in pixels")
    parser.add_argument("--threads", type=int, default=8, help="server worker threads")
    args = parser.parse_args()

    rgb = np.random.default_rng(0).integers(0, 255, (args.size, args.size, 3), dtype=np.uint8)
    body, headers = wire.encode_request(rgb, raw=True)
    port = _free_port()
    server = _start_server(port, args.threads)
    try:
        warm = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        warm.request("POST", "/invocations", body, headers)  # loads the model
        warm.getresponse().read()
        warm.close()
        stats = [ClientStats() for _ in range(args.clients)]
        until = time.monotonic() + args.seconds
        threads = [
            threading.Thread(target=_client, args=(port, body, headers, until, s)) for s in stats
        ]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
    finally:
        server.terminate()
        server.wait(30)

    errors: dict[str, int] = {}
    for s in stats:
        for name, n in s.errors.items():
            errors[name] = errors.get(name, 0) + n
    resets = errors.get("ConnectionResetError", 0) + errors.get("BrokenPipeError", 0)
    print(
        f"vsr serve, {args.clients} clients, {elapsed:.0f} s, {args.size}×{args.size} raw "
        f"regions (realesr-animevideov3, CPU fp32), {args.threads} server threads"
    )
    print(f"{'request':<8} {'count':>7} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for kind in ("region", "ping"):
        values = [v for s in stats for v in s.latencies_ms[kind]]
        print(
            f"{kind:<8} {len(values):>7} {len(values) / elapsed:>7.1f} "
            f"{_pct(values, 50):>8.1f} {_pct(values, 99):>8.1f} "
            f"{max(values, default=float('nan')):>8.1f}"
        )
    print(f"non-200 replies: {sum(s.non_200 for s in stats)}")
    print(f"resets: {resets}; other errors: {dict(errors) or 'none'}")
    if resets or errors:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
