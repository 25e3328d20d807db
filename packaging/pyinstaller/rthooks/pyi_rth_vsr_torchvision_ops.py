"""Runtime hook: let torchvision's Python part import when its compiled ops cannot load.

Why: the CPU variant built on our Debian machines pairs torch's CPU wheel with a torchvision
wheel built for CUDA torch (the only torchvision of that version the machines can install). Its
compiled ops (nms, roi_align, deform_conv2d…) then fail to load, and torchvision 0.28 still
registers fake kernels for ``torchvision::nms``/``qnms`` at import, which raises
"operator torchvision::nms does not exist" and takes spandrel (which imports torchvision) down
with it. Real-ESRGAN's architectures use none of those ops, so we declare the two missing
schemas just before that module runs. With a matching torchvision (the ops loaded) this does
nothing. Lazy on purpose: importing torch here would slow every start-up by seconds.
"""

import importlib.abc
import importlib.machinery
import sys

_TARGET = "torchvision._meta_registrations"
_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_keep_alive = []  # a torch Library deregisters its definitions when collected


def _declare_missing_ops():
    import torch.library
    import torchvision.extension

    if torchvision.extension._has_ops():
        return
    library = torch.library.Library("torchvision", "FRAGMENT")
    for schema in _SCHEMAS:
        library.define(schema)
    _keep_alive.append(library)


class _Loader(importlib.abc.Loader):
    def __init__(self, wrapped):
        self._wrapped = wrapped

    def create_module(self, spec):
        return self._wrapped.create_module(spec)

    def exec_module(self, module):
        _declare_missing_ops()
        self._wrapped.exec_module(module)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname != _TARGET:
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None:
            for finder in sys.meta_path:
                found = getattr(finder, "find_spec", None)
                spec = found(fullname, path, target) if found else None
                if spec is not None:
                    break
        if spec is not None and spec.loader is not None:
            spec.loader = _Loader(spec.loader)
        return spec


sys.meta_path.insert(0, _Finder())
