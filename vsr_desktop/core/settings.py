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

from vsr_desktop.core.atomic_file import write_text_atomic

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
    output_folder: str = ""  # empty: beside the source
    device: str = "auto"
    precision: str = "auto"
    tile: int = 0
    chunk_seconds: float = 60.0
    preview_mode: str = "split"
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
        return folder / f"{source.stem}_{tag}{self.container}"

    def remember(self, path: Path) -> None:
        """Put a file at the top of the recent list."""
        text = str(path)
        self.recent_files = [text, *[p for p in self.recent_files if p != text]]
        del self.recent_files[MAX_RECENT_FILES:]


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
        return AppSettings(**{k: v for k, v in values.items() if k in known})
