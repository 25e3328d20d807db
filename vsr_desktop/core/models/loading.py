"""Turn a model name or file into a ready ``torch.nn.Module``, safely.

Safety: a ``.pth`` is a pickle, and unpickling can run arbitrary code. We never hand a file to
spandrel's loader (its ``.pt`` path calls ``torch.jit.load``); we read the state dict ourselves
with safetensors or ``torch.load(weights_only=True)`` and give spandrel only tensors, for
architecture detection (``ModelLoader.load_from_state_dict``).

torch and spandrel are imported inside functions: the GUI imports this package at start-up.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any, TypeVar

from vsr_desktop.core.errors import ModelError
from vsr_desktop.core.models import bounds
from vsr_desktop.core.models.download import download_model, verified_cached_path
from vsr_desktop.core.models.file_limits import check_zip_archive, read_safetensors_header
from vsr_desktop.core.models.registry import MODEL_REGISTRY, ModelSpec, get_spec

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "realesr-animevideov3"
PICKLE_SUFFIXES = (".pth", ".pt", ".ckpt")
MODEL_SUFFIXES = (*PICKLE_SUFFIXES, ".safetensors", ".param")

# spandrel's architecture ids, renamed to the names Real-ESRGAN and our registry use.
_ARCH_NAMES = {"Compact": "SRVGGNetCompact", "ESRGAN": "RRDBNet"}


@dataclass
class LoadedModel:
    """A model ready for inference (eval mode, no grad), with what the engine must know."""

    name: str
    module: torch.nn.Module
    scale: int
    arch: str
    supports_half: bool
    supports_bfloat16: bool
    source: Path | None
    # Input sides must be a multiple of this (RRDBNet x2 pads internally anyway).
    size_multiple: int = 1
    #: The output scale the file's author meant when it differs from the network's: an ncnn
    #: x2 graph is the x4 network plus a bicubic ×0.5 (kept as "vsr.ncnn_graph_scale" when
    #: imported). None: the network's own scale. An explicit --scale wins over it.
    output_scale: float | None = None


def bundled_default_model_path() -> Path:
    """The realesr-animevideov3 weights shipped inside the package (works offline)."""
    return (
        Path(__file__).resolve().parents[2]
        / "resources"
        / "models"
        / (f"{DEFAULT_MODEL_NAME}.safetensors")
    )


def load_state_dict_file(path: Path | str) -> dict[str, torch.Tensor]:
    """Read the tensors of a model file without ever executing pickled code."""
    source = Path(path)
    suffix = source.suffix.lower()
    if not source.is_file():
        raise ModelError(f"Model file not found: {source}", "check the path")
    if source.stat().st_size > bounds.MAX_MODEL_BYTES:
        raise ModelError(
            f"{source.name} is larger than any model we load ({bounds.MAX_MODEL_BYTES} bytes)",
            "the file is damaged or was crafted; use an official model file",
        )
    if suffix == ".safetensors":
        raw = _load_safetensors(source)
    elif suffix in PICKLE_SUFFIXES:
        raw = _load_pickle_weights_only(source)
    elif suffix == ".param":
        from vsr_desktop.core.models.ncnn_import import import_ncnn

        raw = import_ncnn(source)
    else:
        raise ModelError(
            f"Unsupported model file type {suffix or '(none)'}: {source.name}",
            "use a .pth, .pt, .ckpt, .safetensors or ncnn .param file",
        )
    return _tensors_only(raw, source)


def _load_safetensors(path: Path) -> Mapping[str, Any]:
    from safetensors.torch import load_file

    read_safetensors_header(path)
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises its own SafetensorError, OSError...
        raise ModelError(
            f"Cannot read {path.name}: not a valid safetensors file ({exc})",
            "the file is damaged or incomplete; download it again",
        ) from exc


def _load_pickle_weights_only(path: Path) -> Mapping[str, Any]:
    import torch

    check_zip_archive(path)
    try:
        loaded = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ModelError(
            f"Refusing to load {path.name}: it contains Python objects other than weights, "
            "and unpickling them could run code",
            "use a .safetensors version of the model, or a plain state-dict .pth",
        ) from exc
    except Exception as exc:  # torch raises RuntimeError/EOFError/... on damaged files
        raise ModelError(
            f"Cannot read {path.name}: not a PyTorch weights file ({type(exc).__name__}: {exc})",
            "the file is damaged or incomplete; download it again",
        ) from exc
    if not isinstance(loaded, Mapping):
        raise ModelError(
            f"{path.name} holds a {type(loaded).__name__}, not a state dict",
            "give a file saved with torch.save(model.state_dict())",
        )
    return loaded


def _tensors_only(raw: Mapping[str, Any], source: Path) -> dict[str, torch.Tensor]:
    """Unwrap params/params_ema/state_dict/module. and keep only the tensors."""
    import torch
    from spandrel import canonicalize_state_dict

    state = canonicalize_state_dict(dict(raw))
    tensors = {str(k): v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ModelError(f"{source.name} contains no weights", "give a model weights file")
    bounds.check_shapes({k: tuple(v.shape) for k, v in tensors.items()}, source.name)
    return tensors


def model_from_state_dict(
    state_dict: Mapping[str, torch.Tensor], name: str, source: Path | None = None
) -> LoadedModel:
    """Detect the architecture with spandrel and build the module in eval mode."""
    from spandrel import ImageModelDescriptor, ModelLoader, UnsupportedModelError

    try:
        descriptor = ModelLoader(device="cpu").load_from_state_dict(dict(state_dict))
    except UnsupportedModelError as exc:
        raise ModelError(
            f"{name}: unknown model architecture",
            "use a Real-ESRGAN/ESRGAN-family model (any architecture spandrel supports works)",
        ) from exc
    except Exception as exc:  # wrong shapes, missing keys inside a detected architecture
        raise ModelError(
            f"{name}: the weights do not fit their detected architecture ({exc})",
            "the file is damaged or not a complete model",
        ) from exc
    if not isinstance(descriptor, ImageModelDescriptor):
        raise ModelError(
            f"{name} is a {descriptor.purpose} model, not an image upscaler",
            "choose a super-resolution model",
        )
    if descriptor.input_channels != 3 or descriptor.output_channels != 3:
        raise ModelError(
            f"{name} works on {descriptor.input_channels}-channel images, not RGB",
            "choose an RGB model",
        )
    # The scale comes from tensor shapes (a last layer of 3·40² channels reads as ×40):
    # bounded like the command line's, before the engine sizes anything by it.
    scale = bounds.check_scale(descriptor.scale, name)
    module = descriptor.model.eval()
    module.requires_grad_(False)
    arch_id = str(descriptor.architecture.id)
    return LoadedModel(
        name=name,
        module=module,
        scale=scale,
        arch=_ARCH_NAMES.get(arch_id, arch_id),
        supports_half=bool(descriptor.supports_half),
        supports_bfloat16=bool(descriptor.supports_bfloat16),
        source=source,
        size_multiple=int(descriptor.size_requirements.multiple_of),
    )


def load_model_file(path: Path | str, name: str | None = None) -> LoadedModel:
    """Load a .pth/.pt/.ckpt/.safetensors (or ncnn .param) model file safely."""
    source = Path(path).expanduser()
    state = load_state_dict_file(source)
    model = model_from_state_dict(state, name or source.stem, source)
    graph_scale = _ncnn_graph_scale(source)
    if graph_scale is not None and graph_scale != model.scale:
        model = replace(model, output_scale=graph_scale)
    return model


def _ncnn_graph_scale(source: Path) -> float | None:
    """An ncnn graph's own output scale: from the .param, or from an imported file's metadata."""
    suffix = source.suffix.lower()
    if suffix == ".param":
        from vsr_desktop.core.models.ncnn_import import ncnn_graph_scale

        return ncnn_graph_scale(source)
    if suffix != ".safetensors":
        return None
    metadata = read_safetensors_header(source)["metadata"]
    where = f"{source.name} metadata"
    if metadata.get("vsr.scale"):
        bounds.parse_int(metadata["vsr.scale"], where, "vsr.scale", 1, bounds.MAX_SCALE)
    value = metadata.get("vsr.ncnn_graph_scale")
    if not value:
        return None
    return bounds.parse_float(
        value, where, "vsr.ncnn_graph_scale", bounds.MIN_OUTPUT_SCALE, bounds.MAX_OUTPUT_SCALE
    )


def blend_state_dicts(
    a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor], strength: float
) -> dict[str, torch.Tensor]:
    """Real-ESRGAN's dni: ``strength * a + (1 - strength) * b`` per tensor.

    For realesr-general-x4v3 ``a`` is x4v3 and ``b`` its weak-denoise twin, so strength 1
    means x4v3 alone and 0 means wdn alone.
    """
    if not 0.0 <= strength <= 1.0:
        raise ModelError(f"Denoise strength {strength} is out of range", "use a value from 0 to 1")
    if a.keys() != b.keys():
        raise ModelError(
            "Cannot blend two models with different layers", "blend the two halves of one model"
        )
    out: dict[str, torch.Tensor] = {}
    for key, ta in a.items():
        tb = b[key]
        if ta.shape != tb.shape:
            raise ModelError(
                f"Cannot blend: {key} has shapes {tuple(ta.shape)} and {tuple(tb.shape)}",
                "blend the two halves of one model",
            )
        if ta.is_floating_point():
            out[key] = strength * ta.float() + (1.0 - strength) * tb.float()
        else:
            out[key] = ta.clone()
    return out


def _ensure_file(
    spec: ModelSpec,
    cache_dir: Path | None,
    allow_download: bool,
    progress: Callable[[int, int], None] | None,
) -> Path:
    try:
        path = verified_cached_path(spec, cache_dir)
    except ModelError:
        if not allow_download:
            raise
        path = None  # the download replaces the file that failed its check
    if path is not None:
        return path
    if allow_download:
        return download_model(spec, cache_dir=cache_dir, progress=progress)
    raise ModelError(
        f"Model {spec.name} is not downloaded yet",
        f"run `vsr models download {spec.name}` ({spec.size_bytes / 1e6:.1f} MB)",
    )


def _check_matches(model: LoadedModel, spec: ModelSpec) -> LoadedModel:
    if model.scale != spec.scale or model.arch != spec.arch:
        raise ModelError(
            f"{model.source} is not {spec.name}: found {model.arch} x{model.scale}, "
            f"expected {spec.arch} x{spec.scale}",
            f"delete it and run `vsr models download {spec.name}`",
        )
    return model


def resolve_model(
    name_or_path: str,
    *,
    denoise_strength: float | None = None,
    cache_dir: Path | None = None,
    allow_download: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> LoadedModel:
    """Load a registry model by name or a model file path.

    A name loads the cached official file, else (for the default model) the bundled copy,
    else downloads it when ``allow_download``, else raises ModelError naming the command.

    ``denoise_strength`` (0..1) only applies to models with a denoise partner
    (realesr-general-x4v3): below 1 both files are needed and blended.
    """
    spec = _registry_spec(name_or_path)
    if spec is None:
        path = Path(name_or_path).expanduser()
        if not path.is_file():
            raise ModelError(
                f"{name_or_path!r} is neither a known model nor a model file",
                "known models: "
                + ", ".join(MODEL_REGISTRY)
                + "; or give a path to a "
                + "/".join(MODEL_SUFFIXES)
                + " file",
            )
        if denoise_strength is not None:
            raise ModelError(
                "Denoise strength only works with realesr-general-x4v3",
                "leave the denoise strength unset for this model",
            )
        return load_model_file(path)
    if denoise_strength is not None and spec.denoise_partner is None:
        raise ModelError(
            f"Denoise strength does not apply to {spec.name}",
            "use realesr-general-x4v3, or leave the denoise strength unset",
        )
    if denoise_strength is not None and not 0.0 <= denoise_strength <= 1.0:
        raise ModelError(
            f"Denoise strength {denoise_strength} is out of range", "use a value from 0 to 1"
        )
    bundled = bundled_default_model_path()
    if spec.name == DEFAULT_MODEL_NAME and bundled.is_file():
        # The bundled copy holds fp16-rounded weights (from ncnn); an official file that the
        # user downloaded on purpose is exact, so it wins when present.
        try:
            official = verified_cached_path(spec, cache_dir)
        except ModelError as exc:  # changed on disk: never used, the bundled copy is
            log.warning("%s; using the bundled %s", exc.user_message(), spec.name)
            official = None
        chosen = official if official is not None else bundled
        return _check_matches(load_model_file(chosen, spec.name), spec)
    path = _ensure_file(spec, cache_dir, allow_download, progress)
    if denoise_strength is None or denoise_strength == 1.0 or spec.denoise_partner is None:
        return _check_matches(load_model_file(path, spec.name), spec)
    partner = get_spec(spec.denoise_partner)
    partner_path = _ensure_file(partner, cache_dir, allow_download, progress)
    blended = blend_state_dicts(
        load_state_dict_file(path), load_state_dict_file(partner_path), denoise_strength
    )
    name = f"{spec.name} (denoise {denoise_strength:g})"
    return _check_matches(model_from_state_dict(blended, name, path), spec)


def is_model_file_reference(name_or_path: str) -> bool:
    """True when a model is given as a file (a path, or a name with a model suffix)."""
    if name_or_path in MODEL_REGISTRY:
        return False
    return any(sep in name_or_path for sep in ("/", "\\")) or name_or_path.lower().endswith(
        MODEL_SUFFIXES
    )


ModelPath = TypeVar("ModelPath", bound=PurePath)


def model_file_set(path: ModelPath) -> list[ModelPath]:
    """A model file and what must travel with it: an ncnn ``.param`` needs its ``.bin``."""
    return [path, path.with_suffix(".bin")] if path.suffix.lower() == ".param" else [path]


def _registry_spec(name_or_path: str) -> ModelSpec | None:
    """The registry entry for a name (case-insensitive), or None for anything else."""
    if name_or_path in MODEL_REGISTRY:
        return MODEL_REGISTRY[name_or_path]
    if is_model_file_reference(name_or_path):
        return None
    try:
        return get_spec(name_or_path)
    except ModelError:
        return None
