"""Spread a job's chunks over several devices, one engine per device in its own thread.

Why: a machine with two GPUs upscales twice as fast only if each GPU has its own engine
(an Engine is not thread-safe, and a model lives on one device) and takes the next chunk as
soon as it is free. Chunks are handed out in plan order; results come back to the caller's
thread (which alone touches the job store and progress) as each finishes. The first error
stops the other devices and is the one raised; a cancel stops them all.
"""

from __future__ import annotations

import queue
import re
import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from vsr_desktop.core.errors import CancelledError, EngineError


def parse_devices(text: str | None) -> list[str]:
    """The devices of ``--devices``: ``0,1`` → ``cuda:0, cuda:1``; ``all`` → every GPU this
    process sees (``CUDA_VISIBLE_DEVICES`` applies: indices count the visible GPUs only);
    names (``cpu``, ``cuda:1``, ``mps``) are kept. Empty: one device, the engine's own."""
    words = [w.strip().lower() for w in (text or "").split(",") if w.strip()]
    if words == ["all"]:
        import torch  # only here: the GUI imports this module at start-up

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return [f"cuda:{i}" for i in range(count)]
    devices = []
    for word in words:
        name = f"cuda:{word}" if word.isdigit() else word
        if not (name in ("cpu", "cuda", "mps") or re.fullmatch(r"cuda:\d+", name)):
            raise EngineError(
                f"{word!r} is not a device",
                "give GPU numbers (--devices 0,1), all, or names such as cuda:1 and cpu",
            )
        devices.append(name)
    return devices


C = TypeVar("C")  # a chunk
E = TypeVar("E")  # an engine
R = TypeVar("R")  # a chunk's result


class DevicePool(Generic[C, E, R]):
    """Run ``work(chunk, engine, stop)`` for every chunk, on ``make_engine(device)`` engines.

    ``stop`` is an event the work must obey like a cancel: it is set on the user's cancel
    and when another device failed.
    """

    def __init__(
        self,
        devices: Sequence[str],
        make_engine: Callable[[str], E],
        work: Callable[[C, E, threading.Event], R],
    ) -> None:
        self.devices = list(devices)
        self._make_engine = make_engine
        self._work = work

    def run(
        self,
        chunks: Sequence[C],
        on_result: Callable[[C, R, str], None],
        cancel: threading.Event | None = None,
    ) -> None:
        """Process every chunk; ``on_result(chunk, result, device)`` runs on this thread."""
        todo: queue.Queue[C] = queue.Queue()
        for item in chunks:
            todo.put(item)
        done: queue.Queue[tuple[C | None, R | None, str, BaseException | None]] = queue.Queue()
        stop = threading.Event()

        def serve(device: str) -> None:
            try:
                engine = self._make_engine(device)
                while not stop.is_set():
                    try:
                        chunk = todo.get_nowait()
                    except queue.Empty:
                        return
                    done.put((chunk, self._work(chunk, engine, stop), device, None))
            except BaseException as exc:
                stop.set()
                done.put((None, None, device, exc))
            finally:
                done.put((None, None, device, StopIteration()))  # this device is finished

        threads = [
            threading.Thread(target=serve, args=(d,), name=f"vsr-device-{i}", daemon=True)
            for i, d in enumerate(self.devices)
        ]
        for thread in threads:
            thread.start()
        first_error: BaseException | None = None
        running = len(threads)
        try:
            while running:
                try:
                    finished, result, device, error = done.get(timeout=0.1)
                except queue.Empty:
                    if cancel is not None and cancel.is_set():
                        stop.set()
                    continue
                if isinstance(error, StopIteration):
                    running -= 1
                elif error is not None:
                    if first_error is None or isinstance(first_error, CancelledError):
                        first_error = error  # the failure, not another device's stop echo
                elif finished is not None and first_error is None:
                    on_result(finished, result, device)  # type: ignore[arg-type]
        except BaseException:
            stop.set()
            raise
        finally:
            for thread in threads:
                thread.join()
        if first_error is not None:
            raise first_error
        if cancel is not None and cancel.is_set():
            raise CancelledError("cancelled")
