"""Building blocks shared by every model family (MoViNet, X3D, VoV3D)."""

from .activations import HardSigmoid, HardSwish, Swish, make_activation
from .channels import make_divisible
from .conv import LAYOUTS, ConvBNAct, Layout, SpatioTemporalConv
from .drop import DropPath
from .head import ClassifierHead
from .norm import TF_BN_EPS, TF_BN_MOMENTUM, batch_norm
from .padding import same_output_size, same_padding
from .pooling import CumulativeAvgPool, GlobalAvgPool, SameAvgPool2d, spatial_mean
from .scale import Scale
from .squeeze_excite import PositionalEncoding, SqueezeExcite, sinusoid_encoding
from .state import FrameCounter, State, StreamBuffer

__all__ = [
    "LAYOUTS", "TF_BN_EPS", "TF_BN_MOMENTUM", "ClassifierHead", "ConvBNAct",
    "CumulativeAvgPool", "DropPath", "FrameCounter", "GlobalAvgPool", "HardSigmoid",
    "HardSwish", "Layout", "PositionalEncoding", "SameAvgPool2d", "Scale",
    "SpatioTemporalConv", "SqueezeExcite", "State", "StreamBuffer", "Swish", "batch_norm",
    "make_activation", "make_divisible", "same_output_size", "same_padding",
    "sinusoid_encoding", "spatial_mean",
]
