"""torch's parallel loops inline in one worker thread, every other thread untouched."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
import torch

from vsr_desktop.core.openmp_threads import run_torch_inline_in_this_thread


@pytest.fixture
def two_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


T = TypeVar("T")
#: The loaded OpenMP runtime is read from /proc/self/maps, which only Linux has.
linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the loaded runtime is read from /proc/self/maps"
)


def in_new_thread(work: Callable[[], T]) -> T:
    box: dict[str, T] = {}
    thread = threading.Thread(target=lambda: box.update(result=work()))
    thread.start()
    thread.join()
    return box["result"]


@linux_only
def test_only_the_calling_thread_goes_single_threaded(two_threads: None) -> None:
    def worker() -> tuple[bool, int, float]:
        took = run_torch_inline_in_this_thread()
        x = torch.arange(200_000, dtype=torch.float32)
        return (
            took,
            torch.get_num_threads(),
            float(torch.nn.functional.prelu(x - 100_000, torch.tensor([0.5])).sum()),
        )

    took, threads_in_worker, total = in_new_thread(worker)
    assert took and threads_in_worker == 1
    x = torch.arange(200_000, dtype=torch.float32)
    assert total == float(torch.nn.functional.prelu(x - 100_000, torch.tensor([0.5])).sum())
    assert torch.get_num_threads() == 2  # the caller keeps its count
    assert in_new_thread(torch.get_num_threads) == 2  # and so do threads started later


_WITH_ANOTHER_RUNTIME_FIRST = """
import threading
import ncnn  # its wheel brings a libgomp of its own, loaded before torch's
import torch
from vsr_desktop.core import openmp_threads
torch.set_num_threads(2)
seen = {}
def worker():
    seen["took"] = openmp_threads.run_torch_inline_in_this_thread()
    seen["threads"] = torch.get_num_threads()
thread = threading.Thread(target=worker)
thread.start()
thread.join()
runtimes = len(openmp_threads._loaded_openmp_libraries())
print(runtimes, seen["took"], seen["threads"], torch.get_num_threads())
"""


@linux_only
def test_torch_runtime_is_found_among_other_packages_copies() -> None:
    pytest.importorskip("ncnn")
    result = subprocess.run(
        [sys.executable, "-c", _WITH_ANOTHER_RUNTIME_FIRST],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    runtimes, took, in_worker, in_main = result.stdout.split()[-4:]
    assert int(runtimes) >= 2  # the situation under test: two copies loaded
    assert (took, in_worker, in_main) == ("True", "1", "2")
