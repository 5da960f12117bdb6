"""Building blocks shared by every model family (MoViNet, X3D, VoV3D)."""

from .activations import HardSigmoid, HardSwish, Swish, make_activation
from .channels import make_divisible
from .conv import LAYOUTS, TORCH_CONV_STYLE, ConvBNAct, Layout, SpatioTemporalConv
from .depthwise import (
    depthwise_conv3d,
    fast_depthwise,
    fast_depthwise_enabled,
    set_fast_depthwise,
)
from .drop import DropPath
from .head import ClassifierHead
from .norm import (
    TF_BN_EPS,
    TF_BN_MOMENTUM,
    TORCH_BN_EPS,
    TORCH_BN_MOMENTUM,
    SubBatchNorm3d,
    aggregate_sub_batch_stats,
    batch_norm,
    convert_to_batch_norm,
    convert_to_sub_batch_norm,
    set_num_splits,
)
from .padding import same_output_size, same_padding
from .pooling import CumulativeAvgPool, GlobalAvgPool, SameAvgPool2d, spatial_mean
from .scale import Scale
from .squeeze_excite import PositionalEncoding, SqueezeExcite, sinusoid_encoding
from .state import FrameCounter, State, StreamBuffer

__all__ = [
    "LAYOUTS", "TF_BN_EPS", "TF_BN_MOMENTUM", "TORCH_BN_EPS", "TORCH_BN_MOMENTUM",
    "TORCH_CONV_STYLE", "ClassifierHead", "ConvBNAct",
    "CumulativeAvgPool", "DropPath", "FrameCounter", "GlobalAvgPool", "HardSigmoid",
    "HardSwish", "Layout", "PositionalEncoding", "SameAvgPool2d", "Scale",
    "SpatioTemporalConv", "SqueezeExcite", "State", "StreamBuffer", "SubBatchNorm3d", "Swish",
    "aggregate_sub_batch_stats", "batch_norm", "convert_to_batch_norm",
    "convert_to_sub_batch_norm", "depthwise_conv3d", "fast_depthwise", "fast_depthwise_enabled",
    "make_activation", "make_divisible", "same_output_size",
    "same_padding", "set_fast_depthwise", "set_num_splits", "sinusoid_encoding",
    "spatial_mean",
]
