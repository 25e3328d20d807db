"""Model files of "the user's own" for tests of backends that must carry them to workers."""

from __future__ import annotations

from pathlib import Path

from vsr_desktop.core.models import bundled_default_model_path, load_state_dict_file


def custom_x2_model(path: Path) -> Path:
    """A model file of the user's own: the bundled compact network cut down to ×2 (its last
    convolution keeps 3·2² outputs), so the output's size shows which model ran."""
    from safetensors.torch import save_file

    state = load_state_dict_file(bundled_default_model_path())
    last = max((k for k in state if k.endswith(".bias")), key=lambda k: int(k.split(".")[1]))
    prefix = last.removesuffix(".bias")
    for name in (f"{prefix}.weight", f"{prefix}.bias"):
        state[name] = state[name][:12].clone()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path
