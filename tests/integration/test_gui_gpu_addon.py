"""Help → GPU add-on: the real dialog offscreen, installing through the window's TaskRunner.

Boundary as in test_gpu_addon.py: small real wheels served from 127.0.0.1 stand in for
PyTorch's 2.5 GB CUDA wheels, which no test may download.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.helpers.wheel_server import ServerState, serve
from tests.integration.test_gpu_addon import _as_json, _manifest, _wheels
from vsr_desktop.core import gpu_addon
from vsr_desktop.core.jobs import JobStore
from vsr_desktop.core.settings import AppSettings, SettingsFile
from vsr_desktop.gui.gpu_addon_dialog import TASK_KEY, GpuAddonDialog
from vsr_desktop.gui.main_window import MainWindow
from vsr_desktop.gui.tasks import TaskRunner


def test_the_dialog_installs_with_progress_and_removes(qtbot: Any, tmp_path: Path) -> None:
    wheels = _wheels(tmp_path)
    state = ServerState(files={w.name: w.read_bytes() for w in wheels})
    runner = TaskRunner()
    with serve(state) as url:
        manifest = _manifest(url, wheels)
        root = tmp_path / "addon"
        dialog = GpuAddonDialog(runner, manifest=manifest, root=root)
        qtbot.addWidget(dialog)
        assert "Not installed" in dialog.status_label.text()
        assert dialog.install_button.isEnabled() and not dialog.remove_button.isEnabled()
        steps: list[str] = []
        runner.progress.connect(lambda key, value: steps.append(value[2]))
        dialog.install_button.click()
        assert dialog.cancel_button.isEnabled() and not dialog.install_button.isEnabled()
        qtbot.waitUntil(lambda: runner.task(TASK_KEY) is None, timeout=30_000)
        assert "restart vsr-desktop" in dialog.status_label.text()
        assert any(s.startswith("downloading") for s in steps)
        assert any(s.startswith("installing") for s in steps)
        assert dialog.progress.value() == 1000
        assert gpu_addon.status(manifest, root).installed
        assert dialog.remove_button.isEnabled() and not dialog.install_button.isEnabled()
        dialog.remove_button.click()
        assert not gpu_addon.status(manifest, root).installed
        assert "uses the CPU" in dialog.status_label.text()
    runner.shutdown()


def test_a_failed_install_is_shown_in_the_dialog(qtbot: Any, tmp_path: Path) -> None:
    wheels = _wheels(tmp_path)
    runner = TaskRunner()
    with serve(ServerState(files={w.name: w.read_bytes() for w in wheels})) as url:
        manifest = _manifest(url, wheels, **{wheels[1].name: "f" * 64})
        dialog = GpuAddonDialog(runner, manifest=manifest, root=tmp_path / "addon")
        qtbot.addWidget(dialog)
        dialog.install()
        qtbot.waitUntil(lambda: runner.task(TASK_KEY) is None, timeout=30_000)
    assert "does not match its checksum" in dialog.status_label.text()
    assert dialog.install_button.isEnabled()  # try again
    runner.shutdown()


def test_the_help_menu_offers_the_addon_only_in_builds_with_a_manifest(
    qtbot: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    def window() -> MainWindow:
        file = SettingsFile(tmp_path / "settings.json")
        file.save(AppSettings(output_folder=str(tmp_path)))
        made = MainWindow(
            settings_file=file,
            store=JobStore(tmp_path / "jobs.sqlite3"),
            opener=lambda path: None,
            probe_device=False,
        )
        qtbot.addWidget(made)
        return made

    def help_texts(made: MainWindow) -> list[str]:
        menu: Any = next(a.menu() for a in made.menuBar().actions() if a.text() == "&Help")
        return [a.text() for a in menu.actions()]

    monkeypatch.setenv(gpu_addon.MANIFEST_ENV, str(tmp_path / "absent.json"))
    plain = window()
    assert not any("GPU add-on" in t for t in help_texts(plain))
    plain.shutdown(cancel_jobs=True)

    manifest_file = tmp_path / "manifest.json"
    manifest = gpu_addon.Manifest("x", "win-amd64", "test", ())
    manifest_file.write_text(json.dumps(_as_json(manifest)))
    monkeypatch.setenv(gpu_addon.MANIFEST_ENV, str(manifest_file))
    with_addon: Any = window()
    assert "&GPU add-on (NVIDIA CUDA)…" in help_texts(with_addon)
    with_addon.gpu_addon_action.trigger()  # set by gui/gpu_addon_dialog.py
    dialog = with_addon._gpu_addon_dialog
    assert dialog.isVisible() and dialog.status_label.text()
    with_addon.shutdown(cancel_jobs=True)
