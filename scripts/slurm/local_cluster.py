"""A real one-node Slurm cluster on localhost that the test suite starts and stops by itself.

Why: the Slurm backend must be tested against the real daemons (sbatch arrays, afterok
dependencies, scancel, squeue/scontrol), not a mock whose behaviour we would have to guess.
Debian's slurm-wlm 22.05 + munge 0.5 run fine as root without systemd (see
/work/shared/FACTS.md); this module writes a private configuration under one base directory,
starts munged, slurmctld and slurmd in the foreground as our own children, and stops them by
their pid files, so it never touches a system Slurm or another run's cluster.

Stdlib only and importable from a file path (it lives outside the package): the fixture in
tests/helpers/slurm_fixture.py loads it, and it also runs by hand::

    python scripts/slurm/local_cluster.py /tmp/slurm-play   # start, print env, wait for Ctrl-C
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

__all__ = ["LocalSlurmCluster", "SlurmError", "available", "kill_orphans_of_crashed_runs"]

SLURM_DAEMONS = ("slurmctld", "slurmd")
SLURM_CLIENTS = ("sbatch", "squeue", "scontrol", "scancel", "sinfo")
MUNGE_BINARIES = ("munged", "mungekey")
# Debian puts the daemons in /usr/sbin, which a non-login root shell or a venv may not have on PATH.
_SBIN_DIRS = ("/usr/sbin", "/sbin", "/usr/local/sbin")
# Client variables a surrounding Slurm job or the user's shell may set; they would change what
# sbatch/squeue do (SBATCH_PARTITION, SLURM_CONF, …), so env() drops them.
_SLURM_ENV_PREFIXES = ("SLURM_", "SBATCH_", "SALLOC_", "SRUN_", "SQUEUE_", "SINFO_", "SCANCEL_")
# Linux sun_path is 108 bytes including the NUL terminator.
_MAX_SOCKET_PATH = 107
_PR_SET_PDEATHSIG = 1
# Environment markers every daemon, client and job of a cluster carries (env() sets them):
# which cluster (its base dir) and which process started it. Finding processes by them instead
# of by name never touches another run's or the user's Slurm.
_BASE_VAR = "VSR_LOCAL_SLURM_BASE"
_OWNER_VAR = "VSR_LOCAL_SLURM_OWNER"


class SlurmError(RuntimeError):
    """A daemon would not start/stop, or a Slurm client command failed (message has the output)."""


def _which(name: str) -> str | None:
    """Find a Slurm/munge binary on PATH or in the sbin directories Debian installs daemons to."""
    return shutil.which(name) or shutil.which(name, path=os.pathsep.join(_SBIN_DIRS))


def available() -> tuple[bool, str]:
    """Say whether a local cluster can be started here, and if not, why (for pytest.skip)."""
    if not sys.platform.startswith("linux"):
        return False, f"local Slurm cluster needs Linux, not {sys.platform}"
    if os.geteuid() != 0:
        return False, "local Slurm cluster needs root (SlurmUser=root, munged as munge, mknod)"
    missing = [b for b in SLURM_DAEMONS + SLURM_CLIENTS + MUNGE_BINARIES if _which(b) is None]
    if missing:
        return False, f"missing {' '.join(missing)}: run scripts/slurm/install.sh as root"
    try:
        _munge_user()
    except KeyError:
        return False, "no 'munge' user (is the munge package installed?)"
    return True, ""


def _munge_user() -> tuple[int, int]:
    """(uid, gid) of the munge user; KeyError when there is none.

    pwd is imported here, not at the top: it does not exist on Windows, where the test suite
    still imports this module (through tests/helpers/slurm_fixture.py) and then skips.
    """
    import pwd

    entry = pwd.getpwnam("munge")
    return entry.pw_uid, entry.pw_gid


def _free_port() -> int:
    """A TCP port free right now on all interfaces (slurmctld/slurmd bind 0.0.0.0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("", 0))
        return int(sock.getsockname()[1])


def _mem_total_mb() -> int:
    """The machine's memory in MB as slurmd counts it (MemTotal of /proc/meminfo)."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise SlurmError("no MemTotal in /proc/meminfo")


def _set_parent_death_signal() -> None:
    """Runs in the child before exec: get SIGTERM if the test process dies without stop().

    So a pytest killed with SIGKILL does not leave daemons behind. Called after Popen has
    switched to the munge user (a uid change would clear the setting).
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)


def _tail(path: Path, lines: int = 25) -> str:
    """The last lines of a log, for error messages; never raises."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"  ({path}: {exc.strerror})"
    return "\n".join("  " + line for line in text.splitlines()[-lines:]) or f"  ({path}: empty)"


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/pid/stat from field 3 (state) on, or None when the process is gone.

    The command name before it is parenthesised and may contain spaces, hence the rsplit.
    Index 0 is the state, 1 the parent pid, 19 the start time.
    """
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _pid_alive(pid: int) -> bool:
    """True while pid exists and is not a zombie (a zombie has exited, only its entry remains)."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def _cmdline(pid: int) -> list[str]:
    """A process's argv, empty when it is gone or unreadable."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


@dataclass
class _Daemon:
    """One daemon we started: how to find it again (pid file + a marker in its argv)."""

    name: str
    pid_file: Path
    # An argument only this cluster's instance has (its config or socket path): guards against
    # killing an unrelated process that reused the pid.
    marker: str
    stderr_file: Path
    log_file: Path
    process: subprocess.Popen[bytes] | None = None

    def pids(self) -> list[int]:
        """Live pids that are really this daemon: from the pid file, else our Popen handle."""
        found: list[int] = []
        with contextlib.suppress(OSError, ValueError):
            found.append(int(self.pid_file.read_text().split()[0]))
        if self.process is not None and self.process.poll() is None:
            found.append(self.process.pid)
        return [
            pid
            for pid in dict.fromkeys(found)
            if _pid_alive(pid) and any(self.marker in arg for arg in _cmdline(pid))
        ]

    def running(self) -> bool:
        """Whether the daemon is (still) up."""
        if self.process is not None:
            return self.process.poll() is None
        return bool(self.pids())


class LocalSlurmCluster:
    """A private one-node Slurm (munged + slurmctld + slurmd) with everything under base_dir.

    Usage::

        with LocalSlurmCluster(base_dir) as cluster:
            cluster.run(["sbatch", "--wrap", "true"])
            subprocess.run(["squeue"], env=cluster.env())

    or ``cluster = LocalSlurmCluster(); cluster.start(base_dir); ...; cluster.stop()``.
    The node has the machine's real CPU count, ``gpus`` fake GPUs (``--gres=gpu:N`` works and
    sets CUDA_VISIBLE_DEVICES), and DefMemPerCPU so single-CPU jobs run side by side. There is no
    accounting database: poll ``squeue``/``scontrol show job`` (finished jobs stay visible for
    ``min_job_age`` seconds), not ``sacct``.
    """

    partition = "debug"

    def __init__(
        self,
        base_dir: Path | None = None,
        *,
        gpus: int = 2,
        start_timeout: float = 60.0,
        min_job_age: int = 3600,
    ) -> None:
        self._base_dir = Path(base_dir).resolve() if base_dir is not None else None
        self.gpus = gpus
        self.start_timeout = start_timeout
        self.min_job_age = min_job_age
        self.node_name = socket.gethostname().split(".")[0]
        self.cpus = os.cpu_count() or 1
        # A bit under the machine's memory: slurmd drains a node whose RealMemory exceeds what
        # it measures, and this leaves room for the OS.
        self.real_memory_mb = max(256, int(_mem_total_mb() * 0.9))
        # Without DefMemPerCPU a job gets the whole node's memory and jobs run one at a time.
        self.def_mem_per_cpu_mb = self.real_memory_mb // self.cpus
        self.ctld_port = 0
        self.slurmd_port = 0
        self._daemons: list[_Daemon] = []
        self._owner = _owner_token(os.getpid())
        self._started = False

    # ----------------------------------------------------------------------------- paths

    @property
    def base_dir(self) -> Path:
        """Where config, state, spool, logs, pid files, munge key/socket and fake devices live."""
        if self._base_dir is None:
            raise SlurmError("no base_dir: pass it to LocalSlurmCluster() or start()")
        return self._base_dir

    @property
    def conf_path(self) -> Path:
        """The generated slurm.conf (gres.conf sits next to it, where Slurm looks for it)."""
        return self.base_dir / "etc" / "slurm.conf"

    @property
    def munge_dir(self) -> Path:
        """munged's own directory, owned by the munge user as munged insists."""
        return self.base_dir / "munge"

    @property
    def munge_socket(self) -> Path:
        """The munge socket Slurm daemons and clients use (AuthInfo=socket=… in slurm.conf)."""
        return self.munge_dir / "munge.socket"

    @property
    def log_dir(self) -> Path:
        """Daemon logs and their stderr."""
        return self.base_dir / "log"

    # ------------------------------------------------------------------------ public API

    def env(self) -> dict[str, str]:
        """Environment for Slurm clients (and the jobs they submit): our SLURM_CONF, no other
        SLURM_*/SBATCH_* variables leaking in from the caller's environment, and the markers
        by which stop() finds this cluster's job processes."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(_SLURM_ENV_PREFIXES)}
        env["SLURM_CONF"] = str(self.conf_path)
        env[_BASE_VAR] = str(self.base_dir)
        env[_OWNER_VAR] = self._owner
        return env

    def run(
        self,
        args: Sequence[str],
        *,
        check: bool = True,
        timeout: float = 30.0,
        cwd: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a Slurm client (``["squeue", "-h"]``) against this cluster; text output.

        With check, a non-zero exit raises SlurmError carrying stdout and stderr (a bare
        CalledProcessError would hide why Slurm refused).
        """
        argv = [_which(args[0]) or args[0], *args[1:]]
        result = subprocess.run(
            argv,
            env=self.env(),
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        if check and result.returncode != 0:
            raise SlurmError(
                f"{' '.join(args)} exited {result.returncode}\n"
                f"stdout: {result.stdout.strip()}\nstderr: {result.stderr.strip()}"
            )
        return result

    def start(self, base_dir: Path | None = None) -> LocalSlurmCluster:
        """Write the configuration, start munged, slurmctld and slurmd; return once the node is
        idle. On any failure everything started so far is stopped and SlurmError says why,
        with the daemons' log tails."""
        if self._started:
            return self
        if base_dir is not None:
            self._base_dir = Path(base_dir).resolve()
        ok, reason = available()
        if not ok:
            raise SlurmError(reason)
        self._prepare_dirs()
        # A reused base_dir may still have daemons from a crashed run: they hold its ports and
        # munge socket, so stop them (pid files + argv marker: only this base_dir's daemons).
        self._daemons = self._daemon_specs()
        self._stop_daemons()
        kill_orphans_of_crashed_runs()
        # The daemons die with this process (parent-death signal); jobs carry its token.
        self._owner = _owner_token(os.getpid())
        self.ctld_port, self.slurmd_port = _free_port(), _free_port()
        while self.slurmd_port == self.ctld_port:
            self.slurmd_port = _free_port()
        self._write_config()
        self._started = True
        try:
            self._start_munged()
            self._start_slurmctld()
            self._start_slurmd()
            self._wait_node_idle()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Cancel all jobs, stop slurmd, slurmctld and munged by their pid files, wait for them
        to exit, and kill any job process still carrying this cluster's marker.

        Safe to call twice, after a failed start, or when a daemon already died.
        """
        if self._base_dir is None:
            return
        if not self._daemons:
            self._daemons = self._daemon_specs()
        try:
            if self._daemons[1].running():
                self._cancel_all_jobs()
        finally:
            self._stop_daemons()
            self._started = False

    def __enter__(self) -> LocalSlurmCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------------ internals

    def _daemon_specs(self) -> list[_Daemon]:
        """munged, slurmctld, slurmd: in start order (stop goes in reverse)."""
        run_dir, logs = self.base_dir / "run", self.log_dir
        conf = str(self.conf_path)
        return [
            _Daemon(
                "munged",
                self.munge_dir / "munged.pid",
                str(self.munge_socket),
                logs / "munged.stderr",
                logs / "munged.stderr",  # in the foreground munged logs to stderr only
            ),
            _Daemon(
                "slurmctld",
                run_dir / "slurmctld.pid",
                conf,
                logs / "slurmctld.stderr",
                logs / "slurmctld.log",
            ),
            _Daemon(
                "slurmd", run_dir / "slurmd.pid", conf, logs / "slurmd.stderr", logs / "slurmd.log"
            ),
        ]

    def _prepare_dirs(self) -> None:
        """Create the tree; make the path to munge's socket reachable for the munge user."""
        base = self.base_dir
        for sub in ("etc", "state", "spool", "run", "log", "dev"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        if len(str(self.munge_socket)) > _MAX_SOCKET_PATH:
            raise SlurmError(f"munge socket path too long for a Unix socket: {self.munge_socket}")
        # munged runs as munge and refuses a socket whose directories are not searchable by
        # all (u, g and o); pytest's temp dirs are 0700. Add g+x,o+x (search, not list) to
        # the dirs we own. pytest puts its pytest-of-<user> dir back to 0700 next session.
        search_all = stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH
        for directory in (base, *base.parents):
            st = directory.stat()
            if st.st_mode & search_all != search_all and st.st_uid == os.geteuid():
                directory.chmod(stat.S_IMODE(st.st_mode) | search_all)
        munge = _munge_user()
        self.munge_dir.mkdir(exist_ok=True)
        os.chown(self.munge_dir, *munge)
        self.munge_dir.chmod(0o755)  # munged: socket dir must be searchable, not writable by all
        # Fake GPUs: a count-only gres.conf marks the node INVAL, so give each GPU a device
        # file (a copy of /dev/null's major/minor; nothing ever opens it for real).
        for index in range(self.gpus):
            device = base / "dev" / f"nvidia{index}"
            if not device.exists():
                os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(1, 3))

    def _write_config(self) -> None:
        """slurm.conf and gres.conf next to each other (slurmd reads gres.conf from there)."""
        base = self.base_dir
        node = self.node_name
        gres = f" Gres=gpu:{self.gpus}" if self.gpus else ""
        # CPUs= alone (no sockets/cores/threads): Slurm then treats each CPU as a core, so on a
        # hyper-threaded machine CR_Core still lets two 1-CPU jobs share a physical core.
        lines = [
            "# Generated by scripts/slurm/local_cluster.py for tests; regenerated each start.",
            f"ClusterName=vsrtest{self.ctld_port}",
            f"SlurmctldHost={node}(127.0.0.1)",
            f"SlurmctldPort={self.ctld_port}",
            f"SlurmdPort={self.slurmd_port}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={self.munge_socket}",
            f"StateSaveLocation={base / 'state'}",
            f"SlurmdSpoolDir={base / 'spool'}",
            f"SlurmctldPidFile={base / 'run' / 'slurmctld.pid'}",
            f"SlurmdPidFile={base / 'run' / 'slurmd.pid'}",
            f"SlurmctldLogFile={self.log_dir / 'slurmctld.log'}",
            f"SlurmdLogFile={self.log_dir / 'slurmd.log'}",
            "SlurmctldDebug=info",
            "SlurmdDebug=info",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            f"DefMemPerCPU={self.def_mem_per_cpu_mb}",
            "SchedulerType=sched/backfill",
            # Default batch_sched_delay=3 holds each sbatch job ~2.5 s before it is scheduled;
            # tests wait on every job, so schedule at submit time.
            "SchedulerParameters=batch_sched_delay=0",
            "AccountingStorageType=accounting_storage/none",
            "JobAcctGatherType=jobacct_gather/none",
            "JobCompType=jobcomp/none",
            "MpiDefault=none",
            "MailProg=/bin/true",  # Debian has no mail program by default: slurmctld complains
            "ReturnToService=2",
            # Without accounting, finished jobs are only visible to scontrol/squeue this long.
            f"MinJobAge={self.min_job_age}",
            "KillWait=5",
            "InactiveLimit=0",
            "SlurmctldTimeout=30",
            "SlurmdTimeout=60",
            "GresTypes=gpu",
            f"NodeName={node} NodeAddr=127.0.0.1 CPUs={self.cpus} "
            f"RealMemory={self.real_memory_mb}{gres} State=UNKNOWN",
            f"PartitionName={self.partition} Nodes={node} Default=YES MaxTime=INFINITE State=UP",
        ]
        self.conf_path.write_text("\n".join(lines) + "\n")
        gres_lines = [
            f"NodeName={node} Name=gpu File={base / 'dev' / f'nvidia{i}'}" for i in range(self.gpus)
        ]
        (self.conf_path.parent / "gres.conf").write_text("\n".join(gres_lines) + "\n")

    def _spawn(self, daemon: _Daemon, argv: list[str], *, user: str | None = None) -> None:
        """Start a daemon in the foreground as our child (so we reap it and see it die early);
        its own session, so a Ctrl-C meant for pytest does not kill it before stop() runs."""
        with open(os.devnull, "rb") as stdin, open(daemon.stderr_file, "ab") as err:
            daemon.process = subprocess.Popen(
                argv,
                stdin=stdin,
                stdout=err,
                stderr=err,
                env=self.env(),
                cwd=self.base_dir,
                user=user,
                group=user,
                extra_groups=[] if user else None,
                start_new_session=True,
                preexec_fn=_set_parent_death_signal,
            )

    def _wait(self, what: str, ready: Callable[[], bool], timeout: float) -> None:
        """Poll ready() until true; fail early when a daemon died, else on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            if ready():
                return
            dead = [d.name for d in self._daemons if d.process is not None and not d.running()]
            if dead or time.monotonic() > deadline:
                why = f"{', '.join(dead)} exited" if dead else f"timed out after {timeout:.0f}s"
                raise SlurmError(f"waiting for {what}: {why}\n{self._logs_report()}")
            time.sleep(0.2)

    def _logs_report(self) -> str:
        """Tails of every daemon's log and stderr, for start-up errors."""
        parts = []
        for daemon in self._daemons:
            for path in dict.fromkeys((daemon.log_file, daemon.stderr_file)):
                if path.exists():
                    parts.append(f"--- {path}\n{_tail(path)}")
        return "\n".join(parts)

    def _start_munged(self) -> None:
        """Create a fresh key (munge-owned, 0400) and start munged as the munge user."""
        key = self.munge_dir / "munge.key"
        if not key.exists():
            subprocess.run(
                [_which("mungekey") or "mungekey", "--create", f"--keyfile={key}"],
                check=True,
                capture_output=True,
            )
        munge = _munge_user()
        os.chown(key, *munge)
        key.chmod(0o400)
        daemon = self._daemons[0]
        self._spawn(
            daemon,
            [
                _which("munged") or "munged",
                "--foreground",
                f"--socket={self.munge_socket}",
                f"--key-file={key}",
                f"--pid-file={daemon.pid_file}",
                f"--seed-file={self.munge_dir / 'munged.seed'}",
            ],
            user="munge",
        )
        self._wait("munged's socket", self.munge_socket.is_socket, 15)

    def _start_slurmctld(self) -> None:
        """Start the controller and wait until it answers `scontrol ping`."""
        daemon = self._daemons[1]
        self._spawn(daemon, [_which("slurmctld") or "slurmctld", "-D", "-f", str(self.conf_path)])

        def up() -> bool:
            ping = self.run(["scontrol", "ping"], check=False, timeout=15)
            return ping.returncode == 0 and " is UP" in ping.stdout

        self._wait("slurmctld", up, self.start_timeout)

    def _start_slurmd(self) -> None:
        """Start the node daemon under the node name from slurm.conf."""
        daemon = self._daemons[2]
        self._spawn(
            daemon,
            [_which("slurmd") or "slurmd", "-D", "-f", str(self.conf_path), "-N", self.node_name],
        )

    def node_state(self) -> str:
        """The node's State= from scontrol (IDLE, MIXED, ALLOCATED, IDLE+DRAIN, INVAL …)."""
        out = self.run(["scontrol", "-o", "show", "node", self.node_name], check=False).stdout
        match = re.search(r"\bState=(\S+)", out)
        return match.group(1) if match else ""

    def _wait_node_idle(self) -> None:
        """The cluster is usable once slurmd registered and the node is plain IDLE."""
        self._wait("node IDLE", lambda: self.node_state() == "IDLE", self.start_timeout)

    def _cancel_all_jobs(self) -> None:
        """Cancel every pending/running job and wait briefly, so slurmd kills their processes
        (slurmd exiting leaves jobs running; their slurmstepd would outlive the cluster)."""
        listed = self.run(["squeue", "-h", "-o", "%A"], check=False, timeout=15)
        job_ids = sorted(set(listed.stdout.split()))
        if listed.returncode != 0 or not job_ids:
            return
        self.run(["scancel", *job_ids], check=False, timeout=15)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            active = self.run(["squeue", "-h", "-o", "%A"], check=False, timeout=15)
            if active.returncode != 0 or not active.stdout.split():
                return
            time.sleep(0.2)

    def _stop_daemons(self) -> None:
        """SIGTERM each daemon (reverse start order) by pid file, wait, then SIGKILL."""
        for daemon in reversed(self._daemons):
            if daemon.name == "munged":
                # Last, and after the job leftovers: slurmstepd still talks to munge.
                self._kill_leftovers()
            self._terminate(daemon)

    def _terminate(self, daemon: _Daemon, grace: float = 15.0) -> None:
        """Stop one daemon and wait until it is gone (and reaped when it is our child)."""
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            pids = daemon.pids()
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + wait
            while any(_pid_alive(pid) for pid in pids) and time.monotonic() < deadline:
                if daemon.process is not None:
                    daemon.process.poll()  # reap, so our child does not linger as a zombie
                time.sleep(0.05)
        if daemon.process is not None:
            try:
                daemon.process.wait(timeout=5)
            except subprocess.TimeoutExpired as exc:
                raise SlurmError(f"{daemon.name} (pid {daemon.process.pid}) did not exit") from exc
            daemon.process = None
        if any(_pid_alive(pid) for pid in daemon.pids()):
            raise SlurmError(f"{daemon.name} still running after SIGKILL")

    def _leftover_pids(self) -> set[int]:
        """This cluster's processes other than its daemons: slurmstepd, job scripts and their
        children. Found by the base-dir marker in their environment (from env()), not by name."""
        daemons = {pid for daemon in self._daemons for pid in daemon.pids()}
        table = _process_table()
        marked = {pid for pid, (_, base, _) in table.items() if base == str(self.base_dir)}
        return _with_descendants(marked - daemons, table) - daemons - {os.getpid()}

    def _kill_leftovers(self) -> None:
        """SIGKILL job processes the scancel above did not end (slurmd may already be gone)."""
        _kill_and_wait(self._leftover_pids())


def _process_table() -> dict[int, tuple[int, str | None, str | None]]:
    """pid -> (ppid, our base-dir marker, our owner marker) for every live process."""
    table: dict[int, tuple[int, str | None, str | None]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is None or fields[0] in ("Z", "X"):
            continue
        base = owner = None
        with contextlib.suppress(OSError):
            for item in (entry / "environ").read_bytes().split(b"\0"):
                if item.startswith(f"{_BASE_VAR}=".encode()):
                    base = item.split(b"=", 1)[1].decode(errors="replace")
                elif item.startswith(f"{_OWNER_VAR}=".encode()):
                    owner = item.split(b"=", 1)[1].decode(errors="replace")
        table[int(entry.name)] = (int(fields[1]), base, owner)
    return table


def _with_descendants(
    roots: set[int], table: dict[int, tuple[int, str | None, str | None]]
) -> set[int]:
    """roots plus all their children, grandchildren … (a job started with --export=NONE has
    no marker of its own, but its slurmstepd has)."""
    found = set(roots)
    grew = True
    while grew:
        children = {pid for pid, (ppid, _, _) in table.items() if ppid in found}
        grew = not children <= found
        found |= children
    return found


def _kill_and_wait(pids: set[int], timeout: float = 5.0) -> None:
    """SIGKILL pids and wait until they are gone (or zombies: dead, awaiting their reaper)."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while any(_pid_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)


def _owner_token(pid: int) -> str:
    """pid:start-time of a process: names the process that started a cluster, and still tells
    a reused pid apart once that process has died."""
    fields = _stat_fields(pid)
    return f"{pid}:{fields[19] if fields else '?'}"


def kill_orphans_of_crashed_runs() -> int:
    """Kill processes left by clusters whose starting process died without stop() (a pytest
    killed with SIGKILL); return how many. The daemons die with their parent (parent-death
    signal), but running jobs and their slurmstepd would live on. Only processes carrying our
    owner marker whose owner is gone are touched, never another live run's."""
    table = _process_table()
    orphans: set[int] = set()
    for pid, (_, _, owner) in table.items():
        if owner is None:
            continue
        owner_pid = owner.split(":", 1)[0]
        if not owner_pid.isdigit() or _owner_token(int(owner_pid)) != owner:
            orphans.add(pid)
    orphans = _with_descendants(orphans, table) - {os.getpid()}
    _kill_and_wait(orphans)
    return len(orphans)


def main(argv: Sequence[str] | None = None) -> int:
    """Start a cluster in the given directory and keep it up until Ctrl-C (for poking by hand)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print(f"usage: {Path(sys.argv[0]).name} BASE_DIR", file=sys.stderr)
        return 2
    started = time.monotonic()
    with LocalSlurmCluster(Path(args[0])) as cluster:
        print(f"up in {time.monotonic() - started:.1f}s; in another shell:")
        print(f"  export SLURM_CONF={cluster.conf_path}")
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
