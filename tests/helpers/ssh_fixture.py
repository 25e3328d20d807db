"""Session fixture `ssh_server`: a private OpenSSH server on 127.0.0.1 for the Slurm-over-SSH
tests.

Why a real sshd: the SSH transport's quoting, stdin streaming, exit codes (255 = ssh itself)
and BatchMode behaviour are exactly what a fake would get wrong. This one has its own host key
and port, accepts only a temporary client key (root login with key only: the one-node Slurm
fixture runs as root), never touches /etc/ssh or ~/.ssh, and is stopped by PID at the end.
Skipped, with the reason, where it cannot run (not root, sshd or ssh-keygen missing).

Use it from conftest.py: ``from tests.helpers.ssh_fixture import ssh_server  # noqa: F401``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from vsr_desktop.backends.slurm_remote import SshLogin

_SSHD_CANDIDATES = ("/usr/sbin/sshd", "/usr/local/sbin/sshd")


@dataclass(frozen=True)
class SshServer:
    """A running sshd and the client settings that reach it without prompts."""

    port: int
    client_key: Path
    known_hosts: Path
    pid: int

    def login(self) -> SshLogin:
        return SshLogin(
            host="root@127.0.0.1",
            port=self.port,
            key=str(self.client_key),
            options=(
                f"UserKnownHostsFile={self.known_hosts}",
                "GlobalKnownHostsFile=/dev/null",
                "StrictHostKeyChecking=yes",
                "IdentitiesOnly=yes",
            ),
        )


def _sshd_binary() -> str | None:
    found = shutil.which("sshd")
    return found or next((p for p in _SSHD_CANDIDATES if os.access(p, os.X_OK)), None)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "vsr-test", "-f", str(path)],
        check=True,
        capture_output=True,
    )


def _wait_until_serving(server: SshServer, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Until a real login runs `true` (the port alone may be open before keys are loaded)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited: {log.read_text(errors='replace')}")
        result = subprocess.run(
            [*server.login().ssh_args(), "true"], capture_output=True, timeout=20
        )
        if result.returncode == 0:
            return
        time.sleep(0.2)
    raise RuntimeError(f"sshd did not accept the test key: {log.read_text(errors='replace')}")


@pytest.fixture(scope="session")
def ssh_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    """A started sshd on 127.0.0.1 (session-wide); `.login()` is the SshLogin to reach it."""
    sshd = _sshd_binary()
    if os.name != "posix" or os.geteuid() != 0:
        pytest.skip("the test sshd needs root (it logs in as root, like the Slurm fixture)")
    if sshd is None or shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        pytest.skip("openssh-server/openssh-client missing: run scripts/bootstrap.sh as root")
    base = tmp_path_factory.mktemp("sshd")
    _keygen(base / "host_ed25519")
    _keygen(base / "client_ed25519")
    (base / "authorized_keys").write_text((base / "client_ed25519.pub").read_text())
    port = _free_port()
    host_pub = (base / "host_ed25519.pub").read_text().split()
    known_hosts = base / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    config = base / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {base / 'host_ed25519'}",
                f"PidFile {base / 'sshd.pid'}",
                f"AuthorizedKeysFile {base / 'authorized_keys'}",
                "PermitRootLogin prohibit-password",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "StrictModes no",
                "X11Forwarding no",
                "AllowTcpForwarding no",
                "LogLevel ERROR",
                "",
            ]
        )
    )
    # sshd refuses to start without its privilege separation folder (a package's service
    # creates it at boot; here no service runs).
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    log = base / "sshd.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sshd, "-D", "-e", "-f", str(config)], stdout=out, stderr=subprocess.STDOUT
        )
    server = SshServer(
        port=port, client_key=base / "client_ed25519", known_hosts=known_hosts, pid=proc.pid
    )
    try:
        _wait_until_serving(server, proc, log)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
