"""Write the CUDA add-on's manifest from a PyTorch package index (run at release time).

Why a script and not a committed file: the CUDA wheels for Windows are on PyTorch's own index
(download.pytorch.org), which the project's build machines cannot reach, and PyPI's Windows
torch wheels are CPU-only. The Windows release job runs this where the index is reachable;
each wheel's sha256 comes from the index itself (the ``#sha256=`` fragment of PEP 503, or
PEP 691 JSON ``hashes``), its size from PEP 700 ``size`` or a HEAD request.

    python packaging/windows/gpu_addon_manifest.py \
        --out build/bundle-generated/gpu_addon/manifest.json

The spec bundles that file as ``vsr_desktop/resources/gpu_addon/manifest.json``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import urllib.parse
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

DEFAULT_INDEX = "https://download.pytorch.org/whl/cu128"
DEFAULT_PINS = ("torch==2.14.1", "torchvision==0.29.1")
DEFAULT_TAG = "cp311-cp311-win_amd64"
_JSON = "application/vnd.pypi.simple.v1+json"


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        href = dict(attrs).get("href")
        if tag == "a" and href:
            self.links.append(href)


def index_files(index: str, project: str) -> list[dict[str, object]]:
    """Files of ``project`` on a simple index: dicts with filename, url, sha256, size|None."""
    page = f"{index.rstrip('/')}/{project}/"
    request = urllib.request.Request(page, headers={"Accept": f"{_JSON}, text/html;q=0.1"})
    with urllib.request.urlopen(request, timeout=60) as response:
        kind = response.headers.get("Content-Type", "")
        body = response.read().decode("utf-8")
    files: list[dict[str, object]] = []
    if kind.startswith(_JSON):
        for entry in json.loads(body)["files"]:
            files.append(
                {
                    "filename": entry["filename"],
                    "url": urllib.parse.urljoin(page, entry["url"]),
                    "sha256": entry.get("hashes", {}).get("sha256"),
                    "size": entry.get("size"),
                }
            )
        return files
    parser = _Links()
    parser.feed(body)
    for href in parser.links:
        url, _, fragment = urllib.parse.urljoin(page, href).partition("#")
        sha = fragment[7:] if fragment.startswith("sha256=") else None
        name = urllib.parse.unquote(url.rsplit("/", 1)[-1])
        files.append({"filename": name, "url": url, "sha256": sha, "size": None})
    return files


def _size(url: str) -> int:
    request = urllib.request.Request(url, method="HEAD")
    with urllib.request.urlopen(request, timeout=60) as response:
        return int(response.headers["Content-Length"])


def pick(files: list[dict[str, object]], pin: str, tag: str) -> dict[str, object]:
    """The one wheel for ``name==version`` (any local label, e.g. +cu128) and ``tag``."""
    name, version = pin.split("==")
    pattern = re.compile(
        rf"^{re.escape(name)}-{re.escape(version)}(\+[A-Za-z0-9.]+)?-{re.escape(tag)}\.whl$"
    )
    found = [f for f in files if pattern.match(str(urllib.parse.unquote(str(f["filename"]))))]
    if len(found) != 1:
        raise SystemExit(f"gpu_addon_manifest: {len(found)} wheels match {pin} {tag}")
    chosen = dict(found[0])
    if not chosen["sha256"]:
        raise SystemExit(f"gpu_addon_manifest: the index gives no sha256 for {chosen['filename']}")
    if chosen["size"] is None:
        chosen["size"] = _size(str(chosen["url"]))
    return chosen


def build_manifest(index: str, pins: tuple[str, ...], tag: str) -> dict[str, object]:
    """The manifest core/gpu_addon.py reads."""
    wheels = [pick(index_files(index, pin.split("==")[0]), pin, tag) for pin in pins]
    variant = index.rstrip("/").rsplit("/", 1)[-1]
    platform = {"win_amd64": "win-amd64"}.get(tag.rsplit("-", 1)[-1], tag.rsplit("-", 1)[-1])
    total = sum(int(str(w["size"])) for w in wheels)
    return {
        "id": f"{'-'.join(p.replace('==', '-') for p in pins)}-{variant}-{tag}",
        "platform": platform,
        "description": f"PyTorch {pins[0].split('==')[1]} for NVIDIA GPUs ({variant}), "
        f"{total / 1e9:.1f} GB",
        "files": [
            {
                "name": urllib.parse.unquote(str(w["filename"])),
                "url": w["url"],
                "size": int(str(w["size"])),
                "sha256": w["sha256"],
            }
            for w in wheels
        ],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--index", default=DEFAULT_INDEX)
    parser.add_argument("--pin", action="append", default=None, help="name==version, repeated")
    parser.add_argument("--tag", default=DEFAULT_TAG, help="wheel tag, e.g. cp311-cp311-win_amd64")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    manifest = build_manifest(args.index, tuple(args.pin or DEFAULT_PINS), args.tag)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    print(f"{args.out}: {manifest['description']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
