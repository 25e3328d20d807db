"""The local Slurm cluster really schedules: the behaviours the Slurm backend will rely on.

Each test submits real jobs to the real daemons of the session's `slurm_cluster` fixture and
polls squeue/scontrol, as the backend will (there is no accounting database, so no sacct).
If one of these fails, backend test failures would be about the cluster, not the backend.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.helpers.slurm_fixture import LocalSlurmCluster

Job = dict[str, str]


def submit(cluster: LocalSlurmCluster, workdir: Path, *args: str) -> str:
    """sbatch in workdir (outputs land there); returns the job id."""
    out = cluster.run(
        ["sbatch", "--parsable", f"--chdir={workdir}", "--output=slurm-%A_%a.out", *args],
        cwd=workdir,
    ).stdout
    return out.strip().split(";")[0]


def jobs(cluster: LocalSlurmCluster, job_id: str) -> list[Job]:
    """`scontrol show job` as one dict per job (an array gives one per task)."""
    out = cluster.run(["scontrol", "-o", "show", "job", job_id]).stdout
    return [dict(re.findall(r"(\w+)=(\S*)", line)) for line in out.splitlines() if line.strip()]


def wait_until(what: str, ready: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll like the backend will: every 0.2 s, failing with what was awaited."""
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)


def wait_state(cluster: LocalSlurmCluster, job_id: str, *states: str, timeout: float = 30) -> Job:
    """Wait until the job (every task of an array) is in one of states; return its record."""
    wait_until(
        f"job {job_id} in {states}",
        lambda: all(job["JobState"] in states for job in jobs(cluster, job_id)),
        timeout,
    )
    return jobs(cluster, job_id)[0]


def pid_alive(pid: int) -> bool:
    """True while a process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def test_wrap_job_runs_and_writes_a_file(slurm_cluster: LocalSlurmCluster, tmp_path: Path) -> None:
    job_id = submit(slurm_cluster, tmp_path, "--wrap", "echo hello from $SLURM_JOB_ID > out.txt")
    job = wait_state(slurm_cluster, job_id, "COMPLETED", "FAILED", "CANCELLED")
    assert (job["JobState"], job["ExitCode"]) == ("COMPLETED", "0:0")
    assert (tmp_path / "out.txt").read_text() == f"hello from {job_id}\n"


@pytest.mark.slow
def test_array_runs_every_task_at_most_two_at_once(
    slurm_cluster: LocalSlurmCluster, tmp_path: Path
) -> None:
    script = (
        "date +%s.%N > start_$SLURM_ARRAY_TASK_ID; sleep 2; date +%s.%N > end_$SLURM_ARRAY_TASK_ID"
    )
    job_id = submit(slurm_cluster, tmp_path, "--array=0-3%2", "--wrap", script)
    wait_state(slurm_cluster, job_id, "COMPLETED", "FAILED", "CANCELLED", timeout=45)
    tasks = jobs(slurm_cluster, job_id)
    assert sorted(int(t["ArrayTaskId"]) for t in tasks) == [0, 1, 2, 3]
    assert {t["JobState"] for t in tasks} == {"COMPLETED"}

    def read(name: str, task: int) -> float:
        return float((tmp_path / f"{name}_{task}").read_text())

    spans = [(read("start", i), read("end", i)) for i in range(4)]
    most_at_once = max(sum(s <= start < e for s, e in spans) for start, _ in spans)
    assert most_at_once <= 2, spans  # the %2 throttle
    if slurm_cluster.cpus >= 2:  # DefMemPerCPU lets 1-CPU jobs share the node
        assert most_at_once == 2, spans


def test_afterok_waits_for_success(slurm_cluster: LocalSlurmCluster, tmp_path: Path) -> None:
    first = submit(slurm_cluster, tmp_path, "--wrap", "sleep 2; date +%s.%N > first_end")
    second = submit(
        slurm_cluster,
        tmp_path,
        f"--dependency=afterok:{first}",
        "--wrap",
        "test -f first_end && date +%s.%N > second_start",
    )
    waiting = jobs(slurm_cluster, second)[0]
    assert (waiting["JobState"], waiting["Reason"]) == ("PENDING", "Dependency")
    job = wait_state(slurm_cluster, second, "COMPLETED", "FAILED", "CANCELLED")
    assert job["JobState"] == "COMPLETED"
    first_end = float((tmp_path / "first_end").read_text())
    assert float((tmp_path / "second_start").read_text()) >= first_end


def test_afterok_never_runs_after_failure(slurm_cluster: LocalSlurmCluster, tmp_path: Path) -> None:
    first = submit(slurm_cluster, tmp_path, "--wrap", "exit 3")
    second = submit(slurm_cluster, tmp_path, f"--dependency=afterok:{first}", "--wrap", "touch ran")
    failed = wait_state(slurm_cluster, first, "COMPLETED", "FAILED", "CANCELLED")
    assert (failed["JobState"], failed["ExitCode"]) == ("FAILED", "3:0")
    wait_until(
        "DependencyNeverSatisfied",
        lambda: jobs(slurm_cluster, second)[0]["Reason"] == "DependencyNeverSatisfied",
    )
    assert jobs(slurm_cluster, second)[0]["JobState"] == "PENDING"  # stays, never runs
    slurm_cluster.run(["scancel", second])
    wait_state(slurm_cluster, second, "CANCELLED")
    assert not (tmp_path / "ran").exists()


def test_scancel_ends_a_running_job(slurm_cluster: LocalSlurmCluster, tmp_path: Path) -> None:
    job_id = submit(slurm_cluster, tmp_path, "--wrap", "echo $$ > pid; exec sleep 300")
    wait_state(slurm_cluster, job_id, "RUNNING")
    pid_file = tmp_path / "pid"
    wait_until("the job's pid file", lambda: pid_file.is_file() and pid_file.read_text() != "")
    pid = int(pid_file.read_text())
    assert pid_alive(pid)
    slurm_cluster.run(["scancel", job_id])
    wait_state(slurm_cluster, job_id, "CANCELLED")
    wait_until(f"sleep (pid {pid}) to end", lambda: not pid_alive(pid), timeout=15)
    queued = slurm_cluster.run(["squeue", "-h", "-j", job_id, "-o", "%T"]).stdout.split()
    assert queued in ([], ["CANCELLED"])


def test_gres_gpu_sets_cuda_visible_devices(
    slurm_cluster: LocalSlurmCluster, tmp_path: Path
) -> None:
    assert slurm_cluster.gpus >= 2
    script = 'echo "$CUDA_VISIBLE_DEVICES" > gpus_{}'
    one = submit(slurm_cluster, tmp_path, "--gres=gpu:1", "--wrap", script.format(1))
    two = submit(slurm_cluster, tmp_path, "--gres=gpu:2", "--wrap", script.format(2))
    for job_id in (one, two):
        job = wait_state(slurm_cluster, job_id, "COMPLETED", "FAILED", "CANCELLED")
        assert job["JobState"] == "COMPLETED", job
    assert (tmp_path / "gpus_1").read_text().strip() in ("0", "1")
    assert (tmp_path / "gpus_2").read_text().strip() == "0,1"
