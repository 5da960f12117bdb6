"""Official TF MoViNet checkpoints -> vidnets state dicts (no TensorFlow needed).

The release checkpoints are ``tf.train.Checkpoint(model=MovinetClassifier)``; variable
names are object-graph paths::

    model/layer_with_weights-0/layer_with_weights-K/<layer path>   backbone layer K
    model/layer_with_weights-1/(_head|_classifier)/...              classifier head

(``backbone/layer_with_weights-K/...`` in files re-saved by the official converter.)

Backbone layer 0 is the stem, 1..N the blocks in table order, N+1 the head projection.
Layer paths are mapped by :data:`_LAYER_PATHS`; kernels are transposed from TF's
channels-last layout, and ``3d_2plus1d`` training checkpoints load into the ``2plus1d``
inference layout by reshape (as the official ``tools/convert_3d_2plus1d.py`` does).
Every checkpoint variable must be consumed and every model tensor filled.
"""

from __future__ import annotations

import re

import numpy as np
import torch

from ..layers import State
from .mapping import complete_state

_BN = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean",
       "moving_variance": "running_var"}
# official layer path (after folding :data:`_MOBILE_CONV`) -> vidnets module path
_LAYER_PATHS = {
    "_stem/_conv": "stem.conv.conv", "_stem/_batch_norm": "stem.conv.bn",
    "_stem/_conv_temporal": "stem.conv_temporal.conv",
    "_stem/_batch_norm_temporal": "stem.conv_temporal.bn",
    "_expansion/_conv": "expansion.conv", "_expansion/_batch_norm": "expansion.bn",
    "_feature/_conv": "feature.conv.conv", "_feature/_batch_norm": "feature.conv.bn",
    "_feature/_conv_temporal": "feature.conv_temporal.conv",
    "_feature/_batch_norm_temporal": "feature.conv_temporal.bn",
    "_attention/_se_reduce/_conv": "se.se_reduce.conv",
    "_attention/_se_expand/_conv": "se.se_expand.conv",
    "_attention/_pos_encoding/_rezero": "se.pos_encoding.rezero",
    "_projection/_conv": "projection.conv", "_projection/_batch_norm": "projection.bn",
    "_skip/_projection/_conv": "skip.skip_project.conv",
    "_skip/_projection/_batch_norm": "skip.skip_project.bn",
    "_mobile_bottleneck/_rezero": "rezero",
    "_project/_conv": "project.conv", "_project/_batch_norm": "project.bn",
    "_head/_conv": "head.head.conv", "_classifier/_conv": "head.classifier.conv",
}
# ``backbone/...``: checkpoints written by the official tools/convert_3d_2plus1d.py
_BACKBONE = re.compile(r"(?:model/layer_with_weights-0|backbone)/layer_with_weights-(\d+)/(.+)")
_CLASSIFIER = re.compile(r"model/layer_with_weights-1/(.+)")
_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
# the 2plus1d layout wraps each conv in a MobileConv2D: ``_conv/_conv``, ``_conv_temporal/_conv``
_MOBILE_CONV = re.compile(r"(_conv(?:_temporal)?)/_conv/")


def is_model_variable(name: str) -> bool:
    """Model weights, as opposed to optimizer slots, counters and the object graph."""
    return (name.startswith(("model/", "backbone/")) and name.endswith(_SUFFIX)
            and "OPTIMIZER_SLOT" not in name)


def _torch_name(tf_name: str, num_blocks: int) -> str:
    path = tf_name[: -len(_SUFFIX)]
    if m := _BACKBONE.fullmatch(path):
        index, rest = int(m.group(1)), m.group(2)
        if index == 0:
            prefix = ""
        elif index <= num_blocks:
            prefix = f"blocks.{index - 1}."
        elif index == num_blocks + 1:
            prefix = ""
        else:
            raise KeyError(tf_name)
    elif m := _CLASSIFIER.fullmatch(path):
        prefix, rest = "", m.group(1)
    else:
        raise KeyError(tf_name)
    rest = _MOBILE_CONV.sub(r"\1/", rest)
    layer, _, variable = rest.rpartition("/")
    module = _LAYER_PATHS.get(layer)
    if module is None:
        raise KeyError(tf_name)
    if variable in _BN:
        return f"{prefix}{module}.{_BN[variable]}"
    if variable in ("kernel", "depthwise_kernel"):
        return f"{prefix}{module}.weight"
    if variable in ("bias", "scale"):
        return f"{prefix}{module}.{variable}"
    raise KeyError(tf_name)


def _torch_tensor(tf_name: str, value: np.ndarray) -> torch.Tensor:
    """TF channels-last kernels -> PyTorch ``[out, in/groups, *kernel]``."""
    if tf_name.endswith("depthwise_kernel" + _SUFFIX):  # [kh, kw, C, multiplier=1]
        value = value.transpose(2, 3, 0, 1)
    elif tf_name.endswith("kernel" + _SUFFIX):  # [*kernel, in/groups, out]
        value = value.transpose(value.ndim - 1, value.ndim - 2, *range(value.ndim - 2))
    return torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))


def convert_movinet(variables: dict[str, np.ndarray], model: torch.nn.Module,
                    source: str) -> State:
    """Map official variables onto ``model``'s state dict; refuse any partial match.

    Raises ``ValueError`` naming the source and every unmapped checkpoint variable,
    missing model tensor and shape mismatch.
    """
    own = model.state_dict()
    num_blocks = len(model.blocks)
    state: State = {}
    unmapped: list[str] = []
    for name, value in sorted(variables.items()):
        if not is_model_variable(name):
            continue
        try:
            key = _torch_name(name, num_blocks)
        except KeyError:
            unmapped.append(name)
            continue
        if key not in own:
            unmapped.append(f"{name} (-> {key})")
            continue
        state[key] = _torch_tensor(name, value)
    return complete_state(state, model, source, unused=unmapped)


def checkpoint_num_classes(variables: dict[str, np.ndarray]) -> int:
    """Class count of an official checkpoint (from the classifier bias)."""
    name = "model/layer_with_weights-1/_classifier/_conv/_conv/bias" + _SUFFIX
    fallback = "model/layer_with_weights-1/_classifier/_conv/bias" + _SUFFIX
    for key in (name, fallback):
        if key in variables:
            return int(variables[key].shape[0])
    raise ValueError("no classifier bias in the checkpoint: not a MovinetClassifier checkpoint")
