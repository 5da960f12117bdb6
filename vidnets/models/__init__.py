"""Model families built from the shared layers; one builder per family."""

from . import ensemble, movinet, vov3d, x3d
from .base import Streamer, VideoClassifier
from .ensemble import Ensemble, MemberInput, create_ensemble
from .movinet import BLOCK_SPECS, MoViNet, MoViNetOptions, create_movinet
from .vov3d import VoV3D, create_vov3d
from .x3d import X3D, create_x3d

__all__ = [
    "BLOCK_SPECS", "Ensemble", "MemberInput", "MoViNet", "MoViNetOptions", "Streamer",
    "VideoClassifier", "VoV3D", "X3D", "create_ensemble", "create_movinet", "create_vov3d",
    "create_x3d", "ensemble", "movinet", "vov3d", "x3d",
]
