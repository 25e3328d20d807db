"""packaging/windows/gpu_addon_manifest.py: the add-on's pins read from a package index.

Boundary: the real index (download.pytorch.org) is not reachable from here; a local HTTP
server serves simple-index pages in both forms the script reads (PEP 503 HTML with
``#sha256=`` fragments and no sizes, PEP 691 JSON with hashes and sizes) and small wheels.
"""

from __future__ import annotations

import hashlib
import json
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.helpers.wheel_server import ServerState, make_wheel, serve
from vsr_desktop.core import gpu_addon

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "packaging" / "windows"))
import gpu_addon_manifest  # noqa: E402

TAG = "cp311-cp311-win_amd64"


def _wheel_bytes(tmp_path: Path, dist: str, version: str) -> bytes:
    return make_wheel(tmp_path, dist, version, {f"{dist}/__init__.py": b"x = 1\n"}).read_bytes()


def _index(tmp_path: Path, json_api: bool) -> ServerState:
    state = ServerState()
    for dist, version in (("torch", "2.14.1"), ("torchvision", "0.29.1")):
        data = _wheel_bytes(tmp_path, dist, version)
        wanted = f"{dist}-{version}+cu128-{TAG}.whl"
        other = f"{dist}-{version}+cu128-cp312-cp312-win_amd64.whl"
        state.files[f"files/{wanted}"] = data
        state.files[f"files/{other}"] = b"other"
        sha = hashlib.sha256(data).hexdigest()
        if json_api:
            files = [
                {"filename": wanted, "url": f"../../files/{wanted}", "hashes": {"sha256": sha},
                 "size": len(data)},
                {"filename": other, "url": f"../../files/{other}", "hashes": {}, "size": 5},
            ]  # fmt: skip
            state.files[f"cu128/{dist}/"] = json.dumps({"files": files}).encode()
            state.content_types[f"cu128/{dist}/"] = "application/vnd.pypi.simple.v1+json"
        else:
            page = (
                f'<a href="/files/{wanted.replace("+", "%2B")}#sha256={sha}">{wanted}</a>\n'
                f'<a href="/files/{other}">{other}</a>\n'
            )
            state.files[f"cu128/{dist}/"] = page.encode()
    return state


@pytest.mark.parametrize("json_api", [False, True], ids=["pep503-html", "pep691-json"])
def test_the_manifest_pins_each_wheel_by_url_size_and_sha256(
    tmp_path: Path, json_api: bool
) -> None:
    state = _index(tmp_path, json_api)
    with serve(state) as url:
        out = tmp_path / "manifest.json"
        assert gpu_addon_manifest.main(["--index", f"{url}/cu128", "--out", str(out)]) == 0
        manifest = gpu_addon.load_manifest(out)
        assert manifest is not None
        assert manifest.platform == "win-amd64" and "cu128" in manifest.id
        assert [f.name for f in manifest.files] == [
            f"torch-2.14.1+cu128-{TAG}.whl",
            f"torchvision-0.29.1+cu128-{TAG}.whl",
        ]
        for item in manifest.files:
            data = state.files[f"files/{item.name}"]
            assert item.size == len(data)
            assert item.sha256 == hashlib.sha256(data).hexdigest()
        if sysconfig.get_platform() == "win-amd64":  # the manifest works with the installer
            from vsr_desktop.core.gpu_addon_install import install

            install(manifest, tmp_path / "addon")


def test_a_missing_wheel_or_hash_stops_the_release(tmp_path: Path) -> None:
    state = _index(tmp_path, json_api=False)
    with serve(state) as url:
        with pytest.raises(SystemExit, match=r"0 wheels match torch==9\.9"):
            gpu_addon_manifest.build_manifest(f"{url}/cu128", ("torch==9.9",), TAG)
        with pytest.raises(SystemExit, match="no sha256"):
            gpu_addon_manifest.build_manifest(
                f"{url}/cu128", ("torch==2.14.1",), "cp312-cp312-win_amd64"
            )
