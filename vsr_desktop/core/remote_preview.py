"""The wire format of a preview region sent to an inference server, and a urllib client for it.

The worker image serves SageMaker's contract (``GET /ping``, ``POST /invocations``); the app
reaches it either through SageMaker's InvokeEndpoint (signed by boto3, outside ``core``) or,
for a server started by hand (``vsr serve`` on a GPU box, or in tests), over plain HTTP.
Both paths build the same body and headers here, so the server parses exactly one format:

- ``image/png`` body → ``image/png`` reply of the upscaled region;
- ``application/octet-stream`` body of packed RGB24 with ``X-Width``/``X-Height`` headers →
  the same kind of reply, with the output's ``X-Width``/``X-Height``.

Settings (model, outscale, denoise) travel as query parameters or, because InvokeEndpoint
cannot set a query string, in ``X-Amzn-SageMaker-Custom-Attributes`` as ``k=v;k=v``.
No torch and no boto3 here: the GUI imports this module on the GUI thread's side.
"""

from __future__ import annotations

import io
import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

import numpy as np

from vsr_desktop.core.errors import EngineError, InputError

PNG_TYPE = "image/png"
RAW_TYPE = "application/octet-stream"
CUSTOM_ATTRIBUTES_HEADER = "X-Amzn-SageMaker-Custom-Attributes"
WIDTH_HEADER = "X-Width"
HEIGHT_HEADER = "X-Height"
DEFAULT_MODEL = "realesr-animevideov3"
# 1024×1024 input pixels: a ×4 reply is 4096×4096 (48 MiB raw), about what one GPU request
# should hold; a preview shows a viewport-sized region, far smaller.
DEFAULT_MAX_PIXELS = 1024 * 1024


@dataclass(frozen=True)
class PreviewSettings:
    """What the server needs besides the pixels: the same knobs as the local preview."""

    model: str = DEFAULT_MODEL
    outscale: float | None = None
    denoise: float | None = None

    def to_attributes(self) -> str:
        """The ``k=v;k=v`` form SageMaker passes through as custom attributes."""
        return ";".join(f"{k}={v}" for k, v in self._pairs())

    def to_query(self) -> str:
        return urllib.parse.urlencode(self._pairs())

    def _pairs(self) -> list[tuple[str, str]]:
        pairs = [("model", self.model)]
        if self.outscale is not None:
            pairs.append(("outscale", repr(float(self.outscale))))
        if self.denoise is not None:
            pairs.append(("denoise", repr(float(self.denoise))))
        return pairs

    @classmethod
    def parse(cls, query: str = "", attributes: str | None = None) -> PreviewSettings:
        """Settings from custom attributes, then the query string over them (query wins).

        Unknown keys are rejected rather than ignored, so a typo ("outscael") is not
        silently answered with the default scale.
        """
        values: dict[str, str] = {}
        for part in (attributes or "").split(";"):
            if part.strip():
                key, sep, value = part.partition("=")
                if not sep:
                    raise InputError(
                        f"bad custom attribute {part.strip()!r}",
                        "write attributes as key=value;key=value",
                    )
                values[key.strip().lower()] = value.strip()
        for key, value in urllib.parse.parse_qsl(query, keep_blank_values=True):
            values[key.lower()] = value
        unknown = sorted(set(values) - {"model", "outscale", "denoise"})
        if unknown:
            raise InputError(f"unknown setting {unknown[0]!r}", "use model, outscale, denoise")
        outscale = _number(values, "outscale")
        if outscale is not None and not 0.25 <= outscale <= 8:
            raise InputError(f"outscale {outscale:g} is out of range", "use 0.25 to 8")
        return cls(values.get("model") or DEFAULT_MODEL, outscale, _number(values, "denoise"))


def _number(values: dict[str, str], key: str) -> float | None:
    text = values.get(key, "")
    if not text:
        return None
    try:
        number = float(text)
    except ValueError:
        raise InputError(f"{key} {text!r} is not a number", f"give {key} as e.g. 2") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise InputError(f"{key} must be a finite number", f"give {key} as e.g. 2")
    return number


def encode_png(rgb: np.ndarray, compress_level: int = 1) -> bytes:
    """PNG of an 8-bit RGB image. Level 1: the bytes are transient, speed matters more."""
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB").save(
        out, format="PNG", compress_level=compress_level
    )
    return out.getvalue()


def decode_png(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """8-bit RGB pixels of a PNG; the size is checked before any pixel is decoded.

    Checking first matters on a server: a tiny PNG can claim 50000×50000 pixels.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data), formats=["PNG"])
        check_region_size(image.width, image.height, max_pixels)
        return np.array(image.convert("RGB"))  # writable, as torch.from_numpy wants
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(
            f"the body is not a readable PNG ({exc})", "send an 8-bit RGB PNG of the region"
        ) from None


def decode_raw(data: bytes, width: int, height: int) -> np.ndarray:
    """Packed RGB24 rows → (height, width, 3); the length must match exactly."""
    expected = width * height * 3
    if len(data) != expected:
        raise InputError(
            f"raw body is {len(data)} bytes, {width}×{height} RGB24 is {expected}",
            "send width × height × 3 bytes, rows top to bottom",
        )
    # A writable copy: torch warns on (and must not write into) read-only buffers.
    return np.frombuffer(data, dtype=np.uint8).reshape(height, width, 3).copy()


def check_region_size(width: int, height: int, max_pixels: int) -> None:
    if width < 1 or height < 1:
        raise InputError(f"empty region {width}×{height}", "send at least one pixel")
    if width * height > max_pixels:
        raise InputError(
            f"region {width}×{height} is larger than {max_pixels} pixels",
            "send a smaller region (the visible part), or split it in tiles",
        )


def encode_request(rgb: np.ndarray, raw: bool = False) -> tuple[bytes, dict[str, str]]:
    """Body and headers for one region; raw skips PNG work on both ends (for fast links)."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise InputError(f"expected 8-bit RGB (H, W, 3), got {rgb.dtype} {rgb.shape}")
    if not raw:
        return encode_png(rgb), {"Content-Type": PNG_TYPE}
    height, width = rgb.shape[:2]
    headers = {"Content-Type": RAW_TYPE, WIDTH_HEADER: str(width), HEIGHT_HEADER: str(height)}
    return np.ascontiguousarray(rgb).tobytes(), headers


def decode_reply(
    body: bytes, content_type: str, width: str | None, height: str | None
) -> np.ndarray:
    """The upscaled region from a 200 reply (either format)."""
    if content_type.split(";")[0].strip() == RAW_TYPE:
        try:
            return decode_raw(body, int(width or ""), int(height or ""))
        except ValueError:
            raise EngineError("the server's raw reply has no valid size headers") from None
    return decode_png(body, max_pixels=1 << 31)


def error_from_reply(status: int, body: bytes) -> EngineError | InputError:
    """The server's ``{"error", "hint"}`` as our own error: 4xx is the request, 5xx the server."""
    try:
        data = json.loads(body)
        message, hint = str(data["error"]), str(data.get("hint", ""))
    except (ValueError, KeyError, TypeError):
        message, hint = body[:200].decode("utf-8", "replace") or f"HTTP {status}", ""
    if 400 <= status < 500:
        return InputError(f"the preview server refused the region: {message}", hint)
    return EngineError(f"the preview server failed (HTTP {status}): {message}", hint)


class HttpUpscaler:
    """A FrameUpscaler backed by an inference server over plain HTTP (urllib).

    For a server reachable without AWS signing: ``vsr serve`` on a GPU machine, or tests.
    The cloud preview through SageMaker uses the same encode/decode functions with boto3.
    """

    def __init__(
        self,
        url: str,
        settings: PreviewSettings | None = None,
        *,
        model_scale: int = 4,
        raw: bool = False,
        timeout: float = 60.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.settings = settings or PreviewSettings()
        self.model_scale = model_scale
        self.raw = raw
        self.timeout = timeout

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        """Same rule as the local Engine, so a cached preview has the size the GUI expects."""
        scale = self.settings.outscale or float(self.model_scale)
        return max(1, int(width * scale)), max(1, int(height * scale))

    def upscale(self, frames: np.ndarray, cancel: threading.Event | None = None) -> np.ndarray:
        """One request per frame; ``cancel`` is honoured between frames."""
        out = []
        for frame in frames:
            if cancel is not None and cancel.is_set():
                from vsr_desktop.core.errors import CancelledError

                raise CancelledError("preview cancelled")
            out.append(self.upscale_region(frame))
        return np.stack(out)

    def upscale_region(self, rgb: np.ndarray) -> np.ndarray:
        body, headers = encode_request(rgb, self.raw)
        url = f"{self.url}/invocations?{self.settings.to_query()}"
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as reply:
                return decode_reply(
                    reply.read(),
                    reply.headers.get("Content-Type", ""),
                    reply.headers.get(WIDTH_HEADER),
                    reply.headers.get(HEIGHT_HEADER),
                )
        except urllib.error.HTTPError as exc:
            raise error_from_reply(exc.code, exc.read()) from None
        except (urllib.error.URLError, OSError) as exc:
            raise EngineError(
                f"the preview server at {self.url} is unreachable ({exc})",
                "check that it is running, or turn cloud preview off",
            ) from None
