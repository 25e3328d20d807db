"""Versioned settings file: defaults, round trip, upgrades, broken files set aside."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vsr_desktop.core import settings as settings_module
from vsr_desktop.core.settings import MAX_RECENT_FILES, AppSettings, SettingsFile


def test_defaults_round_trip_and_default_location(tmp_path: Path) -> None:
    assert SettingsFile().path.is_relative_to(tmp_path)  # XDG dirs isolated by conftest
    store = SettingsFile(tmp_path / "s.json")
    assert store.load() == AppSettings()
    chosen = AppSettings(model="RealESRGAN_x4plus", outscale=2.0, codec="h265", crf=20)
    store.save(chosen)
    assert SettingsFile(tmp_path / "s.json").load() == chosen
    assert json.loads((tmp_path / "s.json").read_text())["version"] == 1


def test_recent_files_are_unique_newest_first_and_bounded() -> None:
    s = AppSettings()
    for i in range(MAX_RECENT_FILES + 3):
        s.remember(Path(f"/v/{i}.mp4"))
    s.remember(Path("/v/5.mp4"))
    assert s.recent_files[0] == "/v/5.mp4"
    assert len(s.recent_files) == MAX_RECENT_FILES == len(set(s.recent_files))


def test_output_name_follows_scale_container_and_folder() -> None:
    s = AppSettings(outscale=2.0, container=".mkv")
    assert s.output_for(Path("/a/clip.mov")) == Path("/a/clip_x2.mkv")
    s.output_folder = "/out"
    assert s.output_for(Path("/a/clip.mov")) == Path("/out/clip_x2.mkv")


def test_broken_file_is_set_aside_not_lost(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    path.write_text("{ not json")
    assert SettingsFile(path).load() == AppSettings()
    backups = list(tmp_path.glob("settings.broken-*.json"))
    assert len(backups) == 1 and backups[0].read_text() == "{ not json"


def test_old_versions_are_upgraded_and_unknown_keys_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"version": 0, "settings": {"scale": 2, "from_future": 1}}))

    def rename_scale(values: dict) -> dict:  # type: ignore[type-arg]
        values["outscale"] = float(values.pop("scale"))
        return values

    monkeypatch.setitem(settings_module.UPGRADES, 0, rename_scale)
    assert SettingsFile(path).load().outscale == 2.0
