"""The validators for values that reach a shell, a job script or an ssh command line, and
the Slurm settings that use them (a settings file edited to hold a command is reset)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from vsr_desktop.core import safe_values
from vsr_desktop.core.errors import InputError
from vsr_desktop.core.settings import (
    AppSettings,
    SettingsFile,
    check_slurm_settings,
    slurm_settings_problems,
)

MARK = "/tmp/vsr-pwned"
#: Characters that end a line or hide what it says, in every form they take.
CONTROLS = [
    "\n",
    "\r",
    "\x00",
    "\t",
    "\x1b",
    "\x7f",
    "\x85",  # NEL (C1)
    "\x9b",  # CSI (C1)
    "\u2028",  # line separator
    "\u2029",  # paragraph separator
    "\u202e",  # right-to-left override
    "\u200b",  # zero-width space
    "\ud800",  # a lone surrogate (undecodable bytes)
]
#: Shell syntax: refused where a strict pattern applies, data where any text is allowed.
SHELL = [
    f"x;touch {MARK}",
    f"$(touch {MARK})",
    f"`touch {MARK}`",
    f"x|touch {MARK}",
    f"x&&touch {MARK}",
    "x y",
    "x'y",
    'x"y',
    "x>y",
    "-x",
    "",
]


@pytest.mark.parametrize("char", CONTROLS, ids=ascii)
@pytest.mark.parametrize(
    "check",
    [
        safe_values.partition,
        safe_values.env_name,
        safe_values.ssh_host,
        safe_values.ssh_option,
        safe_values.workdir,
        lambda v, f: safe_values.file_path(v, f),
        lambda v, f: safe_values.env_value(v, f),
        lambda v, f: safe_values.split_command(v, f),
        lambda v, f: safe_values.command_words(["vsr", v], f),
    ],
    ids=[
        "partition",
        "env_name",
        "ssh_host",
        "ssh_option",
        "workdir",
        "file",
        "env_value",
        "command",
        "word",
    ],
)
def test_no_field_takes_a_control_character(check: object, char: str) -> None:
    for value in (f"gpu{char}touch {MARK}", f"/a/ConnectTimeout=1{char}", char):
        with pytest.raises(InputError) as refused:
            check(value, "the field")  # type: ignore[operator]
        assert refused.value.message.startswith("the field"), refused.value.message
        assert "\n" not in refused.value.user_message()  # shown escaped, on one line


@pytest.mark.parametrize("value", SHELL)
@pytest.mark.parametrize(
    "check", [safe_values.partition, safe_values.env_name, safe_values.ssh_host]
)
def test_names_follow_strict_patterns(check: object, value: str) -> None:
    with pytest.raises(InputError, match="the field"):
        check(value, "the field")  # type: ignore[operator]


def test_legitimate_names_pass_unchanged() -> None:
    for value in ("gpu", "gpu,debug", "a100.long-queue_2"):
        assert safe_values.partition(value) == value
    for value in ("SLURM_JWT", "_x", "SLURM_CONF"):
        assert safe_values.env_name(value) == value
    for value in ("login1", "me@login.example.org", "root@127.0.0.1", "u@fe80::1", "a_b@c-d"):
        assert safe_values.ssh_host(value) == value


@pytest.mark.parametrize(
    "value",
    [
        f"-oProxyCommand=touch {MARK}",
        f"me@-oProxyCommand=touch {MARK}",
        f"-oProxyCommand=touch {MARK}@host",
        "@host",
        "me@",
        "me@host@other",
        "me@host:22",
        "m e@host",
    ],
)
def test_an_ssh_login_is_never_an_option(value: str) -> None:
    with pytest.raises(InputError, match="not allowed"):
        safe_values.ssh_host(value, "--ssh")


@pytest.mark.parametrize(
    "value",
    [
        f"ProxyCommand=touch {MARK}",
        f"proxycommand=touch {MARK}",
        f"LocalCommand=touch {MARK}",
        "PermitLocalCommand=yes",
        f"KnownHostsCommand=touch {MARK}",
        f"RemoteCommand=touch {MARK}",
        "PKCS11Provider=/tmp/evil.so",
        "SecurityKeyProvider=/tmp/evil.so",
        "ForwardAgent=yes",
        "SendEnv=*",
        "SetEnv=A=b",
        "Include=/tmp/evil",
        f"ProxyJump=-oProxyCommand=touch {MARK}",
        f"ProxyJump=ok@jump,$(touch {MARK})",
        "ConnectTimeout",
        "ConnectTimeout=",
        "ConnectTimeout=-oProxyCommand=x",
        "Connect Timeout=5",
        "=5",
        f"User=$(touch {MARK})",
        "Port=22;x",
        f"HostKeyAlias=`touch {MARK}`",
    ],
)
def test_ssh_options_are_an_allow_list(value: str) -> None:
    with pytest.raises(InputError, match="--ssh-option"):
        safe_values.ssh_option(value, "--ssh-option")


def test_useful_ssh_options_pass() -> None:
    for value in (
        "UserKnownHostsFile=/home/me/my hosts",
        "StrictHostKeyChecking=accept-new",
        "ProxyJump=me@jump.example.org:2222,jump2",
        "ControlPath=~/.ssh/cm-%r@%h:%p",
        "identitiesonly=yes",
    ):
        assert safe_values.ssh_option(value) == value


def test_work_folders_are_absolute_and_any_printable_text_is_data() -> None:
    hostile = f"/shared/a b/$(touch {MARK})/`id`/;x/'q'/\"d\"/%j/é"
    assert safe_values.workdir(hostile) == hostile
    for value in ("relative/jobs", "", "/a\\b", f"/shared\ntouch {MARK}"):
        with pytest.raises(InputError, match="--workdir"):
            safe_values.workdir(value, "--workdir")


def test_a_command_is_split_like_a_shell_and_its_first_word_is_a_program() -> None:
    assert safe_values.split_command("apptainer exec --nv 'a b.sif' vsr") == (
        "apptainer",
        "exec",
        "--nv",
        "a b.sif",
        "vsr",
    )
    assert safe_values.split_command(f"vsr '$(touch {MARK})'") == ("vsr", f"$(touch {MARK})")
    for value in ("", "-c vsr", "vsr 'open", f"vsr\ntouch {MARK}"):
        with pytest.raises(InputError, match="--remote-vsr"):
            safe_values.split_command(value, "--remote-vsr")


def test_a_refused_secret_value_is_not_repeated() -> None:
    with pytest.raises(InputError) as refused:
        safe_values.env_value("hunter2-secret\nx", "--ssh-env SLURM_JWT")
    assert "hunter2" not in refused.value.user_message()
    assert "--ssh-env SLURM_JWT" in refused.value.message


def test_numbers_are_whole_and_in_range() -> None:
    assert safe_values.whole_number(3, "n", 0, 4) == 3
    for value in (-1, 5, True, 1.5, "3"):
        with pytest.raises(InputError, match="n"):
            safe_values.whole_number(value, "n", 0, 4)
    with pytest.raises(InputError, match="twice"):
        safe_values.names(["A", "A"], "--ssh-env")


HOSTILE_SETTINGS = {
    "slurm_workdir": f"/shared\ntouch {MARK}",
    "slurm_partition": f"gpu;touch {MARK}",
    "slurm_ssh_host": f"-oProxyCommand=touch {MARK}",
    "slurm_remote_vsr": f"vsr\ntouch {MARK}",
    "slurm_gpus_per_task": "1; touch",
    "slurm_max_parallel": 0,
}


@pytest.mark.parametrize("name", sorted(HOSTILE_SETTINGS))
def test_a_hostile_slurm_setting_is_refused_by_name(name: str) -> None:
    settings = AppSettings(slurm_workdir="/shared/jobs", slurm_ssh_host="me@login")
    setattr(settings, name, HOSTILE_SETTINGS[name])
    assert list(slurm_settings_problems(settings)) == [name]
    with pytest.raises(InputError, match="Jobs → Run on… → Slurm cluster → "):
        check_slurm_settings(settings)


def test_an_edited_settings_file_never_brings_a_command_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "settings.json"
    good = AppSettings(slurm_workdir="/shared/jobs", slurm_partition="gpu", model="x")
    SettingsFile(path).save(good)
    raw = json.loads(path.read_text())
    raw["settings"].update(HOSTILE_SETTINGS)
    path.write_text(json.dumps(raw))
    with caplog.at_level(logging.WARNING):
        loaded = SettingsFile(path).load()
    defaults = AppSettings()
    for name in HOSTILE_SETTINGS:
        assert getattr(loaded, name) == getattr(defaults, name), name
    assert loaded.model == "x"  # the rest of the file is kept
    assert slurm_settings_problems(loaded) == {}
    assert "slurm_partition" in caplog.text and "\ntouch" not in caplog.text
