"""pytorchvideo 0.1.5's X3D: the speed peer of vidnets' X3D, with the same weights.

``pip install --no-deps pytorchvideo==0.1.5 fvcore iopath`` (as ``scripts/test.sh``). Its
package imports ``torchvision.ops.RoIAlign`` (unused by X3D); without torchvision a stand-in
module provides that one name during the import, as in ``tests/models/test_x3d.py``.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
import warnings

import torch
from torch import nn

import vidnets
from vidnets.weights.x3d import convert_x3d


def missing() -> list[str]:
    return [m for m in ("pytorchvideo", "fvcore", "iopath") if importlib.util.find_spec(m) is None]


def create_x3d(**kwargs) -> nn.Module:
    """``pytorchvideo.models.x3d.create_x3d(**kwargs)``."""
    if missing():
        raise SystemExit(f"the pytorchvideo peer needs {missing()}: pip install --no-deps "
                         "pytorchvideo==0.1.5 fvcore iopath")
    stubbed = []
    if importlib.util.find_spec("torchvision") is None:
        ops = types.ModuleType("torchvision.ops")
        ops.RoIAlign = type("RoIAlign", (nn.Module,), {})
        for name, module in (("torchvision", types.ModuleType("torchvision")),
                             ("torchvision.ops", ops)):
            if name not in sys.modules:
                sys.modules[name] = module
                stubbed.append(name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return importlib.import_module("pytorchvideo.models.x3d").create_x3d(**kwargs)
    finally:
        for name in stubbed:
            del sys.modules[name]


def vidnets_twin(reference: nn.Module, name: str, **kwargs) -> nn.Module:
    """vidnets ``name`` with ``reference``'s weights (the hub-checkpoint converter)."""
    model = vidnets.create_model(name, **kwargs)
    model.load_state_dict(convert_x3d(reference.state_dict(), model, "pytorchvideo"))
    return model.train(reference.training)


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random BatchNorm running statistics and affine parameters (non-trivial eval mode)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.empty(m.num_features).uniform_(0.5, 2.0, generator=g))
                m.weight.copy_(torch.empty(m.num_features).uniform_(0.5, 1.5, generator=g))
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model
