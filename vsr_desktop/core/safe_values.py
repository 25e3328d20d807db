"""Validators for values that reach a shell, a job script or an ssh command line.

Each check is made where a value enters (a CLI flag, the settings dialog, a job rebuilt from
the job store) and raises an InputError that names the field and says what is allowed. The
values are still quoted wherever they are used: these checks are the second fence, and the
one that keeps a stored value from turning into a command on its way back in.

What is refused everywhere: control characters (C0 and C1, DEL, NUL), Unicode line and
paragraph separators, format characters (bidirectional overrides, zero-width marks) and
lone surrogates: none has a use in a path, a name or a command word, and each can start a
new line or hide what a line says.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import PurePath, PurePosixPath

from vsr_desktop.core.errors import InputError

#: Unicode categories refused in every value (see the module docstring).
_REFUSED_CATEGORIES = {"Cc", "Cf", "Cs", "Zl", "Zp"}
MAX_TEXT = 4096

PARTITION = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.,-]{0,199}")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
SSH_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
SSH_HOSTNAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,252})")
SSH_IPV6 = re.compile(r"[0-9A-Fa-f:]*:[0-9A-Fa-f:.]*")
SSH_OPTION_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]{0,63}")

#: `ssh -o` options a user may add. Everything that runs a local command (ProxyCommand,
#: LocalCommand, KnownHostsCommand), loads a library (PKCS11Provider, SecurityKeyProvider),
#: forwards agents, ports or X11, sends local variables (SendEnv, SetEnv), includes other
#: files or changes the remote command is left out.
SSH_OPTIONS = {
    name.lower(): name
    for name in (
        "AddressFamily",
        "BindAddress",
        "CertificateFile",
        "CheckHostIP",
        "Ciphers",
        "Compression",
        "ConnectionAttempts",
        "ConnectTimeout",
        "ControlMaster",
        "ControlPath",
        "ControlPersist",
        "GlobalKnownHostsFile",
        "GSSAPIAuthentication",
        "HashKnownHosts",
        "HostKeyAlgorithms",
        "HostKeyAlias",
        "HostbasedAuthentication",
        "IdentitiesOnly",
        "IdentityFile",
        "IPQoS",
        "KbdInteractiveAuthentication",
        "KexAlgorithms",
        "LogLevel",
        "MACs",
        "NumberOfPasswordPrompts",
        "PasswordAuthentication",
        "Port",
        "PreferredAuthentications",
        "ProxyJump",
        "PubkeyAcceptedAlgorithms",
        "PubkeyAcceptedKeyTypes",
        "PubkeyAuthentication",
        "RekeyLimit",
        "ServerAliveCountMax",
        "ServerAliveInterval",
        "StrictHostKeyChecking",
        "TCPKeepAlive",
        "UpdateHostKeys",
        "User",
        "UserKnownHostsFile",
        "VerifyHostKeyDNS",
    )
}


def _show(value: str) -> str:
    """A value as it can be shown in one line (control characters escaped)."""
    text = ascii(value)
    return text if len(text) <= 80 else text[:77] + "..."


def plain_text(
    value: object, field: str, *, allow_empty: bool = False, secret: bool = False
) -> str:
    """A string of printable characters: no control, format or line-separator character.
    A `secret` value is never repeated in the error."""
    if not isinstance(value, str):
        raise InputError(f"{field} must be text, not {type(value).__name__}")
    if not value and not allow_empty:
        raise InputError(f"{field} is empty", f"give a value for {field}")
    if len(value) > MAX_TEXT:
        raise InputError(f"{field} is longer than {MAX_TEXT} characters")
    for char in value:
        if unicodedata.category(char) in _REFUSED_CATEGORIES:
            what = "a newline" if char in "\r\n\u2028\u2029\x85" else "a control character"
            raise InputError(
                f"{field} {'' if secret else _show(value) + ' '}contains {what} ({char!a})",
                f"{field} must be printable text on one line",
            )
    return value


def _pattern(value: object, field: str, pattern: re.Pattern[str], allowed: str) -> str:
    text = plain_text(value, field)
    if not pattern.fullmatch(text):
        raise InputError(f"{field} {_show(text)} is not allowed", f"{field} must be {allowed}")
    return text


def partition(value: object, field: str = "partition") -> str:
    """A Slurm partition name, or a comma-separated list of them."""
    return _pattern(
        value,
        field,
        PARTITION,
        "letters, digits and _ . , - (starting with a letter, digit or _), at most 200",
    )


def env_name(value: object, field: str = "environment variable name") -> str:
    return _pattern(
        value, field, ENV_NAME, "a variable name: letters, digits and _, not starting with a digit"
    )


def env_value(value: object, field: str) -> str:
    """A variable's value: any printable text on one line (it is passed as data; being
    possibly a secret, it is not shown in the error)."""
    return plain_text(value, field, allow_empty=True, secret=True)


def ssh_host(value: object, field: str = "ssh login") -> str:
    """`host` or `user@host`: a host name, alias or IP address; never an ssh option."""
    text = plain_text(value, field)
    allowed = (
        "HOST or USER@HOST (letters, digits and _ . - ; a host may be an IPv4 or IPv6 "
        "address), not starting with -"
    )
    user, at, host = text.rpartition("@")
    if at and not SSH_USER.fullmatch(user):
        raise InputError(f"{field} {_show(text)}: the user name is not allowed", allowed)
    if not (SSH_HOSTNAME.fullmatch(host) or SSH_IPV6.fullmatch(host)) or host.startswith("-"):
        raise InputError(f"{field} {_show(text)}: the host name is not allowed", allowed)
    return text


def ssh_port(value: object, field: str = "ssh port") -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise InputError(f"{field} {value!r} is not a port", "a number from 1 to 65535")
    return value


def ssh_option(value: object, field: str = "ssh option") -> str:
    """`NAME=VALUE` for `ssh -o`, NAME one of SSH_OPTIONS (commands are never allowed)."""
    text = plain_text(value, field)
    name, sep, option_value = text.partition("=")
    if not sep or not SSH_OPTION_NAME.fullmatch(name):
        raise InputError(f"{field} {_show(text)} is not NAME=VALUE", "e.g. ConnectTimeout=30")
    if name.lower() not in SSH_OPTIONS:
        raise InputError(
            f"{field} {name} is not allowed",
            "allowed: " + ", ".join(sorted(SSH_OPTIONS.values())),
        )
    if not option_value or option_value.startswith("-"):
        raise InputError(
            f"{field} {_show(text)} has no usable value",
            "give NAME=VALUE, the value not starting with -",
        )
    lowered = name.lower()
    if lowered == "user" and not SSH_USER.fullmatch(option_value):
        raise InputError(f"{field} {_show(text)}: the user name is not allowed")
    counts = ("port", "connecttimeout", "connectionattempts", "serveralivecountmax")
    if lowered in counts and not re.fullmatch(r"[0-9]{1,6}", option_value):
        raise InputError(f"{field} {_show(text)} must be a whole number")
    if lowered == "hostkeyalias" and not SSH_HOSTNAME.fullmatch(option_value):
        raise InputError(f"{field} {_show(text)}: the alias is not allowed")
    if lowered == "proxyjump" and option_value.lower() != "none":
        for hop in option_value.split(","):
            hop = hop.removeprefix("ssh://")
            if hop.count(":") == 1:  # host:port (an IPv6 address has more than one colon)
                hop, port = hop.split(":")
                if not re.fullmatch(r"[0-9]{1,5}", port):
                    raise InputError(f"{field} {_show(text)}: {port!r} is not a port")
            ssh_host(hop, field)
    return text


def file_path(value: object, field: str) -> str:
    """A local file named on a command line (e.g. an ssh key): printable, not an option."""
    text = plain_text(value, field)
    if text.startswith("-"):
        raise InputError(f"{field} {_show(text)} starts with -", "give the file's path")
    return text


def workdir(value: object, field: str = "work folder") -> str:
    """An absolute POSIX folder path (the cluster's, or a Slurm submit host's): printable,
    no backslash (it turns off Slurm's %-patterns in log file names) and no `..` (a job's
    folder is named after the job, never above it)."""
    text = plain_text(str(value) if isinstance(value, PurePath) else value, field)
    path = PurePosixPath(text)
    if not path.is_absolute():
        raise InputError(f"{field} {_show(text)} is not an absolute path", "e.g. /shared/vsr-jobs")
    if "\\" in text:
        raise InputError(f"{field} {_show(text)} contains a backslash", "use / between folders")
    if ".." in path.parts:
        raise InputError(f"{field} {_show(text)} contains ..", "give the folder itself")
    return text


def command_words(words: Iterable[object], field: str = "vsr command") -> tuple[str, ...]:
    """A command as its words (already split with shlex): each printable, the first not
    an option."""
    result = tuple(plain_text(word, field, allow_empty=True) for word in words)
    if not result or not result[0]:
        raise InputError(f"{field} is empty", "e.g. vsr, or /shared/vsr-venv/bin/vsr")
    if result[0].startswith("-"):
        raise InputError(
            f"{field} {_show(result[0])} starts with -", "the first word is the program to run"
        )
    return result


def split_command(text: object, field: str = "vsr command") -> tuple[str, ...]:
    """A command line typed by a user, split as a POSIX shell would (quotes respected)."""
    import shlex

    line = plain_text(text, field)
    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise InputError(
            f"{field} {_show(line)} cannot be split: {exc}", "close the quotes"
        ) from None
    return command_words(words, field)


def whole_number(value: object, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InputError(
            f"{field} {value!r} is out of range", f"a whole number from {low} to {high}"
        )
    return value


def names(values: Sequence[object], field: str) -> tuple[str, ...]:
    """Environment variable names, each valid and none twice."""
    result = tuple(env_name(v, field) for v in values)
    if len(set(result)) != len(result):
        raise InputError(f"{field} names a variable twice", "give each variable once")
    return result
