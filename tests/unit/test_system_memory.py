"""Reading the memory the engine may use: the machine's, capped by the process's cgroup.

The cgroup cases use folder trees laid out like /sys/fs/cgroup (v1 and v2): a real memory
limit cannot be set up for the test process portably, and the reader only reads files.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from vsr_desktop.core.system_memory import available_memory_bytes, cgroup_available_bytes

GIB = 1 << 30


def _write(folder: Path, files: dict[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)


@pytest.mark.skipif("sys.platform != 'linux'", reason="reads /proc/meminfo")
def test_the_machine_figure_is_plausible() -> None:
    available = available_memory_bytes()
    with open("/proc/meminfo", encoding="ascii") as meminfo:
        total = next(
            int(line.split()[1]) * 1024 for line in meminfo if line.startswith("MemTotal:")
        )
    assert available is not None and 0 < available <= total


def test_cgroup_v2_limit_minus_usage_plus_reclaimable_cache(tmp_path: Path) -> None:
    proc = tmp_path / "cgroup"
    proc.write_text("0::/system.slice/slurmstepd.scope/job_42/step_0\n")
    _write(
        tmp_path / "sys" / "system.slice" / "slurmstepd.scope" / "job_42" / "step_0",
        {
            "memory.max": f"{8 * GIB}\n",
            "memory.current": f"{5 * GIB}\n",
            "memory.stat": f"anon 4\nfile 9\ninactive_file {GIB}\nactive_file 7\n",
        },
    )
    assert cgroup_available_bytes(proc, tmp_path / "sys") == 4 * GIB


def test_cgroup_v2_without_a_limit(tmp_path: Path) -> None:
    proc = tmp_path / "cgroup"
    proc.write_text("0::/user.slice\n")
    _write(tmp_path / "sys" / "user.slice", {"memory.max": "max\n", "memory.current": "123\n"})
    assert cgroup_available_bytes(proc, tmp_path / "sys") is None


def test_cgroup_v1_memory_controller(tmp_path: Path) -> None:
    proc = tmp_path / "cgroup"
    proc.write_text("9:name=systemd:/\n4:memory:/docker/abc\n0::/\n")
    _write(
        tmp_path / "sys" / "memory" / "docker" / "abc",
        {
            "memory.limit_in_bytes": f"{2 * GIB}\n",
            "memory.usage_in_bytes": f"{3 * GIB}\n",  # over the limit, cache included
            "memory.stat": "cache 1\ntotal_inactive_file 0\n",
        },
    )
    assert cgroup_available_bytes(proc, tmp_path / "sys") == 0
    (tmp_path / "sys" / "memory" / "docker" / "abc" / "memory.limit_in_bytes").write_text(
        "9223372036854771712\n"
    )  # v1's "no limit"
    assert cgroup_available_bytes(proc, tmp_path / "sys") is None


def test_unreadable_cgroup_information_is_no_limit(tmp_path: Path) -> None:
    assert cgroup_available_bytes(tmp_path / "missing", tmp_path) is None
    proc = tmp_path / "cgroup"
    proc.write_text("4:memory:/gone\n")
    assert cgroup_available_bytes(proc, tmp_path / "sys") is None
