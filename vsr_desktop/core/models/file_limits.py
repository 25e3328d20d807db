"""Model files checked before their tensors are read: a safetensors header's shapes and
metadata, a PyTorch zip archive's members. A header can promise 10⁶ channels and a zip can
inflate a thousandfold; both are refused here, unread, with one ModelError line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vsr_desktop.core.errors import ModelError
from vsr_desktop.core.models import bounds


def read_safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a safetensors file, read and bounded before any tensor is: every
    shape, the number of tensors and their total size (a header can promise 10⁶ channels),
    and the metadata as strings. Raises ModelError for a damaged or crafted header."""
    import json

    damaged = "the file is damaged or incomplete; download it again"
    try:
        with path.open("rb") as handle:
            length = int.from_bytes(handle.read(8), "little")
            if not 2 <= length <= bounds.MAX_HEADER_BYTES:
                raise ModelError(f"Cannot read {path.name}: bad safetensors header size", damaged)
            header = json.loads(handle.read(length))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ModelError(f"Cannot read {path.name}: not a valid safetensors file", damaged) from exc
    if not isinstance(header, dict):
        raise ModelError(f"Cannot read {path.name}: not a valid safetensors file", damaged)
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(
        isinstance(v, str) and len(v) < 4096 for v in metadata.values()
    ):
        raise ModelError(f"{path.name}: its metadata are not short strings", damaged)
    shapes: dict[str, tuple[int, ...] | list[int]] = {}
    for name, entry in header.items():
        shape = entry.get("shape") if isinstance(entry, dict) else None
        if not isinstance(shape, list):
            raise ModelError(f"Cannot read {path.name}: tensor {name[:60]!r} has no shape", damaged)
        shapes[name] = shape
    bounds.check_shapes(shapes, path.name)
    return {"metadata": metadata, "shapes": shapes}


def check_zip_archive(path: Path) -> None:
    """A PyTorch zip archive's members, before torch reads any: no member inflates beyond the
    model limit or by more than 100:1 (torch stores its members uncompressed; a zip bomb is
    all compression), and not more members than a model has tensors."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return  # the legacy format: torch checks it, under the file-size limit
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ModelError(
            f"Cannot read {path.name}: a damaged zip archive",
            "the file is damaged or incomplete; download it again",
        ) from exc
    total = sum(m.file_size for m in members)
    bomb = any(
        m.compress_type != zipfile.ZIP_STORED and m.file_size > 100 * max(m.compress_size, 1)
        for m in members
    )
    if len(members) > bounds.MAX_TENSORS or total > bounds.MAX_MODEL_BYTES or bomb:
        raise ModelError(
            f"Refusing to load {path.name}: its archive would inflate to {total} bytes "
            f"in {len(members)} members",
            "the file is damaged or was crafted; use an official model file",
        )
