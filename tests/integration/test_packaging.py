"""Installer inputs that can be checked without building: spec, desktop entry, NSIS, plist,
licences, and the `vsr-desktop --smoke` self-test run from the source tree.

Building the bundle and installing the .deb into a clean Debian container is too heavy for the
test suite; `make installer` and `make installer-check` do that (docs/packaging.md has results).
"""

from __future__ import annotations

import ast
import configparser
import os
import plistlib
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGING = REPO / "packaging"
SPEC = PACKAGING / "pyinstaller" / "vsr_desktop.spec"
sys.path.insert(0, str(PACKAGING / "pyinstaller"))
import bundle_support  # noqa: E402


def _spec_tree() -> ast.Module:
    return ast.parse(SPEC.read_text(encoding="utf-8"), filename=str(SPEC))


def _calls(tree: ast.Module, name: str) -> list[ast.Call]:
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == name
    ]


def _constants(tree: ast.Module) -> dict[str, object]:
    found: dict[str, object] = {}
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and isinstance(node.value, ast.Constant)
        ):
            found[node.targets[0].id] = node.value.value
    return found


def _keyword(call: ast.Call, name: str, constants: dict[str, object]) -> object:
    for kw in call.keywords:
        if kw.arg == name:
            if isinstance(kw.value, ast.Name):
                return constants[kw.value.id]
            return ast.literal_eval(kw.value)
    raise KeyError(name)


def test_spec_builds_a_windowed_app_and_a_console_cli_in_one_folder() -> None:
    tree = _spec_tree()
    constants = _constants(tree)
    exes = {
        _keyword(c, "name", constants): _keyword(c, "console", constants)
        for c in _calls(tree, "EXE")
    }
    assert exes == {"vsr-desktop": False, "vsr": True}
    (collect,) = _calls(tree, "COLLECT")
    assert _keyword(collect, "name", constants) == "vsr-desktop"
    assert len(collect.args) >= 2  # both executables share the one folder
    (analysis,) = _calls(tree, "Analysis")
    entries = [ast.literal_eval(arg.args[1]) for arg in analysis.args[0].elts]  # type: ignore[attr-defined]
    assert entries == ["entry_gui.py", "entry_cli.py"]
    for entry in entries:
        source = (PACKAGING / "pyinstaller" / entry).read_text()
        assert "sys.exit(main())" in source
    assert (PACKAGING / "pyinstaller" / "rthooks" / "pyi_rth_vsr_torchvision_ops.py").is_file()
    assert (PACKAGING / "pyinstaller" / "hooks" / "hook-keyring.py").is_file()


def test_spec_bundles_resources_that_exist() -> None:
    source = SPEC.read_text()
    assert '("models", "samples", "licenses")' in source
    resources = REPO / "vsr_desktop" / "resources"
    from vsr_desktop.core.models.loading import bundled_default_model_path
    from vsr_desktop.resources import sample_clip_path

    # The bundle keeps the package layout, so these code paths find the same files frozen.
    for path in (bundled_default_model_path(), sample_clip_path()):
        assert path.is_file() and path.stat().st_size > 100_000
        assert path.is_relative_to(resources)
    assert bundle_support.ICON_SVG.is_file()


def test_bundled_licences_cover_ours_realesrgan_qt_and_ffmpeg_gpl() -> None:
    names = {Path(src).name for src, dest in bundle_support.notice_files()}
    assert {
        "vsr_desktop-MIT.txt",
        "Qt-LGPL-NOTICE.txt",
        "FFmpeg-NOTICE.txt",
        "LGPL-3.0.txt",
        "GPL-2.0.txt",
        "GPL-3.0.txt",
    } <= names
    assert (REPO / "vsr_desktop/resources/licenses/RealESRGAN-BSD-3-Clause.txt").is_file()
    ffmpeg = (bundle_support.LICENSE_DIR / "FFmpeg-NOTICE.txt").read_text()
    assert "libx264" in ffmpeg and "libx265" in ffmpeg and "GPL-2.0-or-later" in ffmpeg
    assert "LGPL" in (bundle_support.LICENSE_DIR / "Qt-LGPL-NOTICE.txt").read_text()
    assert (
        "GNU LESSER GENERAL PUBLIC LICENSE"
        in (bundle_support.LICENSE_DIR / "LGPL-3.0.txt").read_text()
    )


def test_third_party_licences_keep_same_named_files_apart() -> None:
    found = bundle_support.third_party_license_files()
    projects = {dest.split("/")[4] for _, dest in found}
    assert {"torch", "av", "numpy"} <= projects
    targets = [f"{dest}/{Path(src).name}" for src, dest in found]
    assert len(targets) == len(set(targets)), "two licence files would overwrite each other"
    assert not any(src.endswith((".py", ".pyc")) for src, _ in found)


def test_ffmpeg_configuration_is_recorded(tmp_path: Path) -> None:
    text = bundle_support.write_ffmpeg_configuration(tmp_path).read_text()
    assert "libavcodec" in text and "--enable-libx264" in text


def test_desktop_entry_validates_and_names_the_installed_icon_and_command() -> None:
    desktop = PACKAGING / "linux" / "vsr-desktop.desktop"
    entry = configparser.ConfigParser(interpolation=None)
    entry.optionxform = str  # type: ignore[assignment,method-assign]
    entry.read(desktop)
    section = entry["Desktop Entry"]
    assert section["Exec"].split()[0] == "vsr-desktop"
    assert f"{section['Icon']}.svg" == bundle_support.ICON_SVG.name
    assert "video/mp4" in section["MimeType"]
    validator = shutil.which("desktop-file-validate")
    if validator is None:
        pytest.skip("desktop-file-validate not installed (Debian: desktop-file-utils)")
    result = subprocess.run([validator, str(desktop)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_deb_control_declares_the_system_libraries_the_bundle_does_not_carry() -> None:
    control = (PACKAGING / "linux" / "control.in").read_text()
    depends = next(line for line in control.splitlines() if line.startswith("Depends:"))
    for lib in ("libegl1", "libgl1", "libfontconfig1"):
        assert lib in depends
    build = (PACKAGING / "linux" / "build_installer.sh").read_text()
    assert "dpkg-deb --build --root-owner-group" in build


@pytest.fixture
def fake_bundle(tmp_path: Path) -> Path:
    bundle = tmp_path / "bundle"
    (bundle / "_internal").mkdir(parents=True)
    for exe in ("vsr-desktop.exe", "vsr.exe"):
        (bundle / exe).write_bytes(b"MZ")
    return bundle


def _makensis(*defines: str) -> subprocess.CompletedProcess[str]:
    makensis = shutil.which("makensis")
    if makensis is None:
        pytest.skip("makensis not installed (Debian: nsis)")
    script = PACKAGING / "windows" / "vsr-desktop.nsi"
    return subprocess.run(
        [makensis, "-NOCONFIG", "-V2", *defines, script.name],
        cwd=script.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_nsis_script_compiles_to_a_per_user_installer(fake_bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "vsr-desktop-0.1.0-windows-x64-setup.exe"
    result = _makensis("-DVERSION=0.1.0", f"-DBUNDLE_DIR={fake_bundle}", f"-DOUTFILE={out}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert out.stat().st_size > 10_000
    script = (PACKAGING / "windows" / "vsr-desktop.nsi").read_text()
    assert "RequestExecutionLevel user" in script and "$SMPROGRAMS" in script
    assert "WriteUninstaller" in script


def test_nsis_script_refuses_to_build_without_a_version(fake_bundle: Path) -> None:
    result = _makensis(f"-DBUNDLE_DIR={fake_bundle}")
    assert result.returncode != 0
    assert "VERSION" in result.stdout + result.stderr


def test_macos_info_plist_names_the_windowed_executable() -> None:
    info = plistlib.loads((PACKAGING / "macos" / "Info.plist").read_bytes())
    assert info["CFBundleExecutable"] == "vsr-desktop"
    assert info["CFBundleIdentifier"] and info["NSHighResolutionCapable"] is True
    plistlib.loads((PACKAGING / "macos" / "entitlements.plist").read_bytes())


def test_workflow_runs_tests_then_builds_then_smoke_tests_every_os() -> None:
    yaml = pytest.importorskip("yaml")
    workflow = yaml.safe_load((REPO / ".github/workflows/installers.yml").read_text())
    job = workflow["jobs"]["build"]
    oses = {entry["os"].split("-")[0] for entry in job["strategy"]["matrix"]["include"]}
    assert oses == {"ubuntu", "windows", "macos"}
    macs = [e["os"] for e in job["strategy"]["matrix"]["include"] if e["os"].startswith("macos")]
    assert len(macs) == 2  # Intel and Apple Silicon
    names = [step.get("name", "") for step in job["steps"]]
    tests = names.index("Tests")
    bundle = names.index("PyInstaller bundle")
    smokes = [i for i, name in enumerate(names) if name.startswith("Smoke test")]
    assert tests < bundle < min(smokes) and len(smokes) >= 3


def _workflow_job() -> dict[str, Any]:
    yaml = pytest.importorskip("yaml")
    workflow = yaml.safe_load((REPO / ".github/workflows/installers.yml").read_text())
    job: dict[str, Any] = workflow["jobs"]["build"]
    return job


def test_workflow_runs_every_test_on_current_runners() -> None:
    job = _workflow_job()
    matrix = job["strategy"]["matrix"]["include"]
    labels = {entry["os"] for entry in matrix}
    assert "macos-13" not in labels, "retired by GitHub on 2025-12-04"
    assert {"macos-15-intel", "macos-14"} <= labels
    (tests,) = [s for s in job["steps"] if s.get("name") == "Tests"]
    assert "pytest" in tests["run"] and " -x" not in tests["run"]
    assert "matrix.markers" in tests["run"]
    for entry in matrix:
        assert "not container" in entry["markers"]
        if not entry["os"].startswith("ubuntu"):
            assert "not slurm" in entry["markers"]


def test_workflow_waits_for_the_windows_uninstall_and_checks_it() -> None:
    (smoke,) = [
        s for s in _workflow_job()["steps"] if "Windows installer, silent" in s.get("name", "")
    ]
    script = smoke["run"]
    assert 'uninstall.exe" -ArgumentList "/S", "_?=$dir"' in script and "-Wait" in script
    assert "Test-Path $dir" in script and "Test-Path $key" in script


def test_workflow_signs_with_cloud_services_not_a_pfx_secret() -> None:
    text = (REPO / ".github/workflows/installers.yml").read_text()
    assert "PFX_BASE64" not in text and "azure/trusted-signing-action" in text
    dmg = (PACKAGING / "macos" / "make_dmg.sh").read_text()
    assert "--deep --strict" in dmg  # verification only
    signing = [line for line in dmg.splitlines() if "codesign" in line and "--verify" not in line]
    assert signing and not any("--deep" in line for line in signing)
    assert "--options runtime" in dmg and "notarytool submit" in dmg and "stapler staple" in dmg
    entitlements = plistlib.loads((PACKAGING / "macos" / "entitlements.plist").read_bytes())
    assert entitlements["com.apple.security.cs.allow-unsigned-executable-memory"] is True


def test_recipe_defaults_to_public_registries_with_local_wheels_as_an_override() -> None:
    build = (PACKAGING / "linux" / "build_installer.sh").read_text()
    assert 'PUBLIC_TORCH="torch==2.14.1 torchvision==0.29.1 --index-url ' in build
    assert "https://download.pytorch.org/whl/cpu" in build
    assert (
        "VSR_TORCH_LOCAL" in build and "+cpu" not in build.split("PUBLIC_TORCH=")[1].split("\n")[0]
    )


def test_spec_leaves_torch_tests_and_binaries_out_and_collects_licences() -> None:
    for unused in ("torch/test/test_api", "torch/bin/protoc", "torch/include/c10/x.h",
                   "torch/lib/libfoo.a", "x/__pycache__/y.pyc"):  # fmt: skip
        assert bundle_support.unused_at_run_time(unused), unused
    for used in ("torch/lib/libtorch_cpu.so", "torch/_C.cpython-311-x86_64-linux-gnu.so",
                 "torch/bin/torch_shm_manager"):  # fmt: skip
        assert not bundle_support.unused_at_run_time(used), used
    source = SPEC.read_text()
    assert "licences.collect(" in source and "sys.exit(" in source


def test_deb_declares_the_glibc_the_bundle_needs_and_ships_changelog_and_md5sums() -> None:
    control = (PACKAGING / "linux" / "control.in").read_text()
    assert "libc6 (>= @GLIBC@)" in control
    build = (PACKAGING / "linux" / "build_installer.sh").read_text()
    assert "GLIBC_" in build and "DEBIAN/md5sums" in build and "changelog.Debian.gz" in build
    assert "__pycache__" in build and "README-linux.txt" in build


def test_the_app_names_missing_system_libraries_in_one_line() -> None:
    entry = PACKAGING / "pyinstaller" / "entry_gui.py"
    code = (
        "import ctypes, runpy, sys\n"
        "def refuse(name, *a, **k):\n"
        "    raise OSError(name)\n"
        "ctypes.CDLL = refuse\n"
        "sys.platform = 'linux'\n"
        f"runpy.run_path({str(entry)!r}, run_name='__main__')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 3
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "libGL.so.1" in result.stderr and "apt install libgl1" in result.stderr


def test_shell_scripts_parse() -> None:
    for script in (
        "linux/build_installer.sh",
        "linux/smoke_in_clean_root.sh",
        "macos/make_dmg.sh",
        "linux/installer_check.sh",
    ):
        subprocess.run(["bash", "-n", str(PACKAGING / script)], check=True)


def test_keyring_backends_are_found_through_entry_points() -> None:
    pytest.importorskip("keyring")
    from vsr_desktop.gui.smoke import keyring_backends

    found = keyring_backends()
    assert "SecretService" in found or sys.platform != "linux"


# -- the self-test itself, from the source tree -----------------------------------------------


def _run_app(tmp_path: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    for var, sub in (
        ("XDG_DATA_HOME", "data"),
        ("XDG_CACHE_HOME", "cache"),
        ("XDG_CONFIG_HOME", "config"),
        ("XDG_STATE_HOME", "state"),
    ):
        env[var] = str(tmp_path / "home" / sub)
    env.pop("QT_QPA_PLATFORM", None)  # --smoke must choose offscreen by itself
    env.pop("DISPLAY", None)
    return subprocess.run(
        [sys.executable, "-m", "vsr_desktop.gui.app", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=tmp_path,
    )


@pytest.mark.slow
def test_smoke_previews_and_upscales_the_bundled_sample(tmp_path: Path) -> None:
    log = tmp_path / "smoke.txt"
    result = _run_app(tmp_path, "--smoke", "--smoke-log", str(log))
    assert result.returncode == 0, result.stderr
    report = log.read_text()
    assert report == "".join(
        line + "\n" for line in result.stderr.splitlines() if line.startswith("smoke [")
    )
    assert "preview rendered: 320x180 -> 1280x720" in report
    assert "device: Found: " in report
    assert "upscaled with realesr-animevideov3: 2 frames 320x180 -> 1280x720, h264" in report
    assert report.rstrip().endswith("OK")
    assert not list((tmp_path / "home" / "config").rglob("settings.json")), (
        "the self-test must not touch the user's settings"
    )


def test_smoke_fails_with_a_message_when_the_clip_is_missing(tmp_path: Path) -> None:
    result = _run_app(tmp_path, "--smoke", str(tmp_path / "gone.mp4"), timeout=120)
    assert result.returncode == 1
    assert "FAILED: sample clip missing" in result.stderr


def test_smoke_fails_with_a_message_when_a_video_cannot_be_decoded(tmp_path: Path) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 4000)
    result = _run_app(tmp_path, "--smoke", str(broken), timeout=180)
    assert result.returncode == 1
    assert "FAILED: preview:" in result.stderr


def test_smoke_times_out_with_exit_code_2(tmp_path: Path) -> None:
    result = _run_app(tmp_path, "--smoke", "--smoke-timeout", "0.2", timeout=120)
    assert result.returncode == 2
    assert "FAILED: timed out after" in result.stderr
