"""Small real wheels and a local HTTP server for the GPU add-on tests.

The real add-on downloads PyTorch's CUDA wheels (~2.5 GB) from download.pytorch.org; nothing
here may reach for that (and the index is not reachable from the build machines), so the
tests build small wheels of the same format and serve them over real HTTP from 127.0.0.1,
with HTTP Range support, and switches to cut a response short or ignore Range.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import threading
import urllib.parse
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path


def make_wheel(folder: Path, dist: str, version: str, files: dict[str, bytes]) -> Path:
    """Write ``dist-version-py3-none-any.whl`` holding ``files`` plus its dist-info.

    Stored, not deflated: its size stays that of its contents (progress and resume tests
    need files bigger than one download block).
    """
    info = f"{dist}-{version}.dist-info"
    members = dict(files)
    members[f"{info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n".encode()
    )
    members[f"{info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: vsr-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    record = []
    for name, data in members.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    members[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    path = folder / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


@dataclass
class ServerState:
    """What the handler serves and how it misbehaves; what it was asked."""

    files: dict[str, bytes] = field(default_factory=dict)
    cut_after: dict[str, int] = field(default_factory=dict)  # name → bytes sent, once
    content_types: dict[str, str] = field(default_factory=dict)  # name → Content-Type
    ignore_range: bool = False
    range_skew: int = 0  # added to the start a 206 answer claims (a broken server or proxy)
    ranges: list[str | None] = field(default_factory=list)  # Range header of each GET


class _Handler(http.server.BaseHTTPRequestHandler):
    state: ServerState

    def log_message(self, format: str, *args: object) -> None:  # quiet
        return

    def do_HEAD(self) -> None:
        data = self.state.files.get(urllib.parse.unquote(self.path.lstrip("/")))
        self.send_response(200 if data is not None else 404)
        self.send_header("Content-Length", str(len(data or b"")))
        self.end_headers()

    def do_GET(self) -> None:
        name = urllib.parse.unquote(self.path.lstrip("/"))
        data = self.state.files.get(name)
        header = self.headers.get("Range")
        self.state.ranges.append(header)
        if data is None:
            self.send_error(404)
            return
        start = 0
        if header and not self.state.ignore_range:
            start = int(header.split("=")[1].split("-")[0])
            self.send_response(206)
            claimed = start + self.state.range_skew
            self.send_header("Content-Range", f"bytes {claimed}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        if name in self.state.content_types:
            self.send_header("Content-Type", self.state.content_types[name])
        self.end_headers()
        cut = self.state.cut_after.pop(name, None)
        self.wfile.write(body if cut is None else body[:cut])
        if cut is not None:
            self.close_connection = True


@contextmanager
def serve(state: ServerState) -> Iterator[str]:
    """Serve ``state.files`` at the yielded base URL until the block ends."""
    handler = type("Handler", (_Handler,), {"state": state})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
