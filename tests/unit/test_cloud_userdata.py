"""The launch template's user data: instance-store NVMe mounted at /scratch, EBS otherwise.

The script is taken out of the template and run for real with bash, against a fake
/sys/block (the NVMe models an EC2 instance shows) and stand-ins for mkfs.xfs, mount and
mdadm that log their arguments: the boundary is the block devices, which only an EC2
instance has.
"""

from __future__ import annotations

import email
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from vsr_desktop.backends.aws import stack_template as st

EBS = "Amazon Elastic Block Store"
INSTANCE_STORE = "Amazon EC2 NVMe Instance Storage"


def user_data() -> str:
    data = st.load_template()["Resources"]["InstanceLaunchTemplate"]["Properties"][
        "LaunchTemplateData"
    ]["UserData"]
    assert set(data) == {"Fn::Base64"}  # CloudFormation encodes it, as EC2 wants
    return str(data["Fn::Base64"])


def script() -> str:
    message = email.message_from_string(user_data())
    assert message.is_multipart()  # AWS Batch accepts only MIME multi-part user data
    (part,) = [p for p in message.walk() if p.get_content_type() == "text/x-shellscript"]
    return str(part.get_payload())


def _run(
    tmp_path: Path, disks: dict[str, str], tools: tuple[str, ...], failing: tuple[str, ...] = ()
) -> tuple[Any, str, Path]:
    """Run the user data; each tool in `tools` logs its call (and exits 1 if in `failing`)."""
    sys_block, bin_dir, scratch = tmp_path / "sys", tmp_path / "bin", tmp_path / "scratch"
    for name, model in disks.items():
        (sys_block / name / "device").mkdir(parents=True)
        (sys_block / name / "device" / "model").write_text(model + "\n")
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    for tool in tools:
        stub = bin_dir / tool
        status = 1 if tool in failing else 0
        stub.write_text(f'#!/bin/sh\necho "{tool} $*" >> {log}\nexit {status}\n')
        stub.chmod(0o755)
    (tmp_path / "user-data.sh").write_text(script())
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "VSR_SCRATCH_MOUNT": str(scratch),
        "VSR_SYS_BLOCK": str(sys_block),
        "VSR_DEV": "/dev",
    }
    done = subprocess.run(
        ["bash", str(tmp_path / "user-data.sh")], capture_output=True, text=True, env=env
    )
    return done, log.read_text() if log.exists() else "", scratch


pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def test_user_data_is_valid_bash() -> None:
    assert subprocess.run(["bash", "-n"], input=script(), text=True).returncode == 0


def test_one_instance_store_disk_is_formatted_and_mounted_at_scratch(tmp_path: Path) -> None:
    done, calls, scratch = _run(
        tmp_path, {"nvme0n1": EBS, "nvme1n1": INSTANCE_STORE}, ("mkfs.xfs", "mount", "mdadm")
    )
    assert done.returncode == 0, done.stderr
    assert calls.splitlines() == [
        "mkfs.xfs -f -q /dev/nvme1n1",
        f"mount -o noatime /dev/nvme1n1 {scratch}",
    ]  # the root EBS volume (nvme0n1) is never touched
    assert "scratch on instance store /dev/nvme1n1" in done.stdout
    assert scratch.is_dir() and scratch.stat().st_mode & 0o7777 == 0o1777


def test_several_instance_store_disks_are_striped(tmp_path: Path) -> None:
    disks = {"nvme0n1": EBS, "nvme1n1": INSTANCE_STORE, "nvme2n1": INSTANCE_STORE}
    done, calls, scratch = _run(tmp_path, disks, ("mkfs.xfs", "mount", "mdadm"))
    assert done.returncode == 0, done.stderr
    lines = calls.splitlines()
    assert lines[0].startswith("mdadm --create /dev/md0 --level=0")
    assert lines[0].endswith("--raid-devices=2 /dev/nvme1n1 /dev/nvme2n1")
    assert lines[1:] == ["mkfs.xfs -f -q /dev/md0", f"mount -o noatime /dev/md0 {scratch}"]


def test_without_instance_store_scratch_stays_on_ebs(tmp_path: Path) -> None:
    done, calls, scratch = _run(tmp_path, {"nvme0n1": EBS}, ("mkfs.xfs", "mount", "mdadm"))
    assert done.returncode == 0, done.stderr
    assert calls == ""  # nothing formatted, nothing mounted
    assert "scratch on the root EBS volume" in done.stdout and scratch.is_dir()


def test_a_failed_format_falls_back_to_ebs_and_the_boot_goes_on(tmp_path: Path) -> None:
    done, calls, scratch = _run(
        tmp_path, {"nvme1n1": INSTANCE_STORE}, ("mkfs.xfs", "mount"), failing=("mkfs.xfs",)
    )
    assert done.returncode == 0, done.stderr
    assert calls.splitlines() == ["mkfs.xfs -f -q /dev/nvme1n1"]  # tried, failed, not mounted
    assert "scratch on the root EBS volume" in done.stdout and scratch.is_dir()


def test_every_job_definition_mounts_scratch_and_points_the_worker_at_it() -> None:
    resources = st.load_template()["Resources"]
    for name in ("SplitJobDefinition", "UpscaleJobDefinition", "MergeJobDefinition"):
        props = resources[name]["Properties"]["ContainerProperties"]
        assert {"Name": "VSR_SCRATCH_DIR", "Value": "/scratch"} in props["Environment"]
        (volume,) = props["Volumes"]
        assert volume["Host"] == {"SourcePath": "/scratch"}
        assert props["MountPoints"] == [
            {"SourceVolume": volume["Name"], "ContainerPath": "/scratch", "ReadOnly": False}
        ]
