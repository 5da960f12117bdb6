"""Official VoV3D checkpoints (``youngwanLEE/VoV3D``, PySlowFast format) -> vidnets state dicts.

The official code saves ``{"model_state": state_dict, ...}`` (``.pth`` / ``.pyth``). Module
paths (``{i}``: stage, ``{j}``: T-OSA module in the stage, ``{k}``: D(2+1)D layer in it)::

    vidnets                                  official
    stem.conv.conv                           s1.pathway0_stem.conv_xy       (1x3x3 conv)
    stem.conv_temporal.conv / .bn            s1.pathway0_stem.conv / .bn    (5x1x1 depthwise)
    stages.{i}.{j}.shortcut.conv / .bn       s{i+2}.pathway0_res{j}.branch1 / .branch1_bn
    stages.{i}.{j}.aggregate.conv / .bn      s{i+2}.pathway0_res{j}.branch2.c / .c_bn
    stages.{i}.{j}.layers.{k}.<layer>        s{i+2}.pathway0_res{j}.branch2.layers.{k}.<layer>
    project.conv / .bn                       head.conv_5 / .conv_5_bn
    head.head.conv                           head.lin_5
    head.classifier.conv                     head.projection                (Linear)

with ``<layer>`` as in :data:`_LAYER`. The streaming models have the same names, so the
same checkpoints initialise them.
"""

from __future__ import annotations

import re

import torch

from ..layers import State
from .checkpoint import register_torch_converter
from .mapping import complete_state

_OUTER = {
    "stem.conv.conv": "s1.pathway0_stem.conv_xy",
    "stem.conv_temporal.conv": "s1.pathway0_stem.conv",
    "stem.conv_temporal.bn": "s1.pathway0_stem.bn",
    "project.conv": "head.conv_5",
    "project.bn": "head.conv_5_bn",
    "head.head.conv": "head.lin_5",
    "head.classifier.conv": "head.projection",
}
_BLOCK = {
    "shortcut.conv": "branch1",
    "shortcut.bn": "branch1_bn",
    "aggregate.conv": "branch2.c",
    "aggregate.bn": "branch2.c_bn",
}
_LAYER = {
    "expand.conv": "a.0",
    "expand.bn": "a.1",
    "feature.conv.conv": "b1",
    "feature.conv_temporal.conv": "b2",
    "feature.conv_temporal.bn": "b_bn",
    "se.se_reduce.conv": "se.fc1",
    "se.se_expand.conv": "se.fc2",
    "project.conv": "c.0",
    "project.bn": "c.1",
}
_BLOCK_KEY = re.compile(r"stages\.(\d+)\.(\d+)\.(.+)")
_LAYER_KEY = re.compile(r"layers\.(\d+)\.(.+)")


def official_name(key: str) -> str:
    """The official checkpoint's name of the vidnets state-dict entry ``key``."""
    module, _, leaf = key.rpartition(".")
    if m := _BLOCK_KEY.fullmatch(module):
        stage, block, inner = int(m.group(1)), m.group(2), m.group(3)
        prefix = f"s{stage + 2}.pathway0_res{block}."
        if layer := _LAYER_KEY.fullmatch(inner):
            path = f"{prefix}branch2.layers.{layer.group(1)}.{_LAYER[layer.group(2)]}"
        else:
            path = prefix + _BLOCK[inner]
    else:
        path = _OUTER[module]
    return f"{path}.{leaf}"


@register_torch_converter("vov3d")
def convert_vov3d(state_dict: State, model: torch.nn.Module, source: str) -> State:
    """Map an official VoV3D state dict onto ``model``'s; refuse any partial match.

    Raises ``ValueError`` naming the source and every unused checkpoint tensor, missing
    model tensor and shape mismatch (e.g. an L checkpoint for an M model).
    """
    own = model.state_dict()
    state: State = {}
    missing = []
    for key in own:
        name = official_name(key)
        if name in state_dict:
            state[key] = state_dict[name]
        elif not key.endswith("num_batches_tracked"):  # zero-filled by complete_state
            missing.append(f"{key} (<- {name})")
    unused = sorted(set(state_dict) - {official_name(k) for k in own})
    return complete_state(state, model, source, unused=unused, missing=missing)
