"""The Windows CUDA add-on: download, verify, install atomically, use at start-up, remove.

Boundary: the real add-on is PyTorch's CUDA wheels (~2.5 GB) on download.pytorch.org, which
no test may fetch (and the build machines cannot reach). The tests build small real wheels
(tests/helpers/wheel_server.py) and serve them over HTTP from 127.0.0.1; everything else
(urllib, Range requests, zip extraction, sys.path at start-up) is the real code path.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import sysconfig
import threading
from pathlib import Path

import pytest

from tests.helpers.wheel_server import ServerState, make_wheel, serve
from vsr_desktop.core import gpu_addon
from vsr_desktop.core.errors import CancelledError
from vsr_desktop.core.gpu_addon_install import install

REPO = Path(__file__).resolve().parents[2]
BIG = os.urandom(3 * 1024 * 1024 + 17)  # > one 1 MiB download block: resume and cancel


def _wheels(tmp_path: Path) -> list[Path]:
    folder = tmp_path / "wheels"
    folder.mkdir()
    return [
        make_wheel(
            folder,
            "vsraddonpkg",
            "1.0",
            {
                "vsraddonpkg/__init__.py": b"WHERE = 'addon'\n",
                "vsraddonpkg/lib/blob.bin": BIG,
            },
        ),
        make_wheel(folder, "vsraddonvision", "1.0", {"vsraddonvision.py": b"OK = True\n"}),
    ]


def _manifest(base_url: str, wheels: list[Path], **bad_sha: str) -> gpu_addon.Manifest:
    data = {
        "id": "vsraddon-1.0-test",
        "platform": sysconfig.get_platform(),
        "description": "test add-on",
        "files": [
            {
                "name": w.name,
                "url": f"{base_url}/{w.name}",
                "size": w.stat().st_size,
                "sha256": bad_sha.get(w.name, hashlib.sha256(w.read_bytes()).hexdigest()),
            }
            for w in wheels
        ],
    }
    return gpu_addon.parse_manifest(data)


@pytest.fixture
def served(tmp_path: Path):
    wheels = _wheels(tmp_path)
    state = ServerState(files={w.name: w.read_bytes() for w in wheels})
    with serve(state) as url:
        yield state, _manifest(url, wheels), wheels, url


def test_install_puts_the_addon_ahead_of_the_bundled_package_from_the_next_start(
    served, tmp_path: Path
) -> None:
    state, manifest, _, _ = served
    root = tmp_path / "addon"
    seen: list[tuple[int, int, str]] = []
    folder = install(manifest, root, lambda d, t, w: seen.append((d, t, w)))
    assert folder == root / manifest.id and (folder / gpu_addon.MARKER).is_file()
    assert (folder / "site" / "vsraddonpkg" / "lib" / "blob.bin").read_bytes() == BIG
    assert (folder / "site" / "vsraddonpkg-1.0.dist-info" / "RECORD").is_file()
    assert seen[-1][0] == seen[-1][1] == manifest.total_bytes
    assert [d for d, _, _ in seen] == sorted(d for d, _, _ in seen)  # progress never goes back
    assert not list((root / "downloads").iterdir())  # installed wheels are not kept
    assert gpu_addon.status(manifest, root).installed
    state.ranges.clear()
    assert install(manifest, root) == folder and state.ranges == []  # installed: no download

    # A "bundled" package of the same name that comes first on sys.path, as in the frozen app;
    # activate() must win over it, and only when the add-on is complete.
    bundled = tmp_path / "bundled" / "vsraddonpkg"
    bundled.mkdir(parents=True)
    (bundled / "__init__.py").write_text("WHERE = 'bundled'\n")
    manifest_file = tmp_path / "manifest.json"
    manifest_file.write_text(json.dumps(_as_json(manifest)))
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "from vsr_desktop.core.gpu_addon import activate; print(activate()); "
        "import vsraddonpkg; print(vsraddonpkg.WHERE)"
    )
    env = dict(
        os.environ,
        **{gpu_addon.MANIFEST_ENV: str(manifest_file), gpu_addon.DIR_ENV: str(root)},
        PYTHONPATH=str(REPO),
    )

    def run(**extra: str) -> list[str]:
        result = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path / "bundled")],
            env={**env, **extra},
            capture_output=True,
            text=True,
            check=True,
        )
        return result.stdout.split()

    assert run() == [str(folder / "site"), "addon"]
    assert run(**{gpu_addon.ENABLE_ENV: "0"}) == ["None", "bundled"]  # the way out
    assert gpu_addon.remove(root) == ["downloads", manifest.id]
    assert run() == ["None", "bundled"]
    assert not gpu_addon.status(manifest, root).installed


def _as_json(manifest: gpu_addon.Manifest) -> dict[str, object]:
    return {
        "id": manifest.id,
        "platform": manifest.platform,
        "description": manifest.description,
        "files": [f.__dict__ for f in manifest.files],
    }


def test_a_checksum_mismatch_is_refused_and_nothing_is_installed(served, tmp_path: Path) -> None:
    _, _, wheels, url = served
    manifest = _manifest(url, wheels, **{wheels[0].name: "0" * 64})
    root = tmp_path / "addon"
    with pytest.raises(gpu_addon.GpuAddonError, match="does not match its checksum"):
        install(manifest, root)
    assert gpu_addon.installed_ids(root) == []
    assert not list((root / "downloads").glob(f"{wheels[0].name}*"))  # bad file deleted
    assert not any(p.name.startswith(".staging") for p in root.iterdir())


def test_an_interrupted_download_resumes_with_a_range_request(served, tmp_path: Path) -> None:
    state, manifest, wheels, _ = served
    root = tmp_path / "addon"
    state.cut_after[wheels[0].name] = 1_500_000
    with pytest.raises(gpu_addon.GpuAddonError, match=r"resumes|stopped"):
        install(manifest, root)
    part = root / "downloads" / f"{wheels[0].name}.part"
    assert part.stat().st_size == 1_500_000
    assert gpu_addon.installed_ids(root) == []
    assert gpu_addon.status(manifest, root).partial_bytes == 1_500_000
    state.ranges.clear()
    install(manifest, root)
    assert state.ranges[0] == "bytes=1500000-"
    assert (root / manifest.id / "site" / "vsraddonpkg" / "lib" / "blob.bin").read_bytes() == BIG


def test_a_server_that_ignores_range_makes_the_file_start_again_cleanly(
    served, tmp_path: Path
) -> None:
    state, manifest, wheels, _ = served
    root = tmp_path / "addon"
    state.cut_after[wheels[0].name] = 700_000
    with pytest.raises(gpu_addon.GpuAddonError):
        install(manifest, root)
    state.ignore_range = True
    install(manifest, root)  # a 200 for a Range request: appended bytes would break the sha
    assert gpu_addon.status(manifest, root).installed


def test_a_wrong_range_answer_discards_the_partial_file(served, tmp_path: Path) -> None:
    state, manifest, wheels, _ = served
    root = tmp_path / "addon"
    state.cut_after[wheels[0].name] = 600_000
    with pytest.raises(gpu_addon.GpuAddonError):
        install(manifest, root)
    state.range_skew = 1000  # appending would corrupt the file silently
    with pytest.raises(gpu_addon.GpuAddonError, match="wrong part"):
        install(manifest, root)
    assert not (root / "downloads" / f"{wheels[0].name}.part").exists()
    state.range_skew = 0
    install(manifest, root)
    assert gpu_addon.status(manifest, root).installed


def test_cancel_keeps_the_partial_download_and_installs_nothing(served, tmp_path: Path) -> None:
    _, manifest, _, _ = served
    root = tmp_path / "addon"
    cancel = threading.Event()

    def progress(done: int, total: int, what: str) -> None:
        if done > 1_000_000:
            cancel.set()

    with pytest.raises(CancelledError):
        install(manifest, root, progress, cancel)
    assert gpu_addon.installed_ids(root) == []
    partial = gpu_addon.status(manifest, root).partial_bytes
    assert 1_000_000 < partial < manifest.total_bytes
    install(manifest, root)
    assert gpu_addon.status(manifest, root).installed


def test_a_wheel_that_writes_outside_its_folder_is_refused(tmp_path: Path) -> None:
    import zipfile

    bad = tmp_path / "evil-1.0-py3-none-any.whl"
    with zipfile.ZipFile(bad, "w") as archive:
        archive.writestr("../../outside.txt", b"x")
    state = ServerState(files={bad.name: bad.read_bytes()})
    with serve(state) as url:
        manifest = _manifest(url, [bad])
        with pytest.raises(gpu_addon.GpuAddonError, match="outside"):
            install(manifest, tmp_path / "addon")
    assert not (tmp_path / "outside.txt").exists()
    assert gpu_addon.installed_ids(tmp_path / "addon") == []


@pytest.mark.parametrize(
    "change, problem",
    [
        ({"sha256": "abc"}, "sha256"),
        ({"name": "../x.whl"}, "plain file name"),
        ({"name": "torch.tar.gz"}, "only wheels"),
        ({"size": "many"}, "wrong field"),
    ],
)
def test_a_bad_manifest_is_refused(change: dict[str, str], problem: str) -> None:
    entry = {"name": "a-1-py3-none-any.whl", "url": "http://x/a", "size": 1, "sha256": "a" * 64}
    with pytest.raises(gpu_addon.GpuAddonError) as info:
        gpu_addon.parse_manifest({"id": "x", "platform": "p", "files": [{**entry, **change}]})
    assert problem in info.value.user_message()


def test_a_build_without_a_manifest_or_for_another_platform_offers_nothing(
    tmp_path: Path,
) -> None:
    assert gpu_addon.load_manifest(tmp_path / "absent.json") is None
    state = gpu_addon.status(None, tmp_path)
    assert not state.available and "No GPU add-on" in state.message
    other = gpu_addon.Manifest("x", "win-amd64" if os.name != "nt" else "linux-x86_64", "", ())
    assert not gpu_addon.status(other, tmp_path).available
    with pytest.raises(gpu_addon.GpuAddonError, match=r"is for (win-amd64|linux)"):
        install(other, tmp_path)


def test_cli_status_install_remove(served, tmp_path: Path, capsys, monkeypatch) -> None:
    from vsr_desktop.cli import main

    monkeypatch.setattr("tqdm.tqdm.monitor_interval", 0)  # no monitor thread left behind

    _, manifest, _, _ = served
    manifest_file = tmp_path / "manifest.json"
    manifest_file.write_text(json.dumps(_as_json(manifest)))
    args = ["--manifest", str(manifest_file), "--dir", str(tmp_path / "addon")]
    assert main(["gpu-addon", "status", *args]) == 1
    assert "Not installed" in capsys.readouterr().out
    assert main(["gpu-addon", "install", *args]) == 0
    assert main(["gpu-addon", "status", *args]) == 0
    assert "Installed" in capsys.readouterr().out
    assert main(["gpu-addon", "remove", "--dir", str(tmp_path / "addon")]) == 0
    assert main(["gpu-addon", "status", *args]) == 1
    assert main(["gpu-addon", "install", "--manifest", str(tmp_path / "none.json")]) == 10
    assert "No manifest" in capsys.readouterr().err
