"""Round-trip time of one preview region through the inference server, per region size.

Run: `python -m benchmarks.preview_server_rtt [--device cpu] [--sizes 64 128 256]`.
Starts the real server on localhost, sends crops of scikit-image's astronaut over real HTTP
(PNG and raw RGB24), and prints the median round trip next to the server's own inference
time (X-Inference-Ms), so the HTTP + encoding overhead is the difference. The first request
of each size is a warm-up (model load, allocator) and is not counted.
"""

from __future__ import annotations

import argparse
import statistics
import time
import urllib.request

import numpy as np

from vsr_desktop.core import remote_preview as wire
from vsr_desktop.worker.inference_server import InferenceServer, ServerOptions


def one_trip(url: str, rgb: np.ndarray, raw: bool, model: str) -> tuple[float, float]:
    """(round trip ms, server inference ms) for one region."""
    body, headers = wire.encode_request(rgb, raw)
    started = time.perf_counter()
    request = urllib.request.Request(
        f"{url}/invocations?model={model}", data=body, headers=headers, method="POST"
    )
    with urllib.request.urlopen(request, timeout=600) as reply:
        data = reply.read()
        wire.decode_reply(
            data,
            reply.headers["Content-Type"],
            reply.headers.get("X-Width"),
            reply.headers.get("X-Height"),
        )
        infer = float(reply.headers["X-Inference-Ms"])
    return (time.perf_counter() - started) * 1000, infer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--model", default="realesr-animevideov3")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from skimage import data

    photo = data.astronaut()
    options = ServerOptions(device=args.device, precision=args.precision)
    with InferenceServer("127.0.0.1", 0, options) as server:
        print(f"model {args.model}, device {args.device}, precision {args.precision}")
        print("input      format  round trip ms (median)  inference ms  overhead ms")
        for size in args.sizes:
            rgb = np.ascontiguousarray(photo[:size, :size])
            for raw in (False, True):
                one_trip(server.url, rgb, raw, args.model)  # warm-up
                trips = [one_trip(server.url, rgb, raw, args.model) for _ in range(args.repeat)]
                rtt = statistics.median(t for t, _ in trips)
                infer = statistics.median(i for _, i in trips)
                name = "raw" if raw else "png"
                print(
                    f"{size:>4}×{size:<4}  {name:6}  {rtt:22.0f}  {infer:12.0f}  "
                    f"{rtt - infer:11.0f}"
                )


if __name__ == "__main__":
    main()
