"""How the Slurm backend reaches the cluster: here (this machine is a submit host and sees the
shared folder) or over SSH to a login host (the app runs on a laptop that sees neither).

Both transports offer the same few operations, so the backend is written once: run a Slurm
client, write/read a small file, make folders, copy the source up and the output down, remove
files, tail a log, and fetch the job's plan and progress files into a local folder for
`read_progress`. Over SSH each operation is one `ssh` call (progress included: one call cats
every progress file), so a poll costs a fixed handful of round trips whatever the chunk count.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import IO, Any, Protocol

from vsr_desktop.core import safe_values
from vsr_desktop.core.errors import CancelledError, InputError, JobError

log = logging.getLogger(__name__)

_COMMAND_TIMEOUT = 60.0
_STREAM_BLOCK = 1024 * 1024

#: Bytes done, bytes in all: how a transfer reports itself.
BytesCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class SshLogin:
    """An SSH login host: `user@host`, and what `ssh` needs beyond the user's ssh config.

    Every field is checked when a login is made (from the command line, the settings or a
    stored job): a host is never an ssh option, an option never runs a command.
    """

    host: str
    port: int | None = None
    key: str | None = None
    options: tuple[str, ...] = ()  # extra `-o NAME=VALUE` (e.g. a known_hosts file)

    def __post_init__(self) -> None:
        safe_values.ssh_host(self.host, "ssh login")
        safe_values.ssh_port(self.port, "ssh port")
        if self.key is not None:
            safe_values.file_path(self.key, "ssh key")
        if not isinstance(self.options, tuple):
            raise InputError("ssh options must be a list of NAME=VALUE")
        for option in self.options:
            safe_values.ssh_option(option, "ssh option")

    @property
    def place(self) -> str:
        """Which cluster this is, for the keychain: secrets are sent only where they belong."""
        return f"ssh://{self.host}:{self.port or 22}"

    def ssh_args(self) -> list[str]:
        """`ssh` with BatchMode (never prompt: the app has no terminal), up to the host
        (after `--`: nothing that follows is read as an ssh option)."""
        args = [
            "ssh",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=15",
            "-o",
            "ServerAliveInterval=15",
            "-o",
            "ServerAliveCountMax=4",
        ]
        for option in self.options:
            args += ["-o", option]
        if self.port:
            args += ["-p", str(self.port)]
        if self.key:
            args += ["-i", self.key]
        return [*args, "--", self.host]

    def to_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port,
            "key": self.key,
            "options": list(self.options),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SshLogin:
        options = data.get("options") or []
        if not isinstance(options, list):
            raise InputError("ssh options must be a list of NAME=VALUE")
        return cls(
            host=data["host"],
            port=data.get("port"),
            key=data.get("key"),
            options=tuple(options),
        )


# --- secrets: environment values for the Slurm clients --------------------------------------

KEYRING_SERVICE = "vsr-desktop-slurm"
LOCAL_PLACE = "local"
_MIN_REDACTED = 4  # shorter values would blank out ordinary text (and hide little)


def _keyring() -> Any:
    try:
        import keyring
    except ImportError:  # the optional dependency is not installed
        return None
    return keyring


def keep_in_keychain(place: str, values: Mapping[str, str]) -> list[str]:
    """Keep environment values for `place` in the OS keychain (one item per variable), so
    later commands (another process, the app after a restart) can send them again without
    any file of ours holding them. Returns the names that could not be kept."""
    keyring = _keyring()
    lost: list[str] = []
    for name, value in values.items():
        try:
            if keyring is None:
                raise RuntimeError("keyring is not installed")
            keyring.set_password(KEYRING_SERVICE, f"{place} {name}", value)
        except Exception as exc:
            log.debug("keychain refused %s for %s: %s", name, place, type(exc).__name__)
            lost.append(name)
    if lost:
        log.warning(
            "no OS keychain to keep %s for %s: later commands read %s from their "
            "environment (export %s=… before `vsr slurm status`, or run the app with it set)",
            ", ".join(lost),
            place,
            "it" if len(lost) == 1 else "them",
            lost[0],
        )
    return lost


def from_keychain(place: str, name: str) -> str | None:
    keyring = _keyring()
    if keyring is None:
        return None
    try:
        value = keyring.get_password(KEYRING_SERVICE, f"{place} {name}")
    except Exception as exc:
        log.debug("keychain lookup of %s for %s failed: %s", name, place, type(exc).__name__)
        return None
    return value if isinstance(value, str) else None


def resolve_env(
    place: str, names: Sequence[str], known: Mapping[str, str]
) -> dict[str, str | None]:
    """Each variable's value: given to this process (`known`), else the keychain's for
    `place`, else this process's environment; None where none has it."""
    result: dict[str, str | None] = {}
    for name in names:
        value = known.get(name)
        if value is None:
            value = from_keychain(place, name)
        if value is None:
            value = os.environ.get(name)
        result[name] = value
    return result


def _checked_env(env: Mapping[str, str | None], where: str) -> dict[str, str]:
    """The values to send, each name and value checked again; a missing one is an error
    (a Slurm client run without, say, its SLURM_CONF could reach another cluster)."""
    missing = [name for name, value in env.items() if value is None]
    if missing:
        raise JobError(
            f"{', '.join(missing)} for {where} is in neither the keychain nor the environment",
            f"export {missing[0]}=… and try again, or submit with --ssh-env {missing[0]}=VALUE "
            "where a keychain can keep it",
        )
    checked: dict[str, str] = {}
    for name, value in env.items():
        assert value is not None
        checked[safe_values.env_name(name, "environment variable")] = safe_values.env_value(
            value, f"the value of {name}"
        )
    return checked


def redact(text: str, secrets: Sequence[str]) -> str:
    """`text` with every secret value in it replaced by ***, and whatever else looks like a
    credential (tokens, passwords, keys: core/redact.py) masked as well."""
    from vsr_desktop.core.redact import redact_secrets

    return redact_secrets(text, [s for s in secrets if len(s) >= _MIN_REDACTED])


class Transport(Protocol):
    """What the Slurm backend does on the cluster side."""

    remote: bool

    def run(self, args: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]: ...

    def write_text(self, path: PurePath, text: str) -> None: ...

    def read_text(self, path: PurePath) -> str: ...

    def mkdirs(self, *paths: PurePath) -> None: ...

    def remove(self, paths: Sequence[PurePath]) -> None: ...

    def remove_tree(self, path: PurePath) -> None: ...

    def tail(self, path: PurePath, lines: int = 5) -> str: ...

    def job_files(self, workdir: PurePath, into: Path) -> Path: ...


def _failed(
    args: Sequence[str], result: subprocess.CompletedProcess[Any], secrets: Sequence[str] = ()
) -> JobError:
    detail = (
        result.stderr
        if isinstance(result.stderr, str)
        else (result.stderr or b"").decode(errors="replace")
    )
    return JobError(
        redact(f"{args[0]} failed: {detail.strip() or str(result.stdout).strip()}", secrets),
        "check the partition and options, or ask the cluster admin",
    )


@dataclass
class LocalTransport:
    """This machine submits and sees the shared folder: files are plain local files."""

    # Variables for the Slurm clients (None: found nowhere); passed in the child's
    # environment, never on a command line.
    env: Mapping[str, str | None] = field(default_factory=dict, repr=False)
    remote: bool = False

    def secrets(self) -> list[str]:
        return [v for v in self.env.values() if v]

    def run(self, args: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        env = _checked_env(self.env, "the Slurm clients here")
        try:
            result = subprocess.run(
                list(args),
                capture_output=True,
                text=True,
                timeout=_COMMAND_TIMEOUT,
                env={**os.environ, **env},
            )
        except FileNotFoundError as exc:
            raise JobError(
                f"{args[0]} is not installed here",
                "install Slurm's client tools or submit over SSH",
            ) from exc
        except subprocess.TimeoutExpired as exc:
            raise JobError(
                f"{args[0]} did not answer within {_COMMAND_TIMEOUT:.0f} s",
                "check the cluster's controller",
            ) from exc
        if check and result.returncode != 0:
            raise _failed(args, result, self.secrets())
        return result

    def write_text(self, path: PurePath, text: str) -> None:
        Path(path).write_text(text)

    def read_text(self, path: PurePath) -> str:
        return Path(path).read_text()

    def mkdirs(self, *paths: PurePath) -> None:
        """Folders of a job: owner-only (they hold the user's footage and job files), and
        tightened if an older version left them looser."""
        for path in paths:
            Path(path).mkdir(parents=True, exist_ok=True, mode=0o700)
            if os.name == "posix" and Path(path).stat().st_mode & 0o077:
                os.chmod(path, 0o700)

    def remove(self, paths: Sequence[PurePath]) -> None:
        for path in paths:
            Path(path).unlink(missing_ok=True)

    def remove_tree(self, path: PurePath) -> None:
        try:
            shutil.rmtree(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise JobError(
                f"cannot delete {path}: {exc.strerror or exc}", "delete the folder by hand"
            ) from exc

    def tail(self, path: PurePath, lines: int = 5) -> str:
        try:
            text = Path(path).read_text(errors="replace").strip().splitlines()
        except OSError:
            return f"(no log at {path})"
        return redact(" | ".join(text[-lines:]), self.secrets())

    def job_files(self, workdir: PurePath, into: Path) -> Path:
        """The work folder is here already: read it in place."""
        return Path(workdir)


@dataclass
class SshTransport:
    """The login host over SSH; every path is a path on the cluster.

    Variables for the Slurm clients (`env`, None: found nowhere) go to the login host on
    ssh's standard input, read there by `read -r` into the named variables: their values
    are never on a command line (`ps` shows only their names) nor in any file.
    """

    login: SshLogin
    env: Mapping[str, str | None] = field(default_factory=dict, repr=False)
    remote: bool = True

    def secrets(self) -> list[str]:
        return [v for v in self.env.values() if v]

    def _ssh(
        self,
        command: str,
        *,
        stdin: IO[bytes] | None = None,
        stdout: IO[bytes] | None = None,
        timeout: float | None = _COMMAND_TIMEOUT,
        check: bool = True,
        with_env: bool = False,
    ) -> subprocess.CompletedProcess[Any]:
        """One ssh call running `command` (a shell line) on the login host; `with_env`:
        the variables are set first, their values fed on stdin."""
        feed: bytes | None = None
        if with_env and self.env:
            assert stdin is None, "the environment and a file cannot share stdin"
            env = _checked_env(self.env, self.login.host)
            reads = "".join(f"IFS= read -r {name} || exit 97; " for name in env)
            command = f"{reads}export {' '.join(env)}; {command}"
            feed = "".join(f"{value}\n" for value in env.values()).encode()
        args = self._args(command)
        try:
            result = subprocess.run(
                args,
                input=feed,
                stdin=None if feed is not None else stdin or subprocess.DEVNULL,
                stdout=stdout if stdout is not None else subprocess.PIPE,
                stderr=subprocess.PIPE,
                timeout=timeout,
            )
        except FileNotFoundError as exc:
            raise JobError("ssh is not installed here", "install an OpenSSH client") from exc
        except subprocess.TimeoutExpired as exc:
            raise JobError(
                f"{self.login.host} did not answer within {timeout:.0f} s",
                "check the network and the login host",
            ) from exc
        self._check(command, result, check)
        return result

    def _args(self, command: str) -> list[str]:
        """`ssh … -- HOST COMMAND`."""
        return [*self.login.ssh_args(), command]

    def _check(self, command: str, result: subprocess.CompletedProcess[Any], check: bool) -> None:
        if result.returncode == 255:  # ssh's own failure: connection or authentication
            stderr = result.stderr
            detail = (
                stderr.decode(errors="replace") if isinstance(stderr, bytes) else str(stderr or "")
            ).strip()
            raise JobError(
                redact(f"cannot reach {self.login.host} over SSH: {detail}", self.secrets()),
                "check that `ssh -o BatchMode=yes HOST` works without a password "
                "(an SSH key loaded or given with --ssh-key)",
            )
        if check and result.returncode != 0:
            raise _failed([command.split()[0] if command else "ssh"], result, self.secrets())

    def _stream(
        self,
        command: str,
        *,
        source: IO[bytes] | None = None,
        sink: IO[bytes] | None = None,
        start: int,
        total: int,
        on_bytes: BytesCallback | None,
        cancel: threading.Event | None,
    ) -> None:
        """One ssh call fed from `source` or feeding `sink` block by block, so a transfer
        reports its bytes and stops on `cancel` (what it wrote so far stays, to resume)."""
        with tempfile.TemporaryFile() as errors:
            try:
                proc = subprocess.Popen(
                    self._args(command),
                    stdin=subprocess.PIPE if source is not None else subprocess.DEVNULL,
                    stdout=subprocess.PIPE if sink is not None else subprocess.DEVNULL,
                    stderr=errors,
                )
            except FileNotFoundError as exc:
                raise JobError("ssh is not installed here", "install an OpenSSH client") from exc
            try:
                self._pump(proc, source, sink, start, total, on_bytes, cancel)
                returncode = proc.wait()
            finally:
                if proc.poll() is None:  # cancelled or failed here: stop the transfer
                    proc.kill()
                    proc.wait()
                for pipe in (proc.stdin, proc.stdout):
                    if pipe is not None:
                        with contextlib.suppress(BrokenPipeError):
                            pipe.close()
            errors.seek(0)
            self._check(
                command, subprocess.CompletedProcess(command, returncode, b"", errors.read()), True
            )

    @staticmethod
    def _pump(
        proc: subprocess.Popen[bytes],
        source: IO[bytes] | None,
        sink: IO[bytes] | None,
        done: int,
        total: int,
        on_bytes: BytesCallback | None,
        cancel: threading.Event | None,
    ) -> None:
        """Copy source → ssh's stdin, or ssh's stdout → sink, until the end or `cancel`."""
        while True:
            if cancel is not None and cancel.is_set():
                raise CancelledError(
                    "the transfer was cancelled",
                    "send or fetch it again: it resumes where it stopped",
                )
            if source is not None:
                block = source.read(_STREAM_BLOCK)
                if not block:
                    break
                try:
                    assert proc.stdin is not None
                    proc.stdin.write(block)
                except BrokenPipeError:  # the remote side ended: its status says why
                    break
            else:
                assert proc.stdout is not None and sink is not None
                block = proc.stdout.read1(_STREAM_BLOCK)  # type: ignore[attr-defined]
                if not block:
                    break
                sink.write(block)
            done += len(block)
            if on_bytes is not None:
                on_bytes(done, total)
        if proc.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.close()

    def run(self, args: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        """A program on the login host, its words quoted, with the Slurm clients' variables."""
        result = self._ssh(shlex.join(args), check=False, with_env=True)
        text = subprocess.CompletedProcess(
            args,
            result.returncode,
            (result.stdout or b"").decode(errors="replace"),
            redact(result.stderr.decode(errors="replace"), self.secrets()),
        )
        if check and text.returncode != 0:
            raise _failed(args, text, self.secrets())
        return text

    def write_text(self, path: PurePath, text: str) -> None:
        with tempfile.TemporaryFile() as data:
            data.write(text.encode())
            data.seek(0)
            self._ssh(f"cat > {_q(path)}", stdin=data)

    def read_text(self, path: PurePath) -> str:
        return self._ssh(f"cat {_q(path)}").stdout.decode(errors="replace")

    def mkdirs(self, *paths: PurePath) -> None:
        """Owner-only folders on the cluster (made with umask 077, tightened if looser)."""
        names = " ".join(_q(p) for p in paths)
        self._ssh(f"umask 077 && mkdir -p -- {names} && chmod go-rwx -- {names}")

    def remove(self, paths: Sequence[PurePath]) -> None:
        if paths:
            self._ssh("rm -f " + " ".join(_q(p) for p in paths))

    def remove_tree(self, path: PurePath) -> None:
        self._ssh(f"rm -rf -- {_q(path)}")

    def tail(self, path: PurePath, lines: int = 5) -> str:
        result = self._ssh(f"tail -n {int(lines)} {_q(path)}", check=False)
        if result.returncode != 0:
            return f"(no log at {path} on {self.login.host})"
        text = " | ".join(result.stdout.decode(errors="replace").strip().splitlines())
        return redact(text, self.secrets())

    def job_files(self, workdir: PurePath, into: Path) -> Path:
        """plan.json and every progress file in one call, NUL-separated, copied into `into`."""
        script = (
            f"cd {_q(workdir)} 2>/dev/null || exit 0; "
            'for f in plan.json progress/*.json; do [ -f "$f" ] || continue; '
            "printf '%s\\0' \"$f\"; cat \"$f\"; printf '\\0'; done; exit 0"
        )
        parts = self._ssh(script).stdout.split(b"\0")
        (into / "progress").mkdir(parents=True, exist_ok=True)
        for name, content in zip(parts[0::2], parts[1::2], strict=False):
            relative = name.decode()
            if relative == "plan.json" or (
                relative.startswith("progress/") and "/" not in relative[len("progress/") :]
            ):
                (into / relative).write_bytes(content)
        return into

    def exists(self, path: PurePath) -> bool:
        """Whether a regular file is at `path` on the cluster."""
        return self._remote_size(path) >= 0

    def _remote_size(self, path: PurePath) -> int:
        """Bytes in a file on the cluster; -1 when there is none."""
        out = self._ssh(f"if [ -f {_q(path)} ]; then wc -c < {_q(path)}; else echo -1; fi")
        return int(out.stdout.decode().strip() or -1)

    def upload(
        self,
        local: Path,
        remote: PurePath,
        on_bytes: BytesCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
        """Copy a file up, resuming a `.part` left by a cut-off upload; skip if already there."""
        size = local.stat().st_size
        if self._remote_size(remote) == size:
            if on_bytes is not None:
                on_bytes(size, size)
            return
        part = remote.with_name(remote.name + ".part")
        done = self._remote_size(part)
        if not 0 <= done <= size:
            done = 0
        with local.open("rb") as data:
            data.seek(done)
            redirect = ">>" if done else ">"
            self._stream(
                f"cat {redirect} {_q(part)}",
                source=data,
                start=done,
                total=size,
                on_bytes=on_bytes,
                cancel=cancel,
            )
        if self._remote_size(part) != size:
            raise JobError(
                f"the upload of {local.name} to {self.login.host} was cut short",
                "submit again: the upload resumes where it stopped",
            )
        self._ssh(f"mv -f {_q(part)} {_q(remote)}")

    def download(
        self,
        remote: PurePath,
        local: Path,
        on_bytes: BytesCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
        """Copy a finished file down under a temporary name (resumed if one is left from a
        cut-off download), then rename it: the output path never holds half a file."""
        size = self._remote_size(remote)
        if size < 0:
            raise JobError(
                f"{remote} is not on {self.login.host}", "resubmit the job: the merge runs again"
            )
        part = local.with_name(f".{local.name}.vsr-part")
        done = part.stat().st_size if part.exists() else 0
        if done > size:
            part.unlink()
            done = 0
        with part.open("ab") as data:
            self._stream(
                f"tail -c +{done + 1} {_q(remote)}",
                sink=data,
                start=done,
                total=size,
                on_bytes=on_bytes,
                cancel=cancel,
            )
        if part.stat().st_size != size:
            raise JobError(
                f"the download of {remote.name} was cut short", "it resumes on the next refresh"
            )
        os.replace(part, local)


def _q(path: PurePath | str) -> str:
    return shlex.quote(str(path))
