"""Models: the Real-ESRGAN zoo, verified downloads, safe loading and ncnn import.

Importing this package is cheap (no torch, no spandrel); they load on first use.
"""

from vsr_desktop.core.models.download import (
    cached_model_path,
    default_cache_dir,
    download_model,
    verified_cached_path,
)
from vsr_desktop.core.models.loading import (
    DEFAULT_MODEL_NAME,
    LoadedModel,
    blend_state_dicts,
    bundled_default_model_path,
    load_model_file,
    load_state_dict_file,
    model_from_state_dict,
    resolve_model,
)
from vsr_desktop.core.models.ncnn_import import (
    import_ncnn,
    import_ncnn_to_file,
    save_state_dict_safetensors,
)
from vsr_desktop.core.models.registry import MODEL_REGISTRY, ModelSpec, get_spec, model_names

__all__ = [
    "DEFAULT_MODEL_NAME",
    "MODEL_REGISTRY",
    "LoadedModel",
    "ModelSpec",
    "blend_state_dicts",
    "bundled_default_model_path",
    "cached_model_path",
    "default_cache_dir",
    "download_model",
    "get_spec",
    "import_ncnn",
    "import_ncnn_to_file",
    "load_model_file",
    "load_state_dict_file",
    "model_from_state_dict",
    "model_names",
    "resolve_model",
    "save_state_dict_safetensors",
    "verified_cached_path",
]
