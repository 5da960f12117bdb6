"""X3D checkpoints of pytorchvideo and PySlowFast -> vidnets state dicts.

Both save ``{"model_state": state_dict}`` (``.pyth``); the format is told by the key names.
Module paths (``{i}``: stage, ``{j}``: block in the stage)::

    vidnets                  pytorchvideo 0.1.5                  PySlowFast
    stem.conv.conv           blocks.0.conv.conv_t (1x3x3 conv)   s1.pathway0_stem.conv_xy
    stem.conv_temporal.conv  blocks.0.conv.conv_xy (5x1x1 conv)  s1.pathway0_stem.conv
    stem.conv_temporal.bn    blocks.0.norm                       s1.pathway0_stem.bn
    stages.{i}.{j}.<block>   blocks.{i+1}.res_blocks.{j}.<block> s{i+2}.pathway0_res{j}.<block>
    project.conv / .bn       blocks.5.pool.pre_conv / pre_norm   head.conv_5 / conv_5_bn
    head.head.conv           blocks.5.pool.post_conv             head.lin_5
    head.classifier.conv     blocks.5.proj (Linear)              head.projection (Linear)

(pytorchvideo's stem names its two convs the other way round.) Inside a block see
:data:`_BLOCK`. PySlowFast also normalises the shortcut of stage 1's first block, whose
width does not change; pytorchvideo (and vidnets) do not: that BN is folded into the
shortcut conv (scale) and the block's last BN (shift), which is exact for inference.

The mapping was written from the two codes (pytorchvideo 0.1.5 ``models/x3d.py``;
PySlowFast ``video_model_builder.X3D``, ``resnet_helper.X3DTransform``/``ResBlock``,
``stem_helper.X3DStem``, ``head_helper.X3DHead``, ``operators.SE``) and is tested against
pytorchvideo itself and against PySlowFast-named state dicts synthesised by renaming (no
PySlowFast install). Streaming models have the same names, so the same checkpoints load.
"""

from __future__ import annotations

import re

import torch

from ..layers import TORCH_BN_EPS, State
from .checkpoint import register_torch_converter
from .mapping import complete_state

PYTORCHVIDEO, PYSLOWFAST = "pytorchvideo", "pyslowfast"
# vidnets module -> (pytorchvideo, PySlowFast) module, outside the stages
_OUTER = {
    "stem.conv.conv": ("blocks.0.conv.conv_t", "s1.pathway0_stem.conv_xy"),
    "stem.conv_temporal.conv": ("blocks.0.conv.conv_xy", "s1.pathway0_stem.conv"),
    "stem.conv_temporal.bn": ("blocks.0.norm", "s1.pathway0_stem.bn"),
    "project.conv": ("blocks.{head}.pool.pre_conv", "head.conv_5"),
    "project.bn": ("blocks.{head}.pool.pre_norm", "head.conv_5_bn"),
    "head.head.conv": ("blocks.{head}.pool.post_conv", "head.lin_5"),
    "head.classifier.conv": ("blocks.{head}.proj", "head.projection"),
}
# block module -> (pytorchvideo, PySlowFast) module inside one residual block
_BLOCK = {
    "expansion.conv": ("branch2.conv_a", "branch2.a"),
    "expansion.bn": ("branch2.norm_a", "branch2.a_bn"),
    "feature.conv.conv": ("branch2.conv_b", "branch2.b"),
    "feature.conv.bn": ("branch2.norm_b.0", "branch2.b_bn"),
    "se.se_reduce.conv": ("branch2.norm_b.1.block.0", "branch2.se.fc1"),
    "se.se_expand.conv": ("branch2.norm_b.1.block.2", "branch2.se.fc2"),
    "projection.conv": ("branch2.conv_c", "branch2.c"),
    "projection.bn": ("branch2.norm_c", "branch2.c_bn"),
    "skip.conv": ("branch1_conv", "branch1"),
    "skip.bn": ("branch1_norm", "branch1_bn"),
}
_BLOCK_PREFIX = ("blocks.{stage1}.res_blocks.{block}.", "s{stage2}.pathway0_res{block}.")
_STAGE_KEY = re.compile(r"stages\.(\d+)\.(\d+)\.(.+)")


def checkpoint_format(state_dict: State, source: str) -> str:
    """``"pytorchvideo"`` or ``"pyslowfast"``, from the stem's key names."""
    if any(k.startswith("blocks.0.conv.") for k in state_dict):
        return PYTORCHVIDEO
    if any(k.startswith("s1.pathway0_stem.") for k in state_dict):
        return PYSLOWFAST
    raise ValueError(f"{source}: not an X3D checkpoint of pytorchvideo or PySlowFast (no "
                     f"'blocks.0.conv.*' or 's1.pathway0_stem.*' keys; first keys: "
                     f"{', '.join(list(state_dict)[:5])})")


def _block_prefix(fmt: str, stage: int, block: int) -> str:
    return _BLOCK_PREFIX[fmt == PYSLOWFAST].format(stage1=stage + 1, stage2=stage + 2,
                                                   block=block)


def official_name(key: str, fmt: str, num_stages: int) -> str:
    """The ``fmt`` checkpoint's name of the vidnets state-dict entry ``key``."""
    module, _, leaf = key.rpartition(".")
    column = fmt == PYSLOWFAST
    if m := _STAGE_KEY.fullmatch(module):
        stage, block, inner = int(m.group(1)), int(m.group(2)), m.group(3)
        path = _block_prefix(fmt, stage, block) + _BLOCK[inner][column]
    else:
        path = _OUTER[module][column].format(head=num_stages + 1)
    return f"{path}.{leaf}"


def _shortcut_bn_folds(source_state: State, own: State) -> list[tuple[str, str, str]]:
    """PySlowFast shortcut BNs with no vidnets counterpart: ``(BN prefix, conv, last BN bias)``."""
    folds = []
    for key in own:
        m = re.fullmatch(r"(stages\.(\d+)\.(\d+)\.)skip\.conv\.weight", key)
        if m and m.group(1) + "skip.bn.weight" not in own:
            prefix = _block_prefix(PYSLOWFAST, int(m.group(2)), int(m.group(3))) + "branch1_bn."
            if prefix + "weight" in source_state:
                folds.append((prefix, key, m.group(1) + "projection.bn.bias"))
    return folds


@register_torch_converter("x3d")
def convert_x3d(state_dict: State, model: torch.nn.Module, source: str) -> State:
    """Map a pytorchvideo / PySlowFast X3D state dict onto ``model``'s; refuse partial matches.

    Raises ``ValueError`` naming the source and every unused checkpoint tensor, missing model
    tensor and shape mismatch.
    """
    fmt = checkpoint_format(state_dict, source)
    own = model.state_dict()
    num_stages = len(model.stages)
    state: State = {}
    used: set[str] = set()
    missing = []
    for key in own:
        name = official_name(key, fmt, num_stages)
        if name in state_dict:
            state[key] = state_dict[name]
            used.add(name)
        elif not key.endswith("num_batches_tracked"):  # zero-filled by complete_state
            missing.append(f"{key} (<- {name})")
    folds = _shortcut_bn_folds(state_dict, own) if fmt == PYSLOWFAST else []
    used.update(k for prefix, _, _ in folds for k in state_dict if k.startswith(prefix))
    unused = sorted(set(state_dict) - used)
    state = complete_state(state, model, f"{source} ({fmt} X3D)", unused=unused,
                           missing=missing)
    for prefix, conv, last_bn_bias in folds:
        bn = {name: state_dict[prefix + name].double()
              for name in ("weight", "bias", "running_mean", "running_var")}
        scale = bn["weight"] / torch.sqrt(bn["running_var"] + TORCH_BN_EPS)
        state[conv] = (state[conv].double() * scale.reshape(-1, 1, 1, 1, 1)).float()
        shift = bn["bias"] - scale * bn["running_mean"]
        state[last_bn_bias] = (state[last_bn_bias].double() + shift).float()
    return state
