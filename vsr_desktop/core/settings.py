"""The user's choices, kept across restarts in a versioned JSON file (platformdirs).

A version number and upgrade steps let later releases rename or reshape settings without
losing what the user chose; an unreadable file is set aside (never silently overwritten).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from vsr_desktop.core import safe_values
from vsr_desktop.core.atomic_file import write_text_atomic
from vsr_desktop.core.errors import InputError

log = logging.getLogger(__name__)

SETTINGS_VERSION = 1
MAX_RECENT_FILES = 10


@dataclass
class AppSettings:
    """Everything the settings panel shows, plus window state and recent files."""

    model: str = "realesr-animevideov3"
    outscale: float | None = None  # None: the model's own scale
    denoise_strength: float = 0.5
    codec: str = "h264"
    crf: int | None = None  # None: the codec's default
    container: str = ".mp4"
    preset: str | None = None  # None: the codec's default (only codecs with presets)
    encoder: str = "auto"  # auto, software, nvenc, qsv, amf, videotoolbox (hardware_codecs)
    target_size: str = ""  # "WxH" (--size); empty: the source times the scale
    fit: str = "fit"  # how the picture meets target_size: fit, pad or crop
    output_folder: str = ""  # empty: beside the source
    device: str = "auto"
    precision: str = "auto"
    tile: int = 0
    chunk_seconds: float = 60.0
    deinterlace: str = "auto"  # interlaced input: auto, off, bwdif, yadif
    double_rate: bool = False  # deinterlace to one frame per field
    preview_mode: str = "split"
    theme: str = "system"  # the window's colours: system (follows the OS), light or dark
    run_on: str = "local"  # where "Upscale all" sends jobs: local, slurm or aws
    slurm_workdir: str = ""  # a folder every cluster node sees; empty: Slurm not set up
    slurm_partition: str = ""
    slurm_gpus_per_task: int = 0
    slurm_max_parallel: int = 4
    slurm_ssh_host: str = ""  # user@login-host when this machine does not see the cluster
    slurm_remote_vsr: str = "vsr"  # how the cluster runs vsr (used over SSH)
    # AWS offload: names only; secrets stay in the OS keychain or the AWS profile files.
    cloud_region: str = ""  # empty: the profile's / environment's default region
    cloud_profile: str = ""  # an AWS profile name; empty: none
    cloud_keychain_account: str = ""  # label of access keys kept in the keychain
    cloud_stack_name: str = "vsr-desktop"
    cloud_auto_download: bool = True
    # Cloud preview: a SageMaker endpoint that bills by the hour while it exists, so it is
    # off by default and deleted after this many idle minutes (and when the app quits).
    cloud_preview_enabled: bool = False
    cloud_preview_idle_minutes: int = 15
    cloud_preview_instance_type: str = "ml.g4dn.xlarge"
    recent_files: list[str] = field(default_factory=list)
    window_geometry: str = ""
    window_state: str = ""

    def output_for(self, source: Path) -> Path:
        """Default output path: `<name>_x<scale><container>` beside the source or in the folder."""
        scale = self.outscale if self.outscale is not None else 4
        tag = f"x{scale:g}"
        folder = Path(self.output_folder) if self.output_folder else source.parent
        if self.container in (".png", ".tif"):  # an image sequence: numbered files
            return folder / f"{source.stem}_{tag}_%06d{self.container}"
        return folder / f"{source.stem}_{tag}{self.container}"

    def remember(self, path: Path) -> None:
        """Put a file at the top of the recent list."""
        text = str(path)
        self.recent_files = [text, *[p for p in self.recent_files if p != text]]
        del self.recent_files[MAX_RECENT_FILES:]


#: The Slurm fields as the Run on… dialog labels them (what an error names).
SLURM_FIELD_LABELS = {
    "slurm_workdir": "Jobs → Run on… → Slurm cluster → Work folder",
    "slurm_partition": "Jobs → Run on… → Slurm cluster → Partition",
    "slurm_gpus_per_task": "Jobs → Run on… → Slurm cluster → GPUs per task",
    "slurm_max_parallel": "Jobs → Run on… → Slurm cluster → Tasks at once",
    "slurm_ssh_host": "Jobs → Run on… → Slurm cluster → Login host (SSH)",
    "slurm_remote_vsr": "Jobs → Run on… → Slurm cluster → vsr on the cluster",
}


def check_slurm_field(name: str, value: Any, *, over_ssh: bool) -> None:
    """Raise InputError (naming the field, saying what is allowed) when one Slurm setting
    could reach a job script or an ssh command line as anything but data."""
    label = SLURM_FIELD_LABELS[name]
    if name in ("slurm_gpus_per_task", "slurm_max_parallel"):
        low, high = (0, 1024) if name == "slurm_gpus_per_task" else (1, 100_000)
        safe_values.whole_number(value, label, low, high)
        return
    text = safe_values.plain_text(value, label, allow_empty=True).strip()
    if not text:
        return
    if name == "slurm_workdir":
        local = str(Path(text).expanduser().absolute())
        safe_values.workdir(text if over_ssh else local, label)
    elif name == "slurm_partition":
        safe_values.partition(text, label)
    elif name == "slurm_ssh_host":
        safe_values.ssh_host(text, label)
    elif name == "slurm_remote_vsr":
        safe_values.split_command(text, label)


def _slurm_errors(settings: AppSettings) -> dict[str, InputError]:
    over_ssh = isinstance(settings.slurm_ssh_host, str) and bool(settings.slurm_ssh_host.strip())
    errors: dict[str, InputError] = {}
    for name in SLURM_FIELD_LABELS:
        try:
            check_slurm_field(name, getattr(settings, name), over_ssh=over_ssh)
        except InputError as exc:
            errors[name] = exc
    return errors


def slurm_settings_problems(settings: AppSettings) -> dict[str, str]:
    """Field name → what is wrong with it, for every Slurm setting that is refused."""
    return {name: exc.user_message() for name, exc in _slurm_errors(settings).items()}


def check_slurm_settings(settings: AppSettings) -> None:
    """Raise the first refused Slurm setting's InputError (exit 2), naming its field."""
    for exc in _slurm_errors(settings).values():
        raise exc


# version N → N+1, applied in order to the raw dict before it becomes AppSettings.
UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def default_settings_path() -> Path:
    from platformdirs import user_config_dir

    return Path(user_config_dir("vsr_desktop", appauthor=False)) / "settings.json"


class SettingsFile:
    """Load and save AppSettings atomically; survives old, newer and broken files."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_settings_path()

    def load(self) -> AppSettings:
        if not self.path.exists():
            return AppSettings()
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            if not isinstance(raw, dict):
                raise ValueError("not a JSON object")
            self._move_secrets(raw)
            return self._from_raw(raw)
        except (OSError, ValueError, TypeError) as exc:
            backup = self.path.with_name(f"settings.broken-{int(time.time())}.json")
            with contextlib.suppress(OSError):
                os.replace(self.path, backup)
            log.warning("settings file %s unreadable (%s); moved to %s", self.path, exc, backup)
            return AppSettings()

    def save(self, settings: AppSettings) -> None:
        data = {"version": SETTINGS_VERSION, "settings": asdict(settings)}
        write_text_atomic(self.path, json.dumps(data, indent=2, sort_keys=True))

    def _move_secrets(self, raw: dict[str, Any]) -> None:
        """`--ssh-env` values an older file may hold go to the keychain; the file is
        rewritten without them (core/legacy_secrets.py)."""
        from vsr_desktop.core import legacy_secrets

        values = raw.get("settings")
        if not isinstance(values, dict) or not any(
            key in values for key in legacy_secrets.SETTINGS_KEYS
        ):
            return
        legacy_secrets.migrate_settings(values)
        try:
            write_text_atomic(self.path, json.dumps(raw, indent=2, sort_keys=True))
        except OSError as exc:
            log.warning("could not rewrite %s without its --ssh-env values: %s", self.path, exc)

    @staticmethod
    def _from_raw(raw: dict[str, Any]) -> AppSettings:
        version = int(raw.get("version", 0))
        values = raw.get("settings", {})
        if not isinstance(values, dict):
            raise ValueError("settings is not an object")
        while version < SETTINGS_VERSION:
            upgrade = UPGRADES.get(version)
            if upgrade is not None:
                values = upgrade(values)
            version += 1
        known = {f.name for f in fields(AppSettings)}
        # Keys from a newer release are ignored rather than fatal.
        settings = AppSettings(**{k: v for k, v in values.items() if k in known})
        # A Slurm field that could act as a command (an edited file) goes back to its
        # default, so it never reaches a job script; the log says which.
        problems = slurm_settings_problems(settings)
        if problems:
            defaults = AppSettings()
            for name, message in problems.items():
                log.warning("setting %s refused and reset: %s", name, message)
                setattr(settings, name, getattr(defaults, name))
        return settings
